"""What the control plane costs per call: alert thresholds, a burn-rate alert, a concurrency cap.

Run: python benchmarks/control.py [calls] [--quick] [--json PATH]

Each row runs calls through the gate (pre-flight, then finish with a ready usage: no SDK, no
transport), under one daily USD budget whose cap is never reached, on each store: memory,
SQLite (a temporary file) and Redis (``TOLLGATE_BENCH_REDIS_URL``, else a private
``redis-server`` on loopback, skipped when there is none). Rows: the budget alone; with
``warn_at=(0.5, 0.8, 0.95)`` (no threshold crossed: the settle already returns the spend, so
this should cost nothing); with ``burn_rate=True`` (a look-back counter in the same reserve);
and ``limit(concurrent=1000)`` beside the budget (a lease taken and given back: two more
store operations). Prints the best of 5 batches in µs per call, and Redis round trips per call.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MESSAGES, add_flags, write_json
from stores import redis_url

import tollgate
from tollgate import gate
from tollgate.request import LLMRequest, Usage

ROWS: list[tuple[str, dict[str, Any], bool]] = [
    ("daily budget", {}, False),
    ("+ warn_at (0.5, 0.8, 0.95)", {"warn_at": (0.5, 0.8, 0.95)}, False),
    ("+ burn_rate=True", {"warn_at": (0.5, 0.8, 0.95), "burn_rate": True}, False),
    ("+ limit(concurrent=1000)", {}, True),
]


def one() -> None:
    call = gate.preflight(
        LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini", messages=MESSAGES)
    )
    call.finish(gate.Outcome(Usage(input_tokens=25, output_tokens=2), model="gpt-4o-mini-2024-07-18"))


def per_call(fn: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(store: Any, calls: int) -> list[dict[str, Any]]:
    out = []
    for name, options, concurrent in ROWS:
        tollgate.reset()
        tollgate.configure(store=store() if callable(store) else store)
        if concurrent:
            tollgate.limit(concurrent=1_000)
        counters = tollgate.config.settings().store
        with tollgate.budget(usd=1e12, per="day", name=f"bench-{len(out)}", **options):
            for _ in range(max(calls // 10, 5)):
                one()
            best = min(per_call(one, calls) for _ in range(5))
            trips = None
            if hasattr(counters, "round_trips"):
                before = counters.round_trips
                one()
                trips = counters.round_trips - before
        out.append({"row": name, "us_per_call": best * 1e6, "round_trips": trips})
    tollgate.reset()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", nargs="?", type=int, help="calls per batch (default 2000)")
    add_flags(parser)
    args = parser.parse_args()
    calls = args.calls or (50 if args.quick else 2_000)
    results: dict[str, list[dict[str, Any]]] = {"memory": measure("memory://", calls)}
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = measure(f"sqlite:///{folder}/control.db", calls)
    with redis_url() as url:
        if url is None:
            print("redis: skipped: set TOLLGATE_BENCH_REDIS_URL or install redis-server\n")
        else:
            from tollgate.stores.redis import RedisStore

            prefix = f"tollgate-bench-control-{os.getpid()}"
            results["redis"] = measure(lambda: RedisStore(url, prefix=prefix), calls)
    print(f"µs per call through the gate (best of 5 batches of {calls:,}), and Redis round trips\n")
    stores = list(results)
    print(f"{'row':<30}" + "".join(f"{s:>12}" for s in stores) + f"{'redis trips':>13}")
    for i, (name, _, _) in enumerate(ROWS):
        cells = "".join(f"{results[s][i]['us_per_call']:>12.1f}" for s in stores)
        trips = results["redis"][i]["round_trips"] if "redis" in results else "-"
        print(f"{name:<30}{cells}{trips!s:>13}")
    write_json(args, "control", {"calls": calls, "stores": results})


if __name__ == "__main__":
    main()
