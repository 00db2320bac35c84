"""The control plane across processes sharing one store (threads, for the in-process store):
4 workers x 250 concurrent calls through the real async OpenAI SDK.

- each alert threshold fires exactly once, in one worker;
- prepaid credit and top-ups made while calls run hold exactly: every call that fits is let
  through, none past the limit;
- a concurrency cap of N never has more than N calls in flight at the fake provider, which
  counts them across processes;
- a SIGKILLed process's concurrency slots come back once their lease ends.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tests.budgets.helpers import completion_body, per_call_usd
from tests.conftest import http_module
from tests.stores.conftest import unique_prefix

openai = pytest.importorskip("openai")

WORKERS, CALLS = 4, 250
SAY_OK = [{"role": "user", "content": "Say OK."}]


def open_store(kind: str, where: str, prefix: str) -> Any:
    if kind == "memory":
        return tollgate.config.settings().store
    if kind == "sqlite":
        return tollgate.stores.open_store(f"sqlite:///{where}")
    from tollgate.stores.redis import RedisStore

    return RedisStore(where, prefix=prefix)


usd = per_call_usd


def client(counter: Any = None, delay: float = 0.002) -> Any:
    """An instrumented AsyncOpenAI whose provider answers 10 prompt tokens and ``max_tokens``
    output tokens, counting calls in flight in ``counter`` (shared across processes) if given."""
    http = http_module("openai")

    async def answer(request: Any) -> Any:
        if counter is not None:
            with counter.get_lock():
                counter[0] += 1
                counter[1] = max(counter[1], counter[0])
        try:
            await asyncio.sleep(delay)
            return http.Response(200, json=completion_body(request.content))
        finally:
            if counter is not None:
                with counter.get_lock():
                    counter[0] -= 1

    transport = http.MockTransport(answer)
    return tollgate.instrument(
        openai.AsyncOpenAI(
            api_key="sk-test", max_retries=0, http_client=http.AsyncClient(transport=transport)
        )
    )


async def burst(api: Any, calls: int) -> int:
    """``calls`` calls at once; how many went through."""

    async def one() -> bool:
        try:
            await api.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
            return True
        except tollgate.BudgetExceeded:
            return False

    return sum(await asyncio.gather(*(one() for _ in range(calls))))


# -- the workers (module level: spawned processes import them) --------------------------------------


def alert_worker(kind: str, where: str, prefix: str, cap: float, out: Any) -> None:
    fired: list[tollgate.Alert] = []
    if kind != "memory":  # threads share one configuration: the test hears their alerts itself
        tollgate.configure(store=open_store(kind, where, prefix), on_alert=fired.append)

    async def run() -> int:
        with tollgate.budget(usd=cap, per="day", warn_at=(0.5, 0.8, 0.95), name="fleet"):
            return await burst(client(), CALLS)

    granted = asyncio.run(run())
    out.put((granted, [a.threshold for a in fired]))


def credit_worker(kind: str, where: str, prefix: str, top_up: float, out: Any) -> None:
    if kind != "memory":
        tollgate.configure(store=open_store(kind, where, prefix))

    async def run() -> int:
        api = client()
        granted = 0
        with tollgate.track(tenant="acme"):
            for _ in range(5):  # top up five times while a fifth of the calls are in flight
                calls = asyncio.ensure_future(burst(api, CALLS // 5))
                await asyncio.sleep(0)
                tollgate.top_up(usd=top_up, tenant="acme")
                granted += await calls
        return granted

    out.put(asyncio.run(run()))


def cap_worker(kind: str, where: str, prefix: str, counter: Any, out: Any) -> None:
    if kind != "memory":
        tollgate.configure(store=open_store(kind, where, prefix))
    tollgate.limit(concurrent=5, model="gpt-4o-mini", timeout=120)
    out.put(asyncio.run(burst(client(counter, delay=0.01), 25)))


def run_workers(kind: str, where: str, target: Any, *args: Any, prefix: str = "") -> list[Any]:
    """Run ``target`` in 4 processes (threads for the in-process store) and collect what each put."""
    prefix = prefix or unique_prefix()
    if kind == "memory":
        import queue

        out: Any = queue.Queue()
        threads = [
            threading.Thread(target=target, args=(kind, where, prefix, *args, out)) for _ in range(WORKERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        return [out.get_nowait() for _ in threads]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(kind, where, prefix, *args, out)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


@pytest.fixture(params=["memory", "sqlite", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "shared.db")
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "memory", ""


def test_each_threshold_fires_exactly_once_across_workers(shared: tuple[str, str]) -> None:
    kind, where = shared
    cap = 900.5 * usd()  # 1,000 calls: the last 99 are refused, after every threshold
    heard: list[tollgate.Alert] = []
    tollgate.configure(on_alert=heard.append)  # the threads' (memory); a process has its own
    results = run_workers(kind, where, alert_worker, cap)
    assert sum(r[0] for r in results) == 900
    fired = sorted([t for r in results for t in r[1]] + [a.threshold for a in heard])
    assert fired == [0.5, 0.8, 0.95]


def test_credit_and_top_ups_hold_exactly_across_workers(shared: tuple[str, str]) -> None:
    kind, where = shared
    prefix = unique_prefix()
    if kind != "memory":
        tollgate.configure(store=open_store(kind, where, prefix))
    base, top_up = 300.5 * usd(), 20 * usd()
    tollgate.set_limit(usd=base, per=None, tenant="acme")
    results = run_workers(kind, where, credit_worker, top_up, prefix=prefix)
    state = tollgate.usage(tenant="acme")
    assert state.limit == pytest.approx(base + WORKERS * 5 * top_up)
    assert state.topped_up == pytest.approx(WORKERS * 5 * top_up)
    granted = sum(results)
    assert granted == int(state.limit / usd())  # every call that fits, and not one more
    assert state.spent == pytest.approx(granted * usd()) and state.reserved == pytest.approx(0.0, abs=1e-12)
    assert state.spent <= state.limit
    assert len([r for r in tollgate.records() if r.operation == "top_up"]) == (
        WORKERS * 5 if kind == "memory" else 0
    )


def test_concurrency_cap_holds_across_workers(shared: tuple[str, str]) -> None:
    kind, where = shared
    counter = multiprocessing.get_context("spawn").Array("i", 2)  # in flight now, most ever
    results = run_workers(kind, where, cap_worker, counter)
    assert sum(results) == WORKERS * 25
    assert counter[1] == 5, f"at most 5 calls in flight, saw {counter[1]}"
    assert counter[0] == 0


def hold_slots(kind: str, where: str, prefix: str, ready: Any) -> None:
    """Take every slot of a 3-slot cap with calls that never end, then wait to be killed."""
    tollgate.configure(store=open_store(kind, where, prefix))
    tollgate.limit(concurrent=3, lease=2)

    async def run() -> None:
        api = client(delay=3_600)
        calls = [asyncio.ensure_future(burst(api, 1)) for _ in range(3)]
        while tollgate.leases.keeper.held() < 3:
            await asyncio.sleep(0.01)
        ready.set()
        await asyncio.gather(*calls)

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_killed_process_gives_its_slots_back_when_the_lease_ends(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    where = request.getfixturevalue("redis_url") if kind == "redis" else str(tmp_path / "slots.db")
    prefix = unique_prefix()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=hold_slots, args=(kind, where, prefix, ready))
    holder.start()
    try:
        assert ready.wait(60), "the holder never took its slots"
        time.sleep(3)  # past one lease: the holder's renewals keep its slots
        tollgate.configure(store=open_store(kind, where, prefix))
        tollgate.limit(concurrent=3, lease=2, wait=False)
        with pytest.raises(tollgate.RateLimited):
            asyncio.run(burst(client(), 1))
        os.kill(holder.pid or 0, signal.SIGKILL)
        holder.join(10)
        tollgate.reset()
        tollgate.configure(store=open_store(kind, where, prefix))
        tollgate.limit(concurrent=3, lease=2, timeout=10)
        started = time.monotonic()
        assert asyncio.run(burst(client(), 3)) == 3  # all three slots came back
        waited = time.monotonic() - started
        assert waited < 4.5, f"the slots came back after {waited:.1f} s; a lease is 2 s"
    finally:
        if holder.is_alive():
            holder.kill()
