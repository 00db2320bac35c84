from __future__ import annotations

from datetime import timedelta

import pytest

import tollgate
from tollgate.stores.windows import Calendar, Lifetime, Rolling


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "a budget needs a limit"),
        ({"usd": -1}, "usd=-1: a limit must be a positive number"),
        ({"usd": 0}, "usd=0: a limit must be a positive number"),
        ({"tokens": True}, "tokens=True: a limit must be a positive number"),
        ({"usd": 1, "on_exceed": "blok"}, "on_exceed='blok': use one of block, downgrade"),
        ({"usd": 1, "on_exceed": "downgrade"}, "needs a downgrade map"),
        ({"usd": 1, "per": "fortnight"}, "per='fortnight' is not a window"),
        ({"usd": 1, "per": timedelta(0)}, "must be longer than zero"),
        ({"usd": 1, "key": ["tenant"]}, "key=\\['tenant'\\]: use a tag name"),
        ({"usd": 1, "key": "ten ant"}, "use a tag name"),
        ({"usd": 1, "downgrade": {"gpt-4o": 3}}, "a map of model name"),
        ({"usd": 1, "clamp_floor": 0}, "clamp_floor=0"),
    ],
)
def test_invalid_config_fails_at_creation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tollgate.budget(**kwargs)  # type: ignore[arg-type]


def test_windows_and_default_names() -> None:
    assert tollgate.budget(usd=1).spec.window == Lifetime()
    assert tollgate.budget(usd=5, per="day", key="tenant").spec.window == Calendar("day")
    assert tollgate.budget(tokens=10, per=timedelta(hours=1)).spec.window == Rolling(3600.0)
    assert tollgate.budget(usd=5, per="day", key="tenant").spec.name == "usd=5/day/tenant"
    assert tollgate.budget(usd=5, tokens=100, key=("tenant", "feature")).spec.key == ("tenant", "feature")
    assert tollgate.budget(usd=5, name="nightly").spec.name == "nightly"
