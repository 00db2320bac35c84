"""Spans of gated calls, read back through the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tollgate

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
openai = pytest.importorskip("openai")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)  # once per process; tollgate's tracer is a proxy to it


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER


MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]


def test_chat_span_carries_genai_usage_cost_and_tags(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    parent_tracer = trace.get_tracer("app")
    with (
        replay("openai/chat_basic.yaml"),
        parent_tracer.start_as_current_span("handle request") as parent,
        tollgate.track(tenant="acme"),
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    (record,) = tollgate.config.settings().ledger.records()
    span = next(s for s in spans.get_finished_spans() if s.name == "chat gpt-4o-mini")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    a = span.attributes or {}
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.response.id"] == "chatcmpl-tg0001"
    assert a["gen_ai.usage.input_tokens"] == record.usage.input_tokens
    assert a["gen_ai.usage.output_tokens"] == record.usage.output_tokens
    assert a["tollgate.cost.usd"] == record.usd
    assert a["tollgate.cost.estimated"] is False
    assert a["tollgate.tag.tenant"] == "acme"
    assert a["server.address"] == "api.openai.com" and a["server.port"] == 443


def test_failed_call_span_has_error_type(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_error_429.yaml"), pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (span,) = [s for s in spans.get_finished_spans() if s.name == "chat gpt-4o-mini"]
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "RateLimitError"
