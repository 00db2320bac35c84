#!/usr/bin/env bash
# Creates (or updates) .venv/bench: tollgate from this checkout plus the peer libraries that
# benchmarks/overhead.py and benchmarks/overspend.py compare it with. Idempotent: a second run
# reinstalls nothing that is already at its pinned version.
#
#   bash benchmarks/peers/setup.sh
#   .venv/bench/bin/python benchmarks/overhead.py
#   .venv/bench/bin/python benchmarks/overspend.py
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root, wherever this is called from
PYTHON="${PYTHON:-python3}"
VENV=.venv/bench
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e . -r benchmarks/peers/requirements.txt
"$VENV/bin/python" -m pip check || echo "setup.sh: pip check reports conflicts (see above)" >&2
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["tollgate", "openai", "cendor-tokenguard", "llm-toll", "opentelemetry-instrumentation-openai-v2",
             "token-limit", "litellm", "opentelemetry-sdk", "redis"]:
    print(f"{name:<42} {md.version(name)}")
PY
echo "ready: $VENV/bin/python benchmarks/overhead.py"
