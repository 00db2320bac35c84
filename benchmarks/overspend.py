"""Does a cap hold under concurrency? Spend vs cap for many calls in flight at once.

Run: python benchmarks/overspend.py [--store URI] [--processes N]

Every call goes through the real OpenAI SDK (async, over ``httpx.MockTransport`` with a short
delay so that all calls overlap) to gpt-4o-mini with ``max_tokens=70``; the stand-in reports
10 prompt tokens and a random 35..70 output tokens, so a call costs at most ~$0.000044, its
reservation. A ``$0.01`` budget therefore admits ~228 calls at their worst case (more as
settled calls hand back what they did not use). Scenarios: 1,000 concurrent async calls
in one process; a pool of 32 threads making 1,000 sync calls; with ``--processes N`` (and a
shared ``sqlite://`` or ``redis://`` store), N processes x 250 concurrent async calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai

import tollgate

CAP = 0.01
MESSAGES = [{"role": "user", "content": "Say OK."}]


def answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    out = random.randint(body["max_tokens"] // 2, body["max_tokens"])
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-o",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": out, "total_tokens": 10 + out},
        },
    )


async def slow_answer(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(0.02)
    return answer(request)


async def async_calls(n: int) -> tuple[int, int]:
    client = tollgate.instrument(
        openai.AsyncOpenAI(
            api_key="sk-bench", http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow_answer))
        )
    )

    async def one() -> bool:
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=70)  # type: ignore[arg-type]
            return True
        except tollgate.BudgetExceeded:
            return False

    with tollgate.budget(usd=CAP, per="day", name="overspend-bench"):
        done = await asyncio.gather(*(one() for _ in range(n)))
    return sum(done), n - sum(done)


def thread_calls(n: int, workers: int) -> tuple[int, int]:
    client = tollgate.instrument(
        openai.OpenAI(api_key="sk-bench", http_client=httpx.Client(transport=httpx.MockTransport(answer)))
    )

    def one(_: int) -> bool:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=70)  # type: ignore[arg-type]
            return True
        except tollgate.BudgetExceeded:
            return False

    with tollgate.budget(usd=CAP, per="day", name="overspend-bench"), ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(tollgate.propagate(one), range(n)))
    return sum(done), n - sum(done)


def worker(store: str, n: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    tollgate.configure(store=store)
    ok, blocked = asyncio.run(async_calls(n))
    queue.put((ok, blocked, tollgate.report().total["usd"]))


def show(name: str, ok: int, blocked: int, spent: float, seconds: float) -> None:
    over = max(0.0, spent - CAP) / CAP
    print(
        f"{name:<34} {ok:>5} ran {blocked:>5} blocked   spent ${spent:.6f} of ${CAP:.2f}"
        f"   overspend {over:.1%}   ({seconds:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="memory://")
    parser.add_argument("--processes", type=int, default=0)
    args = parser.parse_args()
    print(f"store {args.store}; cap ${CAP}")

    tollgate.configure(store=args.store)
    tollgate.config.settings().store.clear()
    t = time.perf_counter()
    ok, blocked = asyncio.run(async_calls(1000))
    show("1,000 concurrent async calls", ok, blocked, tollgate.report().total["usd"], time.perf_counter() - t)

    tollgate.reset()
    tollgate.configure(store=args.store)
    tollgate.config.settings().store.clear()
    t = time.perf_counter()
    ok, blocked = thread_calls(1000, 32)
    show("1,000 calls on 32 threads", ok, blocked, tollgate.report().total["usd"], time.perf_counter() - t)

    if args.processes:
        tollgate.reset()
        tollgate.configure(store=args.store)
        tollgate.config.settings().store.clear()
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        t = time.perf_counter()
        procs = [ctx.Process(target=worker, args=(args.store, 250, queue)) for _ in range(args.processes)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
        show(
            f"{args.processes} processes x 250 async calls",
            sum(r[0] for r in results),
            sum(r[1] for r in results),
            sum(r[2] for r in results),
            time.perf_counter() - t,
        )


if __name__ == "__main__":
    main()
