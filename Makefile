# Two commands from a fresh clone:  `make demo`  and  `make test`.  Each sets itself up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-oldest lint bench bench-peers clean setup

setup: $(STAMP)

# Reinstall when the package metadata changes; pip resolves the pinned [dev] extras.
$(STAMP): pyproject.toml integrations/langchain/pyproject.toml integrations/litellm/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The distribution was called tollgate before it became tollgate-llm: an old venv's copy goes first.
	$(PY) -m pip uninstall --quiet --yes tollgate 2>/dev/null || true
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps -e integrations/langchain
	$(PY) -m pip install --quiet --no-deps -e integrations/litellm
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tollgate demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# The same suites that touch the SDKs and frameworks, against the oldest releases pyproject claims
# (.ci/oldest/*.txt), each in a virtual environment of its own under .venv/oldest-*.
test-oldest:
	PYTHON=$(PYTHON) bash .ci/oldest/run

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# tollgate's own numbers, in the project's environment.
bench: $(STAMP)
	$(PY) benchmarks/import_time.py
	$(PY) benchmarks/overhead.py --peers none
	$(PY) benchmarks/stores.py
	$(PY) benchmarks/overspend.py --peers none
	$(PY) benchmarks/abandoned_streams.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/estimate_error.py
	$(PY) benchmarks/telemetry.py

# Side by side with the peers, installed in an environment of their own (.venv/bench).
.venv/bench/bin/python: benchmarks/peers/requirements.txt pyproject.toml
	bash benchmarks/peers/setup.sh

bench-peers: .venv/bench/bin/python
	.venv/bench/bin/python benchmarks/overhead.py
	.venv/bench/bin/python benchmarks/overspend.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
