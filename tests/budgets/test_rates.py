"""Rate limits: requests and tokens per rolling window, reserve-then-refund, wait or raise."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import tollgate
from tests.budgets.helpers import request, run
from tollgate.config import settings
from tollgate.stores.base import Charge


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake store clock that waiting advances: no real sleeping."""
    now = [1_795_000_000.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    async def asleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    monkeypatch.setattr(tollgate.preflight, "store_clock", lambda: now[0])
    monkeypatch.setattr(tollgate.preflight, "sleep", sleep)
    monkeypatch.setattr(tollgate.preflight, "asleep", asleep)
    return now


def test_requests_quota_raises_when_not_waiting(clock: list[float]) -> None:
    tollgate.limit(rpm=2, model="gpt-4o", wait=False)
    run(request())
    run(request())
    with pytest.raises(tollgate.RateLimited, match=r"rate\[gpt-4o\]/60s.*2 of 2 requests") as info:
        run(request())
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 2
    records = settings().ledger.records()
    assert [r.status for r in records] == ["ok", "ok", "blocked"]
    assert records[-1].decisions[-1] == {"action": "rate_limited", "limit": "rate[gpt-4o]/60s"}


def test_sync_caller_waits_for_room(clock: list[float]) -> None:
    tollgate.limit(rpm=2)
    start = clock[0]
    for _ in range(3):
        run(request())
    assert 58 <= clock[0] - start <= 62  # the third call waited for the first to leave the minute


def test_waiting_gives_up_after_the_timeout(clock: list[float]) -> None:
    tollgate.limit(rpm=1, timeout=5)
    run(request())
    with pytest.raises(tollgate.RateLimited):
        run(request())


def test_tokens_are_reserved_then_refunded(clock: list[float]) -> None:
    rate = tollgate.limit(tpm=1000)
    call = tollgate.gate.preflight(request(cap=500))
    key = Charge("rate[all]/60s:tokens", rate.window, 1000.0, 0)
    (state,) = settings().store.read([key], clock[0])
    assert state.reserved == call.estimate.input_tokens + 500
    call.finish(
        tollgate.gate.Outcome(tollgate.Usage(input_tokens=call.estimate.input_tokens, output_tokens=20))
    )
    (state,) = settings().store.read([key], clock[0])
    assert (state.spent, state.reserved) == (call.estimate.input_tokens + 20, 0)


def test_limits_apply_by_model_name_snapshot_and_family(clock: list[float]) -> None:
    tollgate.limit(rpm=1, model="gpt-4o", wait=False)
    run(request("gpt-4o"))
    run(request("gpt-4o-mini"))  # another model: its own quota (none here)
    with pytest.raises(tollgate.RateLimited):
        run(request("gpt-4o-2024-08-06"))  # a snapshot of gpt-4o
    tollgate.reset()
    tollgate.limit(rpm=1, model="gpt-4*", wait=False)
    run(request("gpt-4o-mini"))
    with pytest.raises(tollgate.RateLimited):
        run(request("gpt-4.1"))


async def test_async_callers_queue_for_room(clock: list[float]) -> None:
    tollgate.limit(rpm=5, per=timedelta(seconds=10))

    async def one() -> None:
        call = await tollgate.gate.apreflight(request())
        call.finish(tollgate.gate.Outcome(tollgate.Usage(input_tokens=10, output_tokens=10)))

    start = clock[0]
    await asyncio.gather(*(one() for _ in range(12)))
    assert len(settings().ledger.records()) == 12
    assert clock[0] - start >= 20  # 12 calls at 5 per 10 s: the last ones waited two windows


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs rpm"),
        ({"rpm": 0}, "requests=0"),
        ({"tpm": 1.5}, "tokens=1.5"),
        ({"rpm": 1, "per": timedelta(0)}, "per="),
        ({"rpm": 1, "timeout": -1}, "timeout=-1"),
    ],
)
def test_invalid_rate_limits(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tollgate.limit(**kwargs)  # type: ignore[arg-type]
