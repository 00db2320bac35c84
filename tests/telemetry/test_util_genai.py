"""The same call through tollgate and through opentelemetry-util-genai, compared attribute by attribute.

opentelemetry-util-genai (contrib's implementation of the GenAI conventions) is the reference
tollgate mirrors (tollgate does not depend on it; benchmarks/telemetry.py says why). Each case
makes one call through tollgate (a replayed SDK call) and the same call through util-genai's
``TelemetryHandler``, with the values the provider answered, and compares the GenAI attributes of
the two spans and the metrics, in each convention mode.

util-genai 1.3b0 emits the latest spans but still the previous metric names, so for the latest
mode its metrics are translated by the conventions' migration guide (semantic-conventions-genai,
docs/gen-ai/non-normative/migration.md): ``gen_ai.client.operation.duration`` becomes
``gen_ai.client.inference.duration`` (``gen_ai.client.embeddings.duration``), each
``gen_ai.client.token.usage`` point becomes a ``gen_ai.client.inference.operation.*`` histogram
point and a ``gen_ai.client.inference.usage.*`` counter point (by ``gen_ai.token.modality``), and
``gen_ai.client.operation.time_to_first_chunk`` becomes ``gen_ai.client.inference.time_to_first_chunk``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from tollgate import telemetry

openai = pytest.importorskip("openai")
pytest.importorskip("opentelemetry.util.genai.handler")
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as G  # noqa: E402
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as M  # noqa: E402
from opentelemetry.util.genai.handler import TelemetryHandler  # noqa: E402
from opentelemetry.util.genai.types import Error, InputMessage, OutputMessage, TextPart  # noqa: E402

from tests.telemetry.conftest import Measured  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
COUNT = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]
MODES = {"previous": None, "latest": "gen_ai_latest_experimental", "dup": "gen_ai_latest_experimental/dup"}
SERVER = {"server_address": "api.openai.com", "server_port": 443}
UTIL = "util-genai"  # the scope util-genai's handler reports under in these tests

Point = tuple[str, frozenset[tuple[str, Any]], tuple[Any, ...]]


def _drop_none(value: Any) -> Any:
    """util-genai serialises every dataclass field, unset ones as null; tollgate leaves them out."""
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def genai(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The conventions' attributes of a span (content parsed: the JSON text may differ in form)."""
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key.startswith(("gen_ai.", "server.", "error.")):
            is_content = key in (
                G.GEN_AI_INPUT_MESSAGES,
                G.GEN_AI_OUTPUT_MESSAGES,
                G.GEN_AI_SYSTEM_INSTRUCTIONS,
            )
            out[key] = _drop_none(json.loads(value)) if is_content else value
    return out


def spans_by_scope(spans: Any) -> dict[str, Any]:
    found = {s.instrumentation_scope.name: s for s in spans.get_finished_spans()}
    return {"tollgate": found["tollgate"], UTIL: found[UTIL]}


def points(measured: Measured, scope: str) -> set[Point]:
    """Every GenAI metric point a meter recorded: name, attributes and what the point says (the
    count of a duration, the count and sum of a token histogram, the value of a counter)."""
    measured.collect()
    out: set[Point] = set()
    for (meter, name), metric in measured.metrics.items():
        if meter != scope or not name.startswith("gen_ai."):
            continue
        for p in metric.data.data_points:
            if hasattr(p, "value"):
                said: tuple[Any, ...] = (p.value,)
            elif metric.unit == "s":  # durations: how many, not how long (the two clocks differ)
                said = (p.count,)
            else:
                said = (p.count, p.sum)
            out.add((name, frozenset(p.attributes.items()), said))
    return out


def translated(theirs: Iterable[Point], mode: str, failed: bool = False) -> set[Point]:
    """util-genai's points as tollgate emits them in ``mode`` (the migration guide's table)."""
    previous, latest = telemetry.conventions(MODES[mode])
    out: set[Point] = set()
    for name, attrs, said in theirs:
        a = dict(attrs)
        embeddings = a[G.GEN_AI_OPERATION_NAME] == "embeddings"
        if previous:
            out.add((name, attrs, said))
        if not latest:
            continue
        if name == M.GEN_AI_CLIENT_OPERATION_DURATION:
            new = telemetry.EMBEDDINGS_DURATION_METRIC if embeddings else telemetry.INFERENCE_DURATION_METRIC
            out.add((new, attrs, said))
        elif name == M.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK:
            out.add((telemetry.INFERENCE_TIME_TO_FIRST_CHUNK_METRIC, attrs, said))
        elif name == M.GEN_AI_CLIENT_TOKEN_USAGE:
            kind = a.pop(G.GEN_AI_TOKEN_TYPE)
            if embeddings:
                out.add((telemetry.EMBEDDINGS_INPUT_METRIC, frozenset(a.items()), said))
                continue
            histogram, counter = {
                "input": (telemetry.OPERATION_INPUT_METRIC, telemetry.USAGE_INPUT_METRIC),
                "output": (telemetry.OPERATION_OUTPUT_METRIC, telemetry.USAGE_OUTPUT_METRIC),
            }[kind]
            out.add((histogram, frozenset(a.items()), said))
            out.add((counter, frozenset({**a, telemetry.TOKEN_MODALITY: "unknown"}.items()), (said[1],)))
    if latest and failed:
        # The conventions count a failed inference as 0 tokens; util-genai 1.3b0 predates the counters.
        (duration,) = [p for p in theirs if p[0] == M.GEN_AI_CLIENT_OPERATION_DURATION]
        a = {k: v for k, v in duration[1] if k != "error.type"}
        for counter in (telemetry.USAGE_INPUT_METRIC, telemetry.USAGE_OUTPUT_METRIC):
            out.add((counter, frozenset({**a, telemetry.TOKEN_MODALITY: "unknown"}.items()), (0,)))
    return out


@pytest.fixture
def handler(semconv: Callable[[str | None], None]) -> Callable[[str], TelemetryHandler]:
    """``handler(mode)``: tollgate switched to ``mode``, and a util-genai handler on the same providers."""

    def make(mode: str) -> TelemetryHandler:
        semconv(MODES[mode])
        return TelemetryHandler(instrumentation_scope_name=UTIL)

    return make


def compare(
    spans: Any,
    measured: Measured,
    mode: str,
    failed: bool = False,
    ours_only: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Assert tollgate's span and metrics are util-genai's (in ``mode``), but for ``ours_only``,
    attributes only tollgate's span has (and must have); return the two spans."""
    both = spans_by_scope(spans)
    ours, theirs = both["tollgate"], both[UTIL]
    assert (ours.name, ours.kind, ours.status.status_code) == (
        theirs.name,
        theirs.kind,
        theirs.status.status_code,
    )
    a, b = genai(ours.attributes), genai(theirs.attributes)
    for key, value in (ours_only or {}).items():
        assert a.pop(key) == value
    if failed:  # tollgate says a failed call used 0 tokens; util-genai leaves an unknown usage unset
        a = {k: v for k, v in a.items() if not (k.startswith("gen_ai.usage.") and v == 0)}
    ttfc = G.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
    if ttfc in b:  # a time: the same attribute, each its own clock
        assert isinstance(a.pop(ttfc), float) and isinstance(b.pop(ttfc), float)
    assert a == b
    assert points(measured, "tollgate") == translated(points(measured, UTIL), mode, failed)
    return ours, theirs


@pytest.mark.parametrize("capture", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_chat(
    mode: str, capture: bool, handler, client, replay, spans, measured: Measured, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    if capture:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    util = handler(mode)
    previous = telemetry.in_force().previous
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)

    call = util.inference("openai", request_model="gpt-4o-mini", **SERVER)
    call.max_tokens = 50
    if previous:  # the previous conventions always said whether the call streamed
        call.request_stream = False
    call.input_messages = [InputMessage(m["role"], [TextPart(m["content"])]) for m in MESSAGES]
    call.output_messages = [
        OutputMessage("assistant", [TextPart("Paris.")], finish_reason="stop" if previous else None)
    ]
    call.response_model_name, call.response_id = "gpt-4o-mini-2024-07-18", "chatcmpl-tg0001"
    call.finish_reasons = ["stop"]
    call.input_tokens, call.output_tokens = 26, 2
    call.stop()

    ours, _ = compare(spans, measured, mode)
    assert (G.GEN_AI_INPUT_MESSAGES in (ours.attributes or {})) is capture


@pytest.mark.parametrize("mode", MODES)
def test_failed_chat(mode: str, handler, client, replay, spans, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    util = handler(mode)
    with replay("openai/chat_error_429.yaml"), pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    call = util.inference("openai", request_model="gpt-4o-mini", **SERVER)
    if telemetry.in_force().previous:
        call.request_stream = False
    # tollgate's error.type is the exception's class name; util-genai's default is qualified
    # (openai.RateLimitError): given here as tollgate names it.
    call.fail(Error(message="rate limited", type="RateLimitError"))

    compare(spans, measured, mode, failed=True)


@pytest.mark.parametrize("mode", MODES)
def test_streamed_chat(mode: str, handler, client, replay, spans, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    util = handler(mode)
    with replay("openai/chat_stream.yaml"):
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True):
            pass

    call = util.inference("openai", request_model="gpt-4o-mini", **SERVER)
    call.record_stream_chunk()  # the first chunk (later ones feed time_per_output_chunk: not mirrored)
    call.response_model_name, call.response_id = "gpt-4o-mini-2024-07-18", "chatcmpl-tg0004"
    call.finish_reasons = ["stop"]
    call.input_tokens, call.output_tokens = 20, 10
    call.stop()

    compare(spans, measured, mode)


@pytest.mark.parametrize("mode", MODES)
def test_embeddings(mode: str, handler, client, replay, spans, measured: Measured) -> None:  # type: ignore[no-untyped-def]
    util = handler(mode)
    inputs = ["The sea is vast.", "Paris is the capital of France."]
    with replay("openai/embeddings.yaml"):
        client.embeddings.create(model="text-embedding-3-small", input=inputs)

    call = util.embedding("openai", request_model="text-embedding-3-small", **SERVER)
    call.response_model_name = "text-embedding-3-small"
    call.input_tokens = 12
    call.stop()

    # The previous conventions' span: tollgate has always said these of an embeddings call too.
    previous = {G.GEN_AI_REQUEST_STREAM: False, G.GEN_AI_USAGE_OUTPUT_TOKENS: 0}
    compare(spans, measured, mode, ours_only=previous if telemetry.in_force().previous else None)


def test_system_instructions_given_apart(
    handler, claude, replay, spans, measured: Measured, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Anthropic's ``system`` is the latest conventions' ``gen_ai.system_instructions``. (Only the
    latest mode is util-genai's shape: the previous one keeps the system prompt among the messages.)"""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    util = handler("latest")
    ask = "What is the capital of France? Answer in one word."
    with replay("anthropic/messages_basic.yaml"):
        claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=1024,
            system="You are a terse assistant.",
            messages=[{"role": "user", "content": ask}],
        )

    call = util.inference(
        "anthropic", request_model="claude-sonnet-4-6", server_address="api.anthropic.com", server_port=443
    )
    call.max_tokens = 1024
    call.system_instruction = [TextPart("You are a terse assistant.")]
    call.input_messages = [InputMessage("user", [TextPart(ask)])]
    call.output_messages = [OutputMessage("assistant", [TextPart("Paris.")])]
    call.response_model_name, call.response_id = "claude-sonnet-4-6", "msg_tg0001"
    call.finish_reasons = ["end_turn"]
    call.input_tokens, call.output_tokens = 27, 5
    call.stop()

    ours, _ = compare(spans, measured, "latest")
    assert G.GEN_AI_SYSTEM_INSTRUCTIONS in (ours.attributes or {})
