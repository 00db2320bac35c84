"""Per-call cost of each store: reserve + settle of a call's two usual charges.

Run: python benchmarks/stores.py [iterations] [--quick] [--json PATH]

The charges are a daily USD budget (one slot) and a rolling-minute token limit (30 sub-slots
read, one written). Redis is the server at ``TOLLGATE_BENCH_REDIS_URL`` or, failing that, a
private ``redis-server`` started on loopback (skipped when there is none); its PING median is
the floor any one-round-trip operation can reach. Prints median microseconds per
reserve + settle, and the Redis round trips each pair took.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_flags, write_json

from tollgate.stores import MemoryStore, SQLiteStore, Store
from tollgate.stores.base import Charge
from tollgate.stores.windows import Calendar, Rolling
from tollgate.stores.windows import now as clock

CHARGES = [
    Charge("bench:usd:team=ml", Calendar("day"), 1e12, 0.02),
    Charge("bench:tokens:team=ml", Rolling(60.0), 1e15, 1_500.0),
]
ACTUALS = [0.015, 1_200.0]


def median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1_000


def time_sync(store: Store, iterations: int) -> list[int]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        r = store.reserve(CHARGES, clock())
        store.settle(r.holds, ACTUALS)
        samples.append(time.perf_counter_ns() - start)
    return samples


async def time_async(store: Store, iterations: int) -> list[int]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        r = await store.areserve(CHARGES, clock())
        await store.asettle(r.holds, ACTUALS)
        samples.append(time.perf_counter_ns() - start)
    return samples


def time_ping(ping: Callable[[], object], iterations: int) -> list[int]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        ping()
        samples.append(time.perf_counter_ns() - start)
    return samples


@contextmanager
def redis_url() -> Iterator[str | None]:
    """``TOLLGATE_BENCH_REDIS_URL``, or a private redis-server on a free loopback port, or None."""
    if os.environ.get("TOLLGATE_BENCH_REDIS_URL"):
        yield os.environ["TOLLGATE_BENCH_REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        options = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        server = subprocess.Popen([binary, *options, "--dir", folder], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("iterations", nargs="?", type=int, help="reserve + settle pairs (default 5000)")
    add_flags(parser)
    args = parser.parse_args()
    iterations = args.iterations or (200 if args.quick else 5_000)
    redis_note = ""
    warmup = max(iterations // 10, 10)
    rows: list[tuple[str, float, str]] = []

    memory = MemoryStore()
    time_sync(memory, warmup)
    rows.append(("memory", median_us(time_sync(memory, iterations)), "-"))

    with tempfile.TemporaryDirectory() as folder:
        sqlite = SQLiteStore(Path(folder) / "bench.db")
        time_sync(sqlite, warmup)
        rows.append(("sqlite (WAL, synchronous=NORMAL)", median_us(time_sync(sqlite, iterations)), "-"))
        sqlite.close()

    with redis_url() as url:
        if url is None:
            redis_note = "skipped: set TOLLGATE_BENCH_REDIS_URL or install redis-server"
            print(f"redis: {redis_note}\n")
        else:
            import redis

            from tollgate.stores.redis import RedisStore

            store = RedisStore(url, prefix=f"tollgate-bench-{os.getpid()}")
            client = redis.Redis.from_url(url)
            time_sync(store, warmup)
            before = store.round_trips
            samples = time_sync(store, iterations)
            per_call = (store.round_trips - before) / iterations
            rows.append(("redis", median_us(samples), f"{per_call:g}"))

            async def run_async() -> list[int]:
                await time_async(store, warmup)
                samples = await time_async(store, iterations)
                await store.aclose()
                return samples

            before = store.round_trips
            samples = asyncio.run(run_async())
            per_call = (store.round_trips - before) / (iterations + warmup)
            rows.append(("redis (asyncio)", median_us(samples), f"{per_call:g}"))
            time_ping(client.ping, warmup)
            rows.append(("redis PING (for comparison)", median_us(time_ping(client.ping, iterations)), "1"))
            store.clear()
            store.close()
            client.close()
            redis_note = store.location
            print(f"redis: {redis_note}")

    print(f"reserve + settle, 2 charges (daily USD + rolling-minute tokens), median of {iterations:,}\n")
    print(f"{'store':<32} {'µs / call':>10} {'round trips':>12}")
    for name, micros, trips in rows:
        print(f"{name:<32} {micros:>10.1f} {trips:>12}")

    write_json(
        args,
        "stores",
        {
            "iterations": iterations,
            "charges": "daily USD + rolling-minute tokens",
            "redis": redis_note,
            "rows": [
                {"store": name, "us_per_call": micros, "round_trips": trips} for name, micros, trips in rows
            ],
        },
    )


if __name__ == "__main__":
    main()
