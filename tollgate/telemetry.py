"""OpenTelemetry spans and metrics of gated calls, through the OpenTelemetry API only.

Every call the gate settles, whichever door it came in by, ends here exactly once
(:func:`end_span`): one CLIENT span named ``"{operation} {model}"`` with the GenAI
semantic-convention attributes and tollgate's cost and budget facts, and one set of
measurements on the ``tollgate`` meter. So a call is counted once in the metrics even when the
SDK's own span (the Anthropic SDK's) nests under tollgate's.

With no SDK configured the API hands out non-recording spans and no-op instruments and this
costs next to nothing (``benchmarks/telemetry.py`` measures it); the application chooses the
SDK and exporters, or calls :func:`tollgate.otel.setup`.

Which GenAI conventions
-----------------------
The GenAI conventions left opentelemetry-semantic-conventions for their own repository
(open-telemetry/semantic-conventions-genai), which renamed the client metrics: token usage is
counted by ``gen_ai.client.inference.usage.*`` counters (by ``gen_ai.token.modality``) and
distributed by ``gen_ai.client.inference.operation.{input,output}_tokens`` histograms instead of
the one ``gen_ai.client.token.usage`` histogram (by ``gen_ai.token.type``); durations are
``gen_ai.client.inference.duration`` and ``gen_ai.client.embeddings.duration``. tollgate emits
the previous names, the latest ones, or both, chosen as OpenTelemetry's contrib GenAI
instrumentations choose, by ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list):

- unset, or no GenAI value in it: the previous names (the ones the opentelemetry-semantic-
  conventions package still ships), which tollgate has always emitted;
- ``gen_ai_latest_experimental``: the latest names only (contrib's own value);
- ``gen_ai_latest_experimental/dup``: both, for a migration. Contrib defines no ``/dup`` for
  GenAI; this one is shaped like its ``http/dup`` and ``database/dup`` and wins over the plain
  value as they do. Where one attribute cannot carry both shapes (captured content), the latest
  shape is used, keeping what the previous one had (``finish_reason``, system messages).

The previous names are the default because the conventions' transition plan says an
instrumentation SHOULD NOT change the conventions it emits by default, and opentelemetry-
instrumentation's ``_OpenTelemetrySemanticConventionStability`` keeps GenAI at ``DEFAULT``
unless ``gen_ai_latest_experimental`` is listed: dashboards built on the old names keep working
until their owner opts in. The variable, like the content-capture ones below, is read once per
configuration (when tollgate's settings are first used after :func:`tollgate.configure`,
:func:`tollgate.reset` or :func:`tollgate.otel.setup`), never per call. Other values (``http``,
``database``) are other instrumentations' business; an unknown ``gen_ai`` value is ignored
with one warning.

What is emitted mirrors opentelemetry-util-genai, contrib's implementation of the conventions
(tests/telemetry/test_util_genai.py makes the same calls through both and compares them),
rather than building on it: through util-genai's handler a call's span and metrics cost ~50x
tollgate's without an SDK (it builds them all the same) and ~1.3x with one, importing it adds
30-50 ms, and it would bring opentelemetry-instrumentation, -semantic-conventions and wrapt to
a core that needs only opentelemetry-api (``benchmarks/telemetry.py`` measures it).

In both, ``gen_ai.provider.name`` carries the conventions' well-known value
(:func:`provider_name`): ``azure.ai.openai``, ``gcp.gemini``, ``aws.bedrock``, ``x_ai``, ...,
and ``openai`` for an OpenAI client pointed at an unknown host (its host is ``server.address``),
whatever name the ledger keeps for the provider.

Content
-------
Prompts and completions are captured only when ``configure(capture_content=True)`` (on spans)
or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for it: ``SPAN_ONLY`` (or
``true``, as tollgate has always read it), ``EVENT_ONLY`` or ``SPAN_AND_EVENT``, as
opentelemetry-util-genai reads it. Events are ``gen_ai.client.inference.operation.details`` log
records (the Logs API), emitted when content goes to events or when
``OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT=true``. In the latest conventions a completion no
longer repeats its finish reason (``gen_ai.response.finish_reasons`` has it), a system prompt
given apart from the messages (Anthropic's ``system``, Gemini's ``system_instruction``, the
Responses API's ``instructions``) is ``gen_ai.system_instructions``, and a part that is not
text or a tool call is named as a ``generic`` part, its content never copied.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry._logs import _internal as _logs_api
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.trace import SpanKind, Status, StatusCode

from tollgate import config
from tollgate.budgets.room import BudgetFacts
from tollgate.decisions import EVENT_PREFIX as EVENT_PREFIX
from tollgate.decisions import STORE_UNAVAILABLE_EVENT as STORE_UNAVAILABLE_EVENT
from tollgate.decisions import Clamped, Downgraded, Step, Truncated, actions

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from tollgate.call import Call
    from tollgate.config import Settings
    from tollgate.request import CallRecord, LLMRequest

# -- Every name tollgate emits ---------------------------------------------------------------------
# GenAI attributes, the same in the previous and the latest conventions. The cache-write name
# follows the GenAI repository (semantic-conventions-genai#440), as the Anthropic SDK's own span
# (nested under tollgate's) and opentelemetry-util-genai do; the opentelemetry-semantic-conventions
# package still says gen_ai.usage.cache_creation.input_tokens. (Phoenix 20.x maps only the old
# name into its token counts; the attribute itself is stored and shown either way.)
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"  # a well-known value: see provider_name()
REQUEST_MODEL = "gen_ai.request.model"  # the model sent (after a downgrade)
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"  # the cap sent (after a clamp)
REQUEST_STREAM = "gen_ai.request.stream"  # latest: set only when true ("iff streaming")
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # streams, seconds
INPUT_TOKENS = "gen_ai.usage.input_tokens"  # cache reads and writes included
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"  # reasoning included
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_write.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"  # content capture only; JSON on spans
OUTPUT_MESSAGES = "gen_ai.output.messages"  # content capture only; JSON on spans
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"  # latest, content capture only
TOKEN_TYPE = "gen_ai.token.type"  # previous metrics: "input" | "output"
TOKEN_MODALITY = "gen_ai.token.modality"  # latest usage counters: "audio" | "unknown"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
# tollgate's own.
COST_USD = "tollgate.cost.usd"
COST_ESTIMATED = "tollgate.cost.estimated"
STATUS = "tollgate.status"  # ok | error | blocked | abandoned
# The GenAI conventions name each tool call (gen_ai.tool.*), but have no count of them.
TOOL_CALLS = "tollgate.tool_calls"  # the tool calls the response asked for, when any
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
# The content event of the latest conventions (a log record), when asked for.
DETAILS_EVENT = "gen_ai.client.inference.operation.details"

# Metrics (meter "tollgate"), with the conventions' bucket advice. The previous conventions (the
# opentelemetry-semantic-conventions package's gen_ai_metrics):
TOKEN_USAGE_METRIC = "gen_ai.client.token.usage"  # histogram, by gen_ai.token.type
DURATION_METRIC = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK_METRIC = "gen_ai.client.operation.time_to_first_chunk"
# The latest (semantic-conventions-genai: client-inference.md, gen-ai-token-metrics.md,
# client-embeddings.md). Every operation but embeddings is an inference here (chat, completions,
# generate_content, and the image and audio calls, which are billed in tokens too).
INFERENCE_DURATION_METRIC = "gen_ai.client.inference.duration"
INFERENCE_TIME_TO_FIRST_CHUNK_METRIC = "gen_ai.client.inference.time_to_first_chunk"
USAGE_INPUT_METRIC = "gen_ai.client.inference.usage.input_tokens"  # counters, by modality:
USAGE_OUTPUT_METRIC = "gen_ai.client.inference.usage.output_tokens"  # every call, a failed one 0
USAGE_CACHE_READ_METRIC = "gen_ai.client.inference.usage.cache_read.input_tokens"
USAGE_CACHE_WRITE_METRIC = "gen_ai.client.inference.usage.cache_write.input_tokens"
USAGE_REASONING_METRIC = "gen_ai.client.inference.usage.reasoning.output_tokens"
OPERATION_INPUT_METRIC = "gen_ai.client.inference.operation.input_tokens"  # histograms, calls
OPERATION_OUTPUT_METRIC = "gen_ai.client.inference.operation.output_tokens"  # that did not fail
EMBEDDINGS_DURATION_METRIC = "gen_ai.client.embeddings.duration"
EMBEDDINGS_INPUT_METRIC = "gen_ai.client.embeddings.operation.input_tokens"
# tollgate's own, in every convention.
COST_METRIC = "tollgate.cost"
DECISIONS_METRIC = "tollgate.budget.decisions"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

# The switches (see the module documentation).
OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST = "gen_ai_latest_experimental"
LATEST_DUP = "gen_ai_latest_experimental/dup"
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EMIT_EVENT_ENV = "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"

#: tollgate's provider names (the price table's, LiteLLM's, LangChain's) that have a well-known
#: ``gen_ai.provider.name`` value; any other name is kept (``openrouter``, ``ollama``, ...).
WELL_KNOWN_PROVIDERS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "openai",
        "text-completion-openai": "openai",
        "azure": "azure.ai.openai",
        "azure_openai": "azure.ai.openai",
        "azure_ai": "azure.ai.inference",
        "anthropic": "anthropic",
        "bedrock": "aws.bedrock",
        "bedrock_converse": "aws.bedrock",
        "gemini": "gcp.gemini",
        "google_genai": "gcp.gemini",
        "vertex_ai": "gcp.vertex_ai",
        "vertex_ai_beta": "gcp.vertex_ai",
        "google_vertexai": "gcp.vertex_ai",
        "cohere": "cohere",
        "cohere_chat": "cohere",
        "deepseek": "deepseek",
        "groq": "groq",
        "mistral": "mistral_ai",
        "mistralai": "mistral_ai",
        "xai": "x_ai",
        "perplexity": "perplexity",
        "watsonx": "ibm.watsonx.ai",
        "watsonx_text": "ibm.watsonx.ai",
        "moonshot": "moonshot_ai",
    }
)
# providers/openai.py names an OpenAI-compatible API on an unknown host "openai_compatible:<host>".
_COMPATIBLE = "openai_compatible:"
# providers/base.NATIVE: a message carrying an empty tuple there was given apart from the history.
_NATIVE = "_native"

log = logging.getLogger("tollgate")
_tracer = trace.get_tracer("tollgate")
_meter = metrics.get_meter("tollgate")


def _histogram(name: str, unit: str, description: str) -> Any:
    buckets = TOKEN_BUCKETS if unit == "{token}" else DURATION_BUCKETS
    return _meter.create_histogram(
        name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
    )


def _tokens(name: str, description: str) -> Any:
    return _meter.create_counter(name, unit="{token}", description=description)


# The previous conventions' instruments.
_token_usage = _histogram(TOKEN_USAGE_METRIC, "{token}", "Number of input and output tokens used.")
_duration = _histogram(DURATION_METRIC, "s", "GenAI operation duration.")
_first_chunk = _histogram(TIME_TO_FIRST_CHUNK_METRIC, "s", "Time to receive the first chunk of a stream.")
# The latest conventions' instruments.
_inference_duration = _histogram(INFERENCE_DURATION_METRIC, "s", "GenAI client inference operation duration.")
_inference_first_chunk = _histogram(
    INFERENCE_TIME_TO_FIRST_CHUNK_METRIC, "s", "Time to receive the first chunk of a stream."
)
_usage_input = _tokens(USAGE_INPUT_METRIC, "Input tokens used, cached tokens included.")
_usage_output = _tokens(USAGE_OUTPUT_METRIC, "Output tokens used, reasoning tokens included.")
_usage_cache_read = _tokens(USAGE_CACHE_READ_METRIC, "Input tokens served from a provider-managed cache.")
_usage_cache_write = _tokens(USAGE_CACHE_WRITE_METRIC, "Input tokens written to a provider-managed cache.")
_usage_reasoning = _tokens(USAGE_REASONING_METRIC, "Output tokens used for reasoning.")
_operation_input = _histogram(OPERATION_INPUT_METRIC, "{token}", "Input tokens used per inference operation.")
_operation_output = _histogram(
    OPERATION_OUTPUT_METRIC, "{token}", "Output tokens used per inference operation."
)
_embeddings_duration = _histogram(
    EMBEDDINGS_DURATION_METRIC, "s", "GenAI client embeddings operation duration."
)
_embeddings_input = _histogram(
    EMBEDDINGS_INPUT_METRIC, "{token}", "Input tokens used per embeddings operation."
)
# tollgate's own.
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
_ENV_LOGGER = bool(os.environ.get("OTEL_PYTHON_LOGGER_PROVIDER"))


def _no_logs_sdk() -> bool:
    """No logger provider has been set (the details event would go nowhere)."""
    return not _ENV_LOGGER and getattr(_logs_api, "_LOGGER_PROVIDER", None) is None


def _no_sdk(module: Any, name: str) -> bool:
    """No real provider has been set in ``module`` (the API's ``trace`` or metrics internals)."""
    if _ENV_PROVIDERS:
        return False
    provider = getattr(module, name, False)
    if provider is False:  # an API version without that global: ask the API
        provider = trace.get_tracer_provider() if module is trace else metrics.get_meter_provider()
    return provider is None or type(provider).__name__ in _NO_SDK


# -- Which conventions, which content --------------------------------------------------------------


class Conventions(NamedTuple):
    """Which GenAI names tollgate emits: the previous ones, the latest ones, or both."""

    previous: bool
    latest: bool


def conventions(opt_in: str | None) -> Conventions:
    """The conventions an ``OTEL_SEMCONV_STABILITY_OPT_IN`` value asks for (parsed as contrib
    does: a comma-separated list, values stripped; ``/dup`` wins over the plain value).

    >>> conventions(None)
    Conventions(previous=True, latest=False)
    >>> conventions("http, gen_ai_latest_experimental")
    Conventions(previous=False, latest=True)
    >>> conventions("gen_ai_latest_experimental,gen_ai_latest_experimental/dup")
    Conventions(previous=True, latest=True)
    """
    values = {v.strip() for v in (opt_in or "").split(",")}
    if LATEST_DUP in values:
        return Conventions(previous=True, latest=True)
    if LATEST in values:
        return Conventions(previous=False, latest=True)
    for value in values:
        if value.startswith("gen_ai"):
            _warn_once(f"{OPT_IN_ENV}: {value!r} is not {LATEST!r} or {LATEST_DUP!r}; ignored")
    return Conventions(previous=True, latest=False)


class _Setup(NamedTuple):
    previous: bool  # emit the previous conventions' names
    latest: bool  # emit the latest conventions' names
    span_content: bool  # prompts and completions on spans
    event_content: bool  # prompts and completions on the details event
    event: bool  # emit the gen_ai.client.inference.operation.details event


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("tollgate: %s", message)


def _content(configured: bool, value: str) -> tuple[bool, bool]:
    """Content on spans, on events: ``configure(capture_content=...)`` and the variable's mode."""
    mode = value.strip().lower()
    on_spans = mode in ("true", "1", "span_only", "span_and_event")
    on_events = mode in ("event_only", "span_and_event")
    if mode and not (on_spans or on_events) and mode not in ("false", "0", "no_content"):
        _warn_once(f"{CAPTURE_CONTENT_ENV}={value!r} is not one of SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT")
    return on_spans or configured, on_events


def _resolve(settings: Settings) -> _Setup:
    env = os.environ.get
    previous, latest = conventions(env(OPT_IN_ENV))
    on_spans, on_events = _content(settings.capture_content, env(CAPTURE_CONTENT_ENV, ""))
    emit = env(EMIT_EVENT_ENV, "").strip().lower()
    if emit not in ("", "true", "false"):
        _warn_once(f"{EMIT_EVENT_ENV}={emit!r} is not true or false; following the capture mode")
    event = emit == "true" or (emit != "false" and on_events)
    return _Setup(previous, latest, on_spans, on_events and event, event)


# One resolution per settings object: configure() and reset() make a new one.
_resolved: tuple[object, _Setup] = (None, _Setup(True, False, False, False, False))


def _setup(settings: Settings) -> _Setup:
    global _resolved
    held = _resolved
    if held[0] is settings:
        return held[1]
    setup = _resolve(settings)
    _resolved = (settings, setup)
    return setup


def refresh() -> None:
    """Read the variables again at the next call (:func:`tollgate.otel.setup` does, as
    :func:`tollgate.configure` and :func:`tollgate.reset` do)."""
    global _resolved
    _resolved = (None, _resolved[1])


def in_force() -> Conventions:
    """The conventions tollgate emits now (``OTEL_SEMCONV_STABILITY_OPT_IN`` as read at the last
    :func:`tollgate.configure` or :func:`tollgate.reset`)."""
    setup = _setup(config.settings())
    return Conventions(setup.previous, setup.latest)


def provider_name(provider: str) -> str:
    """The ``gen_ai.provider.name`` of one of tollgate's provider names: the conventions'
    well-known value when there is one, ``openai`` for an OpenAI-compatible API on an unknown
    host (a value per host would make a metric series per host), else the name itself.

    >>> provider_name("azure"), provider_name("vertex_ai"), provider_name("xai")
    ('azure.ai.openai', 'gcp.vertex_ai', 'x_ai')
    >>> provider_name("openai_compatible:127.0.0.1"), provider_name("openrouter")
    ('openai', 'openrouter')
    """
    known = WELL_KNOWN_PROVIDERS.get(provider)
    if known is not None:
        return known
    return "openai" if provider.startswith(_COMPATIBLE) else provider


# -- Spans -------------------------------------------------------------------------------------------


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
        PROVIDER: provider_name(request.provider),
        REQUEST_MODEL: request.model,
    }
    if request.stream or _setup(config.settings()).previous:
        attributes[REQUEST_STREAM] = request.stream
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


def current(span: Span) -> Token[Context] | None:
    """Make ``span`` the current span while the SDK call runs, so spans the SDK itself emits
    (the Anthropic SDK's ``anthropic.messages.create``) nest under tollgate's, as its children.
    Returns the token :func:`restore` takes back (None: the span does not record, nothing to do).

    What ``trace.use_span(span, end_on_exit=False, record_exception=False,
    set_status_on_exception=False)`` does, without the generator-based context manager it
    would make on every call."""
    if span.is_recording():
        return otel_context.attach(trace.set_span_in_context(span))
    return None


def restore(token: Token[Context] | None) -> None:
    """Undo :func:`current` (given what it returned)."""
    if token is not None:
        otel_context.detach(token)


def first_chunk(call: Call) -> None:
    """The first chunk of ``call``'s stream has arrived: the time to it goes on the span
    (``gen_ai.response.time_to_first_chunk``) and into the time-to-first-chunk histogram,
    measured from the start of the call, as opentelemetry-util-genai measures it. Never raises."""
    span = call.span
    recording = span.is_recording()
    measuring = not _no_sdk(_metrics_api, "_METER_PROVIDER")
    if not (recording or measuring):
        return
    try:
        seconds = max(0.0, time.time() - call.started_at)
        if recording:
            span.set_attribute(TIME_TO_FIRST_CHUNK, seconds)
        if measuring:
            setup = _setup(call.settings)
            r = call.request
            a = _metric_attributes(
                r.operation,
                r.provider,
                call.decision.model,
                None,
                r.server_address,
                r.server_port,
                call.tags,
                call.settings.metric_tags,
            )
            if setup.previous:
                _first_chunk.record(seconds, a)
            if setup.latest:
                _inference_first_chunk.record(seconds, a)
    except Exception:
        log.exception("tollgate could not record the first chunk of call %s", call.id)


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
    """Put the settled facts of the call on ``span``, end it, and record the call's metrics
    (and the details event, when asked for).

    ``facts`` is asked for only when a span records, metrics are measured or the event is
    emitted (not at all without an OpenTelemetry SDK)."""
    setup: _Setup | None = None
    known: Facts | None = None
    try:
        if span.is_recording():
            setup = _setup(config.settings())
            known = facts() if facts is not None else None
            _annotate(span, record, known, setup)
    finally:
        span.end(end_time=int(record.ended_at * 1e9))
        measuring = not _no_sdk(_metrics_api, "_METER_PROVIDER")
        if setup is None and (measuring or not _no_logs_sdk()):  # else no SDK at all: done
            setup = _setup(config.settings())
        if setup is not None and setup.event and record.operation != "embeddings":
            if known is None and facts is not None:
                known = facts()
            _emit_details(span, record, known, setup)
        if setup is not None and measuring:
            if known is None and facts is not None:
                known = facts()
            _measure(record, known, setup)


def _genai_attributes(record: CallRecord, facts: Facts | None, setup: _Setup) -> dict[str, AttributeValue]:
    """The GenAI attributes a call's end adds (its span and its details event say the same)."""
    u = record.usage
    a: dict[str, AttributeValue] = {
        PROVIDER: provider_name(record.provider),  # a metered call may learn its provider late
        REQUEST_MODEL: facts.model if facts is not None else record.request_model,
        INPUT_TOKENS: u.input_tokens,
    }
    if setup.previous or record.operation != "embeddings":  # the latest embeddings span has none
        a[OUTPUT_TOKENS] = u.output_tokens
    if setup.previous or record.stream:  # a LangChain call learns it streams as tokens arrive
        a[REQUEST_STREAM] = record.stream
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
        optional[SERVER_ADDRESS] = facts.server_address
        optional[SERVER_PORT] = facts.server_port
    a.update({k: v for k, v in optional.items() if v})
    if record.error:
        a[ERROR_TYPE] = _error_type(record.error)
    return a


def _annotate(span: Span, record: CallRecord, facts: Facts | None, setup: _Setup) -> None:
    u = record.usage
    model = facts.model if facts is not None else record.request_model
    if model != record.request_model:
        span.update_name(f"{record.operation} {model}")
    a = _genai_attributes(record, facts, setup)
    a.update({COST_USD: record.usd, COST_ESTIMATED: record.estimated, STATUS: record.status})
    if facts is not None and facts.input_messages is not None and setup.span_content:
        a.update(_content_attributes(facts, setup, _json))
    if u.service_tier:
        a[SERVICE_TIER] = u.service_tier
    if u.unknown:
        a[UNKNOWN_USAGE] = sorted(u.unknown)
    if record.tool_calls:
        a[TOOL_CALLS] = record.tool_calls
    if u.parts:
        a[PART_KINDS] = [p.kind for p in u.parts]
        a[PART_MODELS] = [p.model or record.response_model or model for p in u.parts]
        a[PART_USD] = [p.usd or 0.0 for p in u.parts]
    a.update(_budget_attributes(record, facts))
    span.set_attributes(a)
    for step in record.decisions:
        event = step.event_name() if isinstance(step, Step) else None
        if event is None:
            continue
        at = record.ended_at if step.get("action") == "cutoff" else record.started_at
        span.add_event(event, step.attributes(), timestamp=int(at * 1e9))
    if record.error:
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


# -- Metrics -----------------------------------------------------------------------------------------


def _metric_attributes(
    operation: str,
    provider: str,
    model: str,
    response_model: str | None,
    server_address: str | None,
    server_port: int | None,
    tags: Mapping[str, str],
    metric_tags: Sequence[str],
) -> dict[str, AttributeValue]:
    a: dict[str, AttributeValue] = {
        OPERATION: operation,
        PROVIDER: provider_name(provider),
        REQUEST_MODEL: model,
    }
    if response_model:
        a[RESPONSE_MODEL] = response_model
    if server_address:
        a[SERVER_ADDRESS] = server_address
    if server_port:
        a[SERVER_PORT] = server_port
    for name in metric_tags:
        if name in tags:
            a[TAG_PREFIX + name] = tags[name]
    return a


def _measure(record: CallRecord, facts: Facts | None, setup: _Setup) -> None:
    """One set of measurements per call: duration, tokens, cost and budget decisions."""
    a = _metric_attributes(
        record.operation,
        record.provider,
        facts.model if facts is not None else record.request_model,
        record.response_model,
        facts.server_address if facts is not None else None,
        facts.server_port if facts is not None else None,
        record.tags,
        facts.metric_tags if facts is not None else (),
    )
    ended = {**a, ERROR_TYPE: _error_type(record.error)} if record.error else a
    duration = max(0.0, record.duration)
    u = record.usage
    if setup.previous:
        _duration.record(duration, ended)
        if record.status in ("ok", "abandoned") or u.total_tokens:  # blocked and failed calls used none
            _token_usage.record(u.input_tokens, {**ended, TOKEN_TYPE: "input"})
            if record.operation != "embeddings":
                _token_usage.record(u.output_tokens, {**ended, TOKEN_TYPE: "output"})
    if setup.latest:
        if record.operation == "embeddings":
            _embeddings_duration.record(duration, ended)
            if not record.error:
                _embeddings_input.record(u.input_tokens, a)
        else:
            _inference_duration.record(duration, ended)
            _count_usage(record, a)
            if not record.error:  # the distributions are of calls that did not fail
                _operation_input.record(u.input_tokens, a)
                _operation_output.record(u.output_tokens, a)
    if record.usd > 0:
        _cost.add(record.usd, ended)
    for action in facts.actions if facts is not None else actions(record.decisions):
        _decisions.add(1, {**ended, BUDGET_ACTION: action})


def _count_usage(record: CallRecord, a: dict[str, AttributeValue]) -> None:
    """The latest conventions' usage counters, for every inference call (a failed one counts 0).
    The provider reports no modality but audio, so the rest is counted as ``unknown``."""
    u = record.usage
    for counter, total, audio in (
        (_usage_input, u.input_tokens, u.audio_input_tokens),
        (_usage_output, u.output_tokens, u.audio_output_tokens),
    ):
        audio = min(audio, total)
        if audio > 0:
            counter.add(audio, {**a, TOKEN_MODALITY: "audio"})
        if total > audio or not audio:
            counter.add(total - audio, {**a, TOKEN_MODALITY: "unknown"})
    for counter, count in (
        (_usage_cache_read, u.cache_read_tokens),
        (_usage_cache_write, u.cache_write_tokens),
        (_usage_reasoning, u.reasoning_tokens),
    ):
        if count > 0:  # a zero would add nothing to the sum, only work on every call
            counter.add(count, {**a, TOKEN_MODALITY: "unknown"})


# -- Content (opt-in) --------------------------------------------------------------------------------


def capture_content(span: Span, settings: Settings) -> bool:
    """Whether prompts and completions are wanted for this call, on its span or its details
    event (doors may skip building an outcome's ``output_messages`` when not)."""
    setup = _setup(settings)
    return setup.event_content or (setup.span_content and span.is_recording())


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _structured(value: Any) -> Any:
    return value  # events carry the messages as structured values, not JSON text


def _content_attributes(facts: Facts, setup: _Setup, encode: Callable[[Any], Any]) -> dict[str, Any]:
    """The messages sent (after a truncate), the completions and, in the latest conventions,
    the system instructions given apart from the messages; each ``encode``-d."""
    messages, instructions = _input_messages(facts, setup)
    out: dict[str, Any] = {}
    if messages:
        out[INPUT_MESSAGES] = encode(messages)
    if facts.output_messages:
        out[OUTPUT_MESSAGES] = encode(_output_messages(facts, setup))
    if instructions:
        out[SYSTEM_INSTRUCTIONS] = encode(instructions)
    return out


def _input_messages(facts: Facts, setup: _Setup) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The messages in the conventions' shape, and the system instructions (latest only)."""
    messages: list[dict[str, Any]] = []
    instructions: list[dict[str, Any]] = []
    for m in facts.input_messages or ():
        if not isinstance(m, Mapping):
            continue
        role = str(m.get("role", "user"))
        parts = list(_parts(m, setup.latest))
        if role == "system" and m.get(_NATIVE) == ():  # given apart from the history
            if setup.latest:
                instructions += parts
            if not setup.previous:  # in dup, the previous shape keeps it among the messages
                continue
        messages.append({"role": role, "parts": parts})
    messages += [{"role": "user", "parts": [_text(p)]} for p in facts.prompt if isinstance(p, str)]
    return messages, instructions


def _output_messages(facts: Facts, setup: _Setup) -> list[dict[str, Any]]:
    reasons = list(facts.finish_reasons)
    out = []
    for i, m in enumerate(facts.output_messages):
        role = str(m.get("role", "assistant"))
        message: dict[str, Any] = {"role": role, "parts": list(_parts(m, setup.latest))}
        if setup.previous:  # deprecated in the latest: gen_ai.response.finish_reasons says it
            message["finish_reason"] = reasons[i] if i < len(reasons) else ""
        out.append(message)
    return out


def _text(text: Any) -> dict[str, Any]:
    return {"type": "text", "content": text}


def _parts(message: Mapping[str, Any], generic: bool) -> Iterator[dict[str, Any]]:
    """The parts of one OpenAI chat-shaped message. Non-text content is named, never copied:
    ``{"type": "generic", "generic_type": "image_url"}`` in the latest conventions,
    ``{"type": "image_url"}`` in the previous."""
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
                kind = str(part.get("type", "unknown"))
                yield {"type": "generic", "generic_type": kind} if generic else {"type": kind}
    for tool_call in message.get("tool_calls") or ():
        function = tool_call.get("function") or {}
        yield {
            "type": "tool_call",
            "id": tool_call.get("id"),
            "name": function.get("name"),
            "arguments": function.get("arguments"),
        }


# -- The details event (opt-in) ----------------------------------------------------------------------

_events: Any = None


def _emit_details(span: Span, record: CallRecord, facts: Facts | None, setup: _Setup) -> None:
    """The ``gen_ai.client.inference.operation.details`` event of one call, through the Logs API,
    in the span's context: the span's GenAI attributes, and the content when it goes to events."""
    global _events
    try:
        from opentelemetry import _logs

        if _events is None:
            _events = _logs.get_logger("tollgate")
        a: dict[str, Any] = {OPERATION: record.operation, **_genai_attributes(record, facts, setup)}
        if setup.event_content and facts is not None and facts.input_messages is not None:
            a.update(_content_attributes(facts, setup, _structured))
        _events.emit(
            _logs.LogRecord(
                event_name=DETAILS_EVENT,
                attributes=cast("Mapping[str, AttributeValue]", a),
                context=trace.set_span_in_context(span),
            )
        )
    except Exception:  # an API too old for events, or a failing SDK: never the call's problem
        _warn_once(f"could not emit {DETAILS_EVENT} events (opentelemetry-api>=1.35 has them)")
        log.debug("tollgate could not emit the details event of call %s", record.id, exc_info=True)
