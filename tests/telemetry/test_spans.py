"""The span of every gated call, read back through the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

import tollgate
from tollgate import gate
from tollgate.request import LLMRequest, Usage

openai = pytest.importorskip("openai")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from tests.conftest import CASSETTES  # noqa: E402
from tests.telemetry.conftest import OTel  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]


def only_span(spans: InMemorySpanExporter) -> ReadableSpan:
    (span,) = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name == "tollgate"]
    return span


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def events(span: ReadableSpan) -> dict[str, Mapping[str, Any]]:
    return {e.name: e.attributes or {} for e in span.events}


def only_record() -> tollgate.CallRecord:
    (record,) = tollgate.config.settings().ledger.records()
    return record


def test_chat_span_carries_genai_usage_cost_and_tags(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_basic.yaml"),
        trace.get_tracer("app").start_as_current_span("handle request") as parent,
        tollgate.track(tenant="acme"),
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    record, span = only_record(), only_span(spans)
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.status.status_code is StatusCode.UNSET
    a = attrs(span)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.stream"] is False
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.response.id"] == "chatcmpl-tg0001"
    assert a["gen_ai.usage.input_tokens"] == record.usage.input_tokens == 26
    assert a["gen_ai.usage.output_tokens"] == record.usage.output_tokens == 2
    assert a["tollgate.cost.usd"] == record.usd > 0
    assert a["tollgate.cost.estimated"] is False
    assert a["tollgate.status"] == "ok"
    assert a["tollgate.tag.tenant"] == "acme"
    assert a["server.address"] == "api.openai.com" and a["server.port"] == 443
    assert "tollgate.budget.action" not in a and not span.events  # no budget, no decision
    assert "gen_ai.input.messages" not in a and "error.type" not in a
    # Nothing zero or unknown is reported: no cache, no reasoning in this answer.
    assert not {k for k in a if "cache" in k or "reasoning" in k}
    assert span.start_time is not None and span.end_time == int(record.ended_at * 1e9)


async def test_async_call_has_the_same_span(aclient, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = only_span(spans)
    assert span.name == "chat gpt-4o-mini"
    assert attrs(span)["tollgate.cost.usd"] == only_record().usd > 0


def test_cache_read_and_reasoning_tokens(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    import yaml

    cassette = yaml.safe_load((CASSETTES / "openai/chat_cached.yaml").read_text())
    messages = json.loads(cassette["interactions"][0]["request"]["body"])["messages"]
    with replay("openai/chat_cached.yaml"):
        client.chat.completions.create(model="gpt-4o", messages=messages)
    assert attrs(only_span(spans))["gen_ai.usage.cache_read.input_tokens"] == 1024
    spans.clear()
    tollgate.reset()
    question = [
        {"role": "user", "content": "How many prime numbers are there below 30? Answer with the number only."}
    ]
    with replay("openai/chat_reasoning.yaml"):
        client.chat.completions.create(model="o4-mini", messages=question, max_completion_tokens=2000)
    a = attrs(only_span(spans))
    assert a["gen_ai.usage.reasoning.output_tokens"] == 320 and a["gen_ai.usage.output_tokens"] == 321


def test_cache_write_tokens_use_the_genai_conventions_name(spans) -> None:  # type: ignore[no-untyped-def]
    call = gate.preflight(LLMRequest(provider="anthropic", operation="chat", model="claude-sonnet-4-6"))
    call.finish(tollgate.gate.Outcome(Usage(input_tokens=1500, output_tokens=10, cache_write_tokens=1200)))
    a = attrs(only_span(spans))
    assert a["gen_ai.usage.cache_write.input_tokens"] == 1200
    assert "gen_ai.usage.cache_creation.input_tokens" not in a


def test_failed_call_span_has_error_type(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_error_429.yaml"), pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = only_span(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert "HTTP 429" in (span.status.description or "")
    assert attrs(span)["error.type"] == "RateLimitError" and attrs(span)["tollgate.status"] == "error"


# -- budget decisions ---------------------------------------------------------------------------------


def test_blocked_call_still_has_a_span(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_basic.yaml") as cassette,
        tollgate.budget(usd=0.00001, name="tiny"),
        pytest.raises(tollgate.BudgetExceeded) as info,
    ):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
    assert cassette.play_count == 0
    span = only_span(spans)
    assert span.name == "chat gpt-4o"
    assert span.status.status_code is StatusCode.ERROR
    a = attrs(span)
    assert a["error.type"] == "BudgetExceeded" and a["tollgate.status"] == "blocked"
    assert a["tollgate.budget.action"] == "block" and a["tollgate.budget.name"] == "tiny"
    assert a["tollgate.budget.unit"] == "usd" and a["tollgate.budget.limit"] == info.value.limit == 0.00001
    assert a["tollgate.budget.spent"] == 0 and a["tollgate.budget.remaining"] == pytest.approx(0.00001)
    assert a["tollgate.cost.usd"] == 0 and a["gen_ai.usage.input_tokens"] == 0
    assert events(span)["tollgate.budget.block"] == {"action": "block", "budget": "tiny"}


def test_downgrade_names_the_model_sent_and_keeps_the_original(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_basic.yaml"),
        tollgate.budget(usd=0.0005, name="cheap", on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
    ):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
    span = only_span(spans)
    assert span.name == "chat gpt-4o-mini"
    a = attrs(span)
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["tollgate.budget.action"] == "downgrade"
    assert a["tollgate.budget.original_model"] == "gpt-4o"
    assert (a["tollgate.budget.name"], a["tollgate.budget.limit"]) == ("cheap", 0.0005)
    assert a["tollgate.budget.spent"] == 0 and a["tollgate.budget.remaining"] == pytest.approx(0.0005)
    assert events(span)["tollgate.budget.downgrade"] == {
        "action": "downgrade",
        "from": "gpt-4o",
        "to": "gpt-4o-mini",
    }
    assert span.status.status_code is StatusCode.UNSET


def test_clamp_reports_the_cap_sent(client, replay, sent, spans) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"), tollgate.budget(tokens=100, on_exceed="clamp"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=400)
    a = attrs(only_span(spans))
    cap = sent[0]["max_tokens"]
    assert cap < 100
    assert a["gen_ai.request.max_tokens"] == a["tollgate.budget.clamped_max_tokens"] == cap
    assert a["tollgate.budget.original_max_tokens"] == 400
    assert a["tollgate.budget.action"] == "clamp" and a["tollgate.budget.unit"] == "tokens"
    event = events(only_span(spans))["tollgate.budget.clamp"]
    assert event == {"action": "clamp", "max_output_tokens": cap, "was": 400}


def test_truncate_reports_the_messages_dropped(client, replay, sent, spans) -> None:  # type: ignore[no-untyped-def]
    history = [MESSAGES[0]]
    for i in range(6):
        history += [
            {"role": "user", "content": f"Earlier question {i}? " + "x " * 100},
            {"role": "assistant", "content": "An earlier answer. " + "y " * 100},
        ]
    history.append(MESSAGES[1])
    with replay("openai/chat_basic.yaml"), tollgate.budget(tokens=500, on_exceed="truncate"):
        client.chat.completions.create(model="gpt-4o-mini", messages=history, max_tokens=20)
    a = attrs(only_span(spans))
    assert a["tollgate.budget.action"] == "truncate"
    assert a["tollgate.budget.dropped_messages"] == len(history) - len(sent[0]["messages"]) > 0


def test_budget_that_lets_the_call_through_is_reported(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"), tollgate.budget(usd=5, name="roomy"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    a = attrs(only_span(spans))
    assert (a["tollgate.budget.action"], a["tollgate.budget.name"], a["tollgate.budget.limit"]) == (
        "proceed",
        "roomy",
        5,
    )
    assert not only_span(spans).events


def test_stream_cutoff_is_an_event(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    from tollgate.pricing.tokens import count_messages

    sea = [{"role": "user", "content": "Write a short paragraph about the sea."}]
    limit = count_messages(sea, "gpt-4o-mini") + 20
    with replay("openai/chat_stream_long.yaml"), tollgate.budget(tokens=limit, on_exceed="raise"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=sea, stream=True)
        with pytest.raises(tollgate.BudgetExceeded):
            for _ in stream:
                pass
    span = only_span(spans)
    a = attrs(span)
    assert a["gen_ai.request.stream"] is True
    assert a["tollgate.budget.action"] == "cutoff" and a["tollgate.budget.limit"] == limit
    assert a["error.type"] == "BudgetExceeded" and a["tollgate.cost.estimated"] is True
    cutoff = events(span)["tollgate.budget.cutoff"]
    assert cutoff["output_tokens"] == a["gen_ai.usage.output_tokens"] > 20
    assert span.status.status_code is StatusCode.ERROR


def test_rate_limited_call_has_an_error_span(client, spans) -> None:  # type: ignore[no-untyped-def]
    tollgate.limit(rpm=1, model="gpt-4o-mini", wait=False)
    call = gate.preflight(LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini"))
    call.finish(tollgate.gate.Outcome(Usage(input_tokens=10, output_tokens=1)))
    spans.clear()
    with pytest.raises(tollgate.RateLimited):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = only_span(spans)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR
    assert a["error.type"] == "RateLimited" and a["tollgate.budget.action"] == "rate_limited"
    assert "tollgate.budget.limit" not in a  # a rate limit is not a budget
    assert "tollgate.budget.rate_limited" in events(span)


def test_raise_budget_overrun_is_reported(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_basic.yaml"),
        tollgate.budget(tokens=20, name="strict", on_exceed="raise"),
        pytest.raises(tollgate.BudgetExceeded),
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    a = attrs(only_span(spans))
    assert a["tollgate.budget.action"] == "raise" and a["tollgate.budget.name"] == "strict"
    assert a["tollgate.budget.spent"] == 28 and a["tollgate.budget.remaining"] == -8


# -- content capture ------------------------------------------------------------------------------------


def test_content_is_captured_only_when_asked(client, replay, spans, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert not {k for k in attrs(only_span(spans)) if k.startswith(("gen_ai.input", "gen_ai.output"))}

    for enable in (
        lambda: tollgate.configure(capture_content=True),
        lambda: monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"),
        lambda: monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY"),
    ):
        tollgate.reset()
        monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
        spans.clear()
        enable()
        with replay("openai/chat_basic.yaml"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        captured = json.loads(attrs(only_span(spans))["gen_ai.input.messages"])
        assert captured == [
            {"role": "system", "parts": [{"type": "text", "content": "You are a terse assistant."}]},
            {
                "role": "user",
                "parts": [{"type": "text", "content": "Name the capital of France in one word."}],
            },
        ]


def test_captured_content_is_what_was_sent(client, replay, sent, spans) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(capture_content=True)
    history = [MESSAGES[0]]
    for i in range(6):
        history += [
            {"role": "user", "content": f"Earlier question {i}? " + "x " * 100},
            {"role": "assistant", "content": "An earlier answer. " + "y " * 100},
        ]
    history.append(MESSAGES[1])
    with replay("openai/chat_basic.yaml"), tollgate.budget(tokens=500, on_exceed="truncate"):
        client.chat.completions.create(model="gpt-4o-mini", messages=history, max_tokens=20)
    captured = json.loads(attrs(only_span(spans))["gen_ai.input.messages"])
    assert [m["parts"][0]["content"] for m in captured] == [m["content"] for m in sent[0]["messages"]]


def test_finish_reasons_and_completions_from_the_adapter(spans) -> None:  # type: ignore[no-untyped-def]
    """What an adapter hands settle beyond usage: finish reasons always, completions when captured."""
    tollgate.configure(capture_content=True)
    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "capital", "arguments": '{"c": "FR"}'},
    }
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Capital?"}, {"type": "image_url", "image_url": {}}],
        },
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Paris"},
    ]
    call = gate.preflight(
        LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini", messages=messages)
    )
    call.finish(
        tollgate.gate.Outcome(
            Usage(input_tokens=30, output_tokens=2),
            finish_reasons=tuple(["stop"]),
            output_messages=tuple([{"role": "assistant", "content": "Paris."}]),
        )
    )
    a = attrs(only_span(spans))
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris."}], "finish_reason": "stop"}
    ]
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Capital?"}, {"type": "image_url"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "capital", "arguments": '{"c": "FR"}'}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "Paris"}]},
    ]
    tollgate.configure(capture_content=False)
    spans.clear()
    call = gate.preflight(
        LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini", messages=messages)
    )
    call.finish(
        tollgate.gate.Outcome(
            Usage(),
            finish_reasons=tuple(["length"]),
            output_messages=tuple([{"role": "assistant", "content": "P"}]),
        )
    )
    a = attrs(only_span(spans))
    assert a["gen_ai.response.finish_reasons"] == ("length",) and "gen_ai.output.messages" not in a


# -- telemetry never breaks a call -------------------------------------------------------------------


def test_a_failing_sdk_does_not_break_the_call(client, replay, otel: OTel, caplog) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.sdk.trace import SpanProcessor

    class Broken(SpanProcessor):
        def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
            raise RuntimeError("exporter on fire")

        def on_end(self, span):  # type: ignore[no-untyped-def]
            raise RuntimeError("exporter on fire")

    with otel.processors.using(Broken()), replay("openai/chat_basic.yaml"):
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.choices[0].message.content == "Paris."
    assert only_record().status == "ok"
    assert "could not start the span" in caplog.text


def test_a_framework_note_is_not_mistaken_for_a_store_outage(spans: InMemorySpanExporter) -> None:
    # Was: telemetry guessed from dict keys, and LiteLLM's {"cache_hit": True} became a
    # tollgate.store.unavailable event. Steps now say which event they are, if any.
    from tollgate.decisions import CacheHit, CostNote, StoreDown

    call = gate.preflight(LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini"))
    call.finish(gate.Outcome(Usage(), steps=(CacheHit(), CostNote("litellm", 0.001))))
    assert only_span(spans).events == ()
    spans.clear()
    call = gate.preflight(LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini"))
    call.finish(gate.Outcome(Usage(), steps=(StoreDown("redis unreachable"),)))
    (event,) = only_span(spans).events
    assert event.name == "tollgate.store.unavailable" and event.attributes["error"] == "redis unreachable"


def test_a_call_gated_by_nobody_says_so_in_an_event(spans: InMemorySpanExporter) -> None:
    call = gate.observe(LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini"))
    call.finish(gate.Outcome(Usage(input_tokens=3, output_tokens=1)))
    (event,) = only_span(spans).events
    assert event.name == "tollgate.budget.observe_only" and event.attributes == {"action": "observe_only"}
