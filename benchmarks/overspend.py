"""Does a cap hold under concurrency? Spend vs cap for many calls in flight at once.

Run: python benchmarks/overspend.py [--quick] [--store URI] [--processes N] [--peers P] [--slices]
     [--json PATH]
Peers: bash benchmarks/peers/setup.sh, then .venv/bench/bin/python benchmarks/overspend.py

The scenario: a $0.01 cap; every call is gpt-4o-mini with max_tokens=60 and a prompt of 40
tokens (by tollgate's own count, checked at start), and the stand-in provider reports exactly
40 prompt + 60 completion tokens, so each call costs $0.000042 ($0.15/M in, $0.60/M out) and
238 calls are affordable. 1,000 async calls are started at once through the real OpenAI SDK
over ``httpx.MockTransport``, which answers after a short sleep so that they all overlap, and
counts (and bills) every call that reaches it. For tollgate also: 1,000 sync calls on a pool
of 32 threads, and N processes x 250 concurrent async calls sharing one store (default: 4
processes on a private redis-server when one is on the PATH, else on SQLite). Each peer runs in
a process of its own (some patch the SDK process-wide). ``--quick`` scales everything to 100
calls and a $0.001 cap. JSON goes to benchmarks/results/overspend.json (``--json`` to change;
with ``--quick`` only when ``--json`` is given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.common import NOT_INSTALLED, RESULTS, BillingProvider, installed, metadata, write_json

PROMPT_TOKENS, OUTPUT_TOKENS = 40, 60
PRICE_IN, PRICE_OUT = 0.15e-6, 0.60e-6  # gpt-4o-mini, USD per token
COST = PROMPT_TOKENS * PRICE_IN + OUTPUT_TOKENS * PRICE_OUT  # $0.000042
DELAY = 0.05  # seconds the stand-in takes to answer: every call of a burst is in flight at once


def provider() -> BillingProvider:
    return BillingProvider(PROMPT_TOKENS, OUTPUT_TOKENS, COST, DELAY)


def check_prices() -> dict[str, Any]:
    """The scenario's figures, as tollgate sees them: its estimate of the request and its price."""
    from peers.adapters import CAP_MESSAGES

    import tollgate

    estimate = tollgate.estimate("gpt-4o-mini", CAP_MESSAGES, max_tokens=OUTPUT_TOKENS)
    if estimate.input_tokens != PROMPT_TOKENS or abs(estimate.usd - COST) > 1e-12:
        raise SystemExit(f"the scenario assumes 40 + 60 tokens at ${COST:.6f}; tollgate estimates {estimate}")
    return {
        "input_tokens": estimate.input_tokens,
        "output_tokens": estimate.output_tokens,
        "usd": estimate.usd,
    }


# --------------------------------------------------------------------------------------------
# tollgate
# --------------------------------------------------------------------------------------------


async def tollgate_async(billing: BillingProvider, cap: float, n: int) -> tuple[int, int]:
    from peers.adapters import CAP_MESSAGES

    import tollgate

    client = tollgate.instrument(billing.async_client())

    async def one() -> bool:
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=CAP_MESSAGES, max_tokens=60)  # type: ignore[arg-type]
            return True
        except tollgate.BudgetExceeded:
            return False

    with tollgate.budget(usd=cap, per="day", name="overspend-bench", on_exceed="block"):
        done = await asyncio.gather(*(one() for _ in range(n)))
    return sum(done), n - sum(done)


def tollgate_threads(billing: BillingProvider, cap: float, n: int, workers: int) -> tuple[int, int]:
    from peers.adapters import CAP_MESSAGES

    import tollgate

    client = tollgate.instrument(billing.sync_client())

    def one(_: int) -> bool:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=CAP_MESSAGES, max_tokens=60)  # type: ignore[arg-type]
            return True
        except tollgate.BudgetExceeded:
            return False

    with (
        tollgate.budget(usd=cap, per="day", name="overspend-bench", on_exceed="block"),
        ThreadPoolExecutor(workers) as pool,
    ):
        done = list(pool.map(tollgate.propagate(one), range(n)))
    return sum(done), n - sum(done)


def process_worker(store: str, cap: float, n: int, queue: Any, start: Any, slices: bool = False) -> None:
    import tollgate

    tollgate.configure(store=store, slices=slices)
    billing = provider()
    start.wait()  # every process starts its burst together
    _ok, blocked = asyncio.run(tollgate_async(billing, cap, n))
    queue.put((billing.calls, blocked, tollgate.report().total["usd"]))


def row(
    library: str, scenario: str, cap: float, calls: int, reached: int, refused: int, **extra: Any
) -> dict[str, Any]:
    billed = reached * COST
    return {
        "library": library,
        "scenario": scenario,
        "calls": calls,
        "reached_provider": reached,
        "refused": refused,  # refused before anything was sent
        "raised_after_billing": 0,  # reached the provider, then raised to the caller
        "billed_usd": billed,
        "cap_usd": cap,
        "overspend_pct": max(0.0, billed - cap) / cap * 100,
        "affordable_calls": int(cap / COST + 1e-9),
    } | extra


def run_tollgate(
    args: argparse.Namespace, cap: float, n: int, folder: str, redis: str | None
) -> list[dict[str, Any]]:
    import tollgate

    rows = []
    tollgate.reset()
    tollgate.configure(store="memory://", slices=args.slices)
    billing = provider()
    t = time.perf_counter()
    _ok, blocked = asyncio.run(tollgate_async(billing, cap, n))
    rows.append(
        row(
            "tollgate",
            f"{n:,} concurrent async calls, one process",
            cap,
            n,
            billing.calls,
            blocked,
            peer_spend_usd=tollgate.report().total["usd"],
            seconds=time.perf_counter() - t,
            store="memory://",
        )
    )

    tollgate.reset()
    tollgate.configure(store="memory://", slices=args.slices)
    billing = provider()
    t = time.perf_counter()
    _ok, blocked = tollgate_threads(billing, cap, n, 32)
    rows.append(
        row(
            "tollgate",
            f"{n:,} sync calls on a pool of 32 threads",
            cap,
            n,
            billing.calls,
            blocked,
            peer_spend_usd=tollgate.report().total["usd"],
            seconds=time.perf_counter() - t,
            store="memory://",
        )
    )

    processes = args.processes if args.processes is not None else (2 if args.quick else 4)
    if processes:
        store = args.store or redis or f"sqlite:///{os.path.join(folder, 'overspend.db')}"
        per_process = n // 4 if not args.quick else n // processes
        tollgate.reset()
        tollgate.configure(store=store)
        tollgate.config.settings().store.clear()
        tollgate.reset()
        ctx = multiprocessing.get_context("spawn")
        queue, start = ctx.Queue(), ctx.Event()
        procs = [
            ctx.Process(target=process_worker, args=(store, cap, per_process, queue, start, args.slices))
            for _ in range(processes)
        ]
        for p in procs:
            p.start()
        time.sleep(0.2)
        t = time.perf_counter()
        start.set()
        results = [queue.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
        kind = store.split(":", 1)[0]
        rows.append(
            row(
                "tollgate",
                f"{processes} processes x {per_process} concurrent async calls, shared {kind} store",
                cap,
                processes * per_process,
                sum(r[0] for r in results),
                sum(r[1] for r in results),
                peer_spend_usd=sum(r[2] for r in results),
                seconds=time.perf_counter() - t,
                store=kind,
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# Peers, each in a process of its own
# --------------------------------------------------------------------------------------------


def peer_worker(name: str, cap: float, n: int) -> dict[str, Any]:
    from peers.adapters import CAPS

    billing = provider()
    t = time.perf_counter()
    result = CAPS[name](billing, cap, n)
    return row(
        name,
        f"{n:,} concurrent async calls, one process",
        cap,
        n,
        result.reached,
        result.refused_before,
        raised_after_billing=result.failed_after,
        peer_spend_usd=result.peer_spend,
        seconds=time.perf_counter() - t,
        note=result.note,
    )


def run_peer(name: str, cap: float, n: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", name, "--cap", repr(cap), "--calls", str(n)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"library": name, "skipped": f"worker exited {done.returncode}: {reason}"[:300]}
    return dict(json.loads(lines[-1]))


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'library':<12} {'scenario':<58} {'reached':>7} {'refused':>7} {'raised':>6} "
        f"{'billed $':>9} {'cap $':>7} {'over':>7} {'own $':>9}"
    )
    for r in rows:
        if "skipped" in r:
            print(f"{r['library']:<12} {r.get('scenario', ''):<58} {r['skipped']}")
            continue
        own = "-" if r.get("peer_spend_usd") is None else f"{r['peer_spend_usd']:.6f}"
        print(
            f"{r['library']:<12} {r['scenario'][:58]:<58} {r['reached_provider']:>7} {r['refused']:>7} "
            f"{r['raised_after_billing']:>6} {r['billed_usd']:>9.6f} {r['cap_usd']:>7.4f} "
            f"{r['overspend_pct']:>6.1f}% {own:>9}"
        )
        if r.get("note"):
            print(f"{'':<12} {r['note']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 calls against a $0.001 cap")
    parser.add_argument(
        "--store", help="the shared store for the multi-process run (sqlite:///..., redis://...)"
    )
    parser.add_argument(
        "--processes", type=int, help="processes sharing the store (default 4; 2 with --quick; 0 skips)"
    )
    parser.add_argument("--peers", help="all, none or a comma list (default: all; none with --quick)")
    parser.add_argument(
        "--slices", action="store_true", help="tollgate with escrow slices on (configure(slices=True))"
    )
    parser.add_argument(
        "--json", type=Path, help="where to write the results (default benchmarks/results/overspend.json)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cap", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(peer_worker(args.worker, args.cap, args.calls)))
        return

    from peers.adapters import CAPS, REQUIRES
    from stores import redis_url

    n = 100 if args.quick else 1_000
    cap = 0.01 * n / 1_000
    prices = check_prices()
    args.peers = args.peers or ("none" if args.quick else "all")
    peers = list(CAPS) if args.peers == "all" else [] if args.peers == "none" else args.peers.split(",")
    print(
        f"cap ${cap:g}; each call 40 + 60 tokens of gpt-4o-mini = ${COST:.6f}; "
        f"{int(cap / COST + 1e-9)} affordable"
    )
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        redis = None if (args.store or args.quick) else stack.enter_context(redis_url())
        rows += run_tollgate(args, cap, n, folder, redis)
        for name in CAPS:
            if name not in peers:
                rows.append(
                    {
                        "library": name,
                        "skipped": "skipped in --quick (pass --peers all)"
                        if args.quick
                        else "skipped (--peers)",
                    }
                )
                continue
            if not installed(REQUIRES[name]):
                rows.append({"library": name, "skipped": NOT_INSTALLED.format(script="overspend.py")})
                continue
            print(f"  {name} ...", flush=True)
            rows.append(run_peer(name, cap, n))
    print_table(rows)
    print(
        "reached: calls the provider answered and billed; refused: refused before sending; raised: "
        "billed, then an error to the caller; own $: what the library itself counted as spent"
    )
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json or not args.quick:
        settings = {
            "calls": n,
            "cap_usd": cap,
            "cost_per_call_usd": COST,
            "provider_delay_s": DELAY,
            "quick": args.quick,
            "tollgate_estimate": prices,
            "tollgate_slices": args.slices,
        }
        default = RESULTS / ("overspend-slices.json" if args.slices else "overspend.json")
        write_json(args.json or default, metadata("overspend", settings) | {"rows": rows})


if __name__ == "__main__":
    main()
