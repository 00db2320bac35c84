"""End to end against a real OTLP backend: gated calls exported to Arize Phoenix over OTLP/HTTP
and read back through Phoenix's REST API. Skipped where Phoenix is not installed."""

from __future__ import annotations

import time
from typing import Any

import pytest

import tollgate

pytest.importorskip("openai")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.telemetry.conftest import OTel, get_json

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]


def read_trace(phoenix: str, trace_id: str, expected: int) -> list[dict[str, Any]]:
    """The spans of one trace, once Phoenix has ingested ``expected`` of them (it does so async)."""
    deadline = time.monotonic() + 60
    while True:
        spans: list[dict[str, Any]] = get_json(
            f"{phoenix}/v1/projects/default/spans?trace_id={trace_id}&limit=100"
        )["data"]
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.25)


@pytest.mark.parametrize("opt_in", [None, "gen_ai_latest_experimental", "gen_ai_latest_experimental/dup"])
def test_gated_calls_in_phoenix(phoenix: str, otel: OTel, client, replay, semconv, opt_in) -> None:  # type: ignore[no-untyped-def]
    semconv(opt_in)  # each GenAI convention mode (OTEL_SEMCONV_STABILITY_OPT_IN)
    exporter = OTLPSpanExporter(endpoint=f"{phoenix}/v1/traces")
    with otel.processors.using(BatchSpanProcessor(exporter)) as processor:
        with (
            trace.get_tracer("app").start_as_current_span("handle request") as parent,
            tollgate.track(tenant="acme"),
        ):
            with replay("openai/chat_basic.yaml"):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
            with (
                replay("openai/chat_basic.yaml"),
                tollgate.budget(usd=0.0005, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
            ):
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
            with tollgate.budget(usd=0.00001, name="tiny"), pytest.raises(tollgate.BudgetExceeded):
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
        assert processor.force_flush()
    ok, downgraded, blocked = tollgate.config.settings().ledger.records()

    context = parent.get_span_context()
    spans = read_trace(phoenix, format(context.trace_id, "032x"), expected=4)
    assert len(spans) == 4, spans
    root = format(context.span_id, "016x")
    (app,) = [s for s in spans if s["context"]["span_id"] == root]
    assert app["name"] == "handle request" and app["parent_id"] is None
    calls = sorted((s for s in spans if s is not app), key=lambda s: s["start_time"])
    assert [s["name"] for s in calls] == ["chat gpt-4o-mini", "chat gpt-4o-mini", "chat gpt-4o"]
    assert all(s["parent_id"] == root for s in calls)  # children of the caller's span

    first = calls[0]["attributes"]
    assert first["gen_ai.operation.name"] == "chat"
    assert first["gen_ai.provider.name"] == "openai"
    assert first["gen_ai.request.model"] == "gpt-4o-mini"
    assert first["gen_ai.request.max_tokens"] == 50
    # Said of every call in the previous conventions, only of streamed ones in the latest.
    assert first.get("gen_ai.request.stream") is (None if opt_in == "gen_ai_latest_experimental" else False)
    assert first["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert first["gen_ai.response.id"] == "chatcmpl-tg0001"
    assert first["gen_ai.usage.input_tokens"] == ok.usage.input_tokens == 26
    assert first["gen_ai.usage.output_tokens"] == 2
    assert first["server.address"] == "api.openai.com" and first["server.port"] == 443
    assert first["tollgate.cost.usd"] == pytest.approx(ok.usd) and first["tollgate.cost.estimated"] is False
    assert first["tollgate.tag.tenant"] == "acme"
    assert calls[0]["status_code"] != "ERROR"

    second = calls[1]
    a = second["attributes"]
    assert a["tollgate.budget.action"] == "downgrade" and a["tollgate.budget.original_model"] == "gpt-4o"
    assert a["tollgate.budget.limit"] == 0.0005 and a["tollgate.cost.usd"] == pytest.approx(downgraded.usd)
    (event,) = second["events"]
    assert event["name"] == "tollgate.budget.downgrade" and event["attributes"]["to"] == "gpt-4o-mini"

    third = calls[2]
    a = third["attributes"]
    assert third["status_code"] == "ERROR" and "BudgetExceeded" in third["status_message"]
    assert a["error.type"] == "BudgetExceeded" and a["tollgate.status"] == "blocked" == blocked.status
    assert a["tollgate.budget.action"] == "block" and a["tollgate.budget.name"] == "tiny"
    assert a["tollgate.cost.usd"] == 0
    assert [e["name"] for e in third["events"]] == ["tollgate.budget.block"]
