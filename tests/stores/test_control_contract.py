"""The store contract for the control operations (settle's answer, reset, claim, leases,
swap_limit), run against every backend: memory, SQLite and Redis (see test_contract.STORES)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING

import pytest

from tests.stores.conftest import free_port, unique_prefix
from tests.stores.test_contract import STORES, T0, charge
from tollgate.errors import StoreUnavailable
from tollgate.stores.base import CounterState, Store
from tollgate.stores.memory import MemoryStore
from tollgate.stores.sqlite import SQLiteStore
from tollgate.stores.windows import Calendar, Rolling, window_for

if TYPE_CHECKING:  # redis is an optional dependency: the memory and SQLite tests run without it
    from tollgate.stores.redis import RedisStore

DAY = 86_400.0


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Each backend of the contract, made by test_contract's factories, cleared before and after."""
    if request.param == "redis":
        request.getfixturevalue("redis_url")  # starts a server for the session, or skips
    made = STORES[request.param](tmp_path_factory)
    made.clear()
    yield made
    made.clear()
    made.close()


def run_threads(count: int, work: Callable[[], None]) -> None:
    """Run ``work`` in ``count`` threads started together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # a failed assert in a thread must fail the test
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


# -- settle answers what each slot has spent ------------------------------------------------------


def test_settle_returns_each_slots_spent(store: Store) -> None:
    first = store.reserve([charge(0.4, key="a"), charge(0.4, key="b")], T0)
    assert list(store.settle(first.holds, [0.1, 0.25]) or ()) == [pytest.approx(0.1), pytest.approx(0.25)]
    # Two holds on one slot in one settle: each sees the spend up to and including its own.
    two = [store.reserve([charge(0.1, key="a")], T0).holds[0] for _ in range(2)]
    assert list(store.settle(two, [0.2, 0.3]) or ()) == [pytest.approx(0.3), pytest.approx(0.6)]
    assert store.read([charge(0, key="a")], T0)[0].spent == pytest.approx(0.6)
    assert list(store.settle([], []) or ()) == []


def test_settle_of_a_gone_slot_answers_none(store: Store) -> None:
    gone = store.reserve([charge(0.4, key="gone")], T0)
    kept = store.reserve([charge(0.4, key="kept")], T0)
    store.forget([gone.holds[0].slot])
    spent = store.settle([*gone.holds, *kept.holds], [0.2, 0.3])
    assert list(spent or ()) == [None, pytest.approx(0.3)]
    assert store.read([charge(0, key="gone")], T0)[0].spent == 0  # not created again


def test_exactly_one_settle_sees_a_slot_pass_a_mark(store: Store) -> None:
    seen: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            r = store.reserve([charge(0.125, limit=None, key="marks")], T0)
            (spent,) = store.settle(r.holds, [0.125]) or (None,)
            assert spent is not None
            with lock:
                seen.append(spent)

    run_threads(8, work)
    # Settles are serialised: 80 distinct running totals, so one settle crosses any mark.
    assert sorted(seen) == [0.125 * k for k in range(1, 81)]
    assert sum(1 for s in seen if s - 0.125 < 5.0 <= s) == 1


async def test_async_settle_answers_too(store: Store) -> None:
    r = await store.areserve([charge(0.5)], T0)
    assert list(await store.asettle(r.holds, [0.25]) or ()) == [pytest.approx(0.25)]


# -- reset ---------------------------------------------------------------------------------------


def test_reset_zeroes_a_calendar_window_and_keeps_holds(store: Store) -> None:
    day = Calendar("day")
    yesterday = store.reserve([charge(0.5, window=day)], T0 - DAY)
    store.settle(yesterday.holds, [0.5])
    r = store.reserve([charge(0.6, window=day)], T0)
    store.settle(r.holds, [0.6])
    in_flight = store.reserve([charge(0.3, window=day)], T0)
    store.reset([charge(0, window=day)], T0)
    (state,) = store.read([charge(0, window=day)], T0)
    assert (state.spent, state.reserved) == (0.0, pytest.approx(0.3))
    # The call in flight settles as usual, into the fresh window.
    assert list(store.settle(in_flight.holds, [0.2]) or ()) == [pytest.approx(0.2)]
    assert store.reserve([charge(0.8, window=day)], T0).ok
    # Only the current window was reset: yesterday's spend is still there.
    assert store.read([charge(0, window=day)], T0 - DAY)[0].spent == pytest.approx(0.5)


def test_reset_zeroes_every_slot_of_a_rolling_window(store: Store) -> None:
    hour = window_for(timedelta(hours=1))
    assert isinstance(hour, Rolling)
    for at, amount in ((T0, 0.3), (T0 + 1200, 0.4)):  # two different slots of the hour
        store.settle(store.reserve([charge(amount, window=hour)], at).holds, [amount])
    store.reserve([charge(0.1, window=hour)], T0 + 1500)  # in flight: its hold stays
    assert store.read([charge(0, window=hour)], T0 + 1500)[0].spent == pytest.approx(0.7)
    store.reset([charge(0, window=hour)], T0 + 1500)
    (state,) = store.read([charge(0, window=hour)], T0 + 1500)
    assert (state.spent, state.reserved) == (0.0, pytest.approx(0.1))
    store.reset([charge(0, key="never-used", window=hour)], T0)  # creates nothing, fails nothing
    assert store.read([charge(0, key="never-used", window=hour)], T0)[0] == CounterState(0.0, 0.0, 1.0)


# -- claim ---------------------------------------------------------------------------------------


def test_claim_is_won_once_and_again_after_expiry(store: Store) -> None:
    wins: list[bool] = []
    run_threads(8, lambda: wins.append(store.claim("alert:80%", 60.0, T0)))
    assert wins.count(True) == 1
    assert not store.claim("alert:80%", 60.0, T0 + 59.5)
    assert store.claim("other-alert", 60.0, T0)  # flags are independent
    assert store.claim("alert:80%", 60.0, T0 + 60)  # expired on the store clock
    assert not store.claim("alert:80%", 60.0, T0 + 119)
    store.clear()
    assert store.claim("alert:80%", 60.0, T0 + 119)  # clear() forgets flags


# -- leases --------------------------------------------------------------------------------------


def test_acquire_never_grants_more_than_most_among_threads(store: Store) -> None:
    lock = threading.Lock()
    holders, peak, taken = [0], [0], [0]

    def work() -> None:
        for i in range(25):
            lease = f"{threading.get_ident()}-{i}"
            if not store.acquire("pool", lease, 3, 30.0, T0):
                continue
            with lock:
                holders[0] += 1
                peak[0] = max(peak[0], holders[0])
                taken[0] += 1
            time.sleep(0.0005)
            with lock:
                holders[0] -= 1
            store.let_go("pool", lease)

    run_threads(12, work)
    assert 1 <= peak[0] <= 3 and taken[0] > 0
    assert all(store.acquire("pool", f"after-{i}", 3, 30.0, T0) for i in range(3))  # all given back


def test_expired_leases_free_their_slots(store: Store) -> None:
    assert all(store.acquire("pool", name, 3, 10.0, T0) for name in "abc")
    assert not store.acquire("pool", "d", 3, 10.0, T0 + 9.9)
    assert store.acquire("pool", "a", 3, 10.0, T0 + 5)  # held already: extended, not refused
    assert store.acquire("pool", "d", 3, 10.0, T0 + 10)  # b and c expired; a runs to T0 + 15
    assert store.acquire("pool", "e", 3, 10.0, T0 + 10)
    assert not store.acquire("pool", "f", 3, 10.0, T0 + 14)
    assert store.acquire("other-pool", "f", 3, 10.0, T0 + 14)  # keys are independent
    assert not store.acquire("empty", "x", 0, 10.0, T0)


def test_renew_keeps_a_lease_past_its_ttl(store: Store) -> None:
    assert store.acquire("one", "a", 1, 10.0, T0)
    assert store.acquire("two", "b", 1, 10.0, T0)
    assert store.acquire("late", "c", 1, 10.0, T0)
    store.renew([("one", "a"), ("two", "b"), ("one", "never-held")], 10.0, T0 + 8)  # all in one call
    assert not store.acquire("one", "x", 1, 10.0, T0 + 15)
    assert not store.acquire("two", "x", 1, 10.0, T0 + 17.9)
    assert store.acquire("one", "y", 1, 10.0, T0 + 18)
    # An expired lease stays gone: renewing it does not bring it back.
    store.renew([("late", "c")], 100.0, T0 + 10)
    assert store.acquire("late", "z", 1, 10.0, T0 + 10)
    store.renew([], 10.0, T0)


def test_let_go_gives_the_slot_back(store: Store) -> None:
    assert store.acquire("one", "a", 1, 60.0, T0)
    assert not store.acquire("one", "b", 1, 60.0, T0)
    store.let_go("one", "a")
    store.let_go("one", "a")  # gone already: a no-op
    store.let_go("never", "x")
    assert store.acquire("one", "b", 1, 60.0, T0)
    store.clear()
    assert store.acquire("one", "c", 1, 60.0, T0)  # clear() forgets leases


async def test_async_lease_twins(store: Store) -> None:
    assert await store.aacquire("one", "a", 1, 60.0, T0)
    assert not await store.aacquire("one", "b", 1, 60.0, T0)
    await store.alet_go("one", "a")
    assert await store.aacquire("one", "b", 1, 60.0, T0)


def _hammer(
    kind: str, where: str, prefix: str, go: Event, holders: Synchronized[int], peak: Synchronized[int]
) -> None:
    """A child process: take and give back leases of one pool, counting concurrent holders."""
    if kind == "sqlite":
        child: Store = SQLiteStore(where)
    else:
        from tollgate.stores.redis import RedisStore

        child = RedisStore(where, prefix=prefix)
    go.wait()
    for i in range(40):
        lease = f"{multiprocessing.current_process().pid}-{i}"
        if not child.acquire("pool", lease, 3, 60.0, T0):
            continue
        with holders.get_lock():  # counted only while the store says the lease is held
            holders.value += 1
            peak.value = max(peak.value, holders.value)
        time.sleep(0.001)
        with holders.get_lock():
            holders.value -= 1
        child.let_go("pool", lease)
    child.close()


def test_acquire_never_grants_more_than_most_among_processes(
    store: Store, request: pytest.FixtureRequest
) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("a memory store lives in one process")
    if isinstance(store, SQLiteStore):
        kind, where, prefix = "sqlite", store.path, ""
    else:
        from tollgate.stores.redis import RedisStore

        assert isinstance(store, RedisStore)
        kind, where, prefix = "redis", request.getfixturevalue("redis_url"), store.prefix
    spawn = multiprocessing.get_context("spawn")
    go, holders, peak = spawn.Event(), spawn.Value("i", 0), spawn.Value("i", 0)
    children = [
        spawn.Process(target=_hammer, args=(kind, where, prefix, go, holders, peak)) for _ in range(4)
    ]
    for child in children:
        child.start()
    go.set()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0] * 4
    assert 1 <= peak.value <= 3 and holders.value == 0
    assert all(store.acquire("pool", f"after-{i}", 3, 60.0, T0) for i in range(3))  # all given back


# -- swap_limit ----------------------------------------------------------------------------------


def test_swap_limit_compares_and_swaps(store: Store) -> None:
    v0 = store.limits_version()
    assert store.swap_limit("tenant=acme", None, '{"usd": 50}')  # create: none expected
    v1 = store.limits_version()
    assert v1 != v0
    assert not store.swap_limit("tenant=acme", None, '{"usd": 60}')  # exists already
    assert not store.swap_limit("tenant=acme", '{"usd": 40}', '{"usd": 60}')  # not what is there
    assert store.limits() == (v1, {"tenant=acme": '{"usd": 50}'})  # a failed swap bumps nothing
    assert store.swap_limit("tenant=acme", '{"usd": 50}', '{"usd": 60}')
    v2, docs = store.limits()
    assert v2 not in (v0, v1) and docs == {"tenant=acme": '{"usd": 60}'}
    assert store.swap_limit("tenant=acme", '{"usd": 60}', None)  # delete
    assert store.limits()[1] == {} and store.limits_version() not in (v1, v2)
    assert not store.swap_limit("tenant=acme", '{"usd": 60}', None)
    assert store.swap_limit("empty", None, "")  # "" is a document like any other
    assert not store.swap_limit("empty", None, "x") and store.swap_limit("empty", "", None)


def test_swap_limit_read_modify_write_loses_no_update(store: Store) -> None:
    store.put_limit("tenant=acme", json.dumps({"usd": 0}))

    def top_up() -> None:
        for _ in range(10):
            while True:  # retry on False: another thread swapped first
                current = store.limits()[1]["tenant=acme"]
                raised = json.dumps({"usd": json.loads(current)["usd"] + 1})
                if store.swap_limit("tenant=acme", current, raised):
                    break

    run_threads(8, top_up)
    assert json.loads(store.limits()[1]["tenant=acme"]) == {"usd": 80}


# -- Redis only ----------------------------------------------------------------------------------


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[RedisStore]:
    pytest.importorskip("redis")
    from tollgate.stores.redis import RedisStore

    made = RedisStore(redis_url, prefix=unique_prefix())
    yield made
    made.clear()
    made.close()


def test_redis_keys_share_the_stores_hash_tag(on_redis: RedisStore, redis_url: str) -> None:
    store = on_redis
    assert store.claim("alert", 60.0, T0)
    assert store.acquire("pool", "a", 2, 60.0, T0)
    store.reset([charge(0, key="never-used")], T0)  # creates no slot
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(key.decode() for key in client.scan_iter(match=f"*{store.prefix}*"))
        tag = f"{{{store.prefix}}}:"
        assert keys == [tag + "flag:alert", tag + "lease:pool"]
        # The keys outlive their store-clock expiry a little on the server clock, never forever.
        assert all(60_000 < client.pttl(key) <= 120_000 for key in keys)
    finally:
        client.close()


def test_redis_renew_is_one_round_trip(on_redis: RedisStore) -> None:
    store = on_redis
    store.renew([("warm", "up")], 10.0, T0)  # loads the script
    before = store.round_trips
    store.renew([("a", "1"), ("b", "2"), ("c", "3")], 10.0, T0)
    assert store.round_trips == before + 1


def test_redis_settle_that_fails_is_queued_and_raises(on_redis: RedisStore) -> None:
    # The store cannot say what was spent: the settle raises (the gate knows it is replayed).
    hold = on_redis.reserve([charge(0.4)], T0).holds[0]
    down = type(on_redis)(f"redis://127.0.0.1:{free_port()}/0", prefix=on_redis.prefix)
    with pytest.raises(StoreUnavailable):
        down.settle([hold], [0.1])
    assert down.pending == 1
    down.close()  # cannot replay: logs that the queued settle is left to expire
    assert list(on_redis.settle([hold], [0.1]) or ()) == [pytest.approx(0.1)]
    assert list(on_redis.settle([hold], [0.1]) or ()) == [None]  # settled already: skipped
