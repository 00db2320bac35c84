"""The store contract, run against every backend (memory here; SQLite and Redis join via STORES)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from tests.stores.conftest import redis_store, sqlite_store
from tollgate.stores.base import Charge, Store
from tollgate.stores.memory import MemoryStore
from tollgate.stores.windows import Calendar, Lifetime, Rolling, Window, window_for

# name -> factory; a factory may pytest.skip() (e.g. no Redis server reachable).
STORES: dict[str, Callable[[pytest.TempPathFactory], Store]] = {
    "memory": lambda tmp: MemoryStore(),
    "sqlite": sqlite_store,
    "redis": redis_store,
}

T0 = 1_795_000_000.0  # a fixed instant: 2026-11-17 08:53:20 UTC


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    if request.param == "redis":
        request.getfixturevalue("redis_url")  # starts a server for the session, or skips
    s = STORES[request.param](tmp_path_factory)
    s.clear()
    yield s
    s.clear()
    s.close()


def charge(amount: float, limit: float | None = 1.0, key: str = "b", window: Window | None = None) -> Charge:
    return Charge(key, window or Lifetime(), limit, amount)


def test_reserve_settle_release(store: Store) -> None:
    first = store.reserve([charge(0.4)], T0)
    assert first.ok and first.states[0].spent == 0 and first.states[0].reserved == 0
    second = store.reserve([charge(0.4)], T0)
    assert second.ok and second.states[0].reserved == pytest.approx(0.4)
    third = store.reserve([charge(0.4)], T0)
    assert not third.ok and third.refused == (0,) and third.holds == ()
    assert third.states[0].reserved == pytest.approx(0.8)
    store.settle(first.holds, [0.1])
    store.release(second.holds)
    (state,) = store.read([charge(0)], T0)
    assert (state.spent, state.reserved) == (pytest.approx(0.1), pytest.approx(0.0))
    assert state.remaining == pytest.approx(0.9)


def test_all_or_nothing_across_counters(store: Store) -> None:
    ok = store.reserve([charge(0.5, key="outer"), charge(0.5, limit=0.6, key="inner")], T0)
    assert ok.ok
    refused = store.reserve([charge(0.2, key="outer"), charge(0.2, limit=0.6, key="inner")], T0)
    assert not refused.ok and refused.refused == (1,)
    # The outer counter was not touched by the refused reserve.
    assert store.read([charge(0, key="outer")], T0)[0].reserved == pytest.approx(0.5)


def test_unlimited_charge_only_counts(store: Store) -> None:
    for _ in range(3):
        r = store.reserve([charge(10.0, limit=None, key="tokens")], T0)
        assert r.ok
        store.settle(r.holds, [7.0])
    assert store.read([charge(0, limit=None, key="tokens")], T0)[0].spent == pytest.approx(21.0)


def test_calendar_window_rolls_over_at_utc_midnight(store: Store) -> None:
    day = Calendar("day")
    midnight = 1_795_046_400.0  # 2026-11-18 00:00:00 UTC
    r = store.reserve([charge(0.9, window=day)], midnight - 1)
    store.settle(r.holds, [0.9])
    assert not store.reserve([charge(0.2, window=day)], midnight - 0.5).ok
    assert store.reserve([charge(0.2, window=day)], midnight).ok


def test_rolling_window_forgets_old_spend(store: Store) -> None:
    hour = window_for(timedelta(hours=1))
    assert isinstance(hour, Rolling)
    r = store.reserve([charge(1.0, window=hour)], T0)
    store.settle(r.holds, [1.0])
    assert not store.reserve([charge(0.1, window=hour)], T0 + 1800).ok
    assert store.reserve([charge(0.1, window=hour)], T0 + 3600 + 3600 / 30).ok


def test_holds_expire_with_their_slot(store: Store) -> None:
    minute = Calendar("minute")
    store.reserve([charge(1.0, window=minute)], T0)  # never settled: the process "died"
    assert store.reserve([charge(1.0, window=minute)], T0 + 60).ok


def test_standing_limits_are_versioned(store: Store) -> None:
    v0 = store.limits_version()
    store.put_limit("tenant=acme", '{"usd": 50}')
    v1, docs = store.limits()
    assert v1 != v0 and docs == {"tenant=acme": '{"usd": 50}'}
    store.put_limit("tenant=acme", '{"usd": 80}')
    assert store.limits_version() != v1
    assert store.delete_limit("tenant=acme") is True
    assert store.delete_limit("tenant=acme") is False
    assert store.limits()[1] == {}


def test_concurrent_reserves_never_overspend(store: Store) -> None:
    granted: list[int] = []

    def worker() -> None:
        for _ in range(50):
            r = store.reserve([charge(0.01, limit=1.0, key="race")], T0)
            if r.ok:
                granted.append(1)
                store.settle(r.holds, [0.01])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 100  # 400 attempts, exactly 100 fit under $1.00
    assert store.read([charge(0, key="race")], T0)[0].spent == pytest.approx(1.0)


async def test_async_twins(store: Store) -> None:
    r = await store.areserve([charge(0.5)], T0)
    assert r.ok
    await store.asettle(r.holds, [0.25])
    r2 = await store.areserve([charge(0.5)], T0)
    await store.arelease(r2.holds)
    assert store.read([charge(0)], T0)[0].spent == pytest.approx(0.25)


def test_forget_drops_slots(store: Store) -> None:
    r = store.reserve([charge(0.5, key="scoped")], T0)
    store.settle(r.holds, [0.5])
    store.forget([hold.slot for hold in r.holds])
    assert store.read([charge(0, key="scoped")], T0)[0].spent == 0
    store.settle(r.holds, [0.5])  # a late settle of a forgotten slot is harmless
    store.forget([])
