"""Budget windows: which counter slots a charge reads and writes at a given instant.

Every store asks the window for slot names, so window arithmetic lives here once:

- :class:`Lifetime`: one slot forever (a budget without ``per``, or a standing total);
- :class:`Calendar`: one slot per UTC minute / hour / day / ISO week / month, expiring by
  itself after the window ends;
- :class:`Rolling`: a sliding window of ``seconds``, kept as :data:`ROLLING_SLOTS` sub-slots
  (the sliding-window-counter scheme), so a read sums at most that many counters. Its
  resolution is ``seconds / ROLLING_SLOTS``: spend leaves the window in steps of that size.
"""

from __future__ import annotations

import calendar
import functools
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Unit = Literal["minute", "hour", "day", "week", "month"]
UNITS: tuple[Unit, ...] = ("minute", "hour", "day", "week", "month")

#: Sub-slots of a rolling window.
ROLLING_SLOTS = 30
#: How long an idle lifetime counter is kept (refreshed by every charge).
LIFETIME_TTL = 7 * 86_400
#: Slots outlive their window by this much, so a late settle still finds its slot.
GRACE = 3_600


@dataclass(slots=True)  # not frozen: made on every call, and frozen ones take 3x longer to make
class Slots:
    """The slot keys a charge reads (summed) and the one it writes, with the write slot's TTL."""

    read: tuple[str, ...]
    write: str
    ttl: int


@dataclass(frozen=True, slots=True)
class Lifetime:
    """No window: the counter runs for as long as it is used."""

    def slots(self, key: str, now: float) -> Slots:
        return Slots((key,), key, LIFETIME_TTL)

    def describe(self) -> str:
        return "lifetime"


@dataclass(frozen=True, slots=True)
class Calendar:
    """A UTC calendar window: the counter starts from zero at each minute/hour/day/week/month."""

    unit: Unit

    def start(self, now: float) -> datetime:
        t = datetime.fromtimestamp(now, UTC)
        if self.unit == "minute":
            return t.replace(second=0, microsecond=0)
        if self.unit == "hour":
            return t.replace(minute=0, second=0, microsecond=0)
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.unit == "day":
            return day
        if self.unit == "week":  # ISO weeks start on Monday
            return day - timedelta(days=day.weekday())
        return day.replace(day=1)

    def end(self, now: float) -> datetime:
        start = self.start(now)
        if self.unit == "month":
            days = calendar.monthrange(start.year, start.month)[1]
            return start + timedelta(days=days)
        step = {"minute": 60, "hour": 3_600, "day": 86_400, "week": 7 * 86_400}[self.unit]
        return start + timedelta(seconds=step)

    def slots(self, key: str, now: float) -> Slots:
        suffix, end = _calendar_bounds(self.unit, int(now // 60))
        slot = f"{key}@{suffix}"
        return Slots((slot,), slot, math.ceil(end - now) + GRACE)

    def describe(self) -> str:
        return f"per {self.unit} (UTC)"


@dataclass(frozen=True, slots=True)
class Rolling:
    """A sliding window of ``seconds``: what was spent in the last ``seconds`` counts."""

    seconds: float

    def slots(self, key: str, now: float) -> Slots:
        width = self.seconds / ROLLING_SLOTS
        current = math.floor(now / width)
        read = tuple(f"{key}#{i}" for i in range(current - ROLLING_SLOTS + 1, current + 1))
        return Slots(read, read[-1], math.ceil(self.seconds + width) + GRACE)

    def describe(self) -> str:
        return f"per rolling {timedelta(seconds=self.seconds)}"


Window = Lifetime | Calendar | Rolling


@functools.lru_cache(maxsize=64)
def _calendar_bounds(unit: Unit, minute: int) -> tuple[str, float]:
    # Every calendar window starts on a whole minute, so the window's name and end are the same
    # for every instant of a minute: computed once per minute, not once per charge (~7 us).
    window = Calendar(unit)
    at = minute * 60.0
    return window.start(at).strftime("%Y-%m-%dT%H:%M"), window.end(at).timestamp()


def window_for(per: str | timedelta | None) -> Window:
    """The window a ``per=`` argument names; ``ValueError`` naming it when it names none.

    >>> window_for("day"), window_for(None)
    (Calendar(unit='day'), Lifetime())
    >>> window_for(timedelta(hours=1))
    Rolling(seconds=3600.0)
    >>> window_for("fortnight")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: per='fortnight' is not a window: use None, 'minute', ..., 'month', a timedelta
    """
    if per is None:
        return Lifetime()
    if isinstance(per, timedelta):
        if per.total_seconds() <= 0:
            raise ValueError(f"per={per!r}: a rolling window must be longer than zero")
        return Rolling(per.total_seconds())
    if per in UNITS:
        return Calendar(per)
    raise ValueError(
        f"per={per!r} is not a window: use None, 'minute', 'hour', 'day', 'week', 'month', a timedelta"
    )


def now() -> float:
    """The store clock (a function, so tests can inject time)."""
    return time.time()
