"""Every example in examples/ runs offline (no API key, no network) and does what it says."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import ROOT, run_python
from tests.stores.conftest import redis_url  # noqa: F401 - a private redis-server, if there is one

EXAMPLES = ROOT / "examples"
MINE = (
    "openai_instrument.py",
    "anthropic_instrument.py",
    "gemini_instrument.py",
    "tenant_budgets.py",
    "otel_export.py",
    "test_cost_assertion.py",
    "any_function.py",
)


def run(*args: str, **env: str) -> str:
    return run_python(*args, timeout=60, **env)


def test_every_example_is_covered() -> None:
    """A new example gets a test here (the others belong to their integration's tests)."""
    present = {p.name for p in EXAMPLES.glob("*.py")}
    assert set(MINE) <= present


def test_openai_instrument() -> None:
    out = run(str(EXAMPLES / "openai_instrument.py"))
    assert out.startswith("chat: ") and "\nstream: " in out
    total = next(line for line in out.splitlines() if line.startswith("TOTAL")).split()
    assert total[1] == "3"
    assert re.search(r"^acme\s+search\s+2\s", out, re.M) and re.search(r"^globex\s+support\s+1\s", out, re.M)
    assert "costs at most $0.0050" in out


def test_any_function() -> None:
    out = run(str(EXAMPLES / "any_function.py"))
    assert out.startswith("house: Budgets keep agents honest.")
    assert "downgraded: answered by house-model-lite" in out and "stream: Paris is the capital." in out
    assert re.search(r"^globex\s+batch\s+3\s+3,600\s+900\s+\$0\.001080\s", out, re.M)
    assert re.search(r"^acme\s+house\s+3\s", out, re.M)
    assert "bill globex: $0.001080" in out


def test_anthropic_instrument() -> None:
    out = run(str(EXAMPLES / "anthropic_instrument.py"))
    assert out.startswith("claude-sonnet-4-6: Paris")
    assert "claude-sonnet-4-6 was asked for and claude-haiku-4-5 answered" in out
    assert re.search(r"^acme\s+geo\s+2\s", out, re.M)


def test_gemini_instrument() -> None:
    out = run(str(EXAMPLES / "gemini_instrument.py"))
    assert out.startswith("gemini: A budget is")
    lowered = re.search(r"max_output_tokens 5000 was lowered to (\d+)", out)
    assert lowered is not None and 16 <= int(lowered[1]) < 1000
    assert re.search(r"^acme\s+gemini-2.5-flash\s+2\s", out, re.M)


def check_tenant_budgets(out: str) -> None:
    lines = out.splitlines()
    assert [line.split(":")[1].split()[0] for line in lines if line.startswith("acme   call")] == [
        "answered",
        "answered",
        "refused",
        "refused",
    ]
    assert "budget 'example-daily-cap' exceeded" in out
    assert "globex call 1: answered" in out
    assert "globex call 2 (monthly limit $0.002): refused: budget 'limit[tenant=globex]'" in out
    assert "globex call 3 (limit removed): answered" in out
    assert re.search(r"^acme\s+4\s.*\s2$", out, re.M)  # four calls, two blocked


def test_tenant_budgets_sqlite() -> None:
    out = run(str(EXAMPLES / "tenant_budgets.py"))
    assert "budget counters in sqlite:///" in out
    check_tenant_budgets(out)


def test_tenant_budgets_redis(redis_url: str) -> None:  # noqa: F811
    out = run(str(EXAMPLES / "tenant_budgets.py"), TOLLGATE_REDIS_URL=redis_url)
    assert f"budget counters in {redis_url.split('@')[-1]}" in out
    check_tenant_budgets(out)


def test_otel_export_in_memory() -> None:
    out = run(str(EXAMPLES / "otel_export.py"))
    spans = out.strip().splitlines()
    assert len(spans) == 3
    assert spans[0].startswith("span 'chat gpt-4o-mini' [UNSET]") and "tag.tenant=acme" in spans[0]
    assert "budget.action=downgrade" in spans[1] and "response.model=gpt-4o-mini" in spans[1]
    assert spans[2].startswith("span 'chat gpt-4o' [ERROR]") and "budget.action=block" in spans[2]


def test_otel_export_over_otlp() -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    from tests.telemetry.otlp_sink import attributes, otlp_sink

    with otlp_sink() as sink:
        out = run(str(EXAMPLES / "otel_export.py"), "--endpoint", sink.url)
    assert f"3 spans sent to {sink.url}" in out
    spans = [s for r in sink.traces() for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(attributes(s.attributes)["gen_ai.request.model"] for s in spans) == [
        "gpt-4o",  # the blocked call
        "gpt-4o-mini",
        "gpt-4o-mini",  # what was sent after the downgrade
    ]


def test_cost_assertion_example_passes_under_pytest() -> None:
    out = run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "test_cost_assertion.py"))
    assert "2 passed" in out


@pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="the live run needs OPENAI_API_KEY")
def test_openai_instrument_live() -> None:  # pragma: no cover - only with a key
    run(str(EXAMPLES / "openai_instrument.py"), "--live", OPENAI_API_KEY=os.environ["OPENAI_API_KEY"])
