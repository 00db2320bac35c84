"""Budget windows: which counter slots a charge reads and writes at a given instant.

Every store asks the window for slot names, so window arithmetic lives here once:

- :class:`Lifetime`: one slot forever (a budget without ``per``, or a standing total);
- :class:`Calendar`: one slot per minute / hour / day / ISO week / month of UTC or of an IANA
  time zone (a day from local midnight), expiring by itself after the window ends;
- :class:`Rolling`: a sliding window of ``seconds``, kept as :data:`ROLLING_SLOTS` sub-slots
  (the sliding-window-counter scheme), so a read sums at most that many counters. Its
  resolution is ``seconds / ROLLING_SLOTS``: spend leaves the window in steps of that size.
"""

from __future__ import annotations

import calendar
import difflib
import functools
import math
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

Unit = Literal["minute", "hour", "day", "week", "month"]
UNITS: tuple[Unit, ...] = ("minute", "hour", "day", "week", "month")

#: Sub-slots of a rolling window.
ROLLING_SLOTS = 30
#: How long an idle lifetime counter is kept (refreshed by every charge).
LIFETIME_TTL = 7 * 86_400
#: How long a persistent lifetime counter (a standing limit with ``per=None``) is kept: 100 years.
PERSISTENT_TTL = 100 * 365 * 86_400
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
    """No window: the counter runs for as long as it is used (a budget's block), or, when
    ``persistent``, for good (a standing lifetime limit: prepaid credit never resets)."""

    persistent: bool = False

    def slots(self, key: str, now: float) -> Slots:
        return Slots((key,), key, PERSISTENT_TTL if self.persistent else LIFETIME_TTL)

    def describe(self) -> str:
        return "lifetime"


@dataclass(frozen=True, slots=True)
class Calendar:
    """A calendar window: the counter starts from zero at each minute/hour/day/week/month of UTC,
    or, given ``tz`` (an IANA name such as ``"America/New_York"``), of that zone's clocks.

    In a zone, a day starts at local midnight (a week on Monday, a month on the 1st), so a day
    is 23 or 25 hours long when the clocks change; where they skip midnight, the day starts at
    the first instant that exists. An hour is a local hour (Kolkata's start at :30 UTC); when
    the clocks fall back, the hour they repeat is two windows, and the hour they skip is none.
    ``tz=None`` (or ``"UTC"``) is UTC, with the slot names UTC windows have always had.

    >>> day = Calendar("day", "America/New_York")
    >>> noon = datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()  # the day the clocks fall back
    >>> day.start(noon).isoformat(), day.end(noon).isoformat()
    ('2026-11-01T00:00:00-04:00', '2026-11-02T00:00:00-05:00')
    >>> (day.end(noon).timestamp() - day.start(noon).timestamp()) / 3600
    25.0
    >>> day.slots("k", noon).write, day.describe()
    ('k@2026-11-01T00:00-0400', 'per day (America/New_York)')

    ``start`` and ``end`` are aware datetimes in the zone; measure or compare them by
    ``.timestamp()``: Python compares and subtracts datetimes of one zone by their wall clocks
    (``end - start`` above is 1 day, and the two 01:00 hours of that day compare equal).
    """

    unit: Unit
    tz: str | None = None

    def __post_init__(self) -> None:
        if self.tz is not None:
            object.__setattr__(self, "tz", _checked_zone(self.tz))

    def start(self, now: float) -> datetime:
        if self.tz is not None:
            return datetime.fromtimestamp(_zoned_bounds(self.unit, self.tz, now)[0], _zone(self.tz))
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
        if self.tz is not None:
            return datetime.fromtimestamp(_zoned_bounds(self.unit, self.tz, now)[1], _zone(self.tz))
        start = self.start(now)
        if self.unit == "month":
            days = calendar.monthrange(start.year, start.month)[1]
            return start + timedelta(days=days)
        step = {"minute": 60, "hour": 3_600, "day": 86_400, "week": 7 * 86_400}[self.unit]
        return start + timedelta(seconds=step)

    def ends(self, now: float) -> float:
        """When the window holding ``now`` ends (a timestamp; cached per minute, as slots are)."""
        return self._bounds(now)[1]

    def _bounds(self, now: float) -> tuple[str, float]:
        bounds = _calendar_bounds(self.unit, self.tz, int(now // 60))
        if bounds is None:  # a window starts inside this minute: named from the instant itself
            assert self.tz is not None  # UTC windows start on whole minutes
            bounds = _zoned_slot(self.unit, self.tz, now)
        return bounds

    def slots(self, key: str, now: float) -> Slots:
        suffix, end = self._bounds(now)
        slot = f"{key}@{suffix}"
        return Slots((slot,), slot, math.ceil(end - now) + GRACE)

    def describe(self) -> str:
        return f"per {self.unit} ({self.tz or 'UTC'})"


@dataclass(frozen=True, slots=True)
class Rolling:
    """A sliding window of ``seconds``: what was spent in the last ``seconds`` counts."""

    seconds: float
    #: Sub-slots: the resolution (a burn rate's look-back needs fewer than a rate limit).
    parts: int = field(default=ROLLING_SLOTS, repr=False)

    def slots(self, key: str, now: float) -> Slots:
        width = self.seconds / self.parts
        current = math.floor(now / width)
        read = tuple(f"{key}#{i}" for i in range(current - self.parts + 1, current + 1))
        return Slots(read, read[-1], math.ceil(self.seconds + width) + GRACE)

    def describe(self) -> str:
        return f"per rolling {timedelta(seconds=self.seconds)}"


Window = Lifetime | Calendar | Rolling


@functools.lru_cache(maxsize=256)
def _calendar_bounds(unit: Unit, tz: str | None, minute: int) -> tuple[str, float] | None:
    # The window's name and end are the same for every instant of a minute unless a window
    # starts inside it, so they are computed once per minute, not once per charge (~7 us in UTC,
    # more in a zone). UTC windows all start on whole minutes, and so do every zone's since 1972-01-07
    # (checked over tzdata 2025b: every offset and clock change since is in whole minutes), but
    # not before (Monrovia ran at -0:44:30): a minute a window starts inside is not cached.
    at = minute * 60.0
    if tz is None:
        window = Calendar(unit)
        return window.start(at).strftime("%Y-%m-%dT%H:%M"), window.end(at).timestamp()
    suffix, end = _zoned_slot(unit, tz, at)
    return (suffix, end) if end >= at + 60 else None


def _zoned_slot(unit: Unit, tz: str, now: float) -> tuple[str, float]:
    """A zone window's slot suffix and end. The suffix carries the start's UTC offset, as the
    two 01:00 hours of a night the clocks fall back have one wall time and two offsets."""
    start, end = _zoned_bounds(unit, tz, now)
    local = datetime.fromtimestamp(start, _zone(tz))
    return local.strftime("%Y-%m-%dT%H:%M:%S%z" if local.second else "%Y-%m-%dT%H:%M%z"), end


def _zoned_bounds(unit: Unit, tz: str, now: float) -> tuple[float, float]:
    """The start and end (timestamps) of the window of ``unit`` in zone ``tz`` holding ``now``."""
    zone = _zone(tz)
    if unit == "minute" or unit == "hour":
        return _clock_bounds(60 if unit == "minute" else 3_600, zone, now)
    first, after = _period(unit, datetime.fromtimestamp(now, zone).date())
    start, end = _first_instant(first, zone), _first_instant(after, zone)
    while end <= now:  # the clocks went back over midnight into the previous date: still `after`
        first, after = _period(unit, after)
        start, end = end, _first_instant(after, zone)
    return start, end


def _clock_bounds(step: int, zone: zoneinfo.ZoneInfo, now: float) -> tuple[float, float]:
    """A local minute or hour: from the top of the local minute/hour at ``now``'s UTC offset,
    cut short where the offset changes (the clocks change on whole seconds)."""
    local = datetime.fromtimestamp(now, zone)
    offset = local.utcoffset()
    wall = local.replace(tzinfo=None, second=0, microsecond=0)
    if step == 3_600:
        wall = wall.replace(minute=0)
    start = int((wall - (offset or timedelta())).replace(tzinfo=UTC).timestamp())
    end = start + step
    here = math.floor(now)

    def offset_at(instant: int) -> timedelta | None:
        return datetime.fromtimestamp(instant, zone).utcoffset()

    if offset_at(start) != offset:  # the clocks changed since the top of the hour: start there
        start = _first_second(start, here, lambda s: offset_at(s) == offset)
    if offset_at(end - 1) != offset:  # they change before its end: end there
        end = _first_second(here, end - 1, lambda s: offset_at(s) != offset)
    return float(start), float(end)


def _first_instant(day: date, zone: zoneinfo.ZoneInfo) -> float:
    """The first instant of ``day`` in ``zone``: its midnight, or, on a day the clocks skip
    midnight (America/Santiago in September), the instant they skip to."""
    midnight = datetime(day.year, day.month, day.day)
    # fold=0: a repeated midnight's first occurrence; a skipped one read at the old offset, so
    # an instant after the skip (fold=1: the new offset, an instant before it).
    after = midnight.replace(tzinfo=zone).timestamp()
    if datetime.fromtimestamp(after, zone).replace(tzinfo=None) == midnight:
        return after
    before = midnight.replace(tzinfo=zone, fold=1).timestamp()

    def reached(instant: int) -> bool:
        return datetime.fromtimestamp(instant, zone).replace(tzinfo=None) >= midnight

    return float(_first_second(math.floor(before), math.ceil(after), reached))


def _first_second(low: int, high: int, reached: Callable[[int], bool]) -> int:
    """The first whole second in ``(low, high]`` where ``reached`` holds, given it does not at
    ``low``, does at ``high``, and keeps holding once it does (bisection)."""
    while high - low > 1:
        middle = (low + high) // 2
        if reached(middle):
            high = middle
        else:
            low = middle
    return high


def _period(unit: Unit, day: date) -> tuple[date, date]:
    """The first date of the day/week/month holding ``day``, and the first date after it."""
    if unit == "day":
        return day, day + timedelta(days=1)
    if unit == "week":  # ISO weeks start on Monday
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=7)
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


#: Names of UTC itself: a window in one of them is the plain UTC window, with its slot names.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"})


@functools.cache
def _zone(tz: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(tz)


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())  # reads the zone folders: ~50 ms, once


def _checked_zone(tz: object) -> str | None:
    """``tz`` when zoneinfo knows it (None for UTC); ``ValueError`` naming it and the fix."""
    example = "e.g. tz='America/New_York' or tz='Europe/Paris'"
    if not isinstance(tz, str):
        also = f" (this ZoneInfo's is tz={tz.key!r})" if isinstance(tz, zoneinfo.ZoneInfo) else ""
        raise ValueError(f"tz={tz!r} is not a time zone name: give an IANA name as a string{also}, {example}")
    if tz in _UTC_NAMES:
        return None
    zones = _known_zones()
    if not zones:
        raise ValueError(
            f"tz={tz!r}: this Python finds no time zone database; install one (pip install tzdata)"
        )
    if tz not in zones:
        close = _close_zones(tz, zones)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(
            f"tz={tz!r} is not a time zone zoneinfo knows: {hint}use an IANA name, {example} "
            "(zoneinfo.available_timezones() lists them)"
        )
    try:
        _zone(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"tz={tz!r}: zoneinfo lists it but cannot load it ({exc}); {example}") from exc
    return tz


def _close_zones(tz: str, zones: frozenset[str]) -> list[str]:
    """Up to three known zones ``tz`` may mean: another case or a bare city, then near spellings."""
    wanted = tz.strip().replace(" ", "_").casefold()
    folded = {zone.casefold(): zone for zone in zones}
    named = sorted(z for f, z in folded.items() if f == wanted or f.endswith("/" + wanted))
    near = [folded[f] for f in difflib.get_close_matches(wanted, folded, n=3, cutoff=0.6)]
    return list(dict.fromkeys(named + near))[:3]


def window_for(per: str | timedelta | None, tz: str | None = None) -> Window:
    """The window a ``per=`` argument (and ``tz=``, for a calendar window) names; ``ValueError``
    naming the value and the fix when they name none.

    >>> window_for("day"), window_for(None)
    (Calendar(unit='day', tz=None), Lifetime(persistent=False))
    >>> window_for(timedelta(hours=1))
    Rolling(seconds=3600.0)
    >>> window_for("week", "Asia/Kolkata").describe()
    'per week (Asia/Kolkata)'
    >>> window_for("fortnight")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: per='fortnight' is not a window: use None, 'minute', ..., 'month', a timedelta
    >>> window_for("day", "Europe/Pairs")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: tz='Europe/Pairs' is not a time zone zoneinfo knows: did you mean 'Europe/Paris'...
    """
    if per is None or isinstance(per, timedelta):
        if tz is not None:
            kind = "no window" if per is None else "a rolling window"
            raise ValueError(
                f"tz={tz!r} with per={per!r} ({kind}): tz applies to calendar windows only: "
                "per='minute', 'hour', 'day', 'week' or 'month'"
            )
        if per is None:
            return Lifetime()
        if per.total_seconds() <= 0:
            raise ValueError(f"per={per!r}: a rolling window must be longer than zero")
        return Rolling(per.total_seconds())
    if per in UNITS:
        return Calendar(per, tz)
    raise ValueError(
        f"per={per!r} is not a window: use None, 'minute', 'hour', 'day', 'week', 'month', a timedelta"
    )


def now() -> float:
    """The store clock (a function, so tests can inject time)."""
    return time.time()
