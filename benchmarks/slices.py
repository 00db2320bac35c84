"""Escrow slices: store round trips and cost per call, overspend, and a Redis outage mid-load.

Run: python benchmarks/slices.py [--quick] [--json PATH]

Every call goes through the gate (pre-flight, then settle at its worst case, which is what it
reserved) under one daily USD budget. Prints:

- Redis round trips per call, counted by the server (INFO commandstats), without and with
  slices, over a run that leaves more than 20% of the budget;
- the gate's per-call cost (median µs) without and with slices, on memory, SQLite and Redis;
- overspend of a 1,000-call run (4 threads x 250) against a cap that fits 900, with slices;
- a 2 s Redis outage mid-load (the server killed, then restarted with its append-only file):
  calls served while it was down, calls refused (on_store_error="closed"), overspend, and
  what is left reserved once it is back and the slices are returned.
No assertion on timings: they are printed, not judged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import MESSAGES, add_flags, write_json

import tollgate
from tollgate import gate
from tollgate.request import LLMRequest, Usage
from tollgate.stores import MemoryStore, SQLiteStore, Store
from tollgate.stores.base import Charge
from tollgate.stores.windows import Calendar

REQUEST = LLMRequest(
    provider="openai", operation="chat", model="gpt-4o-mini", messages=MESSAGES, max_output_tokens=20
)
SLICES = {"size": 0.05, "ttl": 30}


def one_call() -> bool:
    """One call through the gate, settled at its worst case; False when a budget refused it."""
    try:
        call = gate.preflight(REQUEST)
    except tollgate.BudgetExceeded:
        return False
    call.finish(gate.Outcome(Usage(input_tokens=call.estimate.input_tokens, output_tokens=20)))
    return True


def per_call_usd() -> float:
    return tollgate.estimate("gpt-4o-mini", list(MESSAGES), max_tokens=20).usd


def spent_and_reserved(store: Store, name: str) -> tuple[float, float]:
    state = store.read([Charge(f"budget:{name}:usd", Calendar("day"), None, 0.0)], time.time())[0]
    return state.spent, state.reserved


def configure(store: Store, slices: bool) -> Store:
    tollgate.reset()
    return tollgate.configure(store=store, slices=SLICES if slices else False).store


class RedisServer:
    """A private redis-server on loopback that can be killed and restarted with its data."""

    def __init__(self, folder: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.args = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", folder, "--save", ""]
        self.args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def scripts(self) -> int:
        """Scripts the server has run (INFO commandstats: EVALSHA and EVAL; the commands a script
        runs are counted there too, so all commands would overcount round trips)."""
        import redis

        client = redis.Redis(port=self.port)
        stats = client.info("commandstats")
        client.close()
        return sum(stats.get(k, {}).get("calls", 0) for k in ("cmdstat_evalsha", "cmdstat_eval"))


def round_trips(server: RedisServer, calls: int) -> list[dict[str, Any]]:
    from tollgate.stores.redis import RedisStore

    rows = []
    for slices in (False, True):
        prefix = f"bench-trips-{slices}-{os.getpid()}"
        plain = RedisStore(server.url, prefix=prefix)
        configure(plain, slices)
        cap = calls * 2 * per_call_usd()  # half of it spent at the end: far from the last stretch
        with tollgate.budget(usd=cap, per="day", name="trips"):
            one_call()  # warm-up: standing limits loaded, the first slice taken
            if slices:
                tollgate.config.settings().store.wait_for_slices()  # type: ignore[attr-defined]
            before, sent = server.scripts(), plain.round_trips
            for _ in range(calls):
                one_call()
            after, trips = server.scripts(), plain.round_trips - sent
        rows.append(
            {
                "slices": slices,
                "calls": calls,
                "round_trips_per_call": trips / calls,
                "scripts_per_call": (after - before) / calls,
            }
        )
    tollgate.reset()
    return rows


def cost(stores: dict[str, Any], calls: int) -> list[dict[str, Any]]:
    rows = []
    for name, make in stores.items():
        for slices in (False, True):
            configure(make(), slices)
            with tollgate.budget(usd=calls * 10 * per_call_usd(), per="day", name="cost"):
                one_call()
                if slices:
                    tollgate.config.settings().store.wait_for_slices()  # type: ignore[attr-defined]
                samples = []
                for _ in range(calls):
                    start = time.perf_counter_ns()
                    one_call()
                    samples.append(time.perf_counter_ns() - start)
            rows.append({"store": name, "slices": slices, "us_per_call": statistics.median(samples) / 1000})
    tollgate.reset()
    return rows


def _overspend_worker(cap: float, granted: list[int], i: int) -> None:
    with tollgate.budget(usd=cap, per="day", name="overspend"):
        granted[i] = sum(one_call() for _ in range(250))


def overspend(stores: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, make in stores.items():
        plain = make()
        store = configure(plain, True)
        cap = 900.5 * per_call_usd()
        granted = [0] * 4

        threads = [threading.Thread(target=_overspend_worker, args=(cap, granted, i)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        admitted = store.admitted  # type: ignore[attr-defined]
        store.give_back()  # type: ignore[attr-defined]
        spent, reserved = spent_and_reserved(plain, "overspend")
        rows.append(
            {
                "store": name,
                "calls": 1000,
                "granted": sum(granted),
                "on_slices": admitted,
                "cap_usd": cap,
                "spent_usd": spent,
                "overspend_pct": max(0.0, (spent - cap) / cap * 100),
                "reserved_after": reserved,
            }
        )
    tollgate.reset()
    return rows


def outage(folder: str, seconds: float) -> dict[str, Any]:
    from tollgate.stores.redis import RedisStore

    server = RedisServer(folder)
    plain = RedisStore(server.url, prefix=f"bench-outage-{os.getpid()}")
    store = configure(plain, False)
    tollgate.configure(store=plain, slices={"size": 0.5, "ttl": 30}, on_store_error="closed")
    store = tollgate.config.settings().store
    cap = 20_000 * per_call_usd()
    down, stop = threading.Event(), threading.Event()
    counts = {"ok": 0, "ok_while_down": 0, "refused_while_down": 0, "refused": 0}
    lock = threading.Lock()

    def worker() -> None:
        with tollgate.budget(usd=cap, per="day", name="outage"):
            while not stop.is_set():
                try:
                    ok = one_call()
                except tollgate.StoreUnavailable:
                    ok = False
                with lock:
                    counts["ok"] += ok
                    counts["refused"] += not ok
                    if down.is_set():
                        counts["ok_while_down" if ok else "refused_while_down"] += 1
                time.sleep(0.002)

    with tollgate.budget(usd=cap, per="day", name="outage"):
        counts["ok"] += one_call()
        store.wait_for_slices()  # type: ignore[attr-defined]
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    server.kill()
    down.set()
    time.sleep(seconds)
    down.clear()
    server.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    tollgate.reset()  # closes the store: the slices go back, reporting what they spent
    check = RedisStore(server.url, prefix=plain.prefix)
    spent, reserved = spent_and_reserved(check, "outage")
    check.close()
    server.kill()
    unit = per_call_usd()
    return {
        "outage_s": seconds,
        "calls_ok": counts["ok"],
        "calls_ok_while_down": counts["ok_while_down"],
        "calls_refused_while_down": counts["refused_while_down"],
        "calls_refused": counts["refused"],
        "cap_usd": cap,
        "spent_usd": spent,
        "spent_matches_calls": abs(spent - counts["ok"] * unit) < 1e-9 * max(1.0, spent),
        "overspend_pct": max(0.0, (spent - cap) / cap * 100),
        "reserved_after": reserved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flags(parser)
    args = parser.parse_args()
    calls = 300 if args.quick else 3_000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        have_redis = shutil.which("redis-server") is not None
        server = RedisServer(folder + "/") if have_redis else None
        stores: dict[str, Any] = {
            "memory": MemoryStore,
            "sqlite": lambda: SQLiteStore(Path(folder) / f"bench-{time.monotonic_ns()}.db"),
        }
        if server is not None:
            from tollgate.stores.redis import RedisStore

            stores["redis"] = lambda: RedisStore(server.url, prefix=f"bench-{time.monotonic_ns()}")
            results["round_trips"] = round_trips(server, calls)
            print(f"Redis, {calls:,} calls with more than 20% of the budget left")
            print(f"  {'':<11} {'round trips / call':>19} {'scripts run / call (server)':>28}")
            for row in results["round_trips"]:
                label = "slices on" if row["slices"] else "slices off"
                print(f"  {label:<11} {row['round_trips_per_call']:>19.3f} {row['scripts_per_call']:>28.3f}")
        else:
            print("redis: skipped (no redis-server)")
        results["cost"] = cost(stores, calls)
        print("\nper-call cost through the gate (median µs / call)")
        print(f"  {'store':<8} {'slices off':>11} {'slices on':>10}")
        for name in stores:
            off, on = (r["us_per_call"] for r in results["cost"] if r["store"] == name)
            print(f"  {name:<8} {off:>11.1f} {on:>10.1f}")
        results["overspend"] = overspend(stores)
        print("\noverspend, 1,000 calls (4 threads x 250) against a cap that fits 900, slices on")
        for row in results["overspend"]:
            print(
                f"  {row['store']:<8} granted {row['granted']:>4} ({row['on_slices']} on slices)  "
                f"overspend {row['overspend_pct']:.1f}%  reserved after {row['reserved_after']:.2g}"
            )
        if server is not None:
            server.kill()
            with tempfile.TemporaryDirectory() as own:
                results["outage"] = outage(own, 2.0)
            o = results["outage"]
            print("\nRedis killed for 2 s mid-load (4 threads, a call every 2 ms each), slices on")
            print(
                f"  calls served while down {o['calls_ok_while_down']}, refused while down "
                f"{o['calls_refused_while_down']}; overspend {o['overspend_pct']:.1f}%; reserved after "
                f"{o['reserved_after']:.2g}; every call counted once: {o['spent_matches_calls']}"
            )
    write_json(args, "slices", results)


if __name__ == "__main__":
    main()
