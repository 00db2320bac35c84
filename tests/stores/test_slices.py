"""Escrow slices (tollgate/stores/sliced.py): the store primitives, the wrapper through the gate,
and the fleet cases: 4 processes under one cap, a SIGKILLed holder, a Redis outage mid-load."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tests.budgets.helpers import per_call_usd, request, run
from tests.stores.conftest import free_port, ping, run_child, unique_prefix
from tollgate.stores.base import Charge, SliceOp, Store
from tollgate.stores.memory import MemoryStore
from tollgate.stores.sliced import SlicedStore, Slices
from tollgate.stores.sqlite import SQLiteStore
from tollgate.stores.windows import Calendar

DAY = Calendar("day")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A store kind and where it lives (a file, a server URL)."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "slices.db")
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "memory", ""


def open_plain(kind: str, where: str, prefix: str) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(where)
    from tollgate.stores.redis import RedisStore

    return RedisStore(where, prefix=prefix)


def usd() -> float:
    """One call of ``request("gpt-4o-mini", cap=20)`` settled at 20 output tokens: its worst case."""
    return tollgate.estimate("gpt-4o-mini", request("gpt-4o-mini").messages, max_tokens=20).usd


def call() -> bool:
    """One call through the gate that costs exactly what it reserved; False when refused."""
    try:
        run(request("gpt-4o-mini", cap=20), output_tokens=20)
    except tollgate.BudgetExceeded:
        return False
    return True


def counter(store: Store, name: str) -> Any:
    """The usd counter of the daily budget ``name``, read from ``store``."""
    return store.read([Charge(f"budget:{name}:usd", DAY, None, 0.0)], time.time())[0]


# -- configuration ------------------------------------------------------------------------------


def test_configure_wraps_and_unwraps_the_store(tmp_path: Path) -> None:
    plain = tollgate.config.settings().store
    sliced = tollgate.configure(slices=True).store
    assert isinstance(sliced, SlicedStore) and sliced.inner is plain and sliced.config == Slices()
    resized = tollgate.configure(slices={"size": 0.1, "ttl": 10}).store
    assert isinstance(resized, SlicedStore) and resized.inner is plain and resized.config.size == 0.1
    assert tollgate.configure(slices=False).store is plain
    on_file = tollgate.configure(store=f"sqlite:///{tmp_path / 'a.db'}", slices=Slices(ttl=5)).store
    assert isinstance(on_file, SlicedStore) and isinstance(on_file.inner, SQLiteStore)
    again = tollgate.configure(store=f"sqlite:///{tmp_path / 'b.db'}").store  # slices stay on
    assert isinstance(again, SlicedStore) and again.config.ttl == 5
    mine = SlicedStore(MemoryStore(), Slices(size=0.2))  # a SlicedStore given is kept as it is
    settings = tollgate.configure(store=mine)
    assert settings.store is mine and settings.slices == mine.config


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"size": 0}, "slices size=0: a fraction of each counter's limit, above 0 and at most 0.5"),
        ({"size": 0.9}, r"size=0.9: .* e.g. size=0.05"),
        ({"ttl": 0.5}, r"slices ttl=0.5: seconds, at least 1"),
        ({"low_water": 1}, r"slices low_water=1: a fraction of the slice, above 0 and below 1"),
        ({"last_stretch": -1}, r"slices last_stretch=-1: slice sizes, 0 or more"),
        ({"ttl": True}, r"slices ttl=True"),
        ({"sise": 0.1}, r"unknown setting 'sise'; use size, ttl, low_water, last_stretch"),
        ("yes", r"slices='yes': use True \(defaults\), False, a mapping"),
    ],
)
def test_configuration_is_checked_at_creation(value: object, message: str) -> None:
    before = tollgate.config.settings().store
    with pytest.raises(ValueError, match=message):
        tollgate.configure(slices=value)  # type: ignore[arg-type]
    assert tollgate.config.settings().store is before


# -- the store primitives -------------------------------------------------------------------------


def test_slices_are_fair_shares_within_the_cap(kind: tuple[str, str]) -> None:
    store = open_plain(*kind, unique_prefix())
    now = time.time()
    slot = DAY.slots("k", now)

    def op(name: str, **kw: float) -> SliceOp:
        return SliceOp(slot.write, name, 100.0, slot.ttl, **kw)

    a = store.take_slices([op("a", want=40.0)], 30, now)[0]
    assert a.alive and a.granted == pytest.approx(40.0)  # alone: min(want, 100 / 2)
    b = store.take_slices([op("b", want=40.0)], 30, now)[0]
    assert b.granted == pytest.approx(15.0) and b.holders == 2  # (100 - 40) / (2 x 2)
    # A report is a running total: sent twice, it counts once; it moves spend out of the hold.
    for _ in range(2):
        a = store.renew_slices([op("a", spent=10.0)], 30, now)[0]
    assert (a.spent, a.held, a.reserved) == pytest.approx((10.0, 30.0, 45.0))
    # The last stretch: nothing granted when less than `floor` is left outside every hold.
    c = store.take_slices([op("c", want=10.0, floor=50.0)], 30, now)[0]
    assert not c.alive and c.granted == 0 and c.reserved == pytest.approx(45.0)
    # Returned: the unspent part goes back; a return sent twice counts once.
    for _ in range(2):
        done = store.return_slices([op("a", spent=12.0)], now)[0]
    assert not done.alive and (done.spent, done.reserved) == pytest.approx((12.0, 15.0))
    # Expired (its holder stopped renewing): reaped by the next operation on the slot; a late
    # report still counts as spent, as the money was.
    later = now + 31
    reaped = store.take_slices([op("", want=0.0)], 30, later)[0]
    assert reaped.reserved == pytest.approx(0.0) and reaped.holders == 0
    late = store.return_slices([op("b", spent=5.0)], later)[0]
    assert (late.spent, late.reserved) == pytest.approx((17.0, 0.0))
    store.close()


# -- through the gate, one process ----------------------------------------------------------------


def test_unused_slices_are_returned_on_close(kind: tuple[str, str]) -> None:
    plain = open_plain(*kind, unique_prefix())
    tollgate.configure(store=plain, slices={"size": 0.1})
    store = tollgate.config.settings().store
    assert isinstance(store, SlicedStore)
    with tollgate.budget(usd=1000 * usd(), per="day", name="fleet"):
        assert call()  # no slice yet: reserved in the store, and a slice asked for
        store.wait_for_slices()
        assert all(call() for _ in range(49))
    assert store.admitted == 49
    state = counter(plain, "fleet")
    assert state.reserved > 0  # the slice, held for this process
    store.give_back()
    state = counter(plain, "fleet")
    assert state.spent == pytest.approx(50 * usd()) and state.reserved == pytest.approx(0.0, abs=1e-12)


def test_the_last_stretch_reserves_per_call_and_spends_the_cap_exactly(kind: tuple[str, str]) -> None:
    plain = open_plain(*kind, unique_prefix())
    tollgate.configure(store=plain, slices={"size": 0.1})
    store = tollgate.config.settings().store
    assert isinstance(store, SlicedStore)
    granted = 0
    with tollgate.budget(usd=300.5 * usd(), per="day", name="stretch"):
        while call():
            granted += 1
            if granted == 1:
                store.wait_for_slices()
    assert granted == 300  # every call that fits, and not one more
    assert store.admitted > 150 and store.per_call > 0  # slices first, then one by one
    store.give_back()
    state = counter(plain, "stretch")
    assert state.spent == pytest.approx(300 * usd()) and state.reserved == pytest.approx(0.0, abs=1e-12)


def test_nested_budgets_are_admitted_on_all_their_slices_or_none() -> None:
    tollgate.configure(slices={"size": 0.5})
    store = tollgate.config.settings().store
    assert isinstance(store, SlicedStore)
    outer = tollgate.budget(usd=1000 * usd(), per="day", name="outer")
    with outer, tollgate.budget(usd=10.5 * usd(), per="day", name="inner"):
        granted = sum(call() for _ in range(3))
        store.wait_for_slices()
        granted += sum(call() for _ in range(20))
    assert granted == 10 and store.admitted > 0
    store.give_back()
    assert counter(store.inner, "inner").spent == pytest.approx(10 * usd())
    assert counter(store.inner, "outer").spent == pytest.approx(10 * usd())


def test_a_forked_child_starts_with_no_slices(tmp_path: Path) -> None:
    tollgate.configure(store=f"sqlite:///{tmp_path / 'fork.db'}", slices=True)
    store = tollgate.config.settings().store
    assert isinstance(store, SlicedStore)
    with tollgate.budget(usd=1000 * usd(), per="day", name="forked"):
        call()
        store.wait_for_slices()
        assert call() and store.admitted == 1
        pid = os.fork()
        if pid == 0:  # the child: the parent's slices are the parent's; it takes its own
            ok = not store._by_id and call() and store.admitted == 1
            store.wait_for_slices()
            ok = ok and call() and store.admitted == 2
            store.give_back()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.give_back()
    state = counter(store.inner, "forked")
    assert state.spent == pytest.approx(4 * usd()) and state.reserved == pytest.approx(0.0, abs=1e-12)


def test_round_trips_per_call_in_steady_state_are_few(redis_url: str) -> None:
    from tollgate.stores.redis import RedisStore

    plain = RedisStore(redis_url, prefix=unique_prefix())
    tollgate.configure(store=plain, slices=True)
    cap, calls = 2000 * usd(), 0
    lock = threading.Lock()

    def worker(n: int) -> None:
        nonlocal calls
        with tollgate.budget(usd=cap, per="day", name="hot"):
            for _ in range(n):
                assert call()
                with lock:
                    calls += 1

    with tollgate.budget(usd=cap, per="day", name="hot"):
        call()  # warm up: standing limits loaded, the first slice taken
        tollgate.config.settings().store.wait_for_slices()  # type: ignore[attr-defined]
    before, done = plain.round_trips, calls
    threads = [threading.Thread(target=worker, args=(350,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = counter(plain, "hot")
    assert cap - state.spent > 0.2 * cap  # still more than 20% left
    per_call = (plain.round_trips - before) / (calls - done)
    assert per_call <= 0.1, f"{per_call:.3f} round trips per call"


# -- the fleet: 4 processes, a SIGKILLed holder, a Redis outage ----------------------------------------


def cap_worker(kind: str, where: str, prefix: str, cap: float, out: Any) -> None:
    from tests.stores.test_control_shared import burst, client

    if kind != "memory":  # threads share the test's configuration
        tollgate.configure(store=open_plain(kind, where, prefix), slices={"size": 0.05, "ttl": 10})

    async def run_burst() -> int:
        with tollgate.budget(usd=cap, per="day", name="fleet"):
            granted = 0
            for _ in range(5):
                granted += await burst(client(), 50)
            return granted

    granted = asyncio.run(run_burst())
    store = tollgate.config.settings().store
    assert isinstance(store, SlicedStore)
    out.put((granted, store.admitted))
    if kind != "memory":
        tollgate.reset()  # closes the store: the slices go back


def test_four_processes_never_pass_the_cap(kind: tuple[str, str]) -> None:
    from tests.stores.test_control_shared import run_workers

    where, prefix = kind[1], unique_prefix()
    plain = open_plain(kind[0], where, prefix)
    if kind[0] == "memory":
        tollgate.configure(store=plain, slices={"size": 0.05, "ttl": 10})
    cap = 900.5 * per_call_usd()  # 1,000 calls: the last 100 are refused
    results = run_workers(kind[0], where, cap_worker, cap, prefix=prefix)
    tollgate.config.settings().store.close()
    granted = sum(r[0] for r in results)
    state = counter(plain, "fleet")
    assert state.spent <= cap * (1 + 1e-12), "overspent"
    assert state.spent == pytest.approx(granted * per_call_usd())
    assert state.reserved == pytest.approx(0.0, abs=1e-9)
    assert 850 <= granted <= 900
    assert sum(r[1] for r in results) > 300  # most calls were admitted on slices


def test_a_killed_process_strands_its_slice_for_one_ttl(kind: tuple[str, str]) -> None:
    name, where = kind
    if name == "memory":
        pytest.skip("the in-process store dies with its process")
    prefix = unique_prefix()
    store = f"RedisStore({where!r}, prefix={prefix!r})" if name == "redis" else repr(f"sqlite:///{where}")
    code = f"""
        import time, tollgate
        from tests.budgets.helpers import request, run
        from tollgate.stores.redis import RedisStore
        store = {store}
        tollgate.configure(store=store, slices={{"ttl": 2}})
        with tollgate.budget(usd=1.0, per="day", name="doomed"):
            run(request("gpt-4o-mini", cap=20), output_tokens=20)
            tollgate.config.settings().store.wait_for_slices()
            for _ in range(5):
                run(request("gpt-4o-mini", cap=20), output_tokens=20)
        print(tollgate.config.settings().store.admitted, flush=True)
        time.sleep(60)
    """
    child = run_child("", code)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "5"  # its calls ran on the slice
    plain = open_plain(name, where, prefix)
    assert counter(plain, "doomed").reserved > 0.01  # the slice: 5% of the limit
    child.send_signal(signal.SIGKILL)
    child.wait()
    sliced = SlicedStore(plain, Slices(ttl=2))  # a survivor's store reaps what expired
    deadline = time.monotonic() + 15
    while counter(sliced, "doomed").reserved > 1e-9 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counter(sliced, "doomed").reserved == pytest.approx(0.0, abs=1e-9)
    sliced.close()


def test_an_async_call_refused_only_for_dead_slices_gets_their_room(kind: tuple[str, str]) -> None:
    """Slices of a process that died hold the room until they expire: a call refused for want
    of it has them reaped (on the async path, off the event loop) and is then let through."""
    name, where = kind
    prefix = unique_prefix()
    plain = open_plain(name, where, prefix)
    tollgate.configure(store=plain, slices={"ttl": 30})
    now = time.time()
    slot = DAY.slots("budget:stranded:usd", now)
    cap = 3 * usd()
    dead = 0
    while True:  # a dead process's slices, fair shares taken until less than a call is left
        state = plain.take_slices([SliceOp(slot.write, f"dead{dead}", cap, slot.ttl, want=cap)], 1, now)[0]
        dead += 1
        if state.granted == 0 or cap - state.reserved < usd():
            break
    assert cap - counter(plain, "stranded").reserved < usd()  # no room while they live
    time.sleep(1.2)  # they expire: nobody renews them

    async def one() -> None:
        call = await tollgate.gate.apreflight(request("gpt-4o-mini", cap=20))
        await call.afinish(tollgate.gate.Outcome(tollgate.Usage(call.estimate.input_tokens, 20)))

    with tollgate.budget(usd=cap, per="day", name="stranded"):
        asyncio.run(one())
    (record,) = [r for r in tollgate.records() if r.status == "ok"]
    assert record.usd == pytest.approx(usd())
    tollgate.reset()
    assert counter(plain, "stranded").spent == pytest.approx(usd())
    assert counter(plain, "stranded").reserved == pytest.approx(0.0, abs=1e-9)  # dead slices reaped
    plain.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A redis-server of this test's own (it is killed and restarted), keeping every write."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server")
    port = free_port()
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", str(tmp_path)]
    args += ["--appendonly", "yes", "--appendfsync", "always"]
    servers: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        servers.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not ping(port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def kill() -> None:
        servers[-1].kill()
        servers[-1].wait()

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", (start, kill)
    finally:
        for server in servers:
            server.kill()
            server.wait()


def test_calls_flow_on_slices_while_redis_is_down(own_redis: tuple[str, Any]) -> None:
    from tollgate.stores.redis import RedisStore

    url, (start, kill) = own_redis
    plain = RedisStore(url, prefix=unique_prefix())
    tollgate.configure(store=plain, slices={"size": 0.5, "ttl": 30})
    store = tollgate.config.settings().store
    assert isinstance(store, SlicedStore)
    cap = 20_000 * usd()
    down = threading.Event()
    stop = threading.Event()
    counts = {"ok": 0, "down_ok": 0, "failed": 0}
    lock = threading.Lock()

    def worker() -> None:
        with tollgate.budget(usd=cap, per="day", name="outage"):
            while not stop.is_set():
                try:
                    ok = call()
                except tollgate.StoreUnavailable:
                    ok = False
                with lock:
                    counts["ok"] += ok
                    counts["down_ok"] += ok and down.is_set()
                    counts["failed"] += not ok
                time.sleep(0.002)

    with tollgate.budget(usd=cap, per="day", name="outage"):
        assert call()
        counts["ok"] += 1
        store.wait_for_slices()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    kill()
    down.set()
    time.sleep(2.0)
    down.clear()
    start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    store.close()  # returns the slices, reporting what was spent while Redis was down
    assert counts["down_ok"] > 0, counts
    check = RedisStore(url, prefix=plain.prefix)
    state = counter(check, "outage")
    assert state.spent <= cap
    assert state.spent == pytest.approx(counts["ok"] * usd())  # every call counted, once
    assert state.reserved == pytest.approx(0.0, abs=1e-9)  # no hold left
    check.close()
