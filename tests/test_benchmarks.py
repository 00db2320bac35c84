"""Every benchmark script runs in its short mode (``--quick --json PATH``) and reports what it should.

Only that the scripts work is checked (exit status, the printed table, the JSON's shape), never
their timings: CI machines are too noisy for that. Each script runs once per test session, in
a subprocess with the repository's Python and an offline environment.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import OFFLINE_ENV, ROOT, SHARED_CASSETTES

BENCHMARKS = ROOT / "benchmarks"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
TIMEOUT = 120
METADATA = ("date", "machine")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    result: dict[str, Any] | None

    def explain(self) -> str:
        return (
            f"exit {self.returncode} after {self.seconds:.1f} s\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        )


_RUNS: dict[str, Run] = {}


@pytest.fixture(scope="module")
def run_quick(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Run]:
    """``run_quick("scale.py")``: the script's quick run (run once, then remembered)."""

    def run(script: str) -> Run:
        if script not in _RUNS:
            out_path = tmp_path_factory.mktemp(script.removesuffix(".py")) / "x.json"
            start = time.perf_counter()
            done = subprocess.run(
                [PYTHON, str(BENCHMARKS / script), "--quick", "--json", str(out_path)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                cwd=ROOT,
                env=dict(OFFLINE_ENV),
            )
            result = json.loads(out_path.read_text()) if out_path.exists() else None
            _RUNS[script] = Run(
                done.returncode, done.stdout, done.stderr, time.perf_counter() - start, result
            )
        return _RUNS[script]

    return run


def ok(run: Run, header: str) -> dict[str, Any]:
    """The run succeeded, printed ``header`` and wrote JSON with the run's metadata; that JSON."""
    assert run.returncode == 0, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    assert header in run.stdout, run.explain()
    assert isinstance(run.result, dict), "no JSON written\n" + run.explain()
    for key in METADATA:
        assert key in run.result, f"JSON lacks {key!r}: {sorted(run.result)}"
    # tollgate's version: top-level, or among the package versions (overhead.py, overspend.py).
    version = run.result.get("tollgate_version") or (run.result.get("packages") or {}).get("tollgate-llm")
    assert version, f"JSON lacks tollgate's version: {sorted(run.result)}"
    machine = run.result["machine"]
    assert isinstance(machine, dict) and {"platform", "cpu_model", "python"} <= set(machine), machine
    return run.result


# -- one test per script -----------------------------------------------------------------------


def test_scale(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("scale.py"), "µs / call")
    names = [d["dimension"] for d in result["dimensions"]]
    assert names == [
        "nested_budgets",
        "tags",
        "standing_limits_not_matching",
        "standing_limits_matching",
        "memory_ledger",
        "sqlite_ledger",
        "truncate_messages",
        "messages_no_truncate",
    ]
    for dimension in result["dimensions"]:
        assert len(dimension["rows"]) >= 3, dimension
        sizes = [row["size"] for row in dimension["rows"]]
        assert sizes == sorted(sizes), dimension
        assert all(row["us_per_call"] > 0 for row in dimension["rows"]), dimension
        assert dimension["verdict"] in (
            "flat",
            "sublinear",
            "linear",
            "superlinear!",
        )
        assert {"loglog_slope", "tail_slope", "added_time_exponent", "us_per_item"} <= set(dimension)
    truncated = next(d for d in result["dimensions"] if d["dimension"] == "truncate_messages")
    assert all(row["dropped"] > 0 for row in truncated["rows"]), truncated


def test_memory(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("memory.py"), "criterion (default config)")
    assert (result["calls_small"], result["calls_big"]) == (2_000, 30_000)
    assert [r["config"] for r in result["runs"]] == ["default", "ledger maxlen=1000"]
    for run in result["runs"]:
        calls = [row["calls"] for row in run["rows"]]
        assert calls[0] == 2_000 and calls[-1] == 30_000, run
        assert all(row["rss_mb"] > 0 for row in run["rows"]), run
        assert "growth_mb" in run and "passed" in run
    control = result["runs"][1]["rows"][-1]
    assert control["ledger_records"] == 1_000 and control["ledger_dropped"] == 29_000
    assert isinstance(result["passed"], bool)


def test_import_time(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("import_time.py"), "goal: import under 150 ms")
    for key in (
        "python_c_pass",
        "python_c_import_tollgate",
        "import_minus_startup",
        "import_statement_in_process",
    ):
        assert {"median_ms", "best_ms"} <= set(result[key]), result[key]
    assert result["forbidden_imported"] == []  # no LLM SDK, OpenTelemetry SDK, Redis, httpx...
    assert result["importtime_top"] and result["importtime_top"][0]["module"] == "tollgate"


def test_doors(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("doors.py"), "over baseline")
    doors = [row["door"] for row in result["rows"]]
    assert doors[0] == "plain function (baseline)" and len(doors) == 9, doors
    assert all(row["us_per_call"] > 0 for row in result["rows"])
    sink = result["sink"]
    assert (
        sink["delivered"] == sink["records"]
        and sink["records_per_second"] > 0
        and sink["bytes_per_record"] > 0
    )


def test_stores(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("stores.py"), "round trips")
    stores = [row["store"] for row in result["rows"]]
    assert stores[:2] == ["memory", "sqlite (WAL, synchronous=NORMAL)"]
    assert all(row["us_per_call"] > 0 for row in result["rows"])


def test_stores_redis(run_quick: Callable[[str], Run]) -> None:
    if shutil.which("redis-server", path=OFFLINE_ENV["PATH"]) is None:
        pytest.skip("no redis-server on PATH: stores.py skips its Redis rows")
    result = ok(run_quick("stores.py"), "round trips")
    rows = {row["store"]: row for row in result["rows"]}
    assert {"redis", "redis (asyncio)", "redis PING (for comparison)"} <= set(rows), sorted(rows)
    assert result["redis"].startswith("redis://")


def test_control(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("control.py"), "redis trips")
    rows = [row["row"] for row in result["stores"]["memory"]]
    assert rows == [
        "daily budget",
        "+ warn_at (0.5, 0.8, 0.95)",
        "+ burn_rate=True",
        "+ limit(concurrent=1000)",
    ]
    for store in ("memory", "sqlite"):
        assert all(row["us_per_call"] > 0 for row in result["stores"][store])
    if "redis" in result["stores"]:  # the cap's lease: an acquire and a let-go beside reserve + settle
        trips = [row["round_trips"] for row in result["stores"]["redis"]]
        assert trips == [2, 2, 2, 4]


def test_telemetry(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("telemetry.py"), "tollgate telemetry, per call")
    assert [row["mode"] for row in result["rows"]] == ["none", "memory", "otlp"]
    assert "0 failed" in result["rows"][2]["exported"], result["rows"][2]  # the local OTLP sink took them


def test_estimate_error(run_quick: Callable[[str], Run]) -> None:
    if not SHARED_CASSETTES.is_dir():
        pytest.skip("../shared/cassettes is absent: estimate_error.py has nothing to measure")
    result = ok(run_quick("estimate_error.py"), "est actual")
    assert result["rows"], result
    assert {"cassette", "model", "estimate", "actual"} <= set(result["rows"][0])
    assert set(result["summary"]) <= {"text", "tools"} and result["summary"]


def test_instructions(run_quick: Callable[[str], Run]) -> None:
    if shutil.which("valgrind", path=OFFLINE_ENV["PATH"]) is None:
        pytest.skip("valgrind is not installed")
    result = ok(run_quick("instructions.py"), "memory store")
    modes = [row["mode"] for row in result["rows"]]
    assert modes == ["valgrind check", "create"], result["rows"]
    assert result["rows"][0]["instructions"] > 0


@pytest.mark.parametrize("script", ["overhead.py", "overspend.py"])
def test_overhead_and_overspend(run_quick: Callable[[str], Run], script: str) -> None:
    run = run_quick(script)
    result = ok(run, "library")
    # tollgate's own rows ran (a failed worker would be reported as a skipped row, exit 0).
    mine = [row for row in result["rows"] if row["library"] == "tollgate"]
    assert mine, run.explain()
    for row in mine:
        assert "skipped" not in row, row
        measured = "overhead_us" if script == "overhead.py" else "reached_provider"
        assert isinstance(row[measured], (int, float)), row


def test_abandoned_streams(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("abandoned_streams.py"), "provider/cap")
    assert [(r["provider"], r["reader"]) for r in result["rows"]] == [
        ("paced", "sync close"),
        ("paced", "async close"),
        ("unpaced", "sync close"),
        ("unpaced", "async close"),
    ]
    assert result["cap_held"], result["rows"]  # the provider never generated past the cap


def test_html_report(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("html_report.py"), "summarize s")
    assert result["records"] == 20_000 and result["build_seconds"] > 0
    rows = result["rows"]
    assert [row["variant"] for row in rows][:4] == [
        "no group_by",
        "group_by tenant",
        "group_by tenant,feature",
        "group_by model",
    ]
    assert rows[0]["calls"] == 20_000 and rows[0]["groups"] == 0  # every record a call, none a group
    assert [row["groups"] for row in rows[1:4]] == [50, 500, 6]
    assert all(row["summarize_seconds"] > 0 for row in rows)
    if result["rendered"]:
        assert all(row["render_seconds"] > 0 for row in rows)
    timed = [q for q in result["queries"] if "seconds" in q]
    assert len(timed) == 4 and all(q["seconds"] > 0 and q["rows"] > 0 for q in timed)
    assert isinstance(result["passed"], bool)


def test_postgres_report(run_quick: Callable[[str], Run]) -> None:
    from tests.pgserver import NO_POSTGRES, binaries

    if binaries() is None or importlib.util.find_spec("psycopg") is None:
        pytest.skip(NO_POSTGRES)
    result = ok(run_quick("postgres_report.py"), "report_rows s")
    assert result["records"] == 20_000 and result["day_cells"] > 0 and result["cli_seconds"] > 0
    rows = result["rows"]
    assert [row["variant"] for row in rows][:3] == [
        "no group_by",
        "group_by tenant",
        "group_by tenant,feature",
    ]
    assert rows[0]["calls"] == 20_000  # every record a call
    assert all(row["seconds"] > 0 and row["summarize_seconds"] > 0 for row in rows)
    assert result["writer_records_per_second"] > 0 and isinstance(result["passed"], bool)


def test_phases(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("phases.py"), "best of 7")
    us = {row["phase"]: row["us"] for row in result["rows"]}
    assert len(us) == 12 and all(v > 0 for v in us.values()), us
    # the phases nest: the whole adapter costs more than its pre-flight, a finish more than a close
    assert us["adapter + gate (what overhead.py reports)"] > us["pre-flight (Call + budgets + reserve)"]
    assert us["pre-flight + finish (+ settle, ledger, span end)"] > us["read the request (surface.request)"]


def test_utilisation(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("utilisation.py"), "first refusal at")
    rows = result["rows"]
    assert {r["path"] for r in rows} >= {"sqlite", "litellm_router"}, rows
    for row in rows:
        assert row["answered"] + row["refused"] > 0, row
        assert row["overspend_pct"] == 0.0, row  # the cap holds whether calls wait or not
        if row["hold_wait"] == 0:
            assert row["waited"] == 0, row  # hold_wait=0 decides at once
    assert any(r["waited"] > 0 for r in rows if r["hold_wait"] > 0), rows


def test_slices(run_quick: Callable[[str], Run]) -> None:
    result = ok(run_quick("slices.py"), "per-call cost through the gate")
    rows = result["overspend"]
    assert {r["store"] for r in rows} >= {"memory", "sqlite"}, rows
    for row in rows:
        assert row["overspend_pct"] == 0.0, row  # slices never take the spend past the cap
        assert row["granted"] <= row["calls"] and row["on_slices"] > 0, row  # most calls in memory
        assert row["reserved_after"] < 1e-9, row  # every slice given back
    for row in result.get("round_trips", []):
        assert row["round_trips_per_call"] < (0.5 if row["slices"] else 2.5), row


SCRIPTS_TESTED = {
    "abandoned_streams.py",
    "slices.py",
    "utilisation.py",
    "phases.py",
    "postgres_report.py",
    "html_report.py",
    "doors.py",
    "scale.py",
    "memory.py",
    "import_time.py",
    "stores.py",
    "telemetry.py",
    "estimate_error.py",
    "instructions.py",
    "overhead.py",
    "overspend.py",
    "control.py",
}


def test_every_benchmark_is_covered() -> None:
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert scripts == SCRIPTS_TESTED, "give each benchmark script a test here: " + str(
        scripts ^ SCRIPTS_TESTED
    )


def test_quick_without_json_writes_nothing(tmp_path: pathlib.Path) -> None:
    """A quick run writes no file unless --json is given (CI must not touch benchmarks/results)."""
    results = BENCHMARKS / "results" / "stores.json"
    before = results.stat().st_mtime if results.exists() else None
    done = subprocess.run(
        [PYTHON, str(BENCHMARKS / "stores.py"), "--quick", "20"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=dict(OFFLINE_ENV),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "results written" not in done.stdout
    assert (results.stat().st_mtime if results.exists() else None) == before
