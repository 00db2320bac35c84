"""How long a report of a big PostgreSQL ledger takes: ``tollgate report --ledger postgresql://...``
end to end (a fresh process), and ``postgres_report`` (the server's report rows) in-process
for several selections.

Run: python benchmarks/postgres_report.py [--quick] [--records N] [--json PATH]

The server is ``TOLLGATE_BENCH_POSTGRES_URL``, else a private one started from Debian's
``postgresql`` binaries (``tests/pgserver.py``). The ledger is made by ``PostgresLedger`` (the
real schema), then filled in SQL with ``generate_series``: N records over 30 days, 50 tenants
(a few big ones, a long tail), 10 features, 6 models, some blocked, failed, estimated and
unpriced calls, tool calls, unknown usage fields; USD amounts a whole number of 2^-20 USD, so
the float and its exact ``numeric`` agree. Its day cells are then built by ``rebuild_days``
(what the writer does batch by batch). Goal: 10,000,000 records reported in under 2 s. Also
timed: ``summarize`` (what the HTML report and the dashboard show) for the same selections.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import add_flags, best_of, write_json

END = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0
GOAL_SECONDS = 2.0
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("no group_by", {}),
    ("group_by tenant", {"group_by": ["tenant"]}),
    ("group_by tenant,feature", {"group_by": ["tenant", "feature"]}),
    ("group_by model,status", {"group_by": ["model", "status"]}),
    ("tenant=t7, group_by feature", {"group_by": ["feature"], "where": {"tenant": "t7"}}),
    ("last 2 days (ragged), group_by feature", {"group_by": ["feature"], "since": END - 2 * DAY - 3_599.5}),
)
# One statement makes every row: generate_series, random picks, the real column order.
FILL = """
INSERT INTO tollgate_calls (id, started_at, ended_at, provider, operation, request_model,
  response_model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
  reasoning_tokens, audio_input_tokens, audio_output_tokens, units, usd, priced, estimated,
  stream, status, error, response_id, tags, decisions, service_tier, parts, unknown_usage,
  tool_calls, usd_exact)
SELECT 'c' || i, t, t + 1, CASE WHEN m <= 2 THEN 'openai' ELSE 'other' END, 'chat',
  (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5', 'gemini-2.5-flash',
         'house-llm'])[m],
  CASE WHEN st = 'blocked' THEN NULL ELSE (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5',
    'claude-haiku-4-5', 'gemini-2.5-flash', 'house-llm'])[m] END,
  inp, outp, 0, 0, 0, 0, 0, '{}', cents::float8 / 1048576, m <> 6, i %% 50 = 0, false, st,
  CASE WHEN st = 'error' THEN 'boom' END, NULL,
  jsonb_build_object('tenant', 't' || tenant, 'feature', 'f' || (i %% 10)),
  CASE WHEN st = 'blocked' THEN '[{"action": "block", "budget": "tenant-daily"}]'::jsonb
       ELSE '[]'::jsonb END,
  NULL, '[]', CASE WHEN i %% 1000 = 0 THEN '{"server_tool_use_v2": 1}'::jsonb ELSE '{}'::jsonb END,
  CASE WHEN i %% 20 = 0 THEN 2 ELSE 0 END, cents::numeric / 1048576
FROM (
  SELECT i, %(start)s + i * %(step)s + random() * %(step)s AS t,
    1 + floor(6 * random())::int AS m, floor(1 / (0.02 + 0.98 * random()))::int %% 50 AS tenant,
    CASE WHEN i %% 100 = 1 THEN 'blocked' WHEN i %% 200 = 3 THEN 'error' ELSE 'ok' END AS st,
    50 + floor(5000 * random())::int AS inp, 5 + floor(1000 * random())::int AS outp,
    CASE WHEN i %% 100 = 1 THEN 0 ELSE floor(random() * 20000)::bigint END AS cents
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
) AS picks
"""


@contextlib.contextmanager
def database() -> Iterator[str]:
    url = os.environ.get("TOLLGATE_BENCH_POSTGRES_URL")
    if url:
        yield url
        return
    from tests.pgserver import server

    settings = {
        "shared_buffers": "1GB",
        "work_mem": "64MB",
        "max_wal_size": "8GB",
        "synchronous_commit": "off",
    }
    with server(**settings) as started:
        yield started


def fill(url: str, count: int) -> tuple[float, float]:
    """Make the ledger: the seconds the rows took, and the day cells."""
    import psycopg

    from tollgate.ledger.postgres import PostgresLedger, rebuild_days

    PostgresLedger(url).close()  # the schema
    begin = time.perf_counter()
    step = 30 * DAY / count
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE tollgate_calls, tollgate_days")
        chunk = 1_000_000
        for first in range(0, count, chunk):
            last = min(count, first + chunk) - 1
            conn.execute(FILL, {"start": END - 30 * DAY, "step": step, "first": first, "last": last})
        conn.execute("VACUUM ANALYZE tollgate_calls")
        rows = time.perf_counter() - begin
        begin = time.perf_counter()
        rebuild_days(conn)
        conn.execute("VACUUM ANALYZE tollgate_days")
        cells = time.perf_counter() - begin
    return rows, cells


def writer_rate(url: str, count: int) -> float:
    """Records a second one process's ledger commits (``write()`` each, then ``flush()``), its
    day cells included: generated as an application makes them, over one hour."""
    from tests.ledger.test_rollup import records
    from tollgate.ledger.postgres import PostgresLedger

    batch = records(count, seed=31, days=1 / 24)
    with PostgresLedger(url, max_pending=count + 1) as ledger:
        begin = time.perf_counter()
        for record in batch:
            ledger.write(record)
        ledger.flush()
        seconds = time.perf_counter() - begin
        assert ledger.dropped() == 0
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_flags(parser)
    parser.add_argument("--records", type=int, help="ledger size (default 10,000,000; --quick: 20,000)")
    args = parser.parse_args()
    count = args.records or (20_000 if args.quick else 10_000_000)
    repeats = 2 if args.quick else 3
    import psycopg

    from tollgate.ledger.postgres import connect
    from tollgate.ledger.summary import postgres_report, summarize

    with database() as url:
        rows_seconds, cells_seconds = fill(url, count)
        with psycopg.connect(url) as conn:
            size = conn.execute("SELECT pg_total_relation_size('tollgate_calls')").fetchone()[0]
            cells = conn.execute("SELECT count(*) FROM tollgate_days").fetchone()[0]
        print(
            f"ledger: {count:,} records in {rows_seconds:.0f} s ({size / 1e9:.1f} GB); "
            f"{cells:,} day cells in {cells_seconds:.0f} s"
        )
        tollgate = str(Path(sys.executable).parent / "tollgate")
        command = [tollgate, "report", "--ledger", url, "--group-by", "tenant,feature"]
        cli_seconds, done = best_of(lambda: subprocess.run(command, capture_output=True, text=True), repeats)
        if done.returncode != 0:
            raise SystemExit(f"tollgate report failed: {done.stderr}")
        print(f"\n`tollgate report --group-by tenant,feature` (a fresh process): {cli_seconds:.2f} s")
        print(f"\n{'variant':<42} {'report_rows s':>13} {'summarize s':>12}  rows  calls")
        results = []
        conn = connect(url, 30.0, create=False)
        try:
            for name, options in VARIANTS:
                seconds, (total, found) = best_of(lambda o=options: postgres_report(conn, **o), repeats)  # type: ignore[misc]
                page, _ = best_of(lambda o=options: summarize(url, **o), repeats)  # type: ignore[misc]
                print(f"{name:<42} {seconds:>13.3f} {page:>12.3f}  {len(found):>4}  {total['calls']:,}")
                results.append(
                    {
                        "variant": name,
                        "options": options,
                        "seconds": seconds,
                        "summarize_seconds": page,
                        "calls": total["calls"],
                    }
                )
        finally:
            conn.close()
        rate = writer_rate(url, 5_000 if args.quick else 100_000)
        print(f"\nwriter: {rate:,.0f} records/s committed by one process (COPY batches, day cells included)")
    worst = max([cli_seconds, *(r["seconds"] for r in results)])
    verdict = "met" if worst < GOAL_SECONDS else "MISSED"
    print(f"goal: a report of {count:,} records under {GOAL_SECONDS:.0f} s: {verdict} (worst {worst:.2f} s)")
    write_json(
        args,
        "postgres_report",
        {
            "records": count,
            "fill_seconds": rows_seconds,
            "cells_seconds": cells_seconds,
            "day_cells": cells,
            "table_bytes": size,
            "cli_seconds": cli_seconds,
            "writer_records_per_second": rate,
            "goal_seconds": GOAL_SECONDS,
            "worst_seconds": worst,
            "passed": worst < GOAL_SECONDS,
            "rows": results,
        },
    )


if __name__ == "__main__":
    main()
