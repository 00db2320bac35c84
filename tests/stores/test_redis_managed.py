"""RedisStore on managed / HA Redis: TLS with client certificates, Redis Cluster, Sentinel.

Real servers, started by ``tests/redisservers.py`` (skipped, saying why, without redis-server),
and real calls through the gate (the ``openai`` SDK, ``tollgate.instrument``, a stand-in API).
Each shape must keep the store's promises: the cap holds exactly, a server that goes away
fails calls closed and its settles are replayed once it is back (or on the new primary),
nothing stays held, and no password shows in an error or a repr.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis")

import httpx
import openai
import redis

import tollgate
from tests.budgets.helpers import SAY_OK, completion, per_call_usd
from tests.redisservers import (
    Cluster,
    Sentinels,
    TLSServer,
    make_certs,
    tls_server,
    wait_for,
)
from tests.stores.conftest import unique_prefix
from tollgate.errors import StoreUnavailable
from tollgate.stores import open_store
from tollgate.stores.base import Charge
from tollgate.stores.redis import RedisStore
from tollgate.stores.windows import Calendar, Lifetime

ASK: dict[str, Any] = {"model": "gpt-4o-mini", "messages": SAY_OK, "max_tokens": 20}
T0 = 1_795_000_000.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    with tls_server(tmp_path_factory.mktemp("tls")) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    tollgate.reset()


# -- calls through the gate --------------------------------------------------------------------


class Provider:
    """A stand-in for /v1/chat/completions (costs exactly the call's reservation) that can hold
    every call in flight until released."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.held.set()
        self.calls = 0
        self._lock = threading.Lock()

    def arrive(self) -> None:
        with self._lock:
            self.calls += 1

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.arrive()
        assert self.held.wait(20)
        return completion(request)

    def wait_for_calls(self, n: int) -> None:
        wait_for(lambda: self.calls >= n, f"{n} calls at the provider")

    def sync_client(self) -> Any:
        transport = httpx.MockTransport(self)
        raw = openai.OpenAI(api_key="sk-test", max_retries=0, http_client=httpx.Client(transport=transport))
        return tollgate.instrument(raw)

    def async_client(self) -> Any:
        async def answer(request: httpx.Request) -> httpx.Response:
            self.arrive()
            while not self.held.is_set():
                await asyncio.sleep(0.005)
            return completion(request)

        transport = httpx.MockTransport(answer)
        http = httpx.AsyncClient(transport=transport)
        return tollgate.instrument(openai.AsyncOpenAI(api_key="sk-test", max_retries=0, http_client=http))


def sync_calls(client: Any, cap: float, n: int) -> list[str]:
    """``n`` concurrent calls under one daily cap: 'ok', 'over' (BudgetExceeded) or 'down'."""

    def one() -> str:
        try:
            with tollgate.budget(usd=cap, per="day", name="cap"):
                client.chat.completions.create(**ASK)
            return "ok"
        except tollgate.BudgetExceeded:
            return "over"
        except StoreUnavailable:
            return "down"

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: one(), range(n)))


async def async_calls(client: Any, cap: float, n: int) -> list[str]:
    async def one() -> str:
        try:
            async with tollgate.budget(usd=cap, per="day", name="cap"):
                await client.chat.completions.create(**ASK)
            return "ok"
        except tollgate.BudgetExceeded:
            return "over"
        except StoreUnavailable:
            return "down"

    return list(await asyncio.gather(*(one() for _ in range(n))))


def counters(client: redis.Redis, prefix: str) -> tuple[float, float, int]:
    """Spent and reserved over the store's counter slots, and its hold records still holding
    something, read straight from the server that has them."""
    spent = reserved = 0.0
    for key in client.scan_iter(match=f"{{{prefix}}}:slot:*"):
        fields = client.hgetall(key)
        spent += float(fields[b"spent"])
        reserved += float(fields[b"reserved"])
    holds = [
        k for k in client.scan_iter(match=f"{{{prefix}}}:hold:*") if set(client.hkeys(k)) - {b"cancelled"}
    ]
    return spent, reserved, len(holds)


def assert_exact(client: redis.Redis, store: RedisStore, granted: int) -> None:
    spent, reserved, holds = counters(client, store.prefix)
    assert spent == pytest.approx(granted * per_call_usd(), rel=1e-9)
    assert reserved == pytest.approx(0.0, abs=1e-12) and holds == 0
    assert store.pending == 0 and store.lost == 0
    ledger = [r for r in tollgate.config.settings().ledger.records() if r.status == "ok"]
    assert sum(r.usd for r in ledger) == pytest.approx(spent, rel=1e-9)


# -- TLS ---------------------------------------------------------------------------------------


async def test_tls_with_client_certificates_holds_the_cap(tls: TLSServer) -> None:
    store = open_store(tls.url())
    assert isinstance(store, RedisStore)
    tollgate.configure(store=store, ledger="memory://")
    cap = 10.5 * per_call_usd()
    provider = Provider()
    outcomes = await async_calls(provider.async_client(), cap, 30)
    outcomes += sync_calls(provider.sync_client(), cap, 5)
    assert outcomes.count("ok") == 10 and outcomes.count("over") == 25
    direct = redis.Redis.from_url(tls.url())
    try:
        assert_exact(direct, store, 10)
    finally:
        direct.close()
    await store.aclose()


def test_tls_refuses_a_plain_client_a_wrong_ca_and_a_missing_client_certificate(tls: TLSServer) -> None:
    budget = [Charge("b", Lifetime(), 1.0, 0.1)]
    plain = RedisStore(f"redis://:hunter2@127.0.0.1:{tls.port}/0")
    wrong_ca = RedisStore(tls.url(ca=tls.certs.other_ca).replace("rediss://", "rediss://:hunter2@"))
    no_cert = RedisStore(tls.url(client_cert=False))
    for store, needle in ((plain, ""), (wrong_ca, "certificate verify failed"), (no_cert, "")):
        with pytest.raises(StoreUnavailable, match="unreachable during reserve") as e:
            store.reserve(budget, T0)
        assert needle in str(e.value) and "hunter2" not in str(e.value) + repr(store), str(e.value)
        store.close()


def test_tls_values_that_cannot_work_are_refused_when_the_store_is_created(
    tls: TLSServer, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    base = "rediss://:hunter2@cache:6380/0?"
    bad = {
        f"ssl_ca_certs={not_pem}": "not.pem",
        # the server's key with the client's certificate
        f"ssl_certfile={certs.client_cert}&ssl_keyfile={certs.server_key}": "client.crt",
        f"ssl_keyfile={certs.client_key}": "ssl_keyfile without ssl_certfile",
        "ssl_cert_reqs=maybe&ssl_password=hunter2": "ssl_cert_reqs='maybe'",
    }
    for query, needle in bad.items():
        with pytest.raises(ValueError) as e:
            open_store(base + query)
        message = str(e.value)
        assert needle in message and ("use" in message or "give" in message), message
        assert "hunter2" not in message and "cache:6380" in message
    # A file not there yet (a secret mounted later) is looked for at the first connection.
    missing = RedisStore(f"rediss://127.0.0.1:{tls.port}/0?ssl_ca_certs={tmp_path / 'missing.pem'}")
    with pytest.raises(StoreUnavailable, match="No such file or directory"):
        missing.read([Charge("b", Lifetime(), 1.0, 0.1)], T0)
    good = f"ssl_ca_certs={certs.ca}&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
    assert open_store(base + good + "&ssl_cert_reqs=required").round_trips == 0


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("redis+cluster://a:6379,b:port", "'port'"),
        ("redis+cluster://a:6379,:6380", "has no name"),
        ("redis+cluster://a:6379,b:6379/1", "database 0 only"),
        ("redis+cluster://a:6379?db=2", "database 0 only"),
        ("redis+cluster://a:6379?ssl_certfile=c.pem", "unknown option 'ssl_certfile' for a redis+cluster://"),
        ("redis+cluster://a:6379?sentinel_password=x", "unknown option 'sentinel_password'"),
        ("redis+sentinel://a:26379,b:26379", "give the Sentinel service"),
        ("redis+sentinel://a:26379/mymaster/zero", "the database 'zero' is not a number"),
        ("redis+sentinel://a:26379/mymaster/1?db=1", "the database is given twice"),
        ("redis+sentinel://a:99999/mymaster", "out of range"),
        ("redis+sentinel://a/mymaster?socket_timeout=-1", "socket_timeout='-1'"),
        ("redis+mystery://a:1/0", "use a redis://, rediss://"),
    ],
)
def test_bad_cluster_and_sentinel_urls_are_refused_when_the_store_is_created(url: str, needle: str) -> None:
    with pytest.raises(ValueError) as e:
        RedisStore(url)
    assert needle in str(e.value), str(e.value)


def test_cluster_and_sentinel_urls_hide_every_password() -> None:
    url = "redis+sentinel://u:hunter2@s1:26379,s2/mymaster/2?sentinel_password=hunter3&socket_timeout=1"
    store = open_store(url)
    assert "hunter" not in repr(store) and repr(store).count("***") == 2
    assert open_store("rediss+cluster://:hunter2@n1:6379,n2:6379?ssl_cert_reqs=none").round_trips == 0
    with pytest.raises(ValueError) as e:
        open_store(url + "&bogus=1")
    assert "hunter" not in str(e.value) and "unknown option 'bogus'" in str(e.value)


# -- Redis Cluster -----------------------------------------------------------------------------


def prefix_on(cluster: Cluster, port: int) -> str:
    """A fresh store prefix whose keys (one hash tag) land on the primary at ``port``."""
    while cluster.owner("{" + (prefix := unique_prefix()) + "}") != port:
        pass
    return prefix


def commands_sent(cluster: Cluster, run: Callable[[], object]) -> list[str]:
    """The commands the cluster's nodes got from clients while ``run`` ran, as the slow log (set
    to log everything) has them, but for those the store's Lua scripts run inside (which it
    logs too, and which are no round trip)."""
    lua = Path(tollgate.stores.__file__).parent / "lua"
    inside = {
        m.upper() for f in lua.glob("*.lua") for m in re.findall(r'redis\.call\("(\w+)"', f.read_text())
    }
    clients = [cluster.client(port) for port in cluster.ports]
    try:
        for client in clients:
            client.config_set("slowlog-log-slower-than", 0)
            client.config_set("slowlog-max-len", 10_000)
            client.slowlog_reset()
        run()
        sent = []
        for client in clients:
            for entry in client.slowlog_get(10_000):
                name = entry["command"].split()[0].decode().upper()
                if name not in ("SLOWLOG", "CONFIG", *inside):
                    sent.append(name)
            client.config_set("slowlog-log-slower-than", 10_000)
        return sent
    finally:
        for client in clients:
            client.close()


def test_cluster_every_operation_runs_on_one_slot_and_stores_spread_over_nodes(cluster: Cluster) -> None:
    two = [Charge("usd:team=ml", Calendar("day"), 5.0, 0.02), Charge("tok", Lifetime(), 1e5, 1500.0)]
    stores = [RedisStore(cluster.url, prefix=prefix_on(cluster, port)) for port in cluster.ports[:2]]
    for store in stores:
        # Every script and command; one that touched two slots would fail with CROSSSLOT.
        r = store.reserve(two, T0)
        assert r.ok and store.settle(r.holds, [0.01, 1000.0]) == [0.01, 1000.0]
        store.release(store.reserve(two, T0).holds)
        assert [s.spent for s in store.read(two, T0)] == [0.01, 1000.0]
        store.reset(two, T0)
        assert store.claim("alert", 60, T0) and not store.claim("alert", 60, T0)
        assert store.acquire("k", "a", 1, 60, T0) and not store.acquire("k", "b", 1, 60, T0)
        store.renew([("k", "a")], 60, T0)
        store.let_go("k", "a")
        store.put_limit("tenant=acme", '{"usd": 5}')
        assert store.swap_limit("tenant=acme", '{"usd": 5}', '{"usd": 6}')
        version, documents = store.limits()
        assert documents == {"tenant=acme": '{"usd": 6}'} and store.limits_version() == version
        assert store.delete_limit("tenant=acme")
        store.forget([r.holds[0].slot])
    # Each store's keys live on its own primary, and nowhere else.
    for store, port in zip(stores, cluster.ports[:2], strict=True):
        for other in cluster.ports:
            client = cluster.client(other)
            try:
                keys = list(client.scan_iter(match=f"{{{store.prefix}}}:*"))
            finally:
                client.close()
            assert bool(keys) == (other == port)
    for store in stores:
        store.clear()  # scans every primary
        before = store.limits_version()
        assert store.limits() == (before, {})
        store.close()
    for port in cluster.ports:
        client = cluster.client(port)
        try:
            assert not [k for s in stores for k in client.scan_iter(match=f"{{{s.prefix}}}:slot:*")]
        finally:
            client.close()


def test_cluster_gated_calls_hold_the_cap_in_one_round_trip_per_operation(cluster: Cluster) -> None:
    store = RedisStore(cluster.url, prefix=unique_prefix())
    tollgate.configure(store=store, ledger="memory://")
    provider = Provider()
    client = provider.sync_client()
    cap = 20.5 * per_call_usd()
    assert sync_calls(client, cap, 8) == ["ok"] * 8  # scripts loaded, topology known, pool open
    trips = store.round_trips
    sent = commands_sent(cluster, lambda: [sync_calls(client, cap, 1) for _ in range(5)])
    # Two commands per call, on the whole cluster: the reserve and the settle (EVALSHA each).
    assert sent == ["EVALSHA"] * 10 and store.round_trips - trips == 10
    assert sync_calls(client, cap, 20).count("ok") == 7
    owner = cluster.client(cluster.owner("{" + store.prefix + "}"))
    try:
        assert_exact(owner, store, 20)
    finally:
        owner.close()


async def test_cluster_primary_killed_mid_run_then_restarted(cluster: Cluster) -> None:
    port = cluster.ports[2]
    store = RedisStore(cluster.url, prefix=prefix_on(cluster, port))
    tollgate.configure(store=store, ledger="memory://")
    provider = Provider()
    client = provider.async_client()
    cap = 10.5 * per_call_usd()
    assert await async_calls(client, cap, 1) == ["ok"]

    provider.held.clear()
    in_flight = asyncio.gather(*(async_calls(client, cap, 1) for _ in range(5)))
    while provider.calls < 6:  # every call holds its reservation, waiting for the provider
        await asyncio.sleep(0.01)
    cluster.kill(port)
    provider.held.set()  # the answers come: every settle fails, kept for replay
    assert [o for [o] in await in_flight] == ["ok"] * 5
    assert store.pending == 5
    assert await async_calls(client, cap, 3) == ["down"] * 3  # fail closed, before any traffic
    assert provider.calls == 6

    cluster.restart(port)  # its AOF and nodes.conf: the slot's holds are back
    outcomes = await async_calls(client, cap, 12)  # the first replays the settles
    assert outcomes.count("ok") == 4 and outcomes.count("over") == 8
    owner = cluster.client(port)
    try:
        assert_exact(owner, store, 10)
    finally:
        owner.close()
    await store.aclose()


# -- Sentinel ----------------------------------------------------------------------------------


async def test_sentinel_gated_calls_hold_the_cap(sentinels: Sentinels) -> None:
    store = open_store(sentinels.url)
    assert isinstance(store, RedisStore)
    tollgate.configure(store=store, ledger="memory://")
    provider = Provider()
    cap = 10.5 * per_call_usd()
    outcomes = await async_calls(provider.async_client(), cap, 20)
    outcomes += sync_calls(provider.sync_client(), cap, 4)
    assert outcomes.count("ok") == 10 and outcomes.count("over") == 14
    primary = redis.Redis(port=sentinels.primary())
    try:
        assert_exact(primary, store, 10)
    finally:
        primary.close()
    await store.aclose()


def test_sentinel_failover_mid_run(sentinels: Sentinels) -> None:
    store = RedisStore(sentinels.url, prefix=unique_prefix())
    tollgate.configure(store=store, ledger="memory://")
    provider = Provider()
    client = provider.sync_client()
    cap = 10.5 * per_call_usd()
    assert sync_calls(client, cap, 1) == ["ok"]

    provider.held.clear()
    with ThreadPoolExecutor(5) as pool:
        in_flight = [pool.submit(sync_calls, client, cap, 1) for _ in range(5)]
        provider.wait_for_calls(6)
        sentinels.replicated()  # the replica has every hold: the failover loses nothing
        old = sentinels.primary()
        sentinels.kill(old)
        provider.held.set()  # the settles fail against the dead primary: kept for replay
        assert [f.result(timeout=20) for f in in_flight] == [["ok"]] * 5
    assert store.pending == 5
    assert sync_calls(client, cap, 2) == ["down"] * 2  # no primary yet: fail closed

    wait_for(lambda: sentinels.failed_over(old), "the Sentinels to promote the replica")
    outcomes = sync_calls(client, cap, 12)  # on the new primary; the first replays the settles
    assert outcomes.count("ok") == 4 and outcomes.count("over") == 8
    new = redis.Redis(port=sentinels.primary())
    try:
        assert sentinels.primary() != old
        assert_exact(new, store, 10)
    finally:
        new.close()
