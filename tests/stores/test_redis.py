"""RedisStore: one round trip per operation, TTLs, hash tags, scripts, outages, many processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("redis")

import redis
from redis.crc import key_slot

from tests.stores.conftest import ROOT, finish, free_port, run_child, unique_prefix
from tollgate.errors import StoreUnavailable
from tollgate.stores import open_store
from tollgate.stores.base import Charge, Hold
from tollgate.stores.redis import RedisStore
from tollgate.stores.windows import LIFETIME_TTL, Calendar, Lifetime, Rolling

T0 = 1_795_000_000.0
TWO = [  # a daily USD budget and a rolling-minute token limit: the usual pair
    Charge("usd:team=ml", Calendar("day"), 5.0, 0.02),
    Charge("tokens:team=ml", Rolling(60.0), 100_000.0, 1_500.0),
]


def charge(amount: float, limit: float | None = 1.0, key: str = "b") -> Charge:
    return Charge(key, Lifetime(), limit, amount)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore(redis_url, prefix=unique_prefix())
    yield s
    s.clear()
    s.close()


_PRELUDE = (
    "import asyncio, os, sys\nfrom tollgate.stores.redis import RedisStore\n"
    "from tollgate.stores.base import Charge\nfrom tollgate.stores.windows import Lifetime\n"
    'store = RedisStore(os.environ["URL"], prefix=os.environ["PREFIX"])\n'
)


def redis_child(url: str, prefix: str, code: str) -> subprocess.Popen[str]:
    return run_child(_PRELUDE, code, URL=url, PREFIX=prefix)


def test_another_process_sees_holds_and_standing_limits(store: RedisStore, redis_url: str) -> None:
    v0 = store.limits_version()
    child = redis_child(
        redis_url,
        store.prefix,
        """
        assert store.reserve([Charge("b", Lifetime(), 1.0, 0.3)], 0.0).ok
        store.put_limit("tenant=acme", '{"usd": 5}')
        """,
    )
    finish(child)
    (state,) = store.read([charge(0)], 0.0)
    assert (state.spent, state.reserved) == (0.0, 0.3)
    version, documents = store.limits()
    assert version != v0 and documents == {"tenant=acme": '{"usd": 5}'}


def test_processes_never_overspend(store: RedisStore, redis_url: str) -> None:
    # 4 processes x 100 concurrent asyncio reserves of $0.01 against one $1.00 cap.
    children = [
        redis_child(
            redis_url,
            store.prefix,
            """
            async def main():
                calls = [store.areserve([Charge("race", Lifetime(), 1.0, 0.01)], 0.0) for _ in range(100)]
                results = await asyncio.gather(*calls)
                await store.aclose()
                return sum(r.ok for r in results)

            print("ready", flush=True)
            sys.stdin.readline()  # start together
            print(asyncio.run(main()))
            """,
        )
        for _ in range(4)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    granted = sum(int(finish(child)) for child in children)
    assert granted == 100
    assert store.read([charge(0, key="race")], 0.0)[0].reserved == pytest.approx(1.0)


def test_one_round_trip_per_operation(store: RedisStore) -> None:
    store.release(store.reserve(TWO, T0).holds)  # loads the scripts
    store.settle(store.reserve(TWO, T0).holds, [0.01, 1_000.0])
    for _ in range(3):
        before = store.round_trips
        r = store.reserve(TWO, T0)
        assert r.ok and store.round_trips == before + 1
        store.settle(r.holds, [0.01, 1_000.0])
        assert store.round_trips == before + 2
        store.release(store.reserve(TWO, T0).holds)
        assert store.round_trips == before + 4


async def test_one_round_trip_per_async_operation(store: RedisStore) -> None:
    try:
        await store.arelease((await store.areserve(TWO, T0)).holds)
        await store.asettle((await store.areserve(TWO, T0)).holds, [0.01, 1_000.0])
        before = store.round_trips
        r = await store.areserve(TWO, T0)
        await store.asettle(r.holds, [0.01, 1_000.0])
        await store.arelease((await store.areserve(TWO, T0)).holds)
        assert store.round_trips == before + 4
        assert store.read(TWO, T0)[0].spent == pytest.approx(0.02)
    finally:
        await store.aclose()


async def test_a_burst_of_async_reserves_queues_for_connections(store: RedisStore) -> None:
    # More concurrent calls than the pool has connections: they wait their turn, none fails.
    try:
        results = await asyncio.gather(*(store.areserve([charge(0.01)], T0) for _ in range(1_000)))
        assert sum(r.ok for r in results) == 100
    finally:
        await store.aclose()


def test_slots_expire_by_themselves_and_ttls_never_shrink(store: RedisStore, client: redis.Redis) -> None:
    r = store.reserve([charge(0.1)], T0)
    (key,) = [f"{{{store.prefix}}}:slot:{hold.slot}" for hold in r.holds]
    assert 0 < client.pttl(key) <= LIFETIME_TTL * 1000
    assert LIFETIME_TTL - 5 <= client.ttl(key) <= LIFETIME_TTL
    client.expire(key, 30 * 86_400)  # longer than this charge needs: a reserve must keep it
    store.reserve([charge(0.1)], T0)
    store.settle(r.holds, [0.1])
    assert client.ttl(key) > 29 * 86_400
    client.expire(key, 10)  # shorter: a reserve brings it back up
    store.reserve([charge(0.1)], T0)
    assert client.ttl(key) > LIFETIME_TTL - 5
    for day_key in client.scan_iter(match=f"{{{store.prefix}}}:slot:*"):
        assert client.pttl(day_key) > 0  # nothing lives forever


def test_a_settle_after_expiry_creates_no_immortal_key(store: RedisStore, client: redis.Redis) -> None:
    r = store.reserve([charge(0.1)], T0)
    client.delete(*client.scan_iter(match=f"{{{store.prefix}}}:slot:*"))  # the slot expired
    store.settle(r.holds, [0.1])
    store.release(r.holds)
    assert list(client.scan_iter(match=f"{{{store.prefix}}}:slot:*")) == []


def test_every_key_of_an_operation_shares_one_hash_tag(
    store: RedisStore, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[list[str]] = []
    real = client.evalsha

    def spy(sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        sent.append([str(k) for k in keys_and_args[:numkeys]])
        return real(sha, numkeys, *keys_and_args)

    monkeypatch.setattr(client, "evalsha", spy)
    spied = RedisStore(client, prefix=store.prefix)
    r = spied.reserve(TWO, T0)
    spied.settle(r.holds, [0.01, 10.0])
    spied.release(spied.reserve(TWO, T0).holds)
    spied.put_limit("tenant=acme", "{}")
    assert len(sent) == 5 and all(sent)
    keys = [key for call in sent for key in call]
    assert all(key.startswith(f"{{{store.prefix}}}:") for key in keys)
    assert len({key_slot(key.encode()) for key in keys}) == 1
    # Nothing else was written outside the tag either.
    written = [key.decode() for key in client.scan_iter(match=f"*{store.prefix}*")]
    assert written and all(key.startswith(f"{{{store.prefix}}}:") for key in written)


def test_recovers_from_a_script_flush(store: RedisStore, client: redis.Redis) -> None:
    store.settle(store.reserve([charge(0.1)], T0).holds, [0.1])
    client.script_flush()
    before = store.round_trips
    r = store.reserve([charge(0.1)], T0)
    assert r.ok and r.states[0].spent == pytest.approx(0.1)
    assert store.round_trips == before + 3  # NOSCRIPT, SCRIPT LOAD, EVALSHA
    client.script_flush()
    store.settle(r.holds, [0.1])
    assert store.read([charge(0)], T0)[0].spent == pytest.approx(0.2)


async def test_async_recovers_from_a_script_flush(store: RedisStore, client: redis.Redis) -> None:
    try:
        assert (await store.areserve([charge(0.1)], T0)).ok
        client.script_flush()
        r = await store.areserve([charge(0.1)], T0)
        assert r.ok and r.states[0].reserved == pytest.approx(0.1)
    finally:
        await store.aclose()


def test_a_down_server_raises_store_unavailable_without_the_password() -> None:
    port = free_port()  # nothing listens there
    store = RedisStore(f"redis://:hunter2@127.0.0.1:{port}/0")
    hold = Hold("b", 0.1, 60)
    started = time.monotonic()
    for operation, call in [
        ("reserve", lambda: store.reserve([charge(0.1)], T0)),
        ("settle", lambda: store.settle([hold], [0.1])),
        ("release", lambda: store.release([hold])),
        ("read", lambda: store.read([charge(0)], T0)),
        ("limits", store.limits),
        ("limits_version", store.limits_version),
        ("put_limit", lambda: store.put_limit("x", "{}")),
        ("clear", store.clear),
    ]:
        with pytest.raises(StoreUnavailable) as e:
            call()
        assert f"redis://:***@127.0.0.1:{port}/0 unreachable during {operation}:" in str(e.value)
        assert "hunter2" not in str(e.value)
    assert time.monotonic() - started < 10  # fails fast: no long retry loop
    store.close()


async def test_a_down_server_raises_store_unavailable_async() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0?password=hunter2")
    with pytest.raises(StoreUnavailable, match=r"password=\*\*\*.* during reserve") as e:
        await store.areserve([charge(0.1)], T0)
    assert "hunter2" not in str(e.value)
    await store.aclose()


def test_floats_survive_the_trip(store: RedisStore) -> None:
    amounts = [0.1, 0.2, 1e-7, 123_456_789.25]
    for amount in amounts:
        r = store.reserve([charge(amount, limit=None, key=str(amount))], T0)
        assert r.ok
        assert store.read([charge(0, key=str(amount))], T0)[0].reserved == amount
        store.settle(r.holds, [amount / 3])
        assert store.read([charge(0, key=str(amount))], T0)[0].spent == pytest.approx(amount / 3, rel=1e-15)
    # An infinite limit is no limit; the tolerance is fits()'s.
    assert store.reserve([charge(1e300, limit=float("inf"), key="inf")], T0).ok
    assert store.reserve([charge(1.0 + 1e-13, limit=1.0, key="edge")], T0).ok


def test_works_with_a_client_of_any_decoding(store: RedisStore, redis_url: str) -> None:
    for decode in (True, False):
        client = redis.Redis.from_url(redis_url, decode_responses=decode)
        other = RedisStore(client, prefix=store.prefix)
        other.put_limit("tenant=acme", json.dumps({"usd": 5}))
        assert other.limits()[1] == {"tenant=acme": '{"usd": 5}'}
        assert other.reserve([charge(0.1)], T0).ok
        # No async client: the async twins run the sync client in a thread.
        assert asyncio.run(other.areserve([charge(0.1)], T0)).ok
        other.close()  # leaves the caller's client open
        assert client.ping()
        client.close()
    assert store.read([charge(0)], T0)[0].reserved == pytest.approx(0.4)


def test_clear_forgets_only_its_own_keys_and_moves_the_version_on(store: RedisStore, redis_url: str) -> None:
    neighbour = RedisStore(redis_url, prefix=unique_prefix())
    try:
        for s in (store, neighbour):
            s.reserve([charge(0.5)], T0)
            s.put_limit("x", "{}")
        version = store.limits_version()
        store.clear()
        assert store.limits_version() > version and store.limits()[1] == {}
        assert store.read([charge(0)], T0)[0].reserved == 0.0
        assert neighbour.read([charge(0)], T0)[0].reserved == 0.5 and neighbour.limits()[1] == {"x": "{}"}
    finally:
        neighbour.clear()
        neighbour.close()


def test_open_store_redis_uris_connect_lazily() -> None:
    for uri in ("redis://:pw@cache:6379/2", "rediss://cache:6380/0", "unix:///run/redis.sock?db=1"):
        store = open_store(uri)
        assert isinstance(store, RedisStore) and store.round_trips == 0
        assert "pw" not in repr(store)
    with pytest.raises(ValueError, match="braces"):
        RedisStore("redis://cache", prefix="{x}")


def test_import_tollgate_does_not_import_redis() -> None:
    probe = (
        "import sys, tollgate, tollgate.stores; a = 'redis' in sys.modules; "
        "tollgate.stores.RedisStore; print(a, 'redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "True"]
