"""Window arithmetic in IANA time zones: local midnights, DST days of 23 and 25 hours, the
repeated and the skipped hour, half-hour offsets, and counters that reset on the zone's clock.

Instants are built as aware datetimes and passed as timestamps (the stores' ``now``). Bounds are
compared by timestamp: Python compares datetimes of one zone by wall clock, ignoring ``fold``.
"""

from __future__ import annotations

import dataclasses
import math
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tollgate.stores.base import Charge, Store
from tollgate.stores.memory import MemoryStore
from tollgate.stores.sqlite import SQLiteStore
from tollgate.stores.windows import GRACE, UNITS, Calendar, Lifetime, Rolling, window_for

if not zoneinfo.available_timezones():
    pytest.skip("no time zone database: install tzdata", allow_module_level=True)

NY = "America/New_York"


def at(
    tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, fold: int = 0
) -> float:
    """The instant a wall clock in ``tz`` shows (``fold=1``: the second pass of a repeated time)."""
    return datetime(
        year, month, day, hour, minute, second, tzinfo=zoneinfo.ZoneInfo(tz), fold=fold
    ).timestamp()


def bounds(window: Calendar, now: float) -> tuple[float, float]:
    return window.start(now).timestamp(), window.end(now).timestamp()


def hours(window: Calendar, now: float) -> float:
    start, end = bounds(window, now)
    return (end - start) / 3600


# -- days around the 2026 New York DST changes --------------------------------------------------


@pytest.mark.parametrize(
    ("day", "length", "start", "end"),
    [
        ((2026, 3, 8), 23, "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"),  # spring forward
        ((2026, 11, 1), 25, "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"),  # fall back
        ((2026, 6, 15), 24, "2026-06-15T00:00:00-04:00", "2026-06-16T00:00:00-04:00"),
    ],
)
def test_new_york_day_runs_from_local_midnight_to_local_midnight(
    day: tuple[int, int, int], length: int, start: str, end: str
) -> None:
    window = Calendar("day", NY)
    for wall in ((0, 0), (1, 30), (12, 0), (23, 59)):
        now = at(NY, *day, *wall)
        assert window.start(now).isoformat() == start and window.end(now).isoformat() == end
        assert hours(window, now) == length
        assert bounds(window, now) == (at(NY, *day), at(NY, *day) + length * 3600)


@pytest.mark.parametrize("day", [(2026, 3, 8), (2026, 11, 1)])
def test_new_york_day_counter_rolls_over_at_local_midnight_not_utc(day: tuple[int, int, int]) -> None:
    window = Calendar("day", NY)
    midnight = at(NY, *day)
    name = window.slots("k", midnight).write
    assert name == f"k@{datetime.fromtimestamp(midnight, zoneinfo.ZoneInfo(NY)):%Y-%m-%dT%H:%M%z}"
    assert window.slots("k", midnight - 1).write != name  # 23:59:59 the day before
    utc_midnight = datetime(*day, tzinfo=UTC).timestamp() + 86_400  # 19:00 or 20:00 in New York
    assert window.slots("k", utc_midnight).write == name
    end = window.end(midnight).timestamp()
    assert window.slots("k", end - 1).write == name
    assert window.slots("k", end).write != name
    slots = window.slots("k", midnight + 600.5)
    assert slots.read == (name,) and slots.ttl == math.ceil(end - midnight - 600.5) + GRACE


# -- hours across the changes ---------------------------------------------------------------------


def test_repeated_hour_is_two_hour_windows_with_distinct_slots() -> None:
    window = Calendar("hour", NY)
    first, second = at(NY, 2026, 11, 1, 1, 30), at(NY, 2026, 11, 1, 1, 30, fold=1)
    assert second - first == 3600
    assert window.slots("k", first).write == "k@2026-11-01T01:00-0400"
    assert window.slots("k", second).write == "k@2026-11-01T01:00-0500"
    assert bounds(window, first) == (at(NY, 2026, 11, 1, 1), at(NY, 2026, 11, 1, 1, fold=1))
    assert bounds(window, second) == (at(NY, 2026, 11, 1, 1, fold=1), at(NY, 2026, 11, 1, 2))
    assert window.start(first).isoformat() == "2026-11-01T01:00:00-04:00"
    assert window.start(second).isoformat() == "2026-11-01T01:00:00-05:00"


def window_starts(window: Calendar, first: float, last: float, step: int) -> list[str]:
    """The distinct windows met from ``first`` to ``last``, checking that they tile time."""
    names: list[str] = []
    previous_end = None
    now = first
    while now <= last:
        start, end = bounds(window, now)
        assert start <= now < end
        name = window.slots("k", now).write
        if not names or names[-1] != name:
            assert previous_end is None or previous_end == start  # no gap, no overlap
            names.append(name)
        previous_end = end
        now += step
    return names


def test_hours_around_both_changes_tile_time() -> None:
    window = Calendar("hour", NY)
    spring = window_starts(window, at(NY, 2026, 3, 8, 0), at(NY, 2026, 3, 8, 4, 59), 300)
    assert spring == [  # the skipped 02:00 hour has no window
        "k@2026-03-08T00:00-0500",
        "k@2026-03-08T01:00-0500",
        "k@2026-03-08T03:00-0400",
        "k@2026-03-08T04:00-0400",
    ]
    fall = window_starts(window, at(NY, 2026, 11, 1, 0), at(NY, 2026, 11, 1, 2, 59), 300)
    assert fall == [
        "k@2026-11-01T00:00-0400",
        "k@2026-11-01T01:00-0400",
        "k@2026-11-01T01:00-0500",
        "k@2026-11-01T02:00-0500",
    ]


@pytest.mark.parametrize("unit", UNITS)
def test_cached_slot_names_match_the_window_bounds(unit: str) -> None:
    # slots() names a window once per minute; start()/end() work it out from the instant.
    window = Calendar(unit, NY)  # type: ignore[arg-type]
    zone = zoneinfo.ZoneInfo(NY)
    for first in (at(NY, 2026, 3, 7, 22), at(NY, 2026, 10, 31, 22)):
        for now in (first + i * 97.5 for i in range(2 * 86_400 // 97)):
            slots = window.slots("k", now)
            start, end = bounds(window, now)
            assert slots.write == f"k@{datetime.fromtimestamp(start, zone):%Y-%m-%dT%H:%M%z}"
            assert slots.ttl == math.ceil(end - now) + GRACE


# -- weeks and months -------------------------------------------------------------------------------


def test_week_in_a_zone_runs_monday_to_monday_local() -> None:
    window = Calendar("week", NY)
    sunday_night = at(NY, 2026, 11, 1, 23, 59)  # Monday 04:59 UTC: a new UTC week already
    assert window.start(sunday_night).isoformat() == "2026-10-26T00:00:00-04:00"
    assert window.end(sunday_night).isoformat() == "2026-11-02T00:00:00-05:00"
    assert hours(window, sunday_night) == 7 * 24 + 1
    assert window.slots("k", sunday_night).write == "k@2026-10-26T00:00-0400"
    assert window.slots("k", at(NY, 2026, 11, 2)).write == "k@2026-11-02T00:00-0500"
    assert Calendar("week").slots("k", sunday_night).write == "k@2026-11-02T00:00"


def test_month_in_a_zone_runs_from_the_first_local_midnight() -> None:
    window = Calendar("month", NY)
    last_minute = at(NY, 2026, 11, 30, 23, 59, 59)  # December 1 in UTC
    assert window.slots("k", last_minute).write == "k@2026-11-01T00:00-0400"
    assert window.slots("k", last_minute + 1).write == "k@2026-12-01T00:00-0500"
    assert Calendar("month").slots("k", last_minute).write == "k@2026-12-01T00:00"
    assert hours(window, last_minute) == 30 * 24 + 1  # November holds the fall-back hour
    assert hours(window, at(NY, 2026, 3, 15)) == 31 * 24 - 1  # March loses one
    assert window.end(at(NY, 2026, 12, 31, 12)).isoformat() == "2027-01-01T00:00:00-05:00"


# -- offsets that are not whole hours ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "offset", "utc_start"), [("Asia/Kolkata", "+0530", (4, 30)), ("Asia/Kathmandu", "+0545", (4, 15))]
)
def test_hours_align_to_local_hours_in_half_and_quarter_hour_zones(
    tz: str, offset: str, utc_start: tuple[int, int]
) -> None:
    window = Calendar("hour", tz)
    for wall in ((10, 0), (10, 30), (10, 59, 59)):
        now = at(tz, 2026, 5, 1, *wall)
        assert window.slots("k", now).write == f"k@2026-05-01T10:00{offset}"
        start, end = bounds(window, now)
        assert start == datetime(2026, 5, 1, *utc_start, tzinfo=UTC).timestamp() and end == start + 3600
    assert window.slots("k", at(tz, 2026, 5, 1, 11)).write == f"k@2026-05-01T11:00{offset}"
    # A UTC hour boundary inside the local hour does not start a window.
    assert (
        window.slots("k", datetime(2026, 5, 1, 5, tzinfo=UTC).timestamp()).write
        == f"k@2026-05-01T10:00{offset}"
    )


# -- a midnight the clocks skip -------------------------------------------------------------------


def test_a_day_whose_midnight_does_not_exist_starts_at_the_first_instant_that_does() -> None:
    # Santiago springs forward at midnight on the first Sunday of September: 00:00 -04 is 01:00 -03.
    tz = "America/Santiago"
    window = Calendar("day", tz)
    first_instant = datetime(2026, 9, 6, 4, tzinfo=UTC).timestamp()
    noon = at(tz, 2026, 9, 6, 12)
    assert window.start(noon).isoformat() == "2026-09-06T01:00:00-03:00"
    assert bounds(window, noon) == (first_instant, at(tz, 2026, 9, 7))
    assert hours(window, noon) == 23
    assert (
        window.slots("k", noon).write == window.slots("k", first_instant).write == "k@2026-09-06T01:00-0300"
    )
    assert window.end(first_instant - 1).timestamp() == first_instant  # 23:59:59 -04 on the 5th
    assert window.slots("k", first_instant - 1).write == "k@2026-09-05T00:00-0400"
    # And in April it falls back at midnight: 23:00-24:00 on the 4th happens twice, one 25 h day.
    second_pass = at(tz, 2026, 4, 4, 23, 30, fold=1)
    assert window.slots("k", second_pass).write == "k@2026-04-04T00:00-0300"
    assert hours(window, second_pass) == 25
    assert window.start(at(tz, 2026, 4, 5, 0, 30)).isoformat() == "2026-04-05T00:00:00-04:00"


def test_a_window_starting_inside_a_minute_is_not_cached_by_minute() -> None:
    # Monrovia ran at -0:44:30 until 1972: its midnight fell on :30 of a UTC minute.
    window = Calendar("day", "Africa/Monrovia")
    midnight = datetime(1971, 6, 2, 0, 44, 30, tzinfo=UTC).timestamp()
    assert window.start(midnight).timestamp() == midnight
    assert window.slots("k", midnight - 20).write == "k@1971-06-01T00:00-004430"
    assert window.slots("k", midnight + 20).write == "k@1971-06-02T00:00-004430"
    assert window.slots("k", midnight + 20).ttl == 86_400 - 20 + GRACE


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "suggested"),
    [
        ("America/New_Yrok", "'America/New_York'"),
        ("asia/kolkata", "'Asia/Kolkata'"),
        ("Kolkata", "'Asia/Kolkata'"),
        ("New York", "'America/New_York'"),
    ],
)
def test_unknown_zone_is_refused_with_close_names(tz: str, suggested: str) -> None:
    with pytest.raises(ValueError, match=r"is not a time zone zoneinfo knows: did you mean") as raised:
        window_for("day", tz)
    assert f"tz={tz!r}" in str(raised.value) and suggested in str(raised.value)
    with pytest.raises(ValueError, match="did you mean"):
        Calendar("day", tz)  # refused however the window is made


def test_unknown_zone_without_close_names_says_what_a_zone_name_is() -> None:
    with pytest.raises(ValueError) as raised:
        window_for("day", "qqqqqqqqqqqqqqqqqqqqqqqq")
    message = str(raised.value)
    assert "tz='qqqqqqqqqqqqqqqqqqqqqqqq'" in message and "did you mean" not in message
    assert "IANA name, e.g. tz='America/New_York'" in message


@pytest.mark.parametrize("tz", ["posixrules", "right/America/New_York", "../zoneinfo/UTC", ""])
def test_files_that_are_not_zone_names_are_refused(tz: str) -> None:
    with pytest.raises(ValueError, match=r"is not a time zone zoneinfo knows"):
        window_for("day", tz)


def test_non_string_zone_is_refused() -> None:
    with pytest.raises(ValueError, match=r"tz=5 is not a time zone name: give an IANA name as a string"):
        window_for("day", 5)  # type: ignore[arg-type]
    zone = zoneinfo.ZoneInfo(NY)
    with pytest.raises(ValueError, match=r"this ZoneInfo's is tz='America/New_York'"):
        window_for("day", zone)  # type: ignore[arg-type]


@pytest.mark.parametrize(("per", "kind"), [(timedelta(hours=1), "a rolling window"), (None, "no window")])
def test_zone_is_refused_without_a_calendar_window(per: timedelta | None, kind: str) -> None:
    with pytest.raises(ValueError) as raised:
        window_for(per, NY)
    assert str(raised.value) == (
        f"tz='America/New_York' with per={per!r} ({kind}): tz applies to calendar windows only: "
        "per='minute', 'hour', 'day', 'week' or 'month'"
    )


def test_bad_per_is_named_before_the_zone() -> None:
    with pytest.raises(ValueError, match=r"per='fortnight' is not a window"):
        window_for("fortnight", NY)


# -- UTC stays as it was ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "wall", "name"),
    [
        ("minute", (2026, 11, 23, 15, 4, 59), "k@2026-11-23T15:04"),
        ("hour", (2026, 11, 23, 15, 59, 59), "k@2026-11-23T15:00"),
        ("day", (2026, 11, 1, 6, 30), "k@2026-11-01T00:00"),
        ("week", (2026, 11, 29, 23, 59), "k@2026-11-23T00:00"),
        ("month", (2026, 2, 28, 23, 59), "k@2026-02-01T00:00"),
    ],
)
def test_utc_windows_keep_their_slot_names(unit: str, wall: tuple[int, ...], name: str) -> None:
    now = at("UTC", *wall)
    for window in (Calendar(unit), Calendar(unit, None), Calendar(unit, "UTC"), window_for(unit)):  # type: ignore[arg-type]
        assert window == Calendar(unit)  # type: ignore[arg-type]
        assert isinstance(window, Calendar) and window.tz is None
        assert window.slots("k", now).write == name
        assert window.describe() == f"per {unit} (UTC)"
        assert window.start(now).tzinfo is UTC


def test_calendar_stays_frozen_and_hashable() -> None:
    ny, utc = Calendar("day", NY), Calendar("day")
    assert {ny: 1, utc: 2}[Calendar("day", NY)] == 1 and ny != utc and ny != Calendar("hour", NY)
    assert ny.describe() == "per day (America/New_York)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ny.tz = "Europe/Paris"  # type: ignore[misc]
    assert window_for(None) == Lifetime() and window_for(timedelta(minutes=1)) == Rolling(60.0)


# -- end to end through the stores -----------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "store.db")
    yield made
    made.close()


def spend(store: Store, charge: Charge, now: float) -> None:
    reservation = store.reserve([charge], now)
    assert reservation.ok
    store.settle(reservation.holds, [charge.amount])


def test_counter_resets_at_the_zones_midnight_not_utcs(store: Store) -> None:
    local = Charge("usd:team=ml", Calendar("day", NY), 1.0, 0.9)
    utc = Charge("usd:team=ml", Calendar("day"), 1.0, 0.9)
    late = at(NY, 2026, 11, 17, 23, 30)  # 04:30 UTC on the 18th
    next_morning = at(NY, 2026, 11, 18, 0, 30)  # 05:30 UTC: the same UTC day
    spend(store, local, late)
    spend(store, utc, late)
    assert [s.spent for s in store.read([local, utc], late)] == [pytest.approx(0.9)] * 2
    assert store.read([local], next_morning)[0].spent == 0  # a new day in New York
    assert store.read([utc], next_morning)[0].spent == pytest.approx(0.9)  # not yet in UTC
    assert store.reserve([dataclasses.replace(local, amount=0.5)], next_morning).ok
    assert not store.reserve([dataclasses.replace(utc, amount=0.5)], next_morning).ok


def test_counter_outlives_utc_midnight_in_the_zone(store: Store) -> None:
    local = Charge("usd:team=ml", Calendar("day", NY), 1.0, 0.9)
    utc = Charge("usd:team=ml", Calendar("day"), 1.0, 0.9)
    before = datetime(2026, 11, 17, 23, 30, tzinfo=UTC).timestamp()  # 18:30 in New York
    after = datetime(2026, 11, 18, 0, 30, tzinfo=UTC).timestamp()  # 19:30 in New York
    spend(store, local, before)
    spend(store, utc, before)
    assert store.read([utc], after)[0].spent == 0
    assert store.read([local], after)[0].spent == pytest.approx(0.9)
    assert not store.reserve([dataclasses.replace(local, amount=0.5)], after).ok


def test_fall_back_day_keeps_one_counter_for_25_hours(store: Store) -> None:
    local = Charge("usd:team=ml", Calendar("day", NY), 1.0, 0.9)
    spend(store, local, at(NY, 2026, 11, 1, 0, 0, 1))
    assert store.read([local], at(NY, 2026, 11, 1, 23, 59, 59))[0].spent == pytest.approx(0.9)  # 25 h later
    assert store.read([local], at(NY, 2026, 11, 2))[0].spent == 0
