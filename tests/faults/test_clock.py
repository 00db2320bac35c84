"""Calendar windows roll over at UTC boundaries, with an injected store clock.

The store clock (``tollgate.stores.windows.now``, imported by the gate as ``store_clock``)
is replaced by a list the test moves; each scenario runs on the memory, SQLite and Redis
stores (Redis when a server is available: ``TOLLGATE_TEST_REDIS_URL`` or a private
``redis-server``). A budget holds two calls of its window; the third is blocked until the
next window starts, where spending is counted from zero. The machine's local time zone plays
no part.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tollgate
from tests.budgets.helpers import request, run
from tests.stores.conftest import configure_store, redis_url
from tollgate.budgets.scope import active_budgets
from tollgate.stores.base import Charge, CounterState

__all__ = ["redis_url"]  # the session's Redis server fixture, used by the `store` fixture below

#: Cost of one call from ``run(request(cap=500), output_tokens=500)`` on gpt-4o is ~$0.00505:
#: a budget of $0.011 per window fits two calls, not three.
CAP_USD = 0.011


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Epoch seconds of a UTC date-time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(tollgate.preflight, "store_clock", lambda: now[0])
    return now


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield configure_store(request, tmp_path)
    tollgate.reset()


def budget(per: str) -> tollgate.budget:
    return tollgate.budget(usd=CAP_USD, per=per, name=f"clock-{per}")


def state(now: float) -> CounterState:
    """The active budget's counter as the store sees it at ``now``."""
    (frame,) = active_budgets()
    charge = Charge(frame.counter({}) + ":usd", frame.spec.window, CAP_USD, 0.0)
    (found,) = tollgate.config.settings().store.read([charge], now)
    return found


def fill(per: str, now: float) -> None:
    """Spend the window to its cap at ``now``: two calls go through, the third is blocked."""
    with budget(per):
        for _ in range(2):
            run(request(cap=500), output_tokens=500)
        with pytest.raises(tollgate.BudgetExceeded):
            run(request(cap=500))
        assert state(now).spent > CAP_USD / 2 and state(now).reserved == 0


def admitted(per: str) -> bool:
    with budget(per):
        try:
            run(request(cap=500), output_tokens=500)
        except tollgate.BudgetExceeded:
            return False
        return True


ROLLOVERS = {
    # per, last instant of a window, first instant of the next
    "day": ("day", at(2026, 11, 17, 23, 59, 59), at(2026, 11, 18)),
    "month-jan": ("month", at(2027, 1, 31, 23, 59, 59), at(2027, 2, 1)),
    "month-feb-2027": ("month", at(2027, 2, 28, 23, 59, 59), at(2027, 3, 1)),
    "month-feb-2028-leap": ("month", at(2028, 2, 29, 23, 59, 59), at(2028, 3, 1)),
    "month-dec": ("month", at(2026, 12, 31, 23, 59, 59), at(2027, 1, 1)),
    "week": ("week", at(2026, 11, 22, 23, 59, 59), at(2026, 11, 23)),  # Sunday -> Monday
    "hour": ("hour", at(2026, 11, 17, 13, 59, 59), at(2026, 11, 17, 14)),
}


@pytest.mark.parametrize("case", list(ROLLOVERS))
def test_window_rolls_over_at_the_utc_boundary(case: str, store: str, clock: list[float]) -> None:
    per, last, first = ROLLOVERS[case]
    clock[0] = last - 1
    fill(per, clock[0])
    clock[0] = last  # the window's last second: still full
    assert not admitted(per)
    clock[0] = first  # the next window: counted afresh
    with budget(per):
        assert state(first).spent == 0 and state(first).reserved == 0
    assert admitted(per) and admitted(per) and not admitted(per)
    with budget(per):
        assert state(last).spent == pytest.approx(state(first).spent)  # the old window kept its own


@pytest.mark.parametrize(
    ("day_before", "day_after", "same_window"),
    [
        (at(2028, 2, 28, 12), at(2028, 2, 29, 12), True),  # 2028 is a leap year: Feb 29 is February
        (at(2027, 2, 28, 12), at(2027, 3, 1, 12), False),  # 2027 is not: the next day is March
        (at(2028, 12, 31, 12), at(2029, 1, 1, 12), False),
        (at(2027, 1, 30, 12), at(2027, 1, 31, 12), True),
    ],
)
def test_month_windows_follow_the_calendar(
    day_before: float, day_after: float, same_window: bool, store: str, clock: list[float]
) -> None:
    clock[0] = day_before
    fill("month", day_before)
    clock[0] = day_after
    assert admitted("month") is not same_window


def test_week_is_iso_from_monday(store: str, clock: list[float]) -> None:
    clock[0] = at(2026, 11, 16, 0, 0, 1)  # a Monday
    fill("week", clock[0])
    clock[0] = at(2026, 11, 22, 23, 59, 59)  # the Sunday after: the same ISO week
    assert not admitted("week")
    clock[0] = at(2026, 11, 23)  # the next Monday
    assert admitted("week")


def test_a_call_reserved_before_midnight_and_settled_after(store: str, clock: list[float]) -> None:
    """Documented (stores/windows.py, GRACE: "slots outlive their window by this much, so a late
    settle still finds its slot"; docs/semantics.md, *Reservations*: the hold "is replaced by the
    actual amount when it settles"): the call is charged to the window it was reserved in, the
    hold is gone from it, and the new window owes nothing."""
    before, after = at(2026, 11, 17, 23, 59, 59), at(2026, 11, 18, 0, 0, 5)
    with budget("day"):
        clock[0] = before
        call = tollgate.gate.preflight(request(cap=500))
        assert state(before).reserved == pytest.approx(call.estimate.usd)
        clock[0] = after
        assert state(after).reserved == 0  # the new day does not see yesterday's hold
        record = call.finish(tollgate.gate.Outcome(tollgate.Usage(input_tokens=20, output_tokens=300)))
        assert record is not None and record.usd > 0
        yesterday, today = state(before), state(after)
        assert yesterday.reserved == pytest.approx(0, abs=1e-12)
        assert yesterday.spent == pytest.approx(record.usd)
        assert today.spent == 0 and today.reserved == 0
    # And the same for a call that fails after midnight: its hold is released, nothing is spent.
    with budget("day"):
        clock[0] = before  # the 17th's last second again
        call = tollgate.gate.preflight(request(cap=500))
        clock[0] = after
        call.fail(RuntimeError("connection reset"))
        assert state(before).reserved == pytest.approx(0, abs=1e-12)
        assert state(after).spent == 0 and state(after).reserved == 0


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham", "UTC"])
def test_local_time_zone_does_not_move_the_boundary(
    zone: str, store: str, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX only")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert zone == "UTC" or time.localtime(at(2026, 11, 18)).tm_hour != 0  # the zone took effect
        clock[0] = at(2026, 11, 17, 23, 59, 59)
        fill("day", clock[0])
        clock[0] = at(2026, 11, 18) - 0.001  # local midnight is hours away, or passed: irrelevant
        assert not admitted("day")
        clock[0] = at(2026, 11, 18)
        assert admitted("day")
    finally:
        monkeypatch.undo()
        time.tzset()
