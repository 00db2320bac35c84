"""How long the HTML report takes on a big SQLite ledger: ``summarize`` (the SQL aggregation
every chart reads) for several ``group_by``, and ``render_report`` when it exists.

Run: python benchmarks/html_report.py [--quick] [--json PATH] [--records N] [--keep PATH]

The ledger is made by ``SQLiteLedger`` (so the schema is the real one), then filled by one
``executemany`` into its table: N records over 30 days, 50 tenants, 10 features, 6 models (one
of them unpriced), with cache reads, estimated, failed, blocked, rate-limited, downgraded,
clamped, truncated and cut-off calls, a few tool calls, unknown usage fields, billed parts and
top-ups. Each variant is timed as the best of a few runs (the machine is shared). Goal: on
1,000,000 records, summarize + render under 5 s.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import add_flags, best_of, write_json

from tollgate.ledger import SQLiteLedger, rollup
from tollgate.ledger.sqlite import _INSERT, _from_row
from tollgate.ledger.summary import summarize

DAY = 86_400.0
END = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed end, so runs are comparable
GOAL_SECONDS = 5.0
WRITER_SPANS = {"one hour": 1 / 24, "30 days": 30.0}
#: (model, input price, cache-read price, output price) per token; None: unpriced.
MODELS: tuple[tuple[str, float | None, float | None, float | None], ...] = (
    ("gpt-4o", 2.5e-06, 1.25e-06, 1e-05),
    ("gpt-4o-mini", 1.5e-07, 7.5e-08, 6e-07),
    ("claude-sonnet-4-5", 3e-06, 3e-07, 1.5e-05),
    ("claude-haiku-4-5", 1e-06, 1e-07, 5e-06),
    ("gemini-2.5-flash", 3e-07, 7.5e-08, 2.5e-06),
    ("house-llm", None, None, None),
)
MODEL_WEIGHTS = (20, 35, 15, 10, 15, 5)
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("no group_by", {}),
    ("group_by tenant", {"group_by": ["tenant"]}),
    ("group_by tenant,feature", {"group_by": ["tenant", "feature"]}),
    ("group_by model", {"group_by": ["model"]}),
    ("tenant=t7, group_by feature", {"group_by": ["feature"], "where": {"tenant": "t7"}}),
    ("last 2 days, group_by feature", {"group_by": ["feature"], "since": END - 2 * DAY}),
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def rows(count: int, seed: int = 7, days: float = 30.0) -> Iterator[tuple[Any, ...]]:
    """``count`` ledger rows in the table's column order, oldest first, spread over ``days``."""
    rnd = random.Random(seed)
    tags = [_json({"tenant": f"t{t}", "feature": f"f{f}"}) for t in range(50) for f in range(10)]
    tenant_weights = [1.0 / (t + 1) for t in range(50)]  # a few big tenants, a long tail
    tag_weights = [tenant_weights[t] for t in range(50) for _ in range(10)]
    block = _json([{"action": "block", "budget": "tenant-daily"}])
    rate_limited = _json([{"action": "rate_limited", "limit": "rpm"}])
    downgrade = _json([{"action": "downgrade", "from": "gpt-4o", "to": "gpt-4o-mini"}])
    clamp = _json([{"action": "clamp", "max_output_tokens": 256, "was": 1024}])
    truncate = _json([{"action": "truncate", "dropped_messages": 4}])
    cutoff = _json([{"action": "cutoff", "budget": "tenant-daily", "output_tokens": 300}])
    recorded = _json([{"action": "record"}])
    start = END - days * DAY
    step = days * DAY / max(count, 1)
    picks = rnd.choices(range(len(MODELS)), MODEL_WEIGHTS, k=count)
    tag_picks = rnd.choices(tags, tag_weights, k=count)
    for i in range(count):
        t = start + i * step + rnd.random() * step
        model, p_in, p_read, p_out = MODELS[picks[i]]
        inp = rnd.randint(50, 6_000)
        out = rnd.randint(5, 1_200)
        cache_read = inp // 2 if rnd.random() < 0.3 else 0
        reasoning = out // 3 if model.startswith("claude-sonnet") else 0
        status, decisions, estimated, response_model = "ok", "[]", 0, model
        tool_calls, unknown, parts = 0, "{}", "[]"
        roll = rnd.random()
        if roll < 0.01:
            status, decisions, inp, out, cache_read, reasoning = "blocked", block, 0, 0, 0, 0
        elif roll < 0.013:
            status, decisions, inp, out, cache_read, reasoning = "blocked", rate_limited, 0, 0, 0, 0
        elif roll < 0.018:
            status, out = "error", 0
        elif roll < 0.048 and model == "gpt-4o":
            decisions, model, response_model = downgrade, "gpt-4o", "gpt-4o-mini"
            _, p_in, p_read, p_out = MODELS[1]
        elif roll < 0.058:
            decisions, out = clamp, min(out, 256)
        elif roll < 0.063:
            decisions = truncate
        elif roll < 0.065:
            decisions, out = cutoff, 300
        elif roll < 0.085:
            estimated, decisions = 1, recorded
        if rnd.random() < 0.05:
            tool_calls = rnd.randint(1, 3)
        if rnd.random() < 0.001:
            unknown = _json({"server_tool_use_v2": 1})
        priced = p_in is not None
        if priced and p_in is not None and p_read is not None and p_out is not None:
            usd = (inp - cache_read) * p_in + cache_read * p_read + out * p_out
        else:
            usd = 0.0
        if priced and rnd.random() < 0.0005:
            advisor = out * 2.5e-05
            parts = _json([{"model": "claude-opus-4-1", "kind": "advisor_message", "usd": advisor}])
            usd += advisor
        yield (
            f"c{i:09d}", t, t + rnd.random() * 5, "openai" if model.startswith("gpt") else "other",
            "chat", model, response_model if status != "blocked" else None,
            inp, out, cache_read, 0, reasoning, 0, 0, "{}",
            usd, int(priced), estimated, 0, status, "boom" if status == "error" else None, None,
            tag_picks[i], decisions, None, parts, unknown, tool_calls,
        )  # fmt: skip
        if i % 100_000 == 99_999:  # a prepaid tenant buys credit now and then: no call
            note = _json([{"action": "top_up", "added_usd": 50.0}])
            yield (
                f"u{i:09d}", t, t, "tollgate", "top_up", "", None, 0, 0, 0, 0, 0, 0, 0, "{}", 0.0,
                1, 0, 0, "ok", None, None, _json({"tenant": "t1"}), note, None, "[]", "{}", 0,
            )  # fmt: skip


def make_ledger(path: Path, count: int) -> float:
    """A ledger file of ``count`` records at ``path`` (its rollup not built: see
    :func:`build_rollup`); the seconds it took."""
    begin = time.perf_counter()
    SQLiteLedger(path).close()  # the real schema, version and index
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        conn.executemany(_INSERT, rows(count))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - begin


def build_rollup(path: Path) -> tuple[float, int]:
    """Roll up every row not rolled up yet, as the writer thread does for a file of an older
    schema (or rows inserted behind its back, as ``make_ledger`` does), chunk by chunk: the
    seconds it took and the rows rolled up."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        before = rollup.upto(conn)
        begin = time.perf_counter()
        more = True
        while more:
            conn.execute("BEGIN IMMEDIATE")
            more = rollup.roll_up(conn)
            conn.execute("COMMIT")
        seconds = time.perf_counter() - begin
        return seconds, rollup.upto(conn) - before
    finally:
        conn.close()


def writer_rate(count: int, days: float = 1 / 24) -> dict[str, float]:
    """Records per second the ledger's writer thread commits, rollup included, written as an
    application writes them (``write()`` per record, in the order of their start, the writer
    batching), and the rollup's share: the rate at which it rolls up the same rows alone.
    ``days``: the span of their starts (an hour: a batch holds calls of one hour, as an
    application's do; 30 days: every row of a batch falls in its own hour cell, the worst case)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rate.db"
        records = [_from_row(row) for row in rows(count, seed=11, days=days)]
        ledger = SQLiteLedger(path, flush_interval=0.01, max_pending=count + 1)
        try:
            begin = time.perf_counter()
            for record in records:
                ledger.write(record)
            ledger.flush()
            seconds = time.perf_counter() - begin
        finally:
            ledger.close()
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            rollup.reset(conn)
            begin = time.perf_counter()
            while rollup.roll_up(conn):
                pass
            rolled = time.perf_counter() - begin
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    return {"records_per_second": count / seconds, "rollup_rows_per_second": count / rolled}


def query_times(path: Path, group_by: tuple[str, ...], repeats: int) -> list[dict[str, Any]]:
    """The seconds of each SQL statement ``summarize`` runs for ``group_by`` (all records), and
    the cells statement's plan: where the time goes."""
    from tollgate.ledger import summary as s

    conn, columns = s._open(str(path))
    try:
        sql = s._Sql(columns, group_by, {}, None, None)
        sql.params["width"] = DAY
        last = s._rolled_up(conn)
        if last is not None:
            sql.use_rollup(last, None, None, DAY)
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql.cells(), sql.params)]
        steps: list[tuple[str, Callable[[], Any]]] = [
            (
                "cells: the rollup's and the other rows', grouped 3 ways",
                lambda: conn.execute(sql.cells(), sql.params).fetchall(),
            ),
            (
                "budget actions: the rollup's counts, and json_each(decisions) of other calls",
                lambda: (
                    conn.execute(sql.decisions(), sql.params).fetchall()
                    + (conn.execute(sql.rolled_decisions(), sql.params).fetchall() if sql.rolled else [])
                ),
            ),
            ("unknown usage fields (calls with any)", lambda: s._unknown_usage(conn, sql)),
            ("billed parts (calls with any)", lambda: s._parts_usd(conn, sql)),
        ]
        out = []
        for name, run in steps:
            seconds, rows = best_of(run, repeats)
            out.append({"query": name, "seconds": seconds, "rows": len(rows)})
        out.append({"query": "plan of the cells statement", "plan": plan})
        return out
    finally:
        conn.close()


def time_variants(uri: str, repeats: int, render: Callable[..., str] | None) -> list[dict[str, Any]]:
    """Each variant's best summarize time, and the render time of its summary when the page exists."""
    print(f"\n{'variant':<32} {'summarize s':>12} {'render s':>9} {'total s':>8}  groups  calls")
    results: list[dict[str, Any]] = []
    for name, options in VARIANTS:
        seconds, summary = best_of(lambda o=options: summarize(uri, **o), repeats)  # type: ignore[misc]
        render_seconds = None
        if render is not None:
            render_seconds, _ = best_of(lambda s=summary: render(s), repeats)  # type: ignore[misc]
        total = seconds + (render_seconds or 0.0)
        shown = "-" if render_seconds is None else f"{render_seconds:.3f}"
        calls, groups = summary["total"]["calls"], len(summary["groups"])
        print(f"{name:<32} {seconds:>12.3f} {shown:>9} {total:>8.3f}  {groups:>6}  {calls:,}")
        results.append(
            {
                "variant": name,
                "options": options,
                "summarize_seconds": seconds,
                "render_seconds": render_seconds,
                "total_seconds": total,
                "groups": groups,
                "calls": calls,
                "bucket": summary["bucket"],
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_flags(parser)
    parser.add_argument("--records", type=int, help="ledger size (default 1,000,000; --quick: 20,000)")
    parser.add_argument("--keep", metavar="PATH", help="build (or reuse) the ledger at PATH and keep it")
    args = parser.parse_args()
    count = args.records or (20_000 if args.quick else 1_000_000)
    repeats = 2 if args.quick else 3
    render: Callable[..., str] | None
    try:
        from tollgate.html import render_report as render
    except ImportError:  # the page is another change: time summarize alone meanwhile
        render = None

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "ledger.db"
        build_seconds = None
        if path.exists():
            SQLiteLedger(path).close()  # an older schema's file gains its rollup tables
            with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
                count = int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])
            conn.close()
            print(f"ledger: {path} (reused, {count:,} records)")
        else:
            build_seconds = make_ledger(path, count)
            size = path.stat().st_size / 1e6
            print(f"ledger: {count:,} records built in {build_seconds:.1f} s ({size:.0f} MB)")
        rollup_seconds, rolled = build_rollup(path)
        if rolled:
            print(f"rollup: {rolled:,} rows rolled up in {rollup_seconds:.1f} s (once, by the writer thread)")
        results = time_variants(f"sqlite:///{path}", repeats, render)
        profiled = ("tenant", "feature")
        queries = query_times(path, profiled, repeats)
    rate = {span: writer_rate(5_000 if args.quick else 100_000, days) for span, days in WRITER_SPANS.items()}
    print()
    for span, measured in rate.items():
        print(
            f"writer, calls of {span}: {measured['records_per_second']:,.0f} records/s committed with the "
            f"rollup; the rollup alone: {measured['rollup_rows_per_second']:,.0f} rows/s"
        )
    print(f"\nthe SQL of group_by {','.join(profiled)}, each statement alone:")
    for q in queries:
        if "seconds" in q:
            print(f"  {q['seconds']:7.3f} s  {q['rows']:>7,} rows  {q['query']}")
        else:
            print("  plan: " + "; ".join(q["plan"]))
    if render is None:
        print("\nrender: skipped (tollgate.html.render_report does not exist yet)")
    worst = max(r["total_seconds"] for r in results)
    verdict = "met" if worst < GOAL_SECONDS else "MISSED"
    goal = f"summarize + render under {GOAL_SECONDS:.0f} s on {count:,} records"
    print(f"goal: {goal}: {verdict} (worst {worst:.2f} s)")
    write_json(
        args,
        "html_report",
        {
            "records": count,
            "build_seconds": build_seconds,
            "rollup_seconds": rollup_seconds if rolled else None,
            "writer": rate,
            "rendered": render is not None,
            "goal_seconds": GOAL_SECONDS,
            "worst_seconds": worst,
            "passed": worst < GOAL_SECONDS,
            "rows": results,
            "queries": queries,
        },
    )


if __name__ == "__main__":
    main()
