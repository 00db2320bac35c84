"""Does memory stay flat? Resident memory after 10,000 calls vs after 1,000,000 calls.

Run: python benchmarks/memory.py [--quick] [--json PATH] [--trace] [--calls SMALL BIG]

The full path of a call: ``tollgate.instrument(openai.OpenAI(...))`` whose
``chat.completions.create`` returns a ready ``ChatCompletion`` (no HTTP, so a million calls
take a minute or two), under one ambient daily budget, with the ``memory://`` store and the
default in-memory ledger (a ring bounded at 20,000 records). Each configuration runs in a
fresh process; RSS (``VmRSS`` of /proc/self/status, after ``gc.collect()``) is read at
checkpoints on the way.

The criterion: RSS after BIG calls within 20 MB of RSS after SMALL calls, for the default
configuration; the exit status is 1 when it is not met (a full run only; ``--quick`` runs
2,000 vs 30,000 calls and only checks the script works). A control run with a 1,000-record
ledger tells the ledger's share from anything else's. ``--trace`` (and any full run that fails)
adds a tracemalloc comparison: what was allocated, by file:line, between two points of a
shorter run.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import COMPLETION, MESSAGES, add_flags, write_json

LIMIT_MB = 20.0
CONFIGS = {
    "default": "memory://",  # the default ledger: a ring of 20,000 records
    "ledger maxlen=1000": "memory://?maxlen=1000",  # control: what grows besides the ledger
}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, on systems without /proc


def instrumented_client() -> Any:
    """An instrumented OpenAI client whose create returns a ready response: the whole tollgate
    path (proxy, adapter, gate), none of the SDK's HTTP work."""
    import httpx
    import openai
    from openai.types.chat import ChatCompletion

    import tollgate

    response = ChatCompletion.model_validate(COMPLETION)

    def unused(request: httpx.Request) -> httpx.Response:  # create never reaches the transport
        return httpx.Response(500)

    raw = openai.OpenAI(api_key="sk-bench", http_client=httpx.Client(transport=httpx.MockTransport(unused)))
    raw.chat.completions.create = lambda **kwargs: response  # type: ignore[method-assign,assignment]
    return tollgate.instrument(raw)


def checkpoints(small: int, big: int) -> list[int]:
    points = {small, big}
    for n in (10_000, 50_000, 100_000, 150_000, 200_000, 500_000):
        if small < n < big:
            points.add(n)
    return sorted(points)


def child(ledger: str, small: int, big: int) -> None:
    """One configuration in this process: print one JSON line of RSS at each checkpoint."""
    import tollgate

    tollgate.configure(store="memory://", ledger=ledger)
    client = instrumented_client()
    create = client.chat.completions.create
    rows = []
    done = 0
    start = time.perf_counter()
    with tollgate.budget(usd=1e9, per="day", name="memory-bench"):
        for point in checkpoints(small, big):
            for _ in range(point - done):
                create(model="gpt-4o-mini", messages=MESSAGES)
            done = point
            gc.collect()
            led = tollgate.config.settings().ledger
            rows.append(
                {
                    "calls": done,
                    "rss_mb": rss_mb(),
                    "seconds": time.perf_counter() - start,
                    "ledger_records": len(cast(Any, led)),
                    "ledger_dropped": led.dropped(),
                }
            )
    print(json.dumps({"ledger": ledger, "rows": rows}))


def trace(ledger: str, first: int, second: int, top: int = 12) -> list[dict[str, Any]]:
    """Allocations still alive that were made between call ``first`` and call ``first + second``."""
    import tollgate

    tollgate.reset()
    tollgate.configure(store="memory://", ledger=ledger)
    create = instrumented_client().chat.completions.create
    with tollgate.budget(usd=1e9, per="day", name="memory-trace"):
        for _ in range(first):
            create(model="gpt-4o-mini", messages=MESSAGES)
        gc.collect()
        tracemalloc.start(1)  # one frame: statistics by file:line
        before = tracemalloc.take_snapshot()
        for _ in range(second):
            create(model="gpt-4o-mini", messages=MESSAGES)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    keep = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), "lineno")
    rows = []
    for stat in stats[:top]:
        frame = stat.traceback[0]
        rows.append(
            {
                "where": f"{frame.filename}:{frame.lineno}",
                "size_diff_kb": stat.size_diff / 1024,
                "count_diff": stat.count_diff,
            }
        )
    return rows


def run_child(ledger: str, small: int, big: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", ledger, "--calls", str(small), str(big)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flags(parser)
    parser.add_argument("--calls", nargs=2, type=int, metavar=("SMALL", "BIG"), help="default 10000 1000000")
    parser.add_argument("--trace", action="store_true", help="add a tracemalloc comparison")
    parser.add_argument("--child", metavar="LEDGER", help=argparse.SUPPRESS)  # one configuration, in-process
    args = parser.parse_args()
    small, big = args.calls or ((2_000, 30_000) if args.quick else (10_000, 1_000_000))
    if args.child:
        child(args.child, small, big)
        return

    print(
        f"RSS after {small:,} vs {big:,} calls through instrument(OpenAI()) + gate, one daily budget, "
        f"memory store{' [quick]' if args.quick else ''}\n"
    )
    print(f"{'ledger':<22} {'calls':>10} {'RSS MB':>8} {'ledger records':>15} {'dropped':>9} {'seconds':>8}")
    runs = []
    for name, ledger in CONFIGS.items():
        result = run_child(ledger, small, big)
        for row in result["rows"]:
            print(
                f"{name:<22} {row['calls']:>10,} {row['rss_mb']:>8.1f} {row['ledger_records']:>15,} "
                f"{row['ledger_dropped']:>9,} {row['seconds']:>8.1f}"
            )
        rows = result["rows"]
        growth = rows[-1]["rss_mb"] - rows[0]["rss_mb"]
        added = rows[-1]["ledger_records"] - rows[0]["ledger_records"]
        runs.append(
            {
                "config": name,
                "ledger": ledger,
                "rows": rows,
                "rss_small_mb": rows[0]["rss_mb"],
                "rss_big_mb": rows[-1]["rss_mb"],
                "growth_mb": growth,
                "ledger_records_added": added,
                "passed": growth <= LIMIT_MB,
            }
        )
        per_record = (
            f", ~{growth * 1024 * 1024 / added:,.0f} bytes per added ledger record" if added > 0 else ""
        )
        print(
            f"{'':<22} -> RSS {rows[0]['rss_mb']:.1f} -> {rows[-1]['rss_mb']:.1f} MB: "
            f"{growth:+.1f} MB{per_record}\n"
        )

    default = runs[0]
    passed = default["passed"]
    print(
        f"criterion (default config): RSS after {big:,} calls within {LIMIT_MB:g} MB of RSS after {small:,}: "
        f"{'PASS' if passed else 'FAIL'} ({default['growth_mb']:+.1f} MB)"
        + (" [not enforced in --quick]" if args.quick else "")
    )

    traced: list[dict[str, Any]] = []
    if args.trace or (not passed and not args.quick):
        first, second = (2_000, 5_000) if args.quick else (10_000, 30_000)
        print(
            f"\ntracemalloc: live allocations made between call {first:,} and call {first + second:,} "
            "(default ledger)"
        )
        traced = trace(CONFIGS["default"], first, second)
        print(f"{'where':<70} {'KB':>10} {'blocks':>9}")
        for row in traced:
            print(f"{row['where'][-70:]:<70} {row['size_diff_kb']:>+10.1f} {row['count_diff']:>+9,}")

    write_json(
        args,
        "memory",
        {
            "path": "tollgate.instrument(openai.OpenAI()) around a ready ChatCompletion, one daily budget",
            "calls_small": small,
            "calls_big": big,
            "limit_mb": LIMIT_MB,
            "runs": runs,
            "passed": passed,
            "tracemalloc": traced,
        },
    )
    if not passed and not args.quick:
        sys.exit(1)


if __name__ == "__main__":
    main()
