"""A LiteLLM stream its reader drops early cannot take the provider past a budget's cap.

LiteLLM sends no event for a stream its reader leaves; the wrappers notice the close and settle
the call through ``Call.abandon()``, which the gate charges what the call reserved: LiteLLM's
own stream is not tollgate's to read on. Against a real streaming server paced like a model
(:mod:`tests.providers.streaming_provider`): three chunks, 0.3 s of work, then the close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import litellm
import pytest

import tollgate
import tollgate_litellm
from tests.providers.streaming_provider import StreamingProvider
from tollgate.config import settings
from tollgate.decisions import Abandoned
from tollgate.pricing import cost
from tollgate.pricing.estimate import lookup_price
from tollgate.request import Usage

CAP = 400
PROMPT = 15
MODEL = "gpt-4o-mini"
ASK = [{"role": "user", "content": "Write a long story about the sea."}]


@pytest.fixture
def provider() -> Iterator[StreamingProvider]:
    litellm.callbacks = []  # the wrappers bring their own logger
    with StreamingProvider(pace=0.002, prompt_tokens=PROMPT) as p:
        yield p


def args(provider: StreamingProvider) -> dict[str, Any]:
    return {
        "model": f"openai/{MODEL}",
        "api_base": provider.url("openai"),
        "api_key": "sk-test",
        "messages": ASK,
        "max_tokens": CAP,
        "stream": True,
    }


def cap_usd() -> float:
    price = lookup_price(settings(), MODEL, "openai")
    assert price is not None
    return 1.5 * cost(price, Usage(input_tokens=2 * PROMPT, output_tokens=CAP))


def check(provider: StreamingProvider, cap: float) -> None:
    (served,) = provider.wait(1)
    (record,) = [r for r in settings().ledger.records() if r.stream]
    price = lookup_price(settings(), MODEL, "openai")
    assert price is not None
    spend = cost(price, Usage(input_tokens=served.prompt_tokens, output_tokens=served.output_tokens))
    assert spend <= cap
    assert record.status == "abandoned" and record.estimated
    step = record.decisions[-1]
    assert isinstance(step, Abandoned) and step.basis == "reservation" and step.charged == CAP
    assert record.usage.output_tokens == CAP and record.usd >= spend


def test_a_wrapper_stream_dropped_early_is_charged_its_reservation(provider: StreamingProvider) -> None:
    cap = cap_usd()
    with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
        stream = tollgate_litellm.completion(**args(provider))
        for _ in range(3):
            next(stream)
        time.sleep(0.3)
        stream.close()
        check(provider, cap)
        with pytest.raises(tollgate.BudgetExceeded):
            tollgate_litellm.completion(**args(provider))
    assert provider.requests == 1  # the refused call never reached the provider


async def test_an_async_wrapper_stream_dropped_early_is_charged_its_reservation(
    provider: StreamingProvider,
) -> None:
    cap = cap_usd()
    with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
        stream = await tollgate_litellm.acompletion(**args(provider))
        for _ in range(3):
            await stream.__anext__()
        await asyncio.sleep(0.3)
        await stream.aclose()
        check(provider, cap)
        with pytest.raises(tollgate.BudgetExceeded):
            await tollgate_litellm.acompletion(**args(provider))
    assert provider.requests == 1  # the refused call never reached the provider
