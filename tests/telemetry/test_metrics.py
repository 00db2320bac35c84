"""tollgate's metrics, read back through the OpenTelemetry SDK's in-memory metric reader."""

from __future__ import annotations

import pytest

import tollgate
from tollgate import gate, telemetry
from tollgate.request import LLMRequest, Usage

openai = pytest.importorskip("openai")

from tests.telemetry.conftest import Measured  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
TOKENS, DURATION = "gen_ai.client.token.usage", "gen_ai.client.operation.duration"
COST, DECISIONS = "tollgate.cost", "tollgate.budget.decisions"


def only_record() -> tollgate.CallRecord:
    (record,) = tollgate.config.settings().ledger.records()
    return record


def test_one_call_is_measured_once(client, replay, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    record = only_record()
    (inp,) = measured.points(TOKENS, **{"gen_ai.token.type": "input"})
    (out,) = measured.points(TOKENS, **{"gen_ai.token.type": "output"})
    assert (inp.count, inp.sum, out.count, out.sum) == (1, 26, 1, 2)
    assert dict(inp.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "server.address": "api.openai.com",
        "server.port": 443,
        "gen_ai.token.type": "input",
    }
    assert tuple(inp.explicit_bounds) == telemetry.TOKEN_BUCKETS  # the conventions' bucket advice
    (duration,) = measured.points(DURATION)
    assert duration.count == 1 and duration.sum == pytest.approx(record.duration)
    assert tuple(duration.explicit_bounds) == telemetry.DURATION_BUCKETS
    (cost,) = measured.points(COST)
    assert cost.value == pytest.approx(record.usd) and record.usd > 0
    assert measured.points(DECISIONS) == []  # no budget, no decision


def test_tags_on_metrics_only_when_opted_in(client, replay, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"), tollgate.track(tenant="acme", user_id="alice"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (cost,) = measured.points(COST)
    assert not {k for k in cost.attributes if k.startswith("tollgate.tag.")}

    tollgate.configure(metric_tags=("tenant",))
    with replay("openai/chat_basic.yaml"), tollgate.track(tenant="acme", user_id="alice"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (cost,) = measured.points(COST, **{"tollgate.tag.tenant": "acme"})
    assert "tollgate.tag.user_id" not in cost.attributes
    assert measured.points(TOKENS, **{"tollgate.tag.tenant": "acme", "gen_ai.token.type": "input"})


@pytest.mark.parametrize("bad", ["tenant", ["not a name"], [1], 5])
def test_metric_tags_must_be_tag_names(bad: object) -> None:
    with pytest.raises(ValueError, match="metric_tags"):
        tollgate.configure(metric_tags=bad)  # type: ignore[arg-type]


def test_budget_decisions_are_counted_by_action(client, replay, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_basic.yaml"),
        tollgate.budget(usd=0.0005, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
    ):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
    with tollgate.budget(usd=0.00001), pytest.raises(tollgate.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
    (downgrade,) = measured.points(DECISIONS, **{"tollgate.budget.action": "downgrade"})
    assert downgrade.value == 1 and downgrade.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    (block,) = measured.points(DECISIONS, **{"tollgate.budget.action": "block"})
    assert block.value == 1 and block.attributes["error.type"] == "BudgetExceeded"
    # The blocked call took time but used no tokens and cost nothing.
    (failed,) = measured.points(DURATION, **{"error.type": "BudgetExceeded"})
    assert failed.count == 1
    assert measured.points(TOKENS, **{"error.type": "BudgetExceeded"}) == []
    assert measured.points(COST, **{"error.type": "BudgetExceeded"}) == []


def test_a_budget_that_lets_calls_through_counts_proceed(measured: Measured) -> None:
    with tollgate.budget(usd=5):
        for _ in range(3):
            call = gate.preflight(LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini"))
            call.finish(tollgate.gate.Outcome(Usage(input_tokens=10, output_tokens=5)))
    (proceed,) = measured.points(DECISIONS, **{"tollgate.budget.action": "proceed"})
    assert proceed.value == 3


def test_embeddings_have_no_output_tokens(measured: Measured) -> None:
    call = gate.preflight(
        LLMRequest(provider="openai", operation="embeddings", model="text-embedding-3-small")
    )
    call.finish(tollgate.gate.Outcome(Usage(input_tokens=8)))
    assert [p.sum for p in measured.points(TOKENS)] == [8]


def test_sdk_span_nested_under_tollgates_and_one_set_of_metrics(replay, spans, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    """Coexistence: the Anthropic SDK's own span (global provider, on by default) nests under
    tollgate's; both carry usage, and the metrics count the call once."""
    anthropic = pytest.importorskip("anthropic")
    from tests.providers.anthropic_helpers import HTTP, SDK_SPANS

    if not SDK_SPANS:
        pytest.skip(f"anthropic {anthropic.__version__} makes no spans of its own")
    raw = anthropic.Anthropic(api_key="sk-ant-test", max_retries=0, http_client=HTTP.Client())
    client = tollgate.instrument(raw)
    with replay("anthropic/messages_basic.yaml"):
        client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=1024,
            system="You are a terse assistant.",
            messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        )
    by_name = {s.name: s for s in spans.get_finished_spans()}
    ours, sdk = by_name["chat claude-sonnet-4-6"], by_name["anthropic.messages.create"]
    assert sdk.parent is not None and sdk.parent.span_id == ours.context.span_id
    assert (ours.attributes or {})["gen_ai.usage.input_tokens"] == 27
    (inp,) = measured.points(TOKENS, **{"gen_ai.token.type": "input"})
    assert (inp.count, inp.sum) == (1, 27)
    (duration,) = measured.points(DURATION)
    assert duration.count == 1


DROP_GENAI = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import DropAggregation, View

import tollgate
from tollgate import gate
from tollgate.request import LLMRequest, Usage

reader = InMemoryMetricReader()
drop = View(meter_name="tollgate", instrument_name="gen_ai.client.*", aggregation=DropAggregation())
metrics.set_meter_provider(MeterProvider(metric_readers=[reader], views=[drop]))
call = gate.preflight(LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini"))
call.finish(tollgate.gate.Outcome(Usage(input_tokens=10, output_tokens=5)))
data = reader.get_metrics_data()
print(sorted(m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics))
"""


def test_the_readme_view_keeps_one_set_of_genai_metrics() -> None:
    """Beside another GenAI instrumentation, the README's view drops tollgate's gen_ai.client.*
    metrics and keeps its own (a fresh process: the meter provider is set once per process)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", DROP_GENAI], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['tollgate.cost']"
