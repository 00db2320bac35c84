"""Budgets through the real SDK, enforced across processes that share one SQLite or Redis store."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

import tollgate
from tests.budgets.helpers import SAY_OK, completion, per_call_usd
from tests.stores.conftest import unique_prefix

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

MESSAGES = SAY_OK
PROCESSES, CALLS = 4, 100


async def answer(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0.005)  # all of a process's calls are in flight at once
    return completion(request)


def open_shared(kind: str, where: str, prefix: str):  # type: ignore[no-untyped-def]
    if kind == "sqlite":
        return tollgate.stores.open_store(f"sqlite:///{where}")
    from tollgate.stores.redis import RedisStore

    return RedisStore(where, prefix=prefix)


def worker(kind: str, where: str, prefix: str, cap: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    tollgate.configure(store=open_shared(kind, where, prefix))
    client = tollgate.instrument(
        openai.AsyncOpenAI(
            api_key="sk-test", http_client=httpx.AsyncClient(transport=httpx.MockTransport(answer))
        )
    )

    async def one() -> bool:
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            return True
        except tollgate.BudgetExceeded:
            return False

    async def run() -> list[bool]:
        with tollgate.budget(usd=cap, per="day", name="shared-cap"):
            return await asyncio.gather(*(one() for _ in range(CALLS)))

    results = asyncio.run(run())
    out.put((sum(results), tollgate.report().total["usd"]))


def run_processes(kind: str, where: str) -> tuple[int, float, float]:
    cap = 100.5 * per_call_usd()  # room for 100 of the 400 calls
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    prefix = unique_prefix()
    procs = [ctx.Process(target=worker, args=(kind, where, prefix, cap, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return sum(r[0] for r in results), sum(r[1] for r in results), cap


def test_four_processes_share_one_cap_over_sqlite(tmp_path: Path) -> None:
    granted, spent, cap = run_processes("sqlite", str(tmp_path / "shared.db"))
    assert granted == 100 and spent <= cap


def test_four_processes_share_one_cap_over_redis(redis_url: str) -> None:
    granted, spent, cap = run_processes("redis", redis_url)
    assert granted == 100 and spent <= cap


def limit_then_call(path: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    tollgate.configure(store=f"sqlite:///{path}")
    with tollgate.track(tenant="acme"):
        try:
            call = tollgate.gate.preflight(
                tollgate.LLMRequest(
                    provider="openai",
                    operation="chat",
                    model="gpt-4o",
                    messages=MESSAGES,
                    max_output_tokens=500,
                )
            )
        except tollgate.BudgetExceeded as exc:
            out.put(f"blocked by {exc.budget}")
            return
        call.fail(RuntimeError("not sent"))
    out.put("ok")


def test_a_standing_limit_set_in_one_process_applies_in_another(tmp_path: Path) -> None:
    path = str(tmp_path / "limits.db")
    tollgate.configure(store=f"sqlite:///{path}")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=limit_then_call, args=(path, out))
    p.start()
    assert out.get(timeout=60) == "ok"  # no limit yet: the call goes through
    p.join()
    tollgate.set_limit(usd=0.001, per="day", tenant="acme")  # below one gpt-4o call's worst case
    p = ctx.Process(target=limit_then_call, args=(path, out))
    p.start()
    # The child's very next call is blocked by the limit set here, and says so.
    assert out.get(timeout=60) == "blocked by limit[tenant=acme]"
    p.join(timeout=60)
