"""Escrow slices (tollgate/stores/sliced.py) on managed Redis: a Sentinel failover and a Redis
Cluster primary SIGKILLed, each mid-load, and the last stretch of a cap on a cluster.

Real servers (``tests/redisservers.py``, through the ``cluster`` and ``sentinels`` fixtures of
``tests/stores/conftest.py``; skipped, saying why, without redis-server), and the gated calls of
``tests/stores/test_slices.py``. While the store's primary is gone, calls go on being admitted
against the slices held (none refused while they have room); once it is back, every call is
counted once, the cap is held, and nothing stays reserved after close. Counts and money only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("redis")

import redis

import tollgate
from tests.redisservers import Cluster, Sentinels, wait_for
from tests.stores.conftest import unique_prefix
from tests.stores.test_redis_managed import counters, prefix_on
from tests.stores.test_slices import call, counter, usd
from tollgate.errors import StoreUnavailable
from tollgate.stores.redis import RedisStore
from tollgate.stores.sliced import SlicedStore

#: Big slices that live long: one slice holds far more calls than the test makes, and is
#: neither refilled nor renewed during it, so no write can land between WAIT and the kill.
BIG = {"size": 0.5, "ttl": 60}
#: Calls the load makes before the kill, while the primary is down, and after it is back.
BEFORE, DURING, AFTER = 200, 300, 200


class Load:
    """Threads making gated calls under one daily budget until stopped, counting outcomes."""

    def __init__(self, store: SlicedStore, cap: float, name: str, threads: int = 4) -> None:
        self.store, self.cap, self.name = store, cap, name
        self.counts = {"ok": 0, "over": 0, "down": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        with tollgate.budget(usd=cap, per="day", name=name):
            self._one()  # no slice yet: reserved in the store, and a slice asked for
            store.wait_for_slices()
        assert store.pending == 0 and self.counts == {"ok": 1, "over": 0, "down": 0}
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _one(self) -> None:
        try:
            outcome = "ok" if call() else "over"
        except StoreUnavailable:
            outcome = "down"
        with self._lock:
            self.counts[outcome] += 1

    def _run(self) -> None:
        with tollgate.budget(usd=self.cap, per="day", name=self.name):
            while not self._stop.is_set():
                self._one()
                time.sleep(0.002)  # the servers share the machine's two cores

    def admitted_at_least(self, n: int) -> None:
        wait_for(lambda: self.store.admitted >= n, f"{n} calls admitted on slices")

    def stop(self) -> dict[str, int]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return dict(self.counts)


def admitted_while_down(store: SlicedStore, back: Callable[[], bool] | None = None) -> int:
    """Calls admitted on slices while the inner store cannot be reached: the admitted count when
    the last failing probe of the store started, less the count now (the kill just happened).
    Probes until ``back()`` (a failover) or, without it, until :data:`DURING` calls are counted."""
    start = last = store.admitted
    deadline = time.monotonic() + 30
    while not (back() if back is not None else last - start >= DURING):
        assert time.monotonic() < deadline, f"still probing after 30 s: {last - start} calls while down"
        seen = store.admitted
        try:
            store.inner.limits_version()  # one GET on the store's hash slot
        except StoreUnavailable:
            last = seen  # down since the kill, so down while those calls were admitted
        time.sleep(0.05)
    return last - start


def assert_counted_once(client: Any, store: RedisStore, url: str, name: str, cap: float, ok: int) -> None:
    """After close: the store's spend is every call that ran, once, as the ledger has it, within
    the cap; nothing reserved, no hold or slice left, nothing waiting to be replayed."""
    assert store.pending == 0 and store.lost == 0
    check = RedisStore(url, prefix=store.prefix)
    try:
        state = counter(check, name)
    finally:
        check.close()
    ledger = tollgate.config.settings().ledger
    assert ledger.dropped() == 0
    recorded = sum(r.usd for r in ledger.records() if r.status == "ok")
    assert state.spent <= cap
    assert state.spent == pytest.approx(ok * usd(), rel=1e-9)  # every call counted, once
    assert state.spent == pytest.approx(recorded, rel=1e-9)
    assert state.reserved == pytest.approx(0.0, abs=1e-12)  # the slices went back
    spent, reserved, holds = counters(client, store.prefix)
    assert spent == pytest.approx(state.spent, rel=1e-12)
    assert reserved == pytest.approx(0.0, abs=1e-12) and holds == 0
    # Every slice this process took was returned ("held reported given state", 3: returned),
    # none left to expire; and none is live on the slot.
    records = [
        value.split()
        for key in client.scan_iter(match=f"{{{store.prefix}}}:sliced:*")
        for value in client.hvals(key)
    ]
    assert records and all(float(held) == 0 and state == b"3" for held, _, _, state in records), records
    assert not [k for k in client.scan_iter(match=f"{{{store.prefix}}}:slices:*") if client.zcard(k)]


def sliced(url: str, prefix: str, **config: Any) -> tuple[SlicedStore, RedisStore]:
    """Slices on over a RedisStore at ``url``, and an unbounded memory ledger: both stores."""
    plain = RedisStore(url, prefix=prefix)
    tollgate.configure(store=plain, slices=config, ledger="memory://?maxlen=1000000")
    store = tollgate.config.settings().store
    assert isinstance(store, SlicedStore) and store.inner is plain
    return store, plain


# -- Sentinel ----------------------------------------------------------------------------------


def test_sentinel_failover_mid_load_calls_flow_on_slices(sentinels: Sentinels) -> None:
    store, plain = sliced(sentinels.url, unique_prefix(), **BIG)
    cap = 100_000 * usd()
    load = Load(store, cap, "failover")
    load.admitted_at_least(BEFORE)

    sentinels.replicated()  # the replica has every hold and slice: the failover loses nothing
    old = sentinels.primary()
    sentinels.kill(old)
    during = admitted_while_down(store, lambda: sentinels.failed_over(old))
    # On the promoted replica: the calls go on (the slices' spend is reported at close).
    load.admitted_at_least(store.admitted + AFTER)
    counts = load.stop()
    store.close()

    assert during > 0, counts  # admitted on slices while no primary could be reached
    assert counts["down"] == 0 and counts["over"] == 0, counts  # the slices had room throughout
    assert sentinels.primary() != old
    new = redis.Redis(port=sentinels.primary())
    try:
        assert_counted_once(new, plain, sentinels.url, "failover", cap, counts["ok"])
    finally:
        new.close()


# -- Redis Cluster -----------------------------------------------------------------------------


def test_cluster_primary_killed_and_restarted_mid_load_calls_flow_on_slices(cluster: Cluster) -> None:
    port = cluster.ports[1]
    store, plain = sliced(cluster.url, prefix_on(cluster, port), **BIG)
    cap = 100_000 * usd()
    load = Load(store, cap, "restart")
    load.admitted_at_least(BEFORE)

    cluster.kill(port)  # the primary of the store's hash slot; it has no replica
    during = admitted_while_down(store)
    cluster.restart(port)  # on its AOF and nodes.conf: the slices' holds are back
    load.admitted_at_least(store.admitted + AFTER)
    counts = load.stop()
    store.close()

    assert during >= DURING, counts  # admitted on slices while the slot's primary was gone
    assert counts["down"] == 0 and counts["over"] == 0, counts
    owner = cluster.client(port)
    try:
        assert_counted_once(owner, plain, cluster.url, "restart", cap, counts["ok"])
    finally:
        owner.close()


def test_cluster_last_stretch_grants_exactly_what_the_cap_affords(cluster: Cluster) -> None:
    store, plain = sliced(cluster.url, prefix_on(cluster, cluster.ports[2]), size=0.1)
    cap = 300.5 * usd()  # 300 calls fit, not 301
    granted = refused = 0
    with tollgate.budget(usd=cap, per="day", name="stretch"):
        for _ in range(330):
            if call():
                granted += 1
                if granted == 1:
                    store.wait_for_slices()
            else:
                refused += 1
    assert granted == 300 and refused == 30  # every call that fits, and not one more
    assert store.admitted > 150 and store.per_call > 0  # slices first, then one by one
    store.close()
    owner = cluster.client(cluster.ports[2])
    try:
        assert_counted_once(owner, plain, cluster.url, "stretch", cap, 300)
    finally:
        owner.close()
