"""Standing limits: kept in the store, matched by tags, combined with ambient budgets."""

from __future__ import annotations

from datetime import timedelta

import pytest

import tollgate
from tests.budgets.helpers import request, run


def test_standing_limit_applies_to_matching_tags_only() -> None:
    tollgate.set_limit(usd=0.011, per="day", tenant="acme")
    with tollgate.track(tenant="acme"):
        run(request(cap=500), output_tokens=500)
        run(request(cap=500), output_tokens=500)
        with pytest.raises(tollgate.BudgetExceeded, match=r"limit\[tenant=acme\]"):
            run(request(cap=500))
    with tollgate.track(tenant="globex"):
        for _ in range(3):
            run(request(cap=500), output_tokens=500)


def test_changing_a_limit_keeps_what_was_spent_and_applies_on_the_next_call() -> None:
    tollgate.set_limit(usd=0.011, per="day", tenant="acme")
    with tollgate.track(tenant="acme"):
        run(request(cap=500), output_tokens=500)
        run(request(cap=500), output_tokens=500)
        tollgate.set_limit(usd=0.02, per="day", tenant="acme")  # the operator raises the cap
        run(request(cap=500), output_tokens=500)  # fits under the new cap
        with pytest.raises(tollgate.BudgetExceeded):  # ~$0.015 spent + $0.005: over $0.02
            run(request(cap=500))
        assert tollgate.remove_limit(tenant="acme") is True
        run(request(cap=500))
    assert tollgate.remove_limit(tenant="acme") is False


def test_standing_limits_combine_with_ambient_budgets() -> None:
    tollgate.set_limit(usd=1.0, per="month", tenant="acme")
    with tollgate.track(tenant="acme"), tollgate.budget(usd=0.006), pytest.raises(tollgate.BudgetExceeded):
        run(request(cap=500), output_tokens=500)
        run(request(cap=500))  # the ambient budget refuses, though the standing one has room


def test_standing_limit_keyed_per_api_key() -> None:
    tollgate.set_limit(usd=0.006, per="day", key="api_key")
    for api_key in ("k1", "k2"):
        with tollgate.track(api_key=api_key):
            run(request(cap=500), output_tokens=500)
    with tollgate.track(api_key="k1"), pytest.raises(tollgate.BudgetExceeded):
        run(request(cap=500))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"usd": 1, "per": "fortnight", "tenant": "a"}, "per='fortnight' is not a window"),
        ({"usd": 1, "per": None, "tz": "UTC", "tenant": "a"}, "tz"),
        ({"usd": 1, "per": timedelta(hours=1), "warn_at": 0.5, "tenant": "a"}, "rolling window"),
        ({"usd": 1, "per": "day", "warn_at": (0.5, 1.5), "tenant": "a"}, "warn_at"),
        ({"usd": 1, "per": None, "burn_rate": True, "tenant": "a"}, "burn_rate=True"),
        ({"usd": 1, "per": "day", "on_exceed": lambda c: "block", "tenant": "a"}, "cannot be stored"),
        ({"usd": 1, "per": "day", "tenant": 5}, "tag values are strings"),
        ({"usd": -1, "per": "day", "tenant": "a"}, "positive number"),
        ({"usd": 1, "per": "day", "on_exceed": "blok", "tenant": "a"}, "on_exceed='blok'"),
    ],
)
def test_invalid_standing_limits(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tollgate.set_limit(**kwargs)  # type: ignore[arg-type]


def test_a_new_limit_applies_at_once_to_calls_that_trust_the_cache() -> None:
    # With an ambient budget the call reserves anyway and trusts the cached standing limits;
    # the store's reply says they moved, so the reservation is redone under the new limit.
    store = tollgate.config.settings().store
    with tollgate.track(tenant="acme"), tollgate.budget(usd=1, per="day", name="ambient"):
        run(request(cap=500))  # loads (and caches) the standing limits: none yet
        tollgate.set_limit(usd=0.001, per="day", tenant="acme")  # as if from another process
        before = store.read(
            [
                tollgate.stores.Charge(
                    "budget:ambient:usd", tollgate.budget(usd=1, per="day").spec.window, 1, 0
                )
            ],
            tollgate.preflight.store_clock(),
        )[0]
        with pytest.raises(tollgate.BudgetExceeded, match=r"limit\[tenant=acme\]"):
            run(request(cap=500))
        after = store.read(
            [
                tollgate.stores.Charge(
                    "budget:ambient:usd", tollgate.budget(usd=1, per="day").spec.window, 1, 0
                )
            ],
            tollgate.preflight.store_clock(),
        )[0]
    assert after.reserved == before.reserved == 0  # the stale first reservation was released


def test_a_call_meets_exactly_the_limits_its_tags_match_among_many() -> None:
    # One limit per tenant (the SaaS case), plus limits on two tags, on another tag, and on none
    # at all: the tag index finds exactly the limits a full scan finds, in the same order.
    import json

    from tollgate.budgets.standing import StandingLimits
    from tollgate.config import settings

    for i in range(500):
        tollgate.set_limit(usd=10.0 + i, per="day", tenant=f"t{i}")
    tollgate.set_limit(usd=1.0, per="day", tenant="t7", feature="search")
    tollgate.set_limit(usd=2.0, per="day", feature="search")
    tollgate.set_limit(usd=3.0, per="month")
    store = settings().store
    limits = StandingLimits()

    def names(**tags: str) -> list[str]:
        return [frame.spec.name for frame in limits.frames(store, tags)]

    def scan(**tags: str) -> list[str]:  # every stored limit, in the store's order, matched one by one
        _, documents = store.limits()
        matches = [json.loads(doc)["match"] for _, doc in sorted(documents.items())]
        found = [m for m in matches if all(tags.get(k) == v for k, v in m.items())]
        return ["limit[" + ",".join(f"{k}={v}" for k, v in sorted(m.items())) + "]" for m in found]

    assert set(names(tenant="t7", feature="search")) == {
        "limit[tenant=t7]",
        "limit[feature=search,tenant=t7]",
        "limit[feature=search]",
        "limit[]",
    }
    assert set(names(tenant="t7")) == {"limit[tenant=t7]", "limit[]"}
    assert set(names(tenant="t499", feature="chat")) == {"limit[tenant=t499]", "limit[]"}
    assert names(tenant="nobody") == names() == ["limit[]"]
    for tags in ({"tenant": "t7", "feature": "search"}, {"feature": "search"}, {"tenant": "t42", "x": "y"}):
        assert names(**tags) == scan(**tags)  # the same limits, in the same order, as a full scan
