"""OpenTelemetry spans for gated calls, through the OpenTelemetry API only.

With no SDK configured the API hands out non-recording spans and this costs next to nothing;
the application chooses the SDK and exporters. Every attribute name used by tollgate is in
the table below, so the mapping to the GenAI semantic conventions lives in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from tollgate.request import CallRecord, LLMRequest

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
# tollgate's own.
COST_USD = "tollgate.cost.usd"
COST_ESTIMATED = "tollgate.cost.estimated"
STATUS = "tollgate.status"
TAG_PREFIX = "tollgate.tag."

_tracer = trace.get_tracer("tollgate")


def start_span(request: LLMRequest, tags: Mapping[str, str]) -> Span:
    """Start the CLIENT span of one call, as a child of the caller's current span."""
    span = _tracer.start_span(f"{request.operation} {request.model}", kind=SpanKind.CLIENT)
    if span.is_recording():
        span.set_attribute(OPERATION, request.operation)
        span.set_attribute(PROVIDER, request.provider)
        span.set_attribute(REQUEST_MODEL, request.model)
        span.set_attribute(REQUEST_STREAM, request.stream)
        if request.max_output_tokens is not None:
            span.set_attribute(REQUEST_MAX_TOKENS, request.max_output_tokens)
        if request.server_address:
            span.set_attribute(SERVER_ADDRESS, request.server_address)
        if request.server_port:
            span.set_attribute(SERVER_PORT, request.server_port)
        for name, value in tags.items():
            span.set_attribute(TAG_PREFIX + name, value)
    return span


def current(span: Span) -> AbstractContextManager[Any]:
    """Make ``span`` the current span while the SDK call runs, so spans the SDK itself emits
    (the Anthropic SDK's ``anthropic.messages.create``) nest under tollgate's, as its children."""
    if span.is_recording():
        return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)
    return nullcontext()


def end_span(span: Span, record: CallRecord) -> None:
    """Put the settled usage and cost on ``span`` and end it."""
    if span.is_recording():
        u = record.usage
        if record.response_model:
            span.set_attribute(RESPONSE_MODEL, record.response_model)
        if record.response_id:
            span.set_attribute(RESPONSE_ID, record.response_id)
        span.set_attribute(INPUT_TOKENS, u.input_tokens)
        span.set_attribute(OUTPUT_TOKENS, u.output_tokens)
        if u.cache_read_tokens:
            span.set_attribute(CACHE_READ_TOKENS, u.cache_read_tokens)
        if u.cache_write_tokens:
            span.set_attribute(CACHE_WRITE_TOKENS, u.cache_write_tokens)
        if u.reasoning_tokens:
            span.set_attribute(REASONING_TOKENS, u.reasoning_tokens)
        span.set_attribute(COST_USD, record.usd)
        span.set_attribute(COST_ESTIMATED, record.estimated)
        span.set_attribute(STATUS, record.status)
        if record.error:
            span.set_attribute(ERROR_TYPE, record.error.split(":", 1)[0])
            span.set_status(Status(StatusCode.ERROR, record.error))
    span.end(end_time=int(record.ended_at * 1e9))
