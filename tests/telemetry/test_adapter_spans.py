"""What each adapter puts on the span beyond usage: the finish reasons always, the completion
when content capture is on; from real SDK calls (replayed), non-streamed and streamed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import tollgate
from tests.telemetry.test_spans import attrs, only_span

openai = pytest.importorskip("openai")

ASK = [{"role": "user", "content": "Name the capital of France in one word."}]
COUNT = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]


def completion(span_attrs: Any) -> str:
    (message,) = json.loads(span_attrs["gen_ai.output.messages"])
    return "".join(part["content"] for part in message["parts"] if part["type"] == "text")


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _openai_stream(c: Any) -> None:
    _drain(c.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True))


def _responses_stream(c: Any) -> None:
    _drain(
        c.responses.create(model="gpt-4o-mini", input="Name the capital of France in one word.", stream=True)
    )


CASES: list[tuple[str, str, Callable[[Any], Any], tuple[str, ...], str]] = [
    (
        "chat",
        "openai/chat_basic.yaml",
        lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=ASK),
        ("stop",),
        "Paris.",
    ),
    ("chat stream", "openai/chat_stream.yaml", _openai_stream, ("stop",), "One, two, three, four, five."),
    (
        "responses",
        "openai/responses_basic.yaml",
        lambda c: c.responses.create(model="gpt-4o-mini", input="Name the capital of France in one word."),
        ("completed",),
        "Paris.",
    ),
    (
        "responses stream",
        "openai/responses_stream.yaml",
        _responses_stream,
        ("completed",),
        "The capital of France is Paris, a city on the Seine.",
    ),
    (
        "completions",
        "openai/completions.yaml",
        lambda c: c.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say this is a test.", max_tokens=7
        ),
        ("stop",),
        "\n\nThis is a test.",
    ),
]


@pytest.mark.parametrize(("name", "cassette", "call", "reasons", "text"), CASES, ids=[c[0] for c in CASES])
def test_openai_finish_reasons_and_completion(
    name, cassette, call, reasons, text, client, replay, spans
) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(capture_content=True)
    with replay(cassette):
        call(client)
    a = attrs(only_span(spans))
    assert a["gen_ai.response.finish_reasons"] == reasons
    assert completion(a) == text


def test_nothing_of_the_completion_without_capture(client, replay, spans) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=ASK)
    a = attrs(only_span(spans))
    assert a["gen_ai.response.finish_reasons"] == ("stop",) and "gen_ai.output.messages" not in a


def test_anthropic_finish_reasons_and_completion(replay, spans) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("anthropic")
    from tests.providers.anthropic_helpers import COUNT as A_COUNT
    from tests.providers.anthropic_helpers import QUESTION, SONNET, SYSTEM, Sent, make_client

    tollgate.configure(capture_content=True)
    claude = make_client(Sent(), open_telemetry=False)
    with replay("anthropic/messages_basic.yaml"):
        claude.messages.create(model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION)
    a = attrs(only_span(spans))
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",) and completion(a) == "Paris."
    spans.clear()
    with (
        replay("anthropic/messages_stream.yaml"),
        claude.messages.stream(model=SONNET, max_tokens=1024, messages=A_COUNT) as stream,
    ):
        text = stream.get_final_text()
    a = attrs(only_span(spans))
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",) and completion(a) == text


def test_gemini_finish_reasons_and_completion(replay, spans) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("google.genai")
    from tests.providers.gemini_helpers import CAPITAL, Wire, gemini_client
    from tests.providers.gemini_helpers import COUNT as G_COUNT

    tollgate.configure(capture_content=True)
    gemini = gemini_client(Wire())
    with replay("gemini/generate_basic.yaml"):
        response = gemini.models.generate_content(model="gemini-2.5-flash", contents=CAPITAL)
    a = attrs(only_span(spans))
    assert a["gen_ai.response.finish_reasons"] == ("STOP",) and completion(a) == response.text
    spans.clear()
    with replay("gemini/stream_basic.yaml"):
        text = "".join(
            c.text or ""
            for c in gemini.models.generate_content_stream(model="gemini-2.5-flash", contents=G_COUNT)
        )
    a = attrs(only_span(spans))
    assert a["gen_ai.response.finish_reasons"] == ("STOP",) and completion(a) == text
