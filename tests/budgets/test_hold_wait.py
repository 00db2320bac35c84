"""Waiting for holds (tollgate.budgets.waiting): a call that does not fit only because of other
calls in flight waits for them to settle instead of being refused; one that does not fit on
what is spent is decided at once; a wait that runs out ends in the budget's action.

Nothing here asserts a duration: waits are either ended by a settle the test makes, or short
(``hold_wait`` of a few hundredths of a second) where the test needs one to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tests.budgets.helpers import completion_body, request
from tests.conftest import http_module
from tests.stores.conftest import configure_store, redis_url, unique_prefix
from tollgate import gate
from tollgate.budgets import waiting
from tollgate.request import Usage

__all__ = ["redis_url"]  # the Redis fixture, for the tests that ask for it

#: gpt-4o with the helpers' prompt and max_tokens=500 reserves about $0.005; a $0.008 cap fits one.
CAP = 0.008


def answer(call: gate.Call, output_tokens: int = 10) -> None:
    call.finish(gate.Outcome(Usage(input_tokens=call.estimate.input_tokens, output_tokens=output_tokens)))


def record_of(call: gate.Call) -> tollgate.CallRecord:
    [record] = [r for r in tollgate.records() if r.id == call.id]
    return record


def waited(record: tollgate.CallRecord) -> list[float]:
    return [d["waited_s"] for d in record.decisions if "waited_s" in d]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store every test runs on (configured), by name."""
    yield configure_store(request, tmp_path)
    assert not waiting.lines  # nobody left in line


def test_a_call_blocked_only_by_holds_waits_and_goes_once_the_holder_settles(store: str) -> None:
    with tollgate.budget(usd=CAP, per="day", name="wait-sync") as b:
        holder = gate.preflight(request())
        threading.Timer(0.05, answer, (holder,)).start()
        waiter = gate.preflight(request())  # does not fit beside the hold; fits once it settles
        answer(waiter)
        assert b.reserved == 0
    first, second = record_of(holder), record_of(waiter)
    assert first.status == second.status == "ok"
    assert not waited(first) and len(waited(second)) == 1
    assert [d.get("action") for d in second.decisions] == [None]  # it waited, then proceeded as asked


async def test_async_twin_waits_without_blocking_the_loop(store: str) -> None:
    with tollgate.budget(usd=CAP, per="day", name="wait-async") as b:
        holder = await gate.apreflight(request())
        ticks = 0

        async def settle_later() -> None:
            nonlocal ticks
            while ticks < 5:  # the loop runs while the second call waits
                ticks += 1
                await asyncio.sleep(0.01)
            await holder.afinish(
                gate.Outcome(Usage(input_tokens=holder.estimate.input_tokens, output_tokens=10))
            )

        task = asyncio.ensure_future(settle_later())
        waiter = await gate.apreflight(request())
        await task
        await waiter.afinish(gate.Outcome(Usage(input_tokens=waiter.estimate.input_tokens, output_tokens=10)))
        assert ticks == 5 and b.reserved == 0
    assert len(waited(record_of(waiter))) == 1


def test_refused_at_once_when_what_is_spent_leaves_no_room(store: str) -> None:
    tollgate.configure(hold_wait=60)  # were it to wait, the test would hang
    with tollgate.budget(usd=CAP, per="day", name="wait-spent"):
        answer(gate.preflight(request()), output_tokens=400)  # spends most of the cap
        holder = gate.preflight(request(cap=50))  # a small hold beside it
        with pytest.raises(tollgate.BudgetExceeded) as refused:
            gate.preflight(request())
        answer(holder)
    assert "waited" not in str(refused.value)
    blocked = [r for r in tollgate.records() if r.status == "blocked"]
    assert len(blocked) == 1 and not waited(blocked[0])


def test_a_wait_that_runs_out_ends_in_a_block_that_says_it_waited(store: str) -> None:
    with tollgate.budget(usd=CAP, per="day", name="wait-out", hold_wait=0.05):
        holder = gate.preflight(request())
        with pytest.raises(tollgate.BudgetExceeded, match=r"waited 0\.(0[5-9]|[1-9])") as refused:
            gate.preflight(request())
        answer(holder)
    assert refused.value.reserved > 0
    [blocked] = [r for r in tollgate.records() if r.status == "blocked"]
    assert blocked.status == "blocked" and waited(blocked)[0] >= 0.05
    assert [d.get("action") for d in blocked.decisions] == [None, "block"]


def test_a_wait_that_runs_out_ends_in_the_downgrade(store: str) -> None:
    cheaper = {"gpt-4o": "gpt-4o-mini"}
    with tollgate.budget(
        usd=CAP, per="day", name="wait-down", on_exceed="downgrade", downgrade=cheaper, hold_wait=0.05
    ):
        holder = gate.preflight(request())
        downgraded = gate.preflight(request())  # waits first: it would fit whole once the hold settles
        answer(downgraded)
        answer(holder)
    record = record_of(downgraded)
    assert downgraded.decision.model == "gpt-4o-mini" and waited(record)
    assert [d.get("action") for d in record.decisions] == [None, "downgrade"]


def test_hold_wait_zero_decides_at_once_as_before(store: str) -> None:
    tollgate.configure(hold_wait=0)
    with tollgate.budget(usd=CAP, per="day", name="wait-zero"):
        holder = gate.preflight(request())
        with pytest.raises(tollgate.BudgetExceeded):
            gate.preflight(request())
        answer(holder)
    assert not any(waited(r) for r in tollgate.records())


async def test_a_call_cancelled_while_waiting_leaves_no_hold(store: str) -> None:
    with tollgate.budget(usd=CAP, per="day", name="wait-cancel") as b:
        holder = await gate.apreflight(request())
        task = asyncio.ensure_future(gate.apreflight(request()))
        while not waiting.lines:  # it is in line, waiting
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not waiting.lines
        await holder.afinish(gate.Outcome(Usage(input_tokens=holder.estimate.input_tokens, output_tokens=10)))
        assert b.reserved == 0
        assert math.isclose(b.spent, record_of(holder).usd)
    cancelled = [r for r in tollgate.records() if r.status != "ok"]
    assert len(cancelled) == 1 and waited(cancelled[0]) and cancelled[0].usd == 0


async def test_waiters_of_a_process_are_served_in_arrival_order(store: str) -> None:
    served: list[int] = []
    with tollgate.budget(usd=CAP, per="day", name="wait-fifo"):
        holder = await gate.apreflight(request())

        async def one(i: int) -> None:
            call = await gate.apreflight(request())
            served.append(i)
            await asyncio.sleep(0.005)  # holds while others wait
            await call.afinish(gate.Outcome(Usage(input_tokens=call.estimate.input_tokens, output_tokens=10)))

        tasks = []
        for i in range(4):
            tasks.append(asyncio.ensure_future(one(i)))
            while sum(len(line) for line in waiting.lines.values()) < i + 1:  # in line before the next
                await asyncio.sleep(0.002)
        await holder.afinish(gate.Outcome(Usage(input_tokens=holder.estimate.input_tokens, output_tokens=10)))
        await asyncio.gather(*tasks)
    assert served == [0, 1, 2, 3]


def test_a_standing_limit_takes_its_own_hold_wait(store: str) -> None:
    tollgate.configure(hold_wait=60)
    tollgate.set_limit(usd=CAP, per="day", hold_wait=0, tenant="acme")
    with tollgate.track(tenant="acme"):
        holder = gate.preflight(request())
        with pytest.raises(tollgate.BudgetExceeded):
            gate.preflight(request())  # the limit's hold_wait=0: refused at once, not after 60 s
        answer(holder)


# -- across processes ---------------------------------------------------------------------------------

PROCESSES, CALLS, MAX_TOKENS = 3, 40, 20


def burst_worker(store: str, prefix: str, cap: float, seed: int, out: Any) -> None:
    """CALLS concurrent calls through the real async OpenAI SDK; the stand-in answers a random
    number of tokens below max_tokens. Puts what the provider billed (the calls it answered)."""
    import json
    import random

    import openai

    if store.startswith("redis"):
        from tollgate.stores.redis import RedisStore

        tollgate.configure(store=RedisStore(store, prefix=prefix))
    else:
        tollgate.configure(store=store)
    http = http_module("openai")
    rng = random.Random(seed)
    billed: list[int] = []

    async def provider(req: Any) -> Any:
        out = rng.randint(1, MAX_TOKENS - 1)
        await asyncio.sleep(rng.uniform(0.001, 0.01))
        body = completion_body(json.dumps({"max_tokens": out}).encode())
        billed.append(out)
        return http.Response(200, json=body)

    client = tollgate.instrument(
        openai.AsyncOpenAI(
            api_key="sk-test",
            max_retries=0,
            http_client=http.AsyncClient(transport=http.MockTransport(provider)),
        )
    )

    async def one() -> None:
        with contextlib.suppress(tollgate.BudgetExceeded):
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Say OK."}], max_tokens=MAX_TOKENS
            )

    async def run() -> None:
        with tollgate.budget(usd=cap, per="day", name="wait-fleet"):
            await asyncio.gather(*(one() for _ in range(CALLS)))

    asyncio.run(run())
    out.put(billed)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_sharing_a_store_spend_the_cap_and_never_past_it(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    price = tollgate.settings().prices.lookup("gpt-4o-mini")
    assert price is not None and price.input and price.output
    worst = 10 * price.input + MAX_TOKENS * price.output  # a hold, as the provider bills it at most
    cap = 40 * worst  # a call holds 2.5% of it; PROCESSES x CALLS calls spend about twice the cap
    prefix = unique_prefix()
    where = request.getfixturevalue("redis_url") if kind == "redis" else f"sqlite:///{tmp_path / 'fleet.db'}"
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=burst_worker, args=(where, prefix, cap, seed, out)) for seed in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    answers = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    billed = sum(10 * price.input + n * price.output for outs in answers for n in outs)
    assert billed <= cap * (1 + 1e-9)  # never past the cap
    assert billed >= 0.97 * cap  # and refused only once what was spent left no room
    assert sum(len(outs) for outs in answers) < PROCESSES * CALLS  # some were refused


# -- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), "5", True, None, [1]])
def test_an_invalid_hold_wait_is_refused_where_it_is_set(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"hold_wait=.*e\.g\. hold_wait=5") as configured:
        tollgate.configure(hold_wait=bad)
    assert repr(bad) in str(configured.value)
    if bad is not None:  # None is a budget's "as configured"
        with pytest.raises(ValueError, match=r"budget hold_wait=.*0 or more"):
            tollgate.budget(usd=1, hold_wait=bad)
        with pytest.raises(ValueError, match=r"budget hold_wait="):
            tollgate.set_limit(usd=1, per="day", hold_wait=bad, tenant="acme")


def test_valid_hold_waits_are_kept() -> None:
    assert tollgate.settings().hold_wait == 5.0  # the default
    assert tollgate.configure(hold_wait=0).hold_wait == 0.0
    assert tollgate.configure(hold_wait=2).hold_wait == 2.0
    assert tollgate.budget(usd=1, hold_wait=0.5).spec.hold_wait == 0.5
    assert tollgate.budget(usd=1).spec.hold_wait is None  # as configured
