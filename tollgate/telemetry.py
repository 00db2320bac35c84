"""OpenTelemetry spans and metrics of gated calls, through the OpenTelemetry API only.

Every call the gate settles, whichever door it came in by, ends here exactly once
(:func:`end_span`): one CLIENT span named ``"{operation} {model}"`` with the GenAI
semantic-convention attributes and tollgate's cost and budget facts, and one set of
measurements on the ``tollgate`` meter. So a call is counted once in the metrics even when the
SDK's own span (the Anthropic SDK's) nests under tollgate's.

With no SDK configured the API hands out non-recording spans and no-op instruments and this
costs next to nothing (``benchmarks/telemetry.py`` measures it); the application chooses the
SDK and exporters, or calls :func:`tollgate.otel.setup`. Prompts and completions go on spans
only when ``configure(capture_content=True)`` or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
asks for it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.trace import SpanKind, Status, StatusCode

from tollgate.budgets.room import BudgetFacts
from tollgate.decisions import EVENT_PREFIX as EVENT_PREFIX
from tollgate.decisions import STORE_UNAVAILABLE_EVENT as STORE_UNAVAILABLE_EVENT
from tollgate.decisions import Clamped, Downgraded, Step, Truncated, actions

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from tollgate.config import Settings
    from tollgate.request import CallRecord, LLMRequest

# -- Every name tollgate emits ---------------------------------------------------------------------
# GenAI semantic conventions. The opentelemetry-semantic-conventions package marks its gen_ai names
# as moved to the GenAI conventions repository (open-telemetry/semantic-conventions-genai); these
# follow that repository. The two differ on one name: cache writes. The package still has
# gen_ai.usage.cache_creation.input_tokens; the GenAI repository renamed it
# gen_ai.usage.cache_write.input_tokens (semantic-conventions-genai#440), the name the Anthropic
# SDK's own span (nested under tollgate's) and opentelemetry-util-genai emit. tollgate uses
# cache_write, so one trace says one thing one way. (Phoenix 20.x maps only the old name into
# its token counts; the attribute itself is stored and shown either way.)
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"  # the model sent (after a downgrade)
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"  # the cap sent (after a clamp)
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"  # cache reads and writes included
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"  # reasoning included
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_write.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"  # content capture only; JSON
OUTPUT_MESSAGES = "gen_ai.output.messages"  # content capture only; JSON
TOKEN_TYPE = "gen_ai.token.type"  # metrics: "input" | "output"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
# tollgate's own.
COST_USD = "tollgate.cost.usd"
COST_ESTIMATED = "tollgate.cost.estimated"
STATUS = "tollgate.status"  # ok | error | blocked | abandoned
SERVICE_TIER = "tollgate.usage.service_tier"  # the billed tier, when not the standard one
UNKNOWN_USAGE = "tollgate.usage.unknown"  # names of usage fields tollgate does not know
# A call billed in parts (Anthropic iterations): each part's kind, model and USD, in order.
PART_KINDS = "tollgate.usage.parts.kind"
PART_MODELS = "tollgate.usage.parts.model"
PART_USD = "tollgate.usage.parts.usd"
# The last action: proceed, downgrade, clamp, truncate, block, cutoff, raise or rate_limited.
BUDGET_ACTION = "tollgate.budget.action"
BUDGET_NAME = "tollgate.budget.name"  # the deciding budget, and its numbers when tollgate decided:
BUDGET_UNIT = "tollgate.budget.unit"  # usd | tokens
BUDGET_LIMIT = "tollgate.budget.limit"
BUDGET_SPENT = "tollgate.budget.spent"
BUDGET_REMAINING = "tollgate.budget.remaining"  # limit - spent - held by calls in flight
ORIGINAL_MODEL = "tollgate.budget.original_model"  # downgrade: the model the caller asked for
CLAMPED_MAX_TOKENS = "tollgate.budget.clamped_max_tokens"  # clamp: the cap tollgate set
ORIGINAL_MAX_TOKENS = "tollgate.budget.original_max_tokens"  # clamp: the caller's cap, if any
DROPPED_MESSAGES = "tollgate.budget.dropped_messages"  # truncate
TAG_PREFIX = "tollgate.tag."  # + tag name: every tag on spans, opted-in ones on metrics
# Span events: one per step (tollgate.decisions): "tollgate.budget." + action, with its fields;
# EVENT_PREFIX and STORE_UNAVAILABLE_EVENT (on_store_error="open" let the call through) live there.
# Metrics (meter "tollgate"), with the GenAI conventions' bucket advice.
TOKEN_USAGE_METRIC = "gen_ai.client.token.usage"
DURATION_METRIC = "gen_ai.client.operation.duration"
COST_METRIC = "tollgate.cost"
DECISIONS_METRIC = "tollgate.budget.decisions"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_VALUES = ("true", "1", "span_only", "span_and_event")

log = logging.getLogger("tollgate")
_tracer = trace.get_tracer("tollgate")
_meter = metrics.get_meter("tollgate")
_token_usage = _meter.create_histogram(
    TOKEN_USAGE_METRIC,
    unit="{token}",
    description="Number of input and output tokens used.",
    explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
)
_duration = _meter.create_histogram(
    DURATION_METRIC,
    unit="s",
    description="GenAI operation duration.",
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
)
_cost = _meter.create_counter(
    COST_METRIC, unit="USD", description="Cost of LLM calls, as tollgate priced them."
)
_decisions = _meter.create_counter(
    DECISIONS_METRIC, unit="{decision}", description="Budget decisions tollgate took, by action."
)


# While no SDK is configured the API's stand-ins do nothing, and neither need tollgate's attribute
# building. The API keeps the providers an application set in module globals; reading those is a
# fraction of get_tracer_provider(), which looks up an environment variable on every call until
# a provider is set. (A provider named by OTEL_PYTHON_TRACER_PROVIDER / _METER_PROVIDER is only
# loaded on first use, so with those set tollgate always goes through the API.)
_NO_SDK = frozenset({"ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider"})
_ENV_PROVIDERS = bool(
    os.environ.get("OTEL_PYTHON_TRACER_PROVIDER") or os.environ.get("OTEL_PYTHON_METER_PROVIDER")
)


def _no_sdk(module: Any, name: str) -> bool:
    """No real provider has been set in ``module`` (the API's ``trace`` or metrics internals)."""
    if _ENV_PROVIDERS:
        return False
    provider = getattr(module, name, False)
    if provider is False:  # an API version without that global: ask the API
        provider = trace.get_tracer_provider() if module is trace else metrics.get_meter_provider()
    return provider is None or type(provider).__name__ in _NO_SDK


def start_span(request: LLMRequest, tags: Mapping[str, str]) -> Span:
    """Start the CLIENT span of one call, as a child of the caller's current span.

    The attributes a sampler may look at are given at creation. Never raises: should the SDK
    fail (a faulty sampler or processor), the call goes on with a non-recording span.
    """
    if _no_sdk(trace, "_TRACER_PROVIDER"):
        return trace.INVALID_SPAN
    try:
        return _start_span(request, tags)
    except Exception:
        log.exception("tollgate could not start the span of a %s call", request.operation)
        return trace.INVALID_SPAN


def _start_span(request: LLMRequest, tags: Mapping[str, str]) -> Span:
    attributes: dict[str, AttributeValue] = {
        OPERATION: request.operation,
        PROVIDER: request.provider,
        REQUEST_MODEL: request.model,
        REQUEST_STREAM: request.stream,
    }
    if request.max_output_tokens is not None:
        attributes[REQUEST_MAX_TOKENS] = request.max_output_tokens
    if request.server_address:
        attributes[SERVER_ADDRESS] = request.server_address
    if request.server_port:
        attributes[SERVER_PORT] = request.server_port
    for name, value in tags.items():
        attributes[TAG_PREFIX + name] = value
    return _tracer.start_span(
        f"{request.operation} {request.model}", kind=SpanKind.CLIENT, attributes=attributes
    )


def current(span: Span) -> AbstractContextManager[Any]:
    """Make ``span`` the current span while the SDK call runs, so spans the SDK itself emits
    (the Anthropic SDK's ``anthropic.messages.create``) nest under tollgate's, as its children."""
    if span.is_recording():
        return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)
    return nullcontext()


class Facts(NamedTuple):
    """What the span and metrics of a call say beyond its record (the gate fills it in)."""

    model: str  # the model sent (after a downgrade)
    max_output_tokens: int | None  # the cap sent (after a clamp)
    finish_reasons: Sequence[str]
    input_messages: Sequence[Mapping[str, Any]] | None  # content capture only
    prompt: Sequence[Any]  # content capture only
    output_messages: Sequence[Mapping[str, Any]]  # content capture only
    server_address: str | None
    server_port: int | None
    metric_tags: Sequence[str]
    actions: Sequence[str]  # every budget action, in order ("proceed" when budgets let it through)
    budget: BudgetFacts | None  # the budget behind the decision, as it stood


def end_span(span: Span, record: CallRecord, facts: Callable[[], Facts] | None = None) -> None:
    """Put the settled facts of the call on ``span``, end it, and record the call's metrics.

    ``facts`` is asked for only when a span records or metrics are measured (not at all
    without an OpenTelemetry SDK)."""
    known: Facts | None = None
    try:
        if span.is_recording():
            known = facts() if facts is not None else None
            _annotate(span, record, known)
    finally:
        span.end(end_time=int(record.ended_at * 1e9))
        if not _no_sdk(_metrics_api, "_METER_PROVIDER"):
            if known is None and facts is not None:
                known = facts()
            _measure(record, known)


def _annotate(span: Span, record: CallRecord, facts: Facts | None) -> None:
    u = record.usage
    model = facts.model if facts is not None else record.request_model
    if model != record.request_model:
        span.update_name(f"{record.operation} {model}")
    a: dict[str, AttributeValue] = {
        REQUEST_MODEL: model,
        INPUT_TOKENS: u.input_tokens,
        OUTPUT_TOKENS: u.output_tokens,
        COST_USD: record.usd,
        COST_ESTIMATED: record.estimated,
        STATUS: record.status,
    }
    optional: dict[str, AttributeValue | None] = {
        RESPONSE_MODEL: record.response_model,
        RESPONSE_ID: record.response_id,
        CACHE_READ_TOKENS: u.cache_read_tokens,
        CACHE_WRITE_TOKENS: u.cache_write_tokens,
        REASONING_TOKENS: u.reasoning_tokens,
    }
    if facts is not None:
        optional[REQUEST_MAX_TOKENS] = facts.max_output_tokens
        optional[FINISH_REASONS] = list(facts.finish_reasons)
        if facts.input_messages is not None:
            optional[INPUT_MESSAGES] = _json(_input_messages(facts))
            optional[OUTPUT_MESSAGES] = _json(_output_messages(facts)) if facts.output_messages else None
    if u.service_tier:
        optional[SERVICE_TIER] = u.service_tier
    if u.unknown:
        optional[UNKNOWN_USAGE] = sorted(u.unknown)
    if u.parts:
        optional[PART_KINDS] = [p.kind for p in u.parts]
        optional[PART_MODELS] = [p.model or record.response_model or model for p in u.parts]
        optional[PART_USD] = [p.usd or 0.0 for p in u.parts]
    a.update({k: v for k, v in optional.items() if v})
    a.update(_budget_attributes(record, facts))
    span.set_attributes(a)
    for step in record.decisions:
        event = step.event_name() if isinstance(step, Step) else None
        if event is None:
            continue
        at = record.ended_at if step.get("action") == "cutoff" else record.started_at
        span.add_event(event, step.attributes(), timestamp=int(at * 1e9))
    if record.error:
        span.set_attribute(ERROR_TYPE, _error_type(record.error))
        span.set_status(Status(StatusCode.ERROR, record.error))


def _error_type(error: str) -> str:
    return error.split(":", 1)[0]  # CallRecord.error is "Type[: HTTP status][: code]"


def _budget_attributes(record: CallRecord, facts: Facts | None) -> dict[str, AttributeValue]:
    """The budget decision: the last action, what each action changed, and the deciding budget."""
    if facts is None or not facts.actions:
        return {}
    a: dict[str, AttributeValue] = {BUDGET_ACTION: facts.actions[-1]}
    for step in record.decisions:
        if isinstance(step, Downgraded):
            a.setdefault(ORIGINAL_MODEL, step.original)
        elif isinstance(step, Clamped):
            a[CLAMPED_MAX_TOKENS] = step.max_output_tokens
            if step.was is not None:
                a[ORIGINAL_MAX_TOKENS] = step.was
        elif isinstance(step, Truncated):
            a[DROPPED_MESSAGES] = step.dropped_messages
    b = facts.budget
    if b is not None:
        a.update(
            {
                BUDGET_NAME: b.name,
                BUDGET_UNIT: b.unit,
                BUDGET_LIMIT: b.limit,
                BUDGET_SPENT: b.spent,
                BUDGET_REMAINING: b.limit - b.spent - b.reserved,
            }
        )
    return a


def _measure(record: CallRecord, facts: Facts | None) -> None:
    """One set of measurements per call: duration, tokens, cost and budget decisions."""
    model = facts.model if facts is not None else record.request_model
    a: dict[str, AttributeValue] = {
        OPERATION: record.operation,
        PROVIDER: record.provider,
        REQUEST_MODEL: model,
    }
    if record.response_model:
        a[RESPONSE_MODEL] = record.response_model
    if facts is not None:
        if facts.server_address:
            a[SERVER_ADDRESS] = facts.server_address
        if facts.server_port:
            a[SERVER_PORT] = facts.server_port
        for name in facts.metric_tags:
            if name in record.tags:
                a[TAG_PREFIX + name] = record.tags[name]
    if record.error:
        a[ERROR_TYPE] = _error_type(record.error)
    _duration.record(max(0.0, record.duration), a)
    u = record.usage
    if record.status in ("ok", "abandoned") or u.total_tokens:  # blocked and failed calls used none
        _token_usage.record(u.input_tokens, {**a, TOKEN_TYPE: "input"})
        if record.operation != "embeddings":
            _token_usage.record(u.output_tokens, {**a, TOKEN_TYPE: "output"})
    if record.usd > 0:
        _cost.add(record.usd, a)
    for action in facts.actions if facts is not None else actions(record.decisions):
        _decisions.add(1, {**a, BUDGET_ACTION: action})


# -- Content capture (opt-in) -----------------------------------------------------------------------


def capture_content(span: Span, settings: Settings) -> bool:
    """Whether prompts and completions go on ``span`` (doors may skip building an outcome's
    ``output_messages`` when not)."""
    if not span.is_recording():
        return False
    if settings.capture_content:
        return True
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _CAPTURE_VALUES


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _input_messages(facts: Facts) -> list[dict[str, Any]]:
    """The messages sent (after a truncate), in the GenAI conventions' shape."""
    out = [
        {"role": str(m.get("role", "user")), "parts": list(_parts(m))}
        for m in facts.input_messages or ()
        if isinstance(m, Mapping)
    ]
    out += [{"role": "user", "parts": [_text(p)]} for p in facts.prompt if isinstance(p, str)]
    return out


def _output_messages(facts: Facts) -> list[dict[str, Any]]:
    reasons = list(facts.finish_reasons)
    return [
        {
            "role": str(m.get("role", "assistant")),
            "parts": list(_parts(m)),
            "finish_reason": reasons[i] if i < len(reasons) else "",
        }
        for i, m in enumerate(facts.output_messages)
    ]


def _text(text: Any) -> dict[str, Any]:
    return {"type": "text", "content": text}


def _parts(message: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The parts of one OpenAI chat-shaped message (non-text content is named, not copied)."""
    content = message.get("content")
    if message.get("role") == "tool":
        yield {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content}
        return
    if isinstance(content, str):
        yield _text(content)
    elif isinstance(content, Sequence):
        for part in content:
            if isinstance(part, str):
                yield _text(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                yield _text(part.get("text"))
            elif isinstance(part, Mapping):
                yield {"type": str(part.get("type", "unknown"))}
    for tool_call in message.get("tool_calls") or ():
        function = tool_call.get("function") or {}
        yield {
            "type": "tool_call",
            "id": tool_call.get("id"),
            "name": function.get("name"),
            "arguments": function.get("arguments"),
        }
