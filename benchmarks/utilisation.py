"""How much of a cap concurrent calls get to spend before the first refusal, with and without
waiting for holds (``configure(hold_wait=...)``).

Run: python benchmarks/utilisation.py [--quick] [--processes N] [--calls N] [--redis URL] [--slices]
     [--json PATH]

A hold is a call's worst case (its whole ``max_tokens``); answers are shorter. Refusing every
call that does not fit beside the holds of the calls in flight refuses calls the budget could
pay for: the first refusal comes long before the cap is spent. With ``hold_wait`` such a call
waits for the holds to settle, then asks again; it is refused only once what is *spent* leaves
no room for it.

The scenario: N processes (default 4) x 250 concurrent gpt-4o-mini calls with
``max_tokens=200``, through the real async OpenAI SDK over ``httpx.MockTransport``, which
answers after 5-50 ms with 10 prompt tokens and a random number of output tokens below 200 (a
seeded random generator per process), billing each answer. One daily USD budget, shared on
SQLite and on Redis (``--redis``, else ``TOLLGATE_BENCH_REDIS_URL``, else a private
redis-server when one is on the PATH), with a cap that pays for about half of the calls. Then
the LiteLLM Router path: 1,000 concurrent calls in one process through a ``litellm.Router``
with ``TollgateLogger`` and mock responses of random length.

Printed per run: % of the cap spent when the first call was refused (the ``spent`` of the
earliest refusal), % of the cap spent in the end, overspend (billed past the cap), calls
answered and refused, seconds. No figure is asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import add_flags, write_json

MODEL, MAX_TOKENS, PROMPT_TOKENS = "gpt-4o-mini", 200, 10
PRICE_IN, PRICE_OUT = 0.15e-6, 0.60e-6  # USD per token
WORST = PROMPT_TOKENS * PRICE_IN + MAX_TOKENS * PRICE_OUT  # a call's hold (roughly)
MEAN = PROMPT_TOKENS * PRICE_IN + (MAX_TOKENS / 2) * PRICE_OUT  # what a call spends on average
SAY = [{"role": "user", "content": "Say something."}]


def cost(output_tokens: int) -> float:
    return PROMPT_TOKENS * PRICE_IN + output_tokens * PRICE_OUT


class Outcome:
    """What one process saw: answers billed, refusals, the lowest ``spent`` a refusal reported."""

    def __init__(self) -> None:
        self.answered = 0
        self.billed = 0.0
        self.refused = 0
        self.first_refusal_spent: float | None = None
        self.waited = 0

    def refusal(self, spent: float) -> None:
        self.refused += 1
        if self.first_refusal_spent is None or spent < self.first_refusal_spent:
            self.first_refusal_spent = spent

    def as_tuple(self) -> tuple[int, float, int, float | None, int]:
        return self.answered, self.billed, self.refused, self.first_refusal_spent, self.waited


# -- the OpenAI SDK path ------------------------------------------------------------------------------


def sdk_client(outcome: Outcome, seed: int) -> Any:
    import openai

    import tollgate
    from tollgate.demo import http_library

    httpx = http_library("openai")  # httpx, or httpx2 for openai 3.x

    rng = random.Random(seed)

    async def answer(request: Any) -> Any:
        out = rng.randint(1, MAX_TOKENS - 1)  # drawn before the sleep: one draw per call, in order
        await asyncio.sleep(rng.uniform(0.005, 0.05))
        outcome.answered += 1
        outcome.billed += cost(out)
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": out, "total_tokens": 10 + out},
        }
        return httpx.Response(200, json=body)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return tollgate.instrument(openai.AsyncOpenAI(api_key="sk-bench", max_retries=0, http_client=http))


async def sdk_burst(cap: float, calls: int, seed: int) -> Outcome:
    import tollgate

    outcome = Outcome()
    client = sdk_client(outcome, seed)

    async def one() -> None:
        try:
            await client.chat.completions.create(model=MODEL, messages=SAY, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
        except tollgate.BudgetExceeded as exc:
            outcome.refusal(exc.spent)

    with tollgate.budget(usd=cap, per="day", name="utilisation-bench"):
        await asyncio.gather(*(one() for _ in range(calls)))
    outcome.waited = sum(1 for r in tollgate.records() if any("waited_s" in d for d in r.decisions))
    return outcome


def sdk_worker(
    store: str, hold_wait: float, cap: float, calls: int, seed: int, out: Any, start: Any, slices: bool
) -> None:
    import tollgate

    tollgate.configure(store=store, hold_wait=hold_wait, slices=slices)
    start.wait()  # every process starts its burst together
    out.put(asyncio.run(sdk_burst(cap, calls, seed)).as_tuple())


def run_sdk(
    store: str, hold_wait: float, cap: float, processes: int, calls: int, slices: bool = False
) -> dict[str, Any]:
    import tollgate

    tollgate.reset()
    tollgate.configure(store=store)
    tollgate.settings().store.clear()
    tollgate.reset()
    ctx = multiprocessing.get_context("spawn")
    out, start = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=sdk_worker, args=(store, hold_wait, cap, calls, seed, out, start, slices))
        for seed in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # every process imported and configured
    t = time.perf_counter()
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    seconds = time.perf_counter() - t
    for p in procs:
        p.join()
    return summary(results, cap, seconds)


def summary(
    results: list[tuple[int, float, int, float | None, int]], cap: float, seconds: float
) -> dict[str, Any]:
    firsts = [r[3] for r in results if r[3] is not None]
    billed = sum(r[1] for r in results)
    return {
        "answered": sum(r[0] for r in results),
        "refused": sum(r[2] for r in results),
        "waited": sum(r[4] for r in results),
        "first_refusal_pct": (min(firsts) / cap * 100) if firsts else None,
        "spent_pct": billed / cap * 100,
        "overspend_pct": max(0.0, billed - cap) / cap * 100,
        "seconds": seconds,
    }


# -- the LiteLLM Router path ---------------------------------------------------------------------------


async def router_burst(cap: float, calls: int, seed: int) -> Outcome:
    import litellm

    import tollgate
    from tollgate_litellm import TollgateLogger

    litellm.callbacks = [TollgateLogger()]
    router = litellm.Router(
        model_list=[
            {"model_name": "mini", "litellm_params": {"model": f"openai/{MODEL}", "api_key": "sk-bench"}}
        ]
    )
    rng = random.Random(seed)
    outcome = Outcome()

    async def one() -> None:
        out = rng.randint(1, MAX_TOKENS - 1)
        mock = litellm.ModelResponse(
            model=MODEL,
            choices=[{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            usage=litellm.Usage(prompt_tokens=PROMPT_TOKENS, completion_tokens=out, total_tokens=10 + out),
        )
        try:
            await router.acompletion(
                model="mini",
                messages=SAY,
                max_tokens=MAX_TOKENS,
                mock_response=mock,
                mock_delay=rng.uniform(0.005, 0.05),
            )
        except tollgate.BudgetExceeded as exc:
            outcome.refusal(exc.spent)
        else:
            outcome.answered += 1
            outcome.billed += cost(out)

    with tollgate.budget(usd=cap, per="day", name="utilisation-router"):
        await asyncio.gather(*(one() for _ in range(calls)))
    await asyncio.sleep(0.5)  # LiteLLM's logging tasks
    outcome.waited = sum(1 for r in tollgate.records() if any("waited_s" in d for d in r.decisions))
    return outcome


def run_router(hold_wait: float, cap: float, calls: int) -> dict[str, Any]:
    import tollgate

    tollgate.reset()
    tollgate.configure(hold_wait=hold_wait)
    t = time.perf_counter()
    outcome = asyncio.run(router_burst(cap, calls, 0))
    return summary([outcome.as_tuple()], cap, time.perf_counter() - t)


# -- main -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    from stores import redis_url

    with redis_url() as found:
        yield found


def show(label: str, r: dict[str, Any]) -> None:
    first = "no refusal" if r["first_refusal_pct"] is None else f"{r['first_refusal_pct']:.1f}%"
    print(
        f"  {label:<48} first refusal at {first:>10} of the cap · spent {r['spent_pct']:5.1f}% · "
        f"overspend {r['overspend_pct']:.1f}% · {r['answered']} answered, {r['refused']} refused, "
        f"{r['waited']} waited · {r['seconds']:.1f} s",
        flush=True,
    )


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price map
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_flags(parser)  # --quick: 2 processes x 50 calls, 20 through the Router
    parser.add_argument("--processes", type=int, help="processes sharing the store (default 4)")
    parser.add_argument("--calls", type=int, help="concurrent calls per process (default 250)")
    parser.add_argument("--redis", help="a Redis URL to use (default: a private redis-server)")
    parser.add_argument("--hold-wait", type=float, default=5.0, help="the 'after' hold_wait in seconds")
    parser.add_argument("--slices", action="store_true", help="also run with escrow slices on (SDK path)")
    args = parser.parse_args()
    processes = args.processes or (2 if args.quick else 4)
    calls = args.calls or (50 if args.quick else 250)
    total = processes * calls
    cap = round(total * MEAN / 2, 6)  # pays for about half of the calls
    print(
        f"{processes} processes x {calls} concurrent calls; {MODEL}, max_tokens={MAX_TOKENS}, answers of "
        f"1-{MAX_TOKENS - 1} tokens; cap ${cap:g} (a call holds ${WORST:.6f}, "
        f"{WORST / cap * 100:.2f}% of it; spends ${MEAN:.6f} on average)"
    )
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as folder,
        redis(args.redis or os.environ.get("TOLLGATE_BENCH_REDIS_URL")) as url,
    ):
        stores = [("sqlite", f"sqlite:///{os.path.join(folder, 'utilisation.db')}")]
        if url:
            stores.append(("redis", url))
        else:
            print("  (no redis-server: Redis skipped)")
        for kind, store in stores:
            runs = [
                ("before (hold_wait=0)", 0.0, False),
                (f"after (hold_wait={args.hold_wait:g})", args.hold_wait, False),
            ]
            if args.slices:
                runs.append((f"after, slices on (hold_wait={args.hold_wait:g})", args.hold_wait, True))
            for label, wait, slices in runs:
                result = run_sdk(store, wait, cap, processes, calls, slices)
                show(f"{kind}, {label}", result)
                rows.append({"path": kind, "hold_wait": wait, "slices": slices, **result})
    router_calls = 1_000 if not args.quick else 20
    router_cap = round(router_calls * MEAN / 2, 6)
    print(f"LiteLLM Router + TollgateLogger, {router_calls} concurrent calls; cap ${router_cap:g}")
    for label, wait in (
        ("before (hold_wait=0)", 0.0),
        (f"after (hold_wait={args.hold_wait:g})", args.hold_wait),
    ):
        result = run_router(wait, router_cap, router_calls)
        show(f"router, {label}", result)
        rows.append({"path": "litellm_router", "hold_wait": wait, **result})
    write_json(args, "utilisation", {"processes": processes, "calls": calls, "cap_usd": cap, "rows": rows})


if __name__ == "__main__":
    main()
