"""The GenAI conventions tollgate emits, previous, latest or both, checked name by name.

Previous names come from the opentelemetry-semantic-conventions package; the latest ones from
the GenAI conventions repository (semantic-conventions-genai: client-inference.md,
gen-ai-token-metrics.md, client-embeddings.md), read from the package when it has them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest

import tollgate
from tollgate import gate, telemetry
from tollgate.request import LLMRequest, Usage

openai = pytest.importorskip("openai")
from opentelemetry.sdk.metrics.export import Histogram, Sum  # noqa: E402
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as G  # noqa: E402
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as M  # noqa: E402
from opentelemetry.semconv.attributes import error_attributes, server_attributes  # noqa: E402

from tests.telemetry.conftest import Measured  # noqa: E402
from tests.telemetry.test_spans import attrs, only_span  # noqa: E402

if not hasattr(G, "GEN_AI_SYSTEM_INSTRUCTIONS") or not hasattr(
    M, "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK"
):
    pytest.skip(
        "this opentelemetry-semantic-conventions predates the GenAI names checked here",
        allow_module_level=True,
    )

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
COUNT = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]
PREVIOUS, LATEST, DUP = None, "gen_ai_latest_experimental", "gen_ai_latest_experimental/dup"
MODES = {"previous": PREVIOUS, "latest": LATEST, "dup": DUP}


def latest(constant: str, name: str) -> str:
    """A latest name: the package's constant once it has one, else the GenAI repository's."""
    value = getattr(M, constant, None) or getattr(G, constant, None) or name
    assert value == name
    return value


# -- The latest conventions' names -------------------------------------------------------------------
INFERENCE_DURATION = latest("GEN_AI_CLIENT_INFERENCE_DURATION", "gen_ai.client.inference.duration")
INFERENCE_TTFC = latest(
    "GEN_AI_CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK", "gen_ai.client.inference.time_to_first_chunk"
)
USAGE_INPUT = latest(
    "GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS", "gen_ai.client.inference.usage.input_tokens"
)
USAGE_OUTPUT = latest(
    "GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS", "gen_ai.client.inference.usage.output_tokens"
)
USAGE_CACHE_READ = latest(
    "GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS",
    "gen_ai.client.inference.usage.cache_read.input_tokens",
)
USAGE_CACHE_WRITE = latest(
    "GEN_AI_CLIENT_INFERENCE_USAGE_CACHE_WRITE_INPUT_TOKENS",
    "gen_ai.client.inference.usage.cache_write.input_tokens",
)
USAGE_REASONING = latest(
    "GEN_AI_CLIENT_INFERENCE_USAGE_REASONING_OUTPUT_TOKENS",
    "gen_ai.client.inference.usage.reasoning.output_tokens",
)
OPERATION_INPUT = latest(
    "GEN_AI_CLIENT_INFERENCE_OPERATION_INPUT_TOKENS", "gen_ai.client.inference.operation.input_tokens"
)
OPERATION_OUTPUT = latest(
    "GEN_AI_CLIENT_INFERENCE_OPERATION_OUTPUT_TOKENS", "gen_ai.client.inference.operation.output_tokens"
)
EMBEDDINGS_DURATION = latest("GEN_AI_CLIENT_EMBEDDINGS_DURATION", "gen_ai.client.embeddings.duration")
EMBEDDINGS_INPUT = latest(
    "GEN_AI_CLIENT_EMBEDDINGS_OPERATION_INPUT_TOKENS", "gen_ai.client.embeddings.operation.input_tokens"
)
TOKEN_MODALITY = latest("GEN_AI_TOKEN_MODALITY", "gen_ai.token.modality")
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
# tollgate's own metrics, in every convention.
OWN = {"tollgate.cost", "tollgate.budget.decisions"}

#: Attributes the conventions define for the client metrics (metric_attributes.gen_ai).
METRIC_ATTRIBUTES = {
    G.GEN_AI_OPERATION_NAME,
    G.GEN_AI_PROVIDER_NAME,
    G.GEN_AI_REQUEST_MODEL,
    G.GEN_AI_RESPONSE_MODEL,
    server_attributes.SERVER_ADDRESS,
    server_attributes.SERVER_PORT,
}
BASE = {
    G.GEN_AI_OPERATION_NAME: "chat",
    G.GEN_AI_PROVIDER_NAME: "openai",
    G.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    G.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
    server_attributes.SERVER_ADDRESS: "api.openai.com",
    server_attributes.SERVER_PORT: 443,
}


def only_point(measured: Measured, name: str, **attributes: Any) -> Any:
    (point,) = measured.points(name, scope="tollgate", **attributes)
    return point


# -- The switch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opt_in", "expected"),
    [
        (None, (True, False)),
        ("", (True, False)),
        ("http,database/dup", (True, False)),
        ("gen_ai_latest_experimental", (False, True)),
        (" http , gen_ai_latest_experimental ", (False, True)),
        ("gen_ai_latest_experimental/dup", (True, True)),
        ("gen_ai_latest_experimental,gen_ai_latest_experimental/dup", (True, True)),
        ("GEN_AI_LATEST_EXPERIMENTAL", (True, False)),  # contrib compares exactly
    ],
)
def test_the_opt_in_is_parsed_as_contrib_parses_it(
    opt_in: str | None, expected: tuple[bool, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tuple(telemetry.conventions(opt_in)) == expected
    # opentelemetry-instrumentation's own parser agrees wherever it knows the value (it has no
    # /dup for GenAI: there it stays at the default).
    semconv = pytest.importorskip("opentelemetry.instrumentation._semconv")
    stability = semconv._OpenTelemetrySemanticConventionStability
    monkeypatch.setattr(stability, "_initialized", False)
    monkeypatch.setattr(stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
    if opt_in is None:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    else:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    stability._initialize()
    mode = stability._get_opentelemetry_stability_opt_in_mode(
        semconv._OpenTelemetryStabilitySignalType.GEN_AI
    )
    contrib_latest = mode is semconv._StabilityMode.GEN_AI_LATEST_EXPERIMENTAL
    values = [v.strip() for v in (opt_in or "").split(",")]
    assert contrib_latest == (LATEST in values)
    if DUP not in values:
        assert expected == (not contrib_latest, contrib_latest)


def test_a_misspelt_genai_value_is_ignored_with_one_warning(semconv, caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(telemetry, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="tollgate"):
        for _ in range(3):
            semconv("gen_ai/dup")
            assert telemetry.in_force() == (True, False)
    assert [r.getMessage() for r in caplog.records].count(
        "tollgate: OTEL_SEMCONV_STABILITY_OPT_IN: 'gen_ai/dup' is not 'gen_ai_latest_experimental' "
        "or 'gen_ai_latest_experimental/dup'; ignored"
    ) == 1


def test_the_switch_is_read_once_per_configuration(semconv, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    semconv(LATEST)
    assert telemetry.in_force() == (False, True)
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "")  # not read per call...
    assert telemetry.in_force() == (False, True)
    tollgate.configure(on_unpriced="ignore")  # ...but at the next configuration
    assert telemetry.in_force() == (True, False)
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", DUP)
    telemetry.refresh()  # as tollgate.otel.setup() does
    assert telemetry.in_force() == (True, True)


# -- Metrics, name by name ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_chat_metrics_name_by_name(mode: str, semconv, client, replay, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    semconv(MODES[mode])
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    previous = {M.GEN_AI_CLIENT_TOKEN_USAGE, M.GEN_AI_CLIENT_OPERATION_DURATION}
    latest = {INFERENCE_DURATION, USAGE_INPUT, USAGE_OUTPUT, OPERATION_INPUT, OPERATION_OUTPUT}
    expected = {"previous": previous, "latest": latest, "dup": previous | latest}[mode]
    assert measured.names() == expected | {"tollgate.cost"}
    for name in expected:
        metric = measured.metrics["tollgate", name]
        for point in metric.data.data_points:
            assert set(point.attributes) - METRIC_ATTRIBUTES <= {G.GEN_AI_TOKEN_TYPE, TOKEN_MODALITY}
    if mode != "latest":
        inp = only_point(measured, M.GEN_AI_CLIENT_TOKEN_USAGE, **{G.GEN_AI_TOKEN_TYPE: "input"})
        assert dict(inp.attributes) == {**BASE, G.GEN_AI_TOKEN_TYPE: "input"} and inp.sum == 26
        assert isinstance(measured.metrics["tollgate", M.GEN_AI_CLIENT_TOKEN_USAGE].data, Histogram)
    if mode != "previous":
        for counter, value in ((USAGE_INPUT, 26), (USAGE_OUTPUT, 2)):
            data = measured.metrics["tollgate", counter].data
            assert (
                isinstance(data, Sum)
                and data.is_monotonic
                and measured.metrics["tollgate", counter].unit == "{token}"
            )
            (point,) = data.data_points
            assert dict(point.attributes) == {**BASE, TOKEN_MODALITY: "unknown"} and point.value == value
        for histogram, value in ((OPERATION_INPUT, 26), (OPERATION_OUTPUT, 2)):
            point = only_point(measured, histogram)
            assert dict(point.attributes) == BASE and (point.count, point.sum) == (1, value)
            assert tuple(point.explicit_bounds) == telemetry.TOKEN_BUCKETS
        duration = only_point(measured, INFERENCE_DURATION)
        assert dict(duration.attributes) == BASE and duration.count == 1
        assert tuple(duration.explicit_bounds) == telemetry.DURATION_BUCKETS
        assert measured.metrics["tollgate", INFERENCE_DURATION].unit == "s"


@pytest.mark.parametrize("mode", ["latest", "dup"])
def test_cache_and_reasoning_counters(mode: str, semconv, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    semconv(MODES[mode])
    call = gate.preflight(LLMRequest(provider="anthropic", operation="chat", model="claude-sonnet-4-6"))
    call.finish(
        gate.Outcome(
            Usage(
                input_tokens=1500,
                output_tokens=400,
                cache_read_tokens=1000,
                cache_write_tokens=200,
                reasoning_tokens=300,
                audio_input_tokens=100,
            )
        )
    )
    values = {
        (name, p.attributes[TOKEN_MODALITY]): p.value
        for name in (USAGE_INPUT, USAGE_OUTPUT, USAGE_CACHE_READ, USAGE_CACHE_WRITE, USAGE_REASONING)
        for p in measured.points(name, scope="tollgate")
    }
    assert values == {
        (USAGE_INPUT, "audio"): 100,  # the one modality providers report apart
        (USAGE_INPUT, "unknown"): 1400,
        (USAGE_OUTPUT, "unknown"): 400,
        (USAGE_CACHE_READ, "unknown"): 1000,
        (USAGE_CACHE_WRITE, "unknown"): 200,
        (USAGE_REASONING, "unknown"): 300,
    }


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_call_counts_zero_and_leaves_the_distributions_alone(  # type: ignore[no-untyped-def]
    mode: str, semconv, client, replay, measured: Measured
) -> None:
    semconv(MODES[mode])
    with replay("openai/chat_error_429.yaml"), pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with tollgate.budget(usd=0.00001), pytest.raises(tollgate.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100)
    failed = {error_attributes.ERROR_TYPE: "RateLimitError"}
    blocked = {error_attributes.ERROR_TYPE: "BudgetExceeded"}
    if mode != "latest":
        assert only_point(measured, M.GEN_AI_CLIENT_OPERATION_DURATION, **failed).count == 1
        assert only_point(measured, M.GEN_AI_CLIENT_OPERATION_DURATION, **blocked).count == 1
        assert measured.points(M.GEN_AI_CLIENT_TOKEN_USAGE) == []  # as before: nothing used
    if mode != "previous":
        assert only_point(measured, INFERENCE_DURATION, **failed).count == 1
        assert only_point(measured, INFERENCE_DURATION, **blocked).count == 1
        for counter in (USAGE_INPUT, USAGE_OUTPUT):
            points = measured.points(counter, scope="tollgate")
            assert sorted(p.attributes[G.GEN_AI_REQUEST_MODEL] for p in points) == ["gpt-4o", "gpt-4o-mini"]
            assert all(p.value == 0 and p.attributes[TOKEN_MODALITY] == "unknown" for p in points)
            assert all(error_attributes.ERROR_TYPE not in p.attributes for p in points)
        assert measured.points(OPERATION_INPUT) == measured.points(OPERATION_OUTPUT) == []


@pytest.mark.parametrize("mode", MODES)
def test_time_to_first_chunk(mode: str, semconv, client, replay, spans, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    semconv(MODES[mode])
    with replay("openai/chat_stream.yaml"):
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True):
            pass
    (record,) = tollgate.config.settings().ledger.records()
    a = attrs(only_span(spans))
    first = a[G.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert isinstance(first, float) and 0 <= first <= record.duration
    assert a[G.GEN_AI_REQUEST_STREAM] is True
    names = {M.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, INFERENCE_TTFC} & measured.names()
    assert (
        names
        == {
            "previous": {M.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK},
            "latest": {INFERENCE_TTFC},
            "dup": {M.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, INFERENCE_TTFC},
        }[mode]
    )
    for name in names:
        point = only_point(measured, name)
        assert point.count == 1 and point.sum == pytest.approx(first)
        assert {k: v for k, v in BASE.items() if k != G.GEN_AI_RESPONSE_MODEL} == dict(point.attributes)


@pytest.mark.parametrize("mode", MODES)
def test_embeddings_metrics(mode: str, semconv, client, replay, spans, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    semconv(MODES[mode])
    with replay("openai/embeddings.yaml"):
        client.embeddings.create(
            model="text-embedding-3-small", input=["The sea is vast.", "Paris is the capital of France."]
        )
    previous = {M.GEN_AI_CLIENT_TOKEN_USAGE, M.GEN_AI_CLIENT_OPERATION_DURATION}
    latest = {EMBEDDINGS_DURATION, EMBEDDINGS_INPUT}
    expected = {"previous": previous, "latest": latest, "dup": previous | latest}[mode]
    assert measured.names() == expected | {"tollgate.cost"}
    if mode != "previous":
        point = only_point(measured, EMBEDDINGS_INPUT)
        assert (point.count, point.sum) == (1, 12)
        assert point.attributes[G.GEN_AI_OPERATION_NAME] == "embeddings"
        assert G.GEN_AI_USAGE_OUTPUT_TOKENS not in attrs(only_span(spans)) or mode == "dup"


# -- Spans, name by name --------------------------------------------------------------------------------

SPAN_ATTRIBUTES = {
    G.GEN_AI_OPERATION_NAME,
    G.GEN_AI_PROVIDER_NAME,
    G.GEN_AI_REQUEST_MODEL,
    G.GEN_AI_REQUEST_MAX_TOKENS,
    G.GEN_AI_REQUEST_STREAM,
    G.GEN_AI_RESPONSE_MODEL,
    G.GEN_AI_RESPONSE_ID,
    G.GEN_AI_RESPONSE_FINISH_REASONS,
    G.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    G.GEN_AI_USAGE_INPUT_TOKENS,
    G.GEN_AI_USAGE_OUTPUT_TOKENS,
    G.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "gen_ai.usage.cache_write.input_tokens",  # the GenAI repository's (#440); the package: cache_creation
    G.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
    G.GEN_AI_INPUT_MESSAGES,
    G.GEN_AI_OUTPUT_MESSAGES,
    G.GEN_AI_SYSTEM_INSTRUCTIONS,
    server_attributes.SERVER_ADDRESS,
    server_attributes.SERVER_PORT,
    error_attributes.ERROR_TYPE,
}


@pytest.mark.parametrize("mode", MODES)
def test_span_name_by_name(mode: str, semconv, client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    semconv(MODES[mode])
    tollgate.configure(capture_content=True)
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
    span = only_span(spans)
    a = attrs(span)
    assert span.name == f"{a[G.GEN_AI_OPERATION_NAME]} {a[G.GEN_AI_REQUEST_MODEL]}"
    assert {k for k in a if not k.startswith("tollgate.")} <= SPAN_ATTRIBUTES
    assert {k: a[k] for k in BASE} == BASE
    assert (a[G.GEN_AI_REQUEST_MAX_TOKENS], a[G.GEN_AI_RESPONSE_ID]) == (50, "chatcmpl-tg0001")
    assert a[G.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert (a[G.GEN_AI_USAGE_INPUT_TOKENS], a[G.GEN_AI_USAGE_OUTPUT_TOKENS]) == (26, 2)
    # "Conditionally required if and only if the request is streaming" in the latest conventions.
    assert a.get(G.GEN_AI_REQUEST_STREAM) is (None if mode == "latest" else False)
    (completion,) = json.loads(a[G.GEN_AI_OUTPUT_MESSAGES])
    # The latest conventions deprecate the per-message finish reason; dup keeps it for the old readers.
    assert ("finish_reason" in completion) is (mode != "latest")
    # OpenAI chat carries its system prompt in the history: it stays an input message.
    assert [m["role"] for m in json.loads(a[G.GEN_AI_INPUT_MESSAGES])] == ["system", "user"]
    assert G.GEN_AI_SYSTEM_INSTRUCTIONS not in a


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("openai", "openai"),
        ("openai_compatible:gpu-box.internal", "openai"),
        ("azure", "azure.ai.openai"),
        ("gemini", "gcp.gemini"),
        ("vertex_ai", "gcp.vertex_ai"),
        ("bedrock", "aws.bedrock"),
        ("xai", "x_ai"),
        ("mistral", "mistral_ai"),
        ("openrouter", "openrouter"),  # no well-known value: its own name, never a host
    ],
)
def test_well_known_provider_values_on_spans_and_metrics(  # type: ignore[no-untyped-def]
    provider: str, expected: str, spans, measured: Measured
) -> None:
    tollgate.configure(on_unpriced="ignore")
    call = gate.preflight(
        LLMRequest(
            provider=provider,
            operation="chat",
            model="some-model",
            server_address="gpu-box.internal",
            server_port=9000,
        )
    )
    call.finish(gate.Outcome(Usage(input_tokens=3, output_tokens=1)))
    (record,) = tollgate.config.settings().ledger.records()
    assert record.provider == provider  # the ledger keeps tollgate's name
    a = attrs(only_span(spans))
    assert a[G.GEN_AI_PROVIDER_NAME] == expected
    assert (a[server_attributes.SERVER_ADDRESS], a[server_attributes.SERVER_PORT]) == (
        "gpu-box.internal",
        9000,
    )
    (point,) = measured.points(M.GEN_AI_CLIENT_OPERATION_DURATION, scope="tollgate")
    assert point.attributes[G.GEN_AI_PROVIDER_NAME] == expected


def test_every_mapped_provider_value_is_well_known() -> None:
    known = {v.value for v in G.GenAiProviderNameValues} | {"moonshot_ai"}  # not in the package yet
    assert set(telemetry.WELL_KNOWN_PROVIDERS.values()) <= known


# -- Content ------------------------------------------------------------------------------------------

ANTHROPIC_ASK = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def _claude_call(claude: Any, replay: Any) -> None:
    with replay("anthropic/messages_basic.yaml"):
        claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=1024,
            system="You are a terse assistant.",
            messages=ANTHROPIC_ASK,
        )


def _tollgate_span(spans: Any) -> Mapping[str, Any]:
    (span,) = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name == "tollgate"]
    return attrs(span)


@pytest.mark.parametrize("mode", MODES)
def test_system_instructions_given_apart(mode: str, semconv, claude, replay, spans) -> None:  # type: ignore[no-untyped-def]
    semconv(MODES[mode])
    tollgate.configure(capture_content=True)
    _claude_call(claude, replay)
    a = _tollgate_span(spans)
    roles = [m["role"] for m in json.loads(a[G.GEN_AI_INPUT_MESSAGES])]
    assert roles == (["user"] if mode == "latest" else ["system", "user"])
    if mode == "previous":
        assert G.GEN_AI_SYSTEM_INSTRUCTIONS not in a
    else:
        assert json.loads(a[G.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
            {"type": "text", "content": "You are a terse assistant."}
        ]


def test_non_text_parts_are_generic_in_the_latest_conventions(semconv, spans) -> None:  # type: ignore[no-untyped-def]
    semconv(LATEST)
    tollgate.configure(capture_content=True)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]
    call = gate.preflight(
        LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini", messages=messages)
    )
    call.finish(gate.Outcome(Usage(input_tokens=90, output_tokens=2)))
    a = _tollgate_span(spans)
    assert json.loads(a[G.GEN_AI_INPUT_MESSAGES]) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "What is this?"},
                {"type": "generic", "generic_type": "image_url"},  # named, never copied
            ],
        }
    ]
    assert "iVBOR" not in json.dumps(dict(a))


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch, semconv: Callable[[str | None], None]) -> Callable[..., None]:
    """``capture("EVENT_ONLY", emit=None, opt_in=LATEST)``: set the content variables, then reset."""

    def use(mode: str | None, emit: str | None = None, opt_in: str | None = LATEST) -> None:
        for name, value in (
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", mode),
            ("OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT", emit),
        ):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        semconv(opt_in)

    return use


def _details(logs: Any) -> list[Any]:
    return [r.log_record for r in logs.get_finished_logs() if r.log_record.event_name == DETAILS_EVENT]


def test_event_only_puts_the_content_on_the_details_event_not_the_span(
    capture, client, replay, spans, logs
) -> None:  # type: ignore[no-untyped-def]
    capture("EVENT_ONLY")
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    a = _tollgate_span(spans)
    assert not {k for k in a if k in (G.GEN_AI_INPUT_MESSAGES, G.GEN_AI_OUTPUT_MESSAGES)}
    (event,) = _details(logs)
    span = only_span(spans)
    assert (event.trace_id, event.span_id) == (span.context.trace_id, span.context.span_id)
    e = dict(event.attributes)
    assert {k: e[k] for k in BASE} == BASE and e[G.GEN_AI_USAGE_INPUT_TOKENS] == 26
    # On events the messages are structured values, not JSON text.
    assert e[G.GEN_AI_INPUT_MESSAGES][1]["parts"][0] == {
        "type": "text",
        "content": "Name the capital of France in one word.",
    }
    assert e[G.GEN_AI_OUTPUT_MESSAGES][0]["parts"][0]["content"] == "Paris."


def test_span_and_event(capture, client, replay, spans, logs) -> None:  # type: ignore[no-untyped-def]
    capture("SPAN_AND_EVENT")
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert G.GEN_AI_INPUT_MESSAGES in _tollgate_span(spans)
    (event,) = _details(logs)
    assert G.GEN_AI_INPUT_MESSAGES in event.attributes


@pytest.mark.parametrize("opt_in", [PREVIOUS, LATEST])
def test_nothing_leaks_when_capture_is_off(
    capture, opt_in, client, replay, spans, logs, caplog, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(telemetry, "_warned", set())
    content = ("You are a terse", "capital of France", "Paris.")
    for mode, emit, events in ((None, None, 0), ("NO_CONTENT", "true", 1), ("bogus", None, 0)):
        capture(mode, emit, opt_in)
        spans.clear()
        logs.clear()
        with replay("openai/chat_basic.yaml"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        span = json.dumps(dict(_tollgate_span(spans)))
        assert not any(text in span for text in content)
        found = _details(logs)
        assert len(found) == events
        for event in found:  # the event without the content: what the span says
            assert not any(text in json.dumps(dict(event.attributes), default=str) for text in content)
    assert "is not one of SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT" in caplog.text
