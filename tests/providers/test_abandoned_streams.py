"""A stream its reader drops early cannot defeat a budget's cap (issue 17, item 2).

The provider is a real HTTP server on loopback (:mod:`tests.providers.streaming_provider`)
that streams each provider's documented SSE format, paced like a model or as fast as the
socket takes it, and bills every output token it wrote before it saw the client's connection
close. The SDKs are the real ones, on their own HTTP stack. The reader takes three chunks,
works for 0.3 s and drops the stream: closed, left by a ``with`` block, or garbage-collected,
sync and async. Then, against what the provider itself counted:

- its spend (priced at tollgate's price for the model) is within the cap;
- there is one record, ``"abandoned"``, with an ``Abandoned`` step that says what was read,
  drained, counted and charged: the provider's own usage when it had finished and that had
  arrived (not estimated), else the reservation (estimated);
- the budget was charged at least the provider's spend, and holds nothing;
- the next call, which the cap has no room for, is refused before it reaches the provider.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
genai = pytest.importorskip("google.genai")

import tollgate  # noqa: E402
from tests.providers.streaming_provider import Served, StreamingProvider  # noqa: E402
from tollgate.budgets.scope import active_budgets  # noqa: E402
from tollgate.config import settings  # noqa: E402
from tollgate.decisions import Abandoned, step_from_dict  # noqa: E402
from tollgate.pricing import cost  # noqa: E402
from tollgate.pricing.estimate import lookup_price  # noqa: E402
from tollgate.pricing.tokens import count_text  # noqa: E402
from tollgate.request import CallRecord, Usage  # noqa: E402
from tollgate.stores.base import Charge  # noqa: E402
from tollgate.stores.windows import now as store_clock  # noqa: E402

MESSAGES = [{"role": "user", "content": "Write a long story about the sea."}]
PROMPT = 15  # what the stand-in provider bills for the prompt (tollgate estimates at least this)
CAP = 400  # the output cap each request asks for: what pre-flight reserves
PACE = 0.002  # seconds per token of a paced provider: ~150 tokens while the reader works
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "gemini": "gemini-2.5-flash"}
PROVIDERS = {"openai": "openai_compatible:127.0.0.1", "anthropic": "anthropic", "gemini": "gemini"}

# -- the SDKs, sync and async --------------------------------------------------------------------


def client(sdk: str, provider: StreamingProvider, *, is_async: bool = False) -> Any:
    url = provider.url(sdk)
    if sdk == "openai":
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        return tollgate.instrument(cls(base_url=url, api_key="sk-test", max_retries=0))
    if sdk == "anthropic":
        cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        return tollgate.instrument(cls(base_url=url, api_key="sk-ant-test", max_retries=0))
    return tollgate.instrument(genai.Client(api_key="test", http_options={"base_url": url}))


def open_stream(sdk: str, c: Any, **extra: Any) -> Any:
    """A stream of the request every test makes (sync)."""
    model = MODELS[sdk]
    if sdk == "openai":
        return c.chat.completions.create(model=model, messages=MESSAGES, max_tokens=CAP, stream=True, **extra)
    if sdk == "anthropic":
        return c.messages.create(model=model, messages=MESSAGES, max_tokens=CAP, stream=True, **extra)
    config = {"max_output_tokens": CAP}
    return c.models.generate_content_stream(model=model, contents=MESSAGES[0]["content"], config=config)


async def aopen_stream(sdk: str, c: Any) -> Any:
    model = MODELS[sdk]
    if sdk == "openai":
        return await c.chat.completions.create(model=model, messages=MESSAGES, max_tokens=CAP, stream=True)
    if sdk == "anthropic":
        return await c.messages.create(model=model, messages=MESSAGES, max_tokens=CAP, stream=True)
    config = {"max_output_tokens": CAP}
    return await c.aio.models.generate_content_stream(
        model=model, contents=MESSAGES[0]["content"], config=config
    )


def manager(sdk: str, c: Any) -> Any:
    """The SDK's ``.stream()`` helper (a manager that sends when entered)."""
    if sdk == "openai":
        return c.chat.completions.stream(model=MODELS[sdk], messages=MESSAGES, max_tokens=CAP)
    return c.messages.stream(model=MODELS[sdk], messages=MESSAGES, max_tokens=CAP)


# -- the reader: three chunks, 0.3 s of work, then it lets go ---------------------------------------


def work(stream: Any) -> None:
    for _ in range(3):
        next(stream)
    time.sleep(0.3)


async def awork(stream: Any) -> None:
    for _ in range(3):
        await stream.__anext__()
    await asyncio.sleep(0.3)


def drop_sync(sdk: str, c: Any, style: str) -> None:
    if style == "close":  # break out of the loop, then close
        stream = open_stream(sdk, c)
        work(stream)
        stream.close()
    elif style == "gc":  # never closed: the last reference goes
        stream = open_stream(sdk, c)
        work(stream)
        del stream
        gc.collect()
    elif style == "with":  # the with block is left early
        with open_stream(sdk, c) as stream:
            work(stream)
    elif style == "manager":
        with manager(sdk, c) as stream:
            work(stream)


async def drop_async(sdk: str, c: Any, style: str) -> None:
    if style == "aclose":
        stream = await aopen_stream(sdk, c)
        await awork(stream)
        await (stream.aclose() if sdk == "gemini" else stream.close())
    elif style == "gc":
        stream = await aopen_stream(sdk, c)
        await awork(stream)
        del stream
        gc.collect()
        await asyncio.sleep(0.05)  # the loop finalises the SDK's async generators
    elif style == "with":
        async with await aopen_stream(sdk, c) as stream:
            await awork(stream)
    elif style == "manager":
        async with manager(sdk, c) as stream:
            await awork(stream)


# -- what the budget holds ------------------------------------------------------------------------


def standing() -> tuple[float, float]:
    """Spent and reserved (USD) of the budget in force."""
    (frame,) = active_budgets()
    (state,) = settings().store.read(
        [Charge(frame.counter({}) + ":usd", frame.spec.window, None, 0.0)], store_clock()
    )
    return state.spent, state.reserved


def records() -> list[CallRecord]:
    return list(settings().ledger.records())


def provider_usd(sdk: str, served: Served) -> float:
    """What the provider billed, priced as tollgate prices the model."""
    price = lookup_price(settings(), MODELS[sdk], PROVIDERS[sdk])
    assert price is not None
    return cost(price, Usage(input_tokens=served.prompt_tokens, output_tokens=served.output_tokens))


def reservation_usd(sdk: str) -> float:
    """What pre-flight holds for one call: the most it can cost (the estimated prompt, which is
    at least the provider's, and the output cap)."""
    price = lookup_price(settings(), MODELS[sdk], PROVIDERS[sdk])
    assert price is not None
    return cost(price, Usage(input_tokens=2 * PROMPT, output_tokens=CAP))


@dataclass
class Dropped:
    served: Served
    record: CallRecord
    step: Abandoned
    spent: float
    reserved: float
    cap: float


def check_dropped(sdk: str, provider: StreamingProvider, cap: float) -> Dropped:
    """The assertions every dropped stream must pass, once the provider saw the connection end."""
    (served,) = provider.wait(1)
    (record,) = records()
    step = record.decisions[-1]
    assert isinstance(step, Abandoned), record.decisions
    spent, reserved = standing()
    spend = provider_usd(sdk, served)
    assert spend <= cap, f"the provider generated {spend / cap:.0%} of the cap"
    assert record.status == "abandoned" and record.stream
    assert step.read == 3 and step.counted > 0
    if step.basis == "usage":  # the provider had finished and its usage had arrived: as billed
        assert served.finished and not record.estimated
        assert step.charged == record.usage.output_tokens == served.output_tokens
        assert record.usd == pytest.approx(spend)
    elif step.basis == "text":  # it had finished, its usage not yet read: counted from the whole text
        assert served.finished and record.estimated
        assert step.charged == record.usage.output_tokens > 0
    else:  # it had not: the reservation, the most it can have generated
        assert step.basis == "reservation" and record.estimated
        assert step.charged == record.usage.output_tokens == CAP >= served.output_tokens
    assert reserved == 0.0  # no hold left behind
    assert spent == pytest.approx(record.usd) and spent >= spend
    return Dropped(served, record, step, spent, reserved, cap)


@pytest.fixture(params=["paced", "unpaced"])
def provider(request: pytest.FixtureRequest) -> Iterator[StreamingProvider]:
    with StreamingProvider(pace=PACE if request.param == "paced" else 0.0, prompt_tokens=PROMPT) as p:
        yield p


SYNC = [
    *[(sdk, style) for sdk in ("openai", "anthropic") for style in ("close", "gc", "with", "manager")],
    ("gemini", "close"),
    ("gemini", "gc"),
]
ASYNC = [
    *[(sdk, style) for sdk in ("openai", "anthropic") for style in ("aclose", "gc", "with", "manager")],
    ("gemini", "aclose"),
    ("gemini", "gc"),
]

# -- the cap holds --------------------------------------------------------------------------------


@pytest.mark.parametrize(("sdk", "style"), SYNC)
def test_a_dropped_stream_cannot_take_the_provider_past_the_cap(
    sdk: str, style: str, provider: StreamingProvider
) -> None:
    c = client(sdk, provider)
    cap = 1.5 * reservation_usd(sdk)  # room for one call's hold, not two
    with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
        drop_sync(sdk, c, style)
        dropped = check_dropped(sdk, provider, cap)
        if provider.pace:  # the close (the finaliser's, dropped) stops a paced provider early
            assert dropped.served.closed_early and dropped.served.output_tokens < CAP
        with pytest.raises(tollgate.BudgetExceeded) as refused:
            open_stream(sdk, c)
    assert refused.value.action == "block"
    assert provider.requests == 1  # the refused call never reached the provider
    assert [r.status for r in records()] == ["abandoned", "blocked"]


@pytest.mark.parametrize(("sdk", "style"), ASYNC)
async def test_an_async_dropped_stream_cannot_take_the_provider_past_the_cap(
    sdk: str, style: str, provider: StreamingProvider
) -> None:
    c = client(sdk, provider, is_async=True)
    cap = 1.5 * reservation_usd(sdk)
    with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
        await drop_async(sdk, c, style)
        check_dropped(sdk, provider, cap)
        with pytest.raises(tollgate.BudgetExceeded):
            await aopen_stream(sdk, c)
    assert provider.requests == 1
    assert [r.status for r in records()] == ["abandoned", "blocked"]


# -- what was read, and on what it was charged ---------------------------------------------------------


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_stream_still_running_is_charged_its_reservation(sdk: str) -> None:
    with StreamingProvider(pace=PACE, prompt_tokens=PROMPT) as provider:
        c = client(sdk, provider)
        with tollgate.budget(usd=1.0, per="day", name="abandon"):
            stream = open_stream(sdk, c)
            work(stream)
            stream.close()
            dropped = check_dropped(sdk, provider, 1.0)
    step = dropped.step
    assert step.basis == "reservation" and dropped.record.estimated
    # Everything the provider had sent was read, without waiting for more: the tokens it wrote
    # before it saw the close, less those it wrote between the end of that reading and the
    # close (a few at its pace; the first events, OpenAI's role chunk and Anthropic's
    # message_start and content_block_start, are no tokens).
    tokens_read = step.read + step.drained - {"openai": 1, "anthropic": 2}[sdk]
    assert dropped.served.output_tokens - 25 <= tokens_read <= dropped.served.output_tokens
    assert step.as_dict() == {
        "abandoned": "reservation",
        "chunks_read": 3,
        "chunks_drained": step.drained,
        "output_tokens_counted": step.counted,
        "output_tokens_charged": CAP,
    }


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_provider_that_had_finished_is_charged_its_own_usage(sdk: str) -> None:
    """The answer (50 tokens, a natural stop) had all arrived when the reader let go: tollgate
    reads on to the provider's usage, and the budget keeps room for the next call."""
    with StreamingProvider(pace=0.0, prompt_tokens=PROMPT, length=50) as provider:
        c = client(sdk, provider)
        cap = 1.5 * reservation_usd(sdk)
        with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
            stream = open_stream(sdk, c)
            work(stream)
            stream.close()
            dropped = check_dropped(sdk, provider, cap)
            assert dropped.step.basis == "usage" and not dropped.record.estimated
            assert dropped.record.usage.output_tokens == 50
            assert dropped.spent == pytest.approx(provider_usd(sdk, dropped.served))
            for _ in open_stream(sdk, c):  # room for the next call: it runs to its end
                pass
        assert [r.status for r in records()] == ["abandoned", "ok"]


def test_a_provider_that_finished_without_usage_is_estimated_from_its_text() -> None:
    """An OpenAI-compatible provider that ignores ``include_usage``: the answer had ended when
    the reader let go, so its text is counted (as for any stream without usage), not the cap."""
    with StreamingProvider(pace=0.0, prompt_tokens=PROMPT, length=50, send_usage=False) as provider:
        c = client("openai", provider)
        with tollgate.budget(usd=1.0, per="day", name="abandon"):
            stream = open_stream("openai", c)
            work(stream)
            stream.close()
            # tollgate read the response to its end over a socket shut for reading: the pool
            # must not hand that connection to the next call (no retries here to hide it).
            assert len(list(open_stream("openai", c))) == 52  # role, 50 tokens, finish
        abandoned, ok = records()
    step = abandoned.decisions[-1]
    assert isinstance(step, Abandoned) and step.basis == "text" and step.read + step.drained == 52
    counted = count_text(" the" * 50, MODELS["openai"], PROVIDERS["openai"])
    assert abandoned.estimated and abandoned.usage.output_tokens == step.charged == counted < CAP
    assert ok.status == "ok"


def test_reading_on_never_waits_for_the_provider() -> None:
    """A slow provider still streaming: closing reads what arrived and returns, at once."""
    with StreamingProvider(pace=0.25, prompt_tokens=PROMPT) as provider:
        c = client("openai", provider)
        with tollgate.budget(usd=1.0, per="day", name="abandon"):
            stream = open_stream("openai", c)
            for _ in range(3):
                next(stream)
            started = time.perf_counter()
            stream.close()
            took = time.perf_counter() - started
            check_dropped("openai", provider, 1.0)
    assert took < 0.2  # less than one token of the provider's pace


# -- streams that were not abandoned ---------------------------------------------------------------


@pytest.mark.parametrize("sdk", ["openai", "anthropic", "gemini"])
def test_a_stream_read_to_its_end_is_billed_as_reported(sdk: str) -> None:
    with StreamingProvider(pace=0.0, prompt_tokens=PROMPT, length=50) as provider:
        c = client(sdk, provider)
        with tollgate.budget(usd=1.0, per="day", name="abandon"):
            chunks = list(open_stream(sdk, c))
            spent, reserved = standing()
        (served,) = provider.wait(1)
        (record,) = records()
    assert chunks and record.status == "ok" and not record.estimated
    assert not any(isinstance(d, Abandoned) for d in record.decisions)
    assert record.usage.output_tokens == served.output_tokens == 50
    assert reserved == 0.0 and spent == pytest.approx(provider_usd(sdk, served))


def test_closing_right_after_the_final_usage_is_not_abandoned() -> None:
    with StreamingProvider(pace=0.0, prompt_tokens=PROMPT) as provider:
        c = client("openai", provider)
        stream = open_stream("openai", c, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage is not None:
                break
        stream.close()
        (record,) = records()
    assert record.status == "ok" and not record.estimated and record.usage.output_tokens == CAP
    assert not any(isinstance(d, Abandoned) for d in record.decisions)


def test_closing_after_the_final_anthropic_message_delta_is_not_abandoned() -> None:
    with StreamingProvider(pace=0.0, prompt_tokens=PROMPT, length=20) as provider:
        c = client("anthropic", provider)
        stream = open_stream("anthropic", c)
        for event in stream:
            if event.type == "message_delta":
                break  # message_stop is all that is left
        stream.close()
        (record,) = records()
    assert record.status == "ok" and not record.estimated
    assert (record.usage.input_tokens, record.usage.output_tokens) == (PROMPT, 20)


def test_closing_at_the_finish_chunk_reads_the_usage_behind_it() -> None:
    """tollgate asked for the usage chunk on the caller's behalf: a caller stopping at the finish
    chunk is billed from it, as reported."""
    with StreamingProvider(pace=0.0, prompt_tokens=PROMPT, length=20) as provider:
        c = client("openai", provider)
        stream = open_stream("openai", c)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason:
                break
        stream.close()
        (record,) = records()
    assert record.status == "ok" and not record.estimated
    assert (record.usage.input_tokens, record.usage.output_tokens) == (PROMPT, 20)


# -- the record -------------------------------------------------------------------------------------


def test_the_abandoned_step_is_stored_and_read_back(tmp_path: Any) -> None:
    tollgate.configure(ledger=f"sqlite:///{tmp_path / 'ledger.db'}")
    with StreamingProvider(pace=PACE, prompt_tokens=PROMPT) as provider:
        c = client("openai", provider)
        stream = open_stream("openai", c)
        work(stream)
        stream.close()
        provider.wait(1)
    settings().ledger.flush()
    (record,) = records()
    step = record.decisions[-1]
    assert isinstance(step, Abandoned) and step["abandoned"] == "reservation"
    assert step_from_dict(step.as_dict()) == step
    assert step.event_name() == "tollgate.call.abandoned"
    assert step.attributes()["output_tokens_charged"] == CAP


def test_a_call_its_door_lost_is_charged_its_reservation() -> None:
    """Call.abandon(): a framework never said how the call ended (LiteLLM's stale sweep,
    LangChain's): what the provider did is unknown, so it is charged what it reserved."""
    request = tollgate.LLMRequest(
        provider="openai", operation="chat", model="gpt-4o-mini", messages=MESSAGES, max_output_tokens=CAP
    )
    call = tollgate.gate.preflight(request)
    call.abandon()
    (record,) = records()
    assert record.status == "abandoned" and record.estimated and record.usage.output_tokens == CAP
    assert record.decisions[-1].as_dict() == {
        "abandoned": "reservation",
        "chunks_read": None,
        "chunks_drained": 0,
        "output_tokens_counted": 0,
        "output_tokens_charged": CAP,
    }


def test_a_generator_closed_while_reading_the_call_is_abandoned() -> None:
    """A door whose framework fails the call with GeneratorExit (LangChain's callbacks, when the
    reader closes the stream): the caller let go, and the call is charged as abandoned."""
    request = tollgate.LLMRequest(
        provider="openai", operation="chat", model="gpt-4o-mini", messages=MESSAGES, max_output_tokens=CAP
    )
    call = tollgate.gate.preflight(request)
    call.fail(GeneratorExit())
    (record,) = records()
    assert record.status == "abandoned" and record.error is None and record.usage.output_tokens == CAP
