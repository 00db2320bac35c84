"""A LangChain stream its reader drops early cannot take the provider past a budget's cap.

Both doors, against a real streaming server (:mod:`tests.providers.streaming_provider`) paced
like a model: the reader takes three chunks, works for 0.3 s and closes the stream. The guard
ends its call as abandoned; the callback handler hears LangChain's ``on_llm_error`` with the
``GeneratorExit`` of the closed stream. Either way the gate charges the call what it reserved
(LangChain's own stream is not tollgate's to read on), and the next call is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

langchain_openai = pytest.importorskip("langchain_openai")

import tollgate  # noqa: E402
from tests.providers.streaming_provider import StreamingProvider  # noqa: E402
from tollgate.config import settings  # noqa: E402
from tollgate.decisions import Abandoned  # noqa: E402
from tollgate.pricing import cost  # noqa: E402
from tollgate.pricing.estimate import lookup_price  # noqa: E402
from tollgate.request import Usage  # noqa: E402
from tollgate_langchain import TollgateCallbackHandler, guard  # noqa: E402

CAP = 400
PROMPT = 15
MODEL = "gpt-4o-mini"
ASK = "Write a long story about the sea."


@pytest.fixture
def provider() -> Iterator[StreamingProvider]:
    with StreamingProvider(pace=0.002, prompt_tokens=PROMPT) as p:
        yield p


def chat(provider: StreamingProvider, **kwargs: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        model=MODEL,
        api_key="sk-test",
        base_url=provider.url("openai"),
        max_retries=0,
        max_tokens=CAP,
        **kwargs,
    )


def cap_usd() -> float:
    """Room for one call's hold (its prompt, estimated high, and its output cap), not two."""
    price = lookup_price(settings(), MODEL, "openai")
    assert price is not None
    return 1.5 * cost(price, Usage(input_tokens=2 * PROMPT, output_tokens=CAP))


def check(provider: StreamingProvider, cap: float, *, closed: bool = True) -> None:
    (served,) = provider.wait(1)
    (record,) = list(settings().ledger.records())
    price = lookup_price(settings(), MODEL, record.provider)
    assert price is not None
    spend = cost(price, Usage(input_tokens=served.prompt_tokens, output_tokens=served.output_tokens))
    assert spend <= cap
    if closed:  # the close reached the provider
        assert served.closed_early and served.output_tokens < CAP
    assert record.status == "abandoned" and record.estimated and record.error is None
    step = record.decisions[-1]
    assert isinstance(step, Abandoned) and step.basis == "reservation" and step.charged == CAP
    assert record.usage.output_tokens == CAP and record.usd >= spend


def test_a_guard_stream_dropped_early_is_charged_its_reservation(provider: StreamingProvider) -> None:
    safe = guard(chat(provider))
    cap = cap_usd()
    with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
        stream = safe.stream(ASK)
        for _ in range(3):
            next(stream)
        time.sleep(0.3)
        stream.close()
        check(provider, cap)
        with pytest.raises(tollgate.BudgetExceeded):
            safe.invoke(ASK)
    assert provider.requests == 1  # the refused call never reached the provider


async def test_an_async_guard_stream_dropped_early_is_charged_its_reservation(
    provider: StreamingProvider,
) -> None:
    safe = guard(chat(provider))
    cap = cap_usd()
    with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
        stream = safe.astream(ASK)
        for _ in range(3):
            await stream.__anext__()
        await asyncio.sleep(0.3)
        await stream.aclose()
        check(provider, cap, closed=False)  # LangChain's astream leaves its HTTP stream to a finaliser
        with pytest.raises(tollgate.BudgetExceeded):
            await safe.ainvoke(ASK)
    assert provider.requests == 1  # the refused call never reached the provider


def test_a_callback_handler_stream_dropped_early_is_charged_its_reservation(
    provider: StreamingProvider,
) -> None:
    model = chat(provider, callbacks=[TollgateCallbackHandler()])
    cap = cap_usd()
    with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
        stream = model.stream(ASK)
        for _ in range(3):
            next(stream)
        time.sleep(0.3)
        stream.close()  # LangChain reports the GeneratorExit through on_llm_error
        check(provider, cap)
        with pytest.raises(tollgate.BudgetExceeded):
            model.invoke(ASK)
    assert provider.requests == 1  # the refused call never reached the provider
