"""Shared by the benchmark scripts: the --quick / --json flags, machine details, the JSON file.

Not a benchmark itself (tests/test_benchmarks.py skips files whose name starts with ``_``).
Every script takes ``--quick`` (a short run that only checks the script works) and
``--json PATH`` (results as JSON; a full run writes ``benchmarks/results/<script>.json`` by
default, a quick run writes JSON only when ``--json`` is given).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--quick`` and ``--json PATH`` to a script's argument parser."""
    parser.add_argument(
        "--quick", action="store_true", help="a short run that only checks the script works (< 20 s)"
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="write the results as JSON (default for a full run: benchmarks/results/<script>.json)",
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


def tollgate_version() -> str:
    """The installed tollgate's version, read without importing it in this process when possible."""
    try:
        from importlib.metadata import version

        return version("tollgate-llm")  # the distribution; the import name is tollgate
    except Exception:
        pass
    sys.path.insert(0, str(ROOT))
    import tollgate

    return str(tollgate.__version__)


def metadata(script: str, quick: bool) -> dict[str, Any]:
    return {
        "benchmark": script,  # the key benchmarks/peers/common.py uses too
        "script": script,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "tollgate_version": tollgate_version(),
    }


def write_json(args: argparse.Namespace, script: str, results: Mapping[str, Any]) -> Path | None:
    """Write ``results`` with the run's metadata; where to, as the flags say (None: not written)."""
    if args.json:
        path = Path(args.json)
    elif args.quick:
        return None
    else:
        path = RESULTS / f"{script}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**metadata(script, bool(args.quick)), **results}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nresults written to {path}")
    return path


def loglog_slope(sizes: Sequence[float], times: Sequence[float]) -> float | None:
    """Least-squares slope of log(time) against log(size), over the points with size > 0."""
    points = [(math.log(s), math.log(t)) for s, t in zip(sizes, times, strict=True) if s > 0 and t > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


#: The chat request and the ready response the gate-level benchmarks (scale, memory) use.
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1763900000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 25, "completion_tokens": 2, "total_tokens": 27},
}


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The best of ``repeats`` timings of ``fn()`` (a shared machine's noise only adds), and its
    last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        begin = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - begin)
    return best, result
