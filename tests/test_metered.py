"""@tollgate.metered: any function, with the real SDKs (not instrumented) over recorded HTTP."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import tollgate
from tests.conftest import Sent
from tollgate.pricing import default_table
from tollgate.pricing.tokens import count_text

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

# The recorded Anthropic cassettes name a model the SDK now warns about.
pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-3-5-haiku:DeprecationWarning")

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
COUNT = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]


def records() -> list[tollgate.CallRecord]:
    return tollgate.config.settings().ledger.records()


def only_record() -> tollgate.CallRecord:
    (record,) = records()
    return record


def price(model: str, provider: str = "openai") -> Any:
    p = default_table().lookup(model, provider)
    assert p is not None
    return p


@pytest.fixture
def raw(sent: Sent) -> Any:
    """A plain (not instrumented) OpenAI client: the metered door is the only one."""
    return openai.OpenAI(
        api_key="sk-test", max_retries=0, http_client=httpx.Client(event_hooks={"request": [sent.hook]})
    )


@pytest.fixture
def araw(sent: Sent) -> Any:
    return openai.AsyncOpenAI(
        api_key="sk-test", max_retries=0, http_client=httpx.AsyncClient(event_hooks={"request": [sent.ahook]})
    )


# -- plain functions: usage recognised or extracted ------------------------------------------------


def test_openai_sdk_response_is_recognised_and_priced(raw, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered(model="gpt-4o-mini")
    def ask(messages: list[dict[str, str]]) -> Any:
        return raw.chat.completions.create(model="gpt-4o-mini", messages=messages)

    with replay("openai/chat_basic.yaml"), tollgate.track(feature="faq"):
        reply = ask(MESSAGES)
    assert reply.choices[0].message.content == "Paris."
    record = only_record()
    assert (record.provider, record.request_model, record.response_model) == (
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
    )
    assert (record.usage.input_tokens, record.usage.output_tokens) == (26, 2)
    assert not record.estimated and record.status == "ok" and dict(record.tags) == {"feature": "faq"}
    p = price("gpt-4o-mini-2024-07-18")
    assert record.usd == pytest.approx(26 * p.input + 2 * p.output, abs=1e-15)
    assert tollgate.report(group_by="feature").total["calls"] == 1


def test_raw_httpx_json_without_a_model_learns_it_from_the_response(replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered
    def post(body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(
            "https://api.openai.com/v1/chat/completions", json=body, headers={"authorization": "x"}
        )
        return r.json()  # type: ignore[no-any-return]

    with replay("openai/chat_basic.yaml"):
        data = post({"model": "gpt-4o-mini", "messages": MESSAGES})
    assert data["usage"]["prompt_tokens"] == 26
    record = only_record()
    assert (record.provider, record.request_model, record.response_model) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini-2024-07-18",
    )
    assert (record.usage.input_tokens, record.usage.output_tokens, record.estimated) == (26, 2, False)
    assert record.usd > 0


def test_anthropic_sdk_message_is_recognised(replay) -> None:  # type: ignore[no-untyped-def]
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(api_key="sk-ant-test", max_retries=0)

    @tollgate.metered(model="claude-3-5-haiku-20241022")
    def ask(prompt: str) -> Any:
        return client.messages.create(
            model="claude-3-5-haiku-20241022", max_tokens=64, messages=[{"role": "user", "content": prompt}]
        )

    with replay("anthropic/messages_basic.yaml"):
        message = ask("Name the capital of France in one word.")
    record = only_record()
    assert record.provider == "anthropic"
    assert (record.usage.input_tokens, record.usage.output_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert record.response_model == message.model and not record.estimated and record.usd > 0


def test_gemini_sdk_response_is_recognised(replay) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("google.genai")
    from tests.providers.gemini_helpers import Wire, genai

    wire = Wire()
    client = genai.Client(api_key="test-key", http_options=wire.http_options())

    @tollgate.metered(model="gemini-2.5-flash", provider="gemini")
    def ask(prompt: str) -> Any:
        return client.models.generate_content(model="gemini-2.5-flash", contents=prompt)

    with replay("gemini/generate_basic.yaml"):
        response = ask("Name the capital of France in one word.")
    record = only_record()
    meta = response.usage_metadata
    assert record.provider == "gemini"
    assert record.usage.input_tokens == meta.prompt_token_count
    assert record.usage.output_tokens == (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    assert not record.estimated and record.usd > 0


@dataclass
class HouseReply:
    model: str
    tokens_in: int
    tokens_out: int
    text: str


def test_extract_usage_tuple_for_a_house_sdk_priced_by_configured_prices() -> None:
    tollgate.configure(prices={"house-model-v2": {"input": 1e-6, "output": 2e-6}})
    calls = []

    @tollgate.metered(model="house-model-v2", extract_usage=lambda r: (r.model, r.tokens_in, r.tokens_out))
    def call_house_llm(prompt: str) -> HouseReply:
        calls.append(prompt)
        return HouseReply("house-model-v2", 1200, 300, "ok")

    assert call_house_llm("hello").text == "ok"
    record = only_record()
    assert (record.request_model, record.usage.input_tokens, record.usage.output_tokens) == (
        "house-model-v2",
        1200,
        300,
    )
    assert record.usd == pytest.approx(1200e-6 + 600e-6)
    assert calls == ["hello"] and call_house_llm.__name__ == "call_house_llm"


def test_extract_usage_may_return_a_usage() -> None:
    @tollgate.metered(
        model="gpt-4o",
        extract_usage=lambda r: tollgate.Usage(
            input_tokens=r["i"], output_tokens=r["o"], cache_read_tokens=r["c"]
        ),
    )
    def f() -> dict[str, int]:
        return {"i": 2000, "o": 100, "c": 1024}

    f()
    record = only_record()
    p = price("gpt-4o")
    assert record.usage.cache_read_tokens == 1024
    assert record.usd == pytest.approx(976 * p.input + 1024 * p.cache_read + 100 * p.output)


def test_broken_extract_usage_never_breaks_the_call(caplog: pytest.LogCaptureFixture) -> None:
    @tollgate.metered(model="gpt-4o-mini", extract_usage=lambda r: r.no_such_field)
    def f(prompt: str) -> str:
        return "Paris is the capital of France."

    with caplog.at_level(logging.WARNING, logger="tollgate"):
        assert f("capital of France?") == "Paris is the capital of France."
        f("again")
    first, second = records()
    assert second.estimated
    assert first.estimated and first.status == "ok"
    assert first.usage.output_tokens == count_text("Paris is the capital of France.", "gpt-4o-mini", "openai")
    assert first.usage.input_tokens > 0  # the prompt argument was counted pre-flight
    assert caplog.text.count("extract_usage failed") == 1  # warned once per function


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-4o", "usage": {"prompt_tokens": -3, "completion_tokens": 5}},
        {"model": "gpt-4o", "usage": {"prompt_tokens": "many", "completion_tokens": 5}},
        {"type": "message", "usage": None, "content": [{"type": "text", "text": "hi"}]},
        {"usageMetadata": {"promptTokenCount": True}},
    ],
)
def test_malformed_usage_is_estimated_not_trusted(body: dict[str, Any]) -> None:
    @tollgate.metered(model="gpt-4o")
    def f() -> dict[str, Any]:
        return body

    assert f() is body
    record = only_record()
    assert record.estimated and record.usage.input_tokens >= 0 and record.usage.output_tokens >= 0


def test_unrecognised_result_without_model_is_recorded_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    @tollgate.metered
    def f() -> int:
        return 42

    with caplog.at_level(logging.WARNING, logger="tollgate"):
        assert f() == 42
    record = only_record()
    assert record.estimated and record.usage.total_tokens == 0 and record.request_model == ""
    assert "pass extract_usage=" in caplog.text


def test_function_error_is_recorded_and_propagates_unchanged() -> None:
    class HouseError(RuntimeError):
        pass

    @tollgate.metered(model="gpt-4o-mini")
    def f() -> None:
        raise HouseError("upstream 503")

    with pytest.raises(HouseError, match="upstream 503"):
        f()
    record = only_record()
    assert record.status == "error" and record.error == "HouseError" and record.usd == 0


def test_instrumented_client_inside_is_counted_once(sent: Sent, replay) -> None:  # type: ignore[no-untyped-def]
    inner = tollgate.instrument(openai.OpenAI(api_key="sk-test", max_retries=0))

    @tollgate.metered(model="gpt-4o-mini")
    def ask() -> Any:
        return inner.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with replay("openai/chat_basic.yaml"):
        ask()
    assert len(records()) == 1 and only_record().usage.input_tokens == 26


def test_bad_configuration_fails_at_decoration() -> None:
    with pytest.raises(ValueError, match="extract_usage"):
        tollgate.metered(extract_usage="r.usage")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"metered\(provider=''\)"):
        tollgate.metered(provider="")


def test_unpriced_model_raises_before_the_function_runs_when_configured() -> None:
    tollgate.configure(on_unpriced="raise")
    ran = []

    @tollgate.metered(model="house-model-unpriced")
    def f() -> str:
        ran.append(1)
        return "x"

    with pytest.raises(tollgate.UnpricedModelError):
        f()
    assert ran == [] and only_record().status == "error"


# -- budgets --------------------------------------------------------------------------------------


def test_block_refuses_before_the_function_runs() -> None:
    ran = []

    @tollgate.metered(model="gpt-4o")
    def f(prompt: str, max_tokens: int = 1000) -> str:
        ran.append(prompt)
        return "x"

    with tollgate.budget(usd=0.0001, on_exceed="block"), pytest.raises(tollgate.BudgetExceeded) as info:
        f("write a long essay")
    assert ran == [] and info.value.action == "block"
    assert only_record().status == "blocked"


def test_downgrade_passes_the_cheaper_model_to_the_function(raw, sent: Sent, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered
    def ask(messages: list[dict[str, str]], model: str = "gpt-4o") -> Any:
        return raw.chat.completions.create(model=model, messages=messages, max_tokens=1000)

    with (
        replay("openai/chat_basic.yaml"),
        tollgate.budget(usd=0.02, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
    ):
        ask(MESSAGES)
    assert sent[0]["model"] == "gpt-4o-mini"
    record = only_record()
    assert record.request_model == "gpt-4o"  # what was asked; the decision says what was sent
    assert record.decisions[0] == {"action": "downgrade", "from": "gpt-4o", "to": "gpt-4o-mini"}
    p = price("gpt-4o-mini-2024-07-18")
    assert record.usd == pytest.approx(26 * p.input + 2 * p.output, abs=1e-15)


def test_downgrade_does_not_apply_without_a_model_parameter() -> None:
    @tollgate.metered(model="gpt-4o")
    def f(prompt: str) -> str:
        return "x"

    with (
        tollgate.budget(usd=0.001, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
        pytest.raises(tollgate.BudgetExceeded, match="downgrade does not apply"),
    ):
        f("hello")
    record = only_record()
    assert record.status == "blocked"
    assert record.decisions[0]["skipped"] == "downgrade"


def test_clamp_sets_the_output_cap_argument() -> None:
    got = []

    @tollgate.metered(model="gpt-4o")
    def f(prompt: str, max_tokens: int = 4000) -> dict[str, Any]:
        got.append(max_tokens)
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": max_tokens}}

    with tollgate.budget(usd=0.002, on_exceed="clamp"):
        f("hello")
    (cap,) = got
    assert 16 <= cap < 4000
    assert only_record().decisions[0]["action"] == "clamp"


def test_truncate_drops_old_turns_from_the_messages_argument() -> None:
    got: list[list[dict[str, str]]] = []
    history = [{"role": "system", "content": "Be brief."}]
    for i in range(40):
        history += [
            {"role": "user", "content": f"question {i} " * 50},
            {"role": "assistant", "content": "ok " * 50},
        ]
    history.append({"role": "user", "content": "And now?"})

    @tollgate.metered(model="gpt-4o")
    def chat(messages: list[dict[str, str]], max_tokens: int = 100) -> str:
        got.append(messages)
        return "fine"

    with tollgate.budget(tokens=2000, on_exceed="truncate"):
        chat(history)
    (sent_messages,) = got
    assert sent_messages[0] == history[0] and sent_messages[-1] == history[-1]
    assert len(sent_messages) < len(history)
    assert only_record().decisions[-1]["action"] == "truncate"


def test_without_a_model_budgets_apply_post_flight() -> None:
    ran = []

    @tollgate.metered
    def f() -> dict[str, Any]:
        ran.append(1)
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 10_000, "completion_tokens": 1000}}

    cost = 10_000 * price("gpt-4o").input + 1000 * price("gpt-4o").output  # $0.035
    with tollgate.budget(usd=0.05, on_exceed="block"):
        f()  # $0.035 of $0.05: fine
        with pytest.raises(tollgate.BudgetExceeded) as info:
            f()  # it ran ($0.070), and crossed the cap: raised after
        assert info.value.action == "raise" and len(ran) == 2
        with pytest.raises(tollgate.BudgetExceeded) as info:
            f()  # the cap is crossed: refused before it runs
        assert info.value.action == "block" and len(ran) == 2
    ok, over, blocked = records()
    assert (ok.status, over.status, blocked.status) == ("ok", "ok", "blocked")
    assert over.usd == pytest.approx(cost)


# -- streams and generators -----------------------------------------------------------------------


def test_function_returning_an_sdk_stream(raw, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered(model="gpt-4o-mini")
    def stream(messages: list[dict[str, str]]) -> Any:
        return raw.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )

    with replay("openai/chat_stream.yaml"):
        returned = stream(COUNT)
        assert records() == []  # settled when the stream ends, not when it is returned
        chunks = list(returned)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "One, two, three, four, five."
    )
    record = only_record()
    assert record.stream and record.status == "ok" and not record.estimated
    assert (record.usage.input_tokens, record.usage.output_tokens) == (20, 10)


def test_generator_of_text_is_estimated_from_what_it_yields(raw, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered(model="gpt-4o-mini")
    def words(messages: list[dict[str, str]]) -> Iterator[str]:
        for chunk in raw.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    gen = words(COUNT)
    assert records() == []  # nothing runs until it is iterated
    with replay("openai/chat_stream.yaml"):
        text = "".join(gen)
    record = only_record()
    assert text == "One, two, three, four, five."
    assert record.estimated and record.status == "ok"
    assert record.usage.output_tokens == count_text(text, "gpt-4o-mini", "openai")
    assert record.usage.input_tokens == tollgate.estimate("gpt-4o-mini", COUNT).input_tokens


def test_generator_of_chunks_reads_their_usage_and_closing_early_is_abandoned(raw, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered(model="gpt-4o-mini")
    def chunks(messages: list[dict[str, str]]) -> Iterator[Any]:
        yield from raw.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)

    with replay("openai/chat_stream.yaml", allow_playback_repeats=True):
        list(chunks(COUNT))
        gen = chunks(COUNT)
        next(gen), next(gen), next(gen)
        gen.close()
    full, early = records()
    assert (full.usage.output_tokens, full.estimated, full.status) == (10, False, "ok")
    assert early.status == "abandoned" and early.estimated
    # The stream's provider may have generated up to the output cap before it saw the close:
    # charged what pre-flight reserved (the model's maximum output); what was read is counted.
    assert early.usage.output_tokens == tollgate.estimate("gpt-4o-mini", COUNT).output_tokens
    assert early.decisions[-1]["chunks_read"] == 3 and 0 < early.decisions[-1]["output_tokens_counted"] < 10


def test_dropped_generator_is_still_recorded(raw, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered(model="gpt-4o-mini")
    def chunks() -> Iterator[Any]:
        yield from raw.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True)

    with replay("openai/chat_stream.yaml"):
        gen = chunks()
        next(gen)
        del gen
        gc.collect()
    assert only_record().status == "abandoned"


def test_generator_error_mid_stream_is_recorded() -> None:
    @tollgate.metered(model="gpt-4o-mini")
    def gen() -> Iterator[str]:
        yield "Hello"
        raise ConnectionError("reset by peer")

    with pytest.raises(ConnectionError):
        list(gen())
    record = only_record()
    assert record.status == "error" and record.estimated and record.usage.output_tokens == 1


# -- async ----------------------------------------------------------------------------------------


async def test_async_function_with_the_async_sdk(araw, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered(model="gpt-4o-mini")
    async def ask() -> Any:
        return await araw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert asyncio.iscoroutinefunction(ask)
    with replay("openai/chat_basic.yaml"):
        await ask()
    record = only_record()
    assert (record.usage.input_tokens, record.usage.output_tokens, record.estimated) == (26, 2, False)


async def test_sync_function_returning_an_sdk_coroutine(araw, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered(model="gpt-4o-mini")
    def ask() -> Any:
        return araw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with replay("openai/chat_basic.yaml"):
        reply = await ask()
    assert reply.choices[0].message.content == "Paris."
    assert only_record().usage.input_tokens == 26


async def test_async_function_returning_an_async_stream(araw, replay) -> None:  # type: ignore[no-untyped-def]
    @tollgate.metered(model="gpt-4o-mini")
    async def stream() -> Any:
        return await araw.chat.completions.create(
            model="gpt-4o-mini", messages=COUNT, stream=True, stream_options={"include_usage": True}
        )

    with replay("openai/chat_stream.yaml"):
        text = "".join([c.choices[0].delta.content or "" async for c in await stream() if c.choices])
    assert text == "One, two, three, four, five."
    record = only_record()
    assert (record.usage.output_tokens, record.stream, record.estimated) == (10, True, False)


async def test_async_generator_of_anthropic_events(replay) -> None:  # type: ignore[no-untyped-def]
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", max_retries=0)

    @tollgate.metered(model="claude-3-5-haiku-20241022")
    async def events(prompt: str) -> AsyncIterator[Any]:
        stream = await client.messages.create(
            model="claude-3-5-haiku-20241022",
            max_tokens=256,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
        )
        async for event in stream:
            yield event

    with replay("anthropic/messages_stream.yaml"):
        seen = [e async for e in events("Count from one to five.")]
    final = [e for e in seen if e.type == "message_delta"][-1]
    record = only_record()
    assert record.provider == "anthropic" and record.stream and not record.estimated
    assert record.usage.output_tokens == final.usage.output_tokens


async def test_async_generator_closed_early_is_abandoned() -> None:
    @tollgate.metered(model="gpt-4o-mini")
    async def words() -> AsyncIterator[str]:
        for w in ("one", " two", " three", " four"):
            yield w

    gen = words()
    assert [await gen.__anext__(), await gen.__anext__()] == ["one", " two"]
    await gen.aclose()
    record = only_record()
    assert record.status == "abandoned"  # charged what it reserved: what it read is counted
    assert record.usage.output_tokens == tollgate.estimate("gpt-4o-mini", []).output_tokens
    assert record.decisions[-1]["output_tokens_counted"] == count_text("one two", "gpt-4o-mini")


async def test_async_block_refuses_before_the_function_runs() -> None:
    ran = []

    @tollgate.metered(model="gpt-4o")
    async def f(prompt: str) -> str:
        ran.append(1)
        return "x"

    with tollgate.budget(usd=1e-6, on_exceed="block"), pytest.raises(tollgate.BudgetExceeded):
        await f("hello")
    assert ran == [] and only_record().status == "blocked"


def test_extract_usage_on_stream_chunks_last_usage_wins() -> None:
    def usage(chunk: dict[str, Any]) -> Any:
        return ("house-model-v2", chunk["in"], chunk["out"]) if "in" in chunk else None

    tollgate.configure(prices={"house-model-v2": {"input": 1e-6, "output": 2e-6}})

    @tollgate.metered(model="house-model-v2", extract_usage=usage)
    def stream(prompt: str) -> Iterator[dict[str, Any]]:
        yield {"text": "Hel"}
        yield {"text": "lo", "in": 40, "out": 1}  # a running count
        yield {"text": "!", "in": 40, "out": 3}  # the final one

    assert [c["text"] for c in stream("hi")] == ["Hel", "lo", "!"]
    record = only_record()
    assert (record.usage.input_tokens, record.usage.output_tokens, record.estimated) == (40, 3, False)
    assert record.usd == pytest.approx(40e-6 + 6e-6)


def test_methods_can_be_metered() -> None:
    class Gateway:
        def __init__(self) -> None:
            self.calls = 0

        @tollgate.metered(extract_usage=lambda r: ("gpt-4o-mini", r[0], r[1]))
        def ask(self, prompt: str, model: str = "gpt-4o-mini") -> tuple[int, int]:
            self.calls += 1
            return (100, 10)

    g = Gateway()
    assert g.ask("hello") == (100, 10) and g.calls == 1
    assert only_record().request_model == "gpt-4o-mini" and only_record().usd > 0
