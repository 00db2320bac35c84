"""Per-call overhead of tollgate and its peers on top of the real OpenAI SDK, over an in-process transport.

Run: python benchmarks/overhead.py [--quick] [--calls N] [--rounds N] [--peers all|none|a,b] [--json PATH]
Peers: bash benchmarks/peers/setup.sh, then .venv/bench/bin/python benchmarks/overhead.py

The SDK talks to ``httpx.MockTransport`` (no network, no server), so a row measures the SDK's
own work plus the wrapping library's. Every row group ("suite") runs in a process of its own,
which measures its own raw-SDK baseline interleaved with the gated calls: short paired batches
alternating which side goes first, so drift in the machine's load hits both sides of a pair
alike and cancels in the difference. Reported per row: median raw µs per call, median of the
per-pair differences (the overhead) with its interquartile range, and the ratio
(raw + overhead) / raw. Under an OpenTelemetry SDK (batching span processor, periodic metric
reader, exporters that discard) tollgate and opentelemetry-instrumentation-openai-v2 are measured
with spans only, metrics only, and both. A separate
process per suite also keeps libraries that patch the openai module, or set a global
OpenTelemetry provider, from touching any other row.

Redis: ``TOLLGATE_BENCH_REDIS_URL``, else a private ``redis-server`` on loopback (skipped, saying
why, when there is none); its PING round trip and the round trips one gated call makes are
reported beside the row. JSON goes to benchmarks/results/overhead.json (``--json`` to change;
with ``--quick`` only when ``--json`` is given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.common import NOT_INSTALLED, RESULTS, installed, metadata, write_json

MODES = ("sync create", "async create", "sync stream=True")


# --------------------------------------------------------------------------------------------
# Worker: one suite, in a process of its own
# --------------------------------------------------------------------------------------------


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


async def per_call_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - start) / calls


def compare(
    raw: Callable[[int], float], gated: Callable[[int], float], calls: int, rounds: int
) -> dict[str, Any]:
    raw(max(calls // 2, 10)), gated(max(calls // 2, 10))  # warm up: imports, tokenizer, connections
    raws, gateds, diffs = [], [], []
    for i in range(rounds):
        if i % 2:
            g, r = gated(calls), raw(calls)
        else:
            r, g = raw(calls), gated(calls)
        raws.append(r)
        gateds.append(g)
        diffs.append(g - r)
    q1, med, q3 = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else (diffs[0],) * 3
    raw_med = statistics.median(raws)
    return {
        "raw_us": raw_med * 1e6,
        "gated_us": statistics.median(gateds) * 1e6,
        "overhead_us": med * 1e6,
        "overhead_q1_us": q1 * 1e6,
        "overhead_q3_us": q3 * 1e6,
        "ratio": (raw_med + med) / raw_med,
        "pairs": rounds,
        "calls_per_batch": calls,
    }


def worker(suite: str, calls: int, rounds: int, store: str | None, extras: bool) -> dict[str, Any]:
    from peers.adapters import SUITES, otel_sdk
    from peers.common import async_client, sync_client

    library, label, build, sdk = SUITES[suite]
    shutdown = otel_sdk(sdk) if sdk else None
    gated = build(store)
    raw_sync, raw_async = sync_client(), async_client()
    from peers.common import MESSAGES, MODEL

    def raw_one() -> object:
        return raw_sync.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]

    def raw_aone() -> Awaitable[object]:
        return raw_async.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]

    def raw_stream() -> None:
        for _ in raw_sync.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            pass

    loop = asyncio.new_event_loop()

    def batch(fn: Callable[[int], float], hooks: bool) -> Callable[[int], float]:
        def run(n: int) -> float:
            if hooks:
                gated.before_batch()
            try:
                return fn(n)
            finally:
                if hooks:
                    gated.after_batch()

        return run

    def sync_timer(fn: Callable[[], object]) -> Callable[[int], float]:
        return lambda n: per_call(fn, n)

    def async_timer(fn: Callable[[], Awaitable[object]]) -> Callable[[int], float]:
        return lambda n: loop.run_until_complete(per_call_async(fn, n))

    rows = []
    pairs: list[tuple[str, Any, Any, Callable[..., Callable[[int], float]]]] = [
        ("sync create", raw_one, gated.sync, sync_timer),
        ("async create", raw_aone, gated.aio, async_timer),
        ("sync stream=True", raw_stream, gated.stream, sync_timer),
    ]
    for mode, raw_fn, gated_fn, timer in pairs:
        row: dict[str, Any] = {"suite": suite, "library": library, "config": label, "mode": mode}
        if gated_fn is None:
            row["skipped"] = gated.why.get(mode, "not supported")
        else:
            try:
                row.update(compare(batch(timer(raw_fn), False), batch(timer(gated_fn), True), calls, rounds))
            except Exception as exc:  # a peer failing one mode must not sink the others
                row["skipped"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        rows.append(row)
    result: dict[str, Any] = {"rows": rows}
    if library == "tollgate":
        result.update(
            tollgate_checks(gated, loop, store, extras and suite == "tollgate-memory", calls * rounds)
        )
    gated.close()
    loop.close()
    if shutdown is not None:
        shutdown()
    return result


def tollgate_checks(
    gated: Any, loop: asyncio.AbstractEventLoop, store: str | None, extras: bool, n: int
) -> dict[str, Any]:
    """That the gated calls were recorded; Redis PING and round trips per call; the gate alone."""
    import tollgate

    out: dict[str, Any] = {"ledger_calls": tollgate.report().total["calls"]}
    counters = tollgate.config.settings().store
    if hasattr(counters, "round_trips"):
        before = counters.round_trips
        gated.sync()
        out["redis_round_trips_sync_call"] = counters.round_trips - before
        before = counters.round_trips
        loop.run_until_complete(gated.aio())
        out["redis_round_trips_async_call"] = counters.round_trips - before
        import redis

        client = redis.Redis.from_url(store or "")
        samples = []
        for i in range(2_200):
            start = time.perf_counter_ns()
            client.ping()
            if i >= 200:
                samples.append(time.perf_counter_ns() - start)
        out["redis_ping_us"] = statistics.median(samples) / 1e3
        client.close()
    if extras:
        out.update(gate_alone(max(n // 5, 500)))
    return out


def gate_alone(calls: int) -> dict[str, float]:
    """The gate's own steps without the SDK, and the adapter around a create that returns at once."""
    from peers.common import MESSAGES, sync_client

    from tollgate import gate
    from tollgate.providers.base import gated as gate_method
    from tollgate.providers.openai import ChatSurface
    from tollgate.request import LLMRequest, Usage

    usage = Usage(input_tokens=25, output_tokens=2)

    def one() -> None:
        call = gate.preflight(
            LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini", messages=MESSAGES)
        )
        call.finish(gate.Outcome(usage, model="gpt-4o-mini-2024-07-18", id="chatcmpl-bench"))

    one()
    alone = min(per_call(one, calls // 5) for _ in range(5))
    response = sync_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    adapter = gate_method(
        lambda **kwargs: response, ChatSurface("openai", ("api.openai.com", 443)), is_async=False
    )
    adapter(model="gpt-4o-mini", messages=MESSAGES)
    wrapped = min(
        per_call(lambda: adapter(model="gpt-4o-mini", messages=MESSAGES), calls // 5) for _ in range(5)
    )
    return {"gate_alone_us": alone * 1e6, "adapter_and_gate_us": wrapped * 1e6}


# --------------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------------


def run_suite(suite: str, args: argparse.Namespace, store: str | None) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        suite,
        "--calls",
        str(args.calls),
        "--rounds",
        str(args.rounds),
    ]
    if store:
        command += ["--store-url", store]
    if not args.quick:
        command.append("--extras")
    done = subprocess.run(command, capture_output=True, text=True, timeout=1_800)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"rows": [], "error": f"worker exited {done.returncode}: {reason}"[:300]}
    return dict(json.loads(lines[-1]))


def suites_to_run(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    from peers.adapters import PEERS, REQUIRES, SUITES, TOLLGATE_SUITES

    wanted = [p.strip() for p in args.peers.split(",")] if args.peers not in ("all", "none") else []
    if args.peers == "all":
        wanted = PEERS
    run, skipped = list(TOLLGATE_SUITES), {}
    for name, (library, *_rest) in SUITES.items():
        if library == "tollgate":
            continue
        if library not in wanted:
            if args.peers == "none":
                skipped[name] = "skipped in --quick (pass --peers all)" if args.quick else "skipped (--peers)"
            continue
        if not installed(REQUIRES[library]):
            skipped[name] = NOT_INSTALLED.format(script="overhead.py")
        else:
            run.append(name)
    return run, skipped


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'library':<15} {'configuration':<58} {'mode':<17} {'raw µs':>7} {'+µs':>7} "
        f"{'interquartile':>17} {'ratio':>6}"
    )
    for row in rows:
        head = f"{row['library']:<15} {row['config'][:58]:<58} {row.get('mode', ''):<17}"
        if "skipped" in row:
            print(f"{head} {row['skipped']}")
            continue
        iqr = f"{row['overhead_q1_us']:+.1f}..{row['overhead_q3_us']:+.1f}"
        print(
            f"{head} {row['raw_us']:>7.1f} {row['overhead_us']:>+7.1f} {iqr:>17} {row['ratio']:>6.2f}"
            + (f"   {row['note']}" if row.get("note") else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run that checks the script works")
    parser.add_argument("--calls", type=int, help="calls per batch (default 100; 10 with --quick)")
    parser.add_argument("--rounds", type=int, help="paired batches per row (default 40; 4 with --quick)")
    parser.add_argument("--peers", help="all, none or a comma list (default: all; none with --quick)")
    parser.add_argument("--suites", help="run only these suites (comma list), e.g. tollgate-memory")
    parser.add_argument(
        "--json", type=Path, help="where to write the results (default benchmarks/results/overhead.json)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--store-url", help=argparse.SUPPRESS)
    parser.add_argument("--extras", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.calls = args.calls or (10 if args.quick else 100)
    args.rounds = args.rounds or (4 if args.quick else 40)
    args.peers = args.peers or ("none" if args.quick else "all")

    if args.worker:
        print(json.dumps(worker(args.worker, args.calls, args.rounds, args.store_url, args.extras)))
        return

    from peers.adapters import SUITES
    from stores import redis_url

    suites, skipped = suites_to_run(args)
    if args.suites:
        chosen = set(args.suites.split(","))
        suites = [s for s in suites if s in chosen]
    print(
        f"overhead per call over httpx.MockTransport: {args.rounds} interleaved pairs of {args.calls}-call "
        f"batches per row, each suite in its own process ({sys.executable})"
    )
    rows: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, redis_url() as redis:
        for suite in SUITES:
            library, label = SUITES[suite][0], SUITES[suite][1]
            if suite in skipped:
                rows.append({"suite": suite, "library": library, "config": label, "skipped": skipped[suite]})
                continue
            if suite not in suites:
                continue
            store = None
            if suite == "tollgate-sqlite":
                store = f"sqlite:///{os.path.join(folder, 'bench.db')}"
            elif suite in ("tollgate-redis", "tollgate-redis-slices"):
                if redis is None:
                    reason = (
                        "skipped: no Redis (set TOLLGATE_BENCH_REDIS_URL or put redis-server on the PATH)"
                    )
                    rows.append({"suite": suite, "library": library, "config": label, "skipped": reason})
                    continue
                store = redis
            print(f"  {suite} ...", flush=True)
            result = run_suite(suite, args, store)
            if "error" in result:
                rows.append({"suite": suite, "library": library, "config": label, "skipped": result["error"]})
                continue
            found = {k: v for k, v in result.items() if k != "rows"}
            if found:
                extras[suite] = found
            if "redis_ping_us" in found:
                for row in result["rows"]:
                    trips = found[
                        "redis_round_trips_async_call"
                        if row["mode"] == "async create"
                        else "redis_round_trips_sync_call"
                    ]
                    row["note"] = f"PING {found['redis_ping_us']:.0f} µs, {trips} round trips/call"
            rows.extend(result["rows"])
    print_table(rows)
    for suite, found in extras.items():
        print(
            f"{suite}: "
            + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in found.items())
        )
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json or not args.quick:
        settings = {
            "calls_per_batch": args.calls,
            "pairs": args.rounds,
            "quick": args.quick,
            "peers": args.peers,
        }
        payload = metadata("overhead", settings) | {"rows": rows, "checks": extras}
        write_json(args.json or RESULTS / "overhead.json", payload)


if __name__ == "__main__":
    main()
