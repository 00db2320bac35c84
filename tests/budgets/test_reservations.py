"""Reservations under concurrency: many calls in flight at once cannot jointly overspend a cap."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tollgate
from tests.budgets.helpers import SAY_OK, completion, per_call_usd, slow_completion
from tollgate.config import settings

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

MESSAGES = SAY_OK


async def test_1000_concurrent_async_calls_never_overspend() -> None:
    client = tollgate.instrument(
        openai.AsyncOpenAI(
            api_key="sk-test", http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow_completion))
        )
    )
    cap = 100.5 * per_call_usd()  # room for 100 calls

    async def one() -> bool:
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            return True
        except tollgate.BudgetExceeded:
            return False

    with tollgate.budget(usd=cap, name="cap"):
        results = await asyncio.gather(*(one() for _ in range(1000)))
    spent = tollgate.report().total["usd"]
    assert sum(results) == 100
    assert spent <= cap
    assert tollgate.report().total["blocked_calls"] == 900


def test_threads_never_overspend() -> None:
    client = tollgate.instrument(
        openai.OpenAI(api_key="sk-test", http_client=httpx.Client(transport=httpx.MockTransport(completion)))
    )
    cap = 50.5 * per_call_usd()
    granted = []

    def worker() -> None:
        for _ in range(25):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
                granted.append(1)
            except tollgate.BudgetExceeded:
                pass

    with tollgate.budget(usd=cap, name="cap"):
        threads = [threading.Thread(target=tollgate.propagate(worker)) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(granted) == 50
    assert tollgate.report().total["usd"] <= cap


def test_expected_output_tokens_sizes_the_reservation_of_uncapped_calls() -> None:
    from tests.budgets.helpers import request

    price = settings().prices.lookup("gpt-4o")
    assert price is not None and price.max_output_tokens
    uncapped = tollgate.gate.preflight(request(cap=None))
    assert uncapped.estimate.output_tokens == price.max_output_tokens
    tollgate.configure(expected_output_tokens=800)
    assert tollgate.gate.preflight(request(cap=None)).estimate.output_tokens == 800
    assert tollgate.gate.preflight(request(cap=50)).estimate.output_tokens == 50  # a cap always wins
    with pytest.raises(ValueError, match="expected_output_tokens=0"):
        tollgate.configure(expected_output_tokens=0)
