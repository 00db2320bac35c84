"""Window arithmetic: slot names and lifetimes at UTC boundaries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tollgate.stores.windows import GRACE, ROLLING_SLOTS, Calendar, Rolling


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("unit", "now", "name", "end"),
    [
        ("minute", ts(2026, 11, 23, 15, 4, 59), "k@2026-11-23T15:04", ts(2026, 11, 23, 15, 5)),
        ("hour", ts(2026, 11, 23, 15, 59, 59), "k@2026-11-23T15:00", ts(2026, 11, 23, 16)),
        ("day", ts(2026, 11, 23, 23, 59, 59), "k@2026-11-23T00:00", ts(2026, 11, 24)),
        ("week", ts(2026, 11, 29, 23, 59), "k@2026-11-23T00:00", ts(2026, 11, 30)),  # Mon..Sun
        ("month", ts(2026, 2, 28, 23, 59), "k@2026-02-01T00:00", ts(2026, 3, 1)),
        ("month", ts(2026, 12, 31, 23, 59, 59), "k@2026-12-01T00:00", ts(2027, 1, 1)),
    ],
)
def test_calendar_slot_names_and_ttls(unit: str, now: float, name: str, end: float) -> None:
    slots = Calendar(unit).slots("k", now)  # type: ignore[arg-type]
    assert slots.read == (name,) and slots.write == name
    assert slots.ttl == -int(-(end - now) // 1) + GRACE


def test_next_instant_is_the_next_window() -> None:
    assert Calendar("day").slots("k", ts(2026, 11, 24)).write == "k@2026-11-24T00:00"
    assert Calendar("month").slots("k", ts(2026, 3, 1)).write == "k@2026-03-01T00:00"


def test_rolling_window_reads_its_sub_slots() -> None:
    slots = Rolling(60.0).slots("k", 1_000_000.0)
    assert len(slots.read) == ROLLING_SLOTS and slots.write == slots.read[-1]
    later = Rolling(60.0).slots("k", 1_000_000.0 + 2.0)  # one sub-slot (2 s) later
    assert later.read[:-1] == slots.read[1:]
