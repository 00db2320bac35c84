"""The PostgreSQL ledger, against a real server the tests start (Debian's postgresql): records
read back as written, reports equal to build_report's to the bit from the day cells and the
rows, acknowledged records surviving a SIGKILLed writer, bad rows and a dead server counted,
never raised, and `tollgate report` reading it without changing it."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tests.ledger.test_rollup import PERIODS, SELECTIONS, START, records
from tests.pgserver import NO_POSTGRES, server
from tollgate.ledger import MemoryLedger, build_report, open_ledger
from tollgate.ledger.summary import summarize
from tollgate.request import CallRecord

psycopg = pytest.importorskip("psycopg", reason=NO_POSTGRES)

from tollgate.ledger.postgres import SCHEMA_VERSION, PostgresLedger, redacted  # noqa: E402


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """``TOLLGATE_TEST_POSTGRES_URL``, or a private server for this module."""
    url = os.environ.get("TOLLGATE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    try:
        with server() as started:
            yield started
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def database(postgres: str) -> Iterator[str]:
    """A fresh database of its own on the server, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base = postgres.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def by_start(batch: list[CallRecord]) -> list[CallRecord]:
    return sorted(batch, key=lambda r: r.started_at)  # stable: arrival order among equal starts


def test_records_read_back_as_written(database: str) -> None:
    batch = records(1_500, seed=21)
    with PostgresLedger(database) as ledger:
        for record in batch:
            ledger.write(record)
        assert ledger.records() == by_start(batch)
        since, until = START + 2.5 * 86_400, START + 5 * 86_400
        assert ledger.records(since, until) == by_start([r for r in batch if since <= r.started_at < until])
        assert ledger.dropped() == 0
    assert sql(database, "SELECT version FROM tollgate_schema") == [(SCHEMA_VERSION,)]
    # The exact USD beside the float: what finance sums in SQL.
    exact = sql(database, "SELECT sum(usd_exact) FROM tollgate_calls")[0][0]
    assert float(exact) == build_report(batch).total["usd"]


@pytest.fixture(scope="module")
def filled(postgres: str) -> Iterator[tuple[str, list[CallRecord]]]:
    """One database written by three ledgers in turn (the day cells added to, not replaced)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"{postgres.rsplit('/', 1)[0]}/{name}"
    batch = records(3_000, seed=22)
    for part in (batch[:1_000], batch[1_000:2_200], batch[2_200:]):
        with PostgresLedger(url, batch_size=300) as ledger:
            for record in part:
                ledger.write(record)
    yield url, batch


@pytest.mark.parametrize("period", [p for p in PERIODS if "bucket" not in p], ids=repr)  # a table: no buckets
@pytest.mark.parametrize("selection", SELECTIONS, ids=repr)
def test_a_report_equals_build_reports_to_the_bit(
    filled: tuple[str, list[CallRecord]], period: dict[str, Any], selection: dict[str, Any]
) -> None:
    url, batch = filled
    since, until = period.get("since"), period.get("until")
    with PostgresLedger(url) as ledger:
        total, rows = ledger.report_rows(since=since, until=until, **selection)
    low, high = since if since is not None else -1e300, until if until is not None else 1e300
    expected = build_report(
        [r for r in batch if low <= r.started_at < high],
        group_by=selection.get("group_by"),
        where=selection.get("where"),
    )
    assert total == dict(expected.total)
    assert rows == ([dict(row) for row in expected.rows] if selection.get("group_by") else [])
    assert total["calls"] > 0


def test_the_day_cells_hold_what_the_rows_hold(filled: tuple[str, list[CallRecord]]) -> None:
    url, batch = filled
    cells = sql(url, "SELECT sum(calls), sum(input_tokens), sum(tool_calls), sum(usd) FROM tollgate_days")
    calls, tokens, tools, usd = cells[0]
    assert (calls, tokens, tools) == (
        len(batch),
        sum(r.usage.input_tokens for r in batch),
        sum(r.tool_calls for r in batch),
    )
    assert float(usd) == build_report(batch).total["usd"]


def _writer(url: str, worker: int, count: int, acks: str) -> None:
    """Write ``count`` records, flushing every 500; after each flush that lost nothing, note the
    last acknowledged index (the promise: it and everything before it are committed)."""
    with PostgresLedger(url) as ledger, open(acks, "a") as out:
        for i in range(count):
            ledger.write(
                CallRecord(
                    id=f"w{worker}-{i:07d}",
                    started_at=START + i,
                    ended_at=START + i + 1,
                    provider="openai",
                    operation="chat",
                    request_model="gpt-4o-mini",
                    usd=1e-5,
                    tags={"worker": str(worker)},
                )
            )
            if i % 500 == 499:
                ledger.flush()
                if ledger.dropped() == 0:
                    out.write(f"{i}\n")
                    out.flush()


def test_acknowledged_records_survive_a_sigkilled_writer(database: str, tmp_path: Path) -> None:
    PostgresLedger(database).close()  # the schema, before four processes race for it
    context = multiprocessing.get_context("spawn")
    per_worker = 62_500  # 250,000 records between four processes
    acks = [tmp_path / f"acks{w}" for w in range(4)]
    workers = [
        context.Process(target=_writer, args=(database, w, per_worker, str(acks[w]))) for w in range(4)
    ]
    for worker in workers:
        worker.start()
    victim = workers[0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_acked(acks[0])) < 20:  # 10,000 acknowledged
        time.sleep(0.05)
    os.kill(victim.pid or 0, signal.SIGKILL)
    for worker in workers:
        worker.join(300)
    assert victim.exitcode == -signal.SIGKILL
    assert [w.exitcode for w in workers[1:]] == [0, 0, 0]
    for w in range(4):
        last = max(_acked(acks[w]))
        found = sql(
            database,
            "SELECT count(*) FROM tollgate_calls WHERE id >= %s AND id <= %s",
            f"w{w}-0000000",
            f"w{w}-{last:07d}",
        )[0][0]
        assert found == last + 1, f"worker {w}: acknowledged {last + 1}, found {found}"
    survivors = sql(database, "SELECT count(*) FROM tollgate_calls WHERE id NOT LIKE 'w0-%%'")[0][0]
    assert survivors == 3 * per_worker
    (rows,), (cells,) = (
        sql(database, "SELECT count(*) FROM tollgate_calls"),
        sql(database, "SELECT sum(calls) FROM tollgate_days"),
    )
    assert rows == cells  # the cells were written in the rows' transactions: never apart


def _acked(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else [-1]


def test_a_row_the_server_refuses_is_dropped_alone(database: str) -> None:
    good = records(20, seed=23)
    bad = CallRecord(
        id="nul", started_at=START, ended_at=START, provider="openai", operation="chat",
        request_model="gpt-4o", tags={"tenant": "a\x00b"},  # PostgreSQL text cannot hold NUL
    )  # fmt: skip
    with PostgresLedger(database) as ledger:
        for record in [*good[:10], bad, *good[10:]]:
            ledger.write(record)
        ledger.flush()
        assert ledger.dropped() == 1
        assert sorted(r.id for r in ledger.records()) == sorted(r.id for r in good)


def test_an_unreachable_server_is_refused_at_creation_without_the_password(postgres: str) -> None:
    url = "postgresql://tollgate:s3cret@127.0.0.1:1/postgres"
    with pytest.raises(ValueError, match="cannot open ledger") as caught:
        PostgresLedger(url, timeout=1)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
    assert redacted(url) == "postgresql://tollgate:***@127.0.0.1:1/postgres"


def test_a_server_gone_mid_run_loses_counted_records_never_raises(tmp_path: Path) -> None:
    try:
        context = server()
        url = context.__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    stopped = False
    try:
        with PostgresLedger(url, timeout=2) as ledger:
            ledger.write(records(1, seed=24)[0])
            ledger.flush()
            context.__exit__(None, None, None)  # the server dies
            stopped = True
            for record in records(5, seed=25):
                ledger.write(record)  # never raises
            ledger.flush()
            assert ledger.dropped() == 5
    finally:
        if not stopped:
            context.__exit__(None, None, None)


def test_a_newer_schema_is_refused(database: str) -> None:
    PostgresLedger(database).close()
    sql(database, "UPDATE tollgate_schema SET version = %s", SCHEMA_VERSION + 1)
    with pytest.raises(ValueError, match="newer than this tollgate reads"):
        PostgresLedger(database)


def test_configure_takes_the_uri(database: str) -> None:
    tollgate.configure(ledger=database, store="memory://")
    try:
        tollgate.record(
            provider="openai", model="gpt-4o-mini", input_tokens=100, output_tokens=20, tenant="acme"
        )
        report = tollgate.report(group_by="tenant")
        assert [(row["tags"]["tenant"], row["calls"]) for row in report] == [("acme", 1)]
    finally:
        tollgate.reset()
    with open_ledger(database) as opened:
        assert isinstance(opened, PostgresLedger)


def test_tollgate_report_reads_it_and_never_creates_one(
    filled: tuple[str, list[CallRecord]], database: str
) -> None:
    from tollgate.cli import main

    url, batch = filled
    out = io.StringIO()
    assert main(["report", "--ledger", url, "--group-by", "tenant,feature", "--format", "json"], out=out) == 0
    expected = build_report(batch, group_by=["tenant", "feature"])
    assert json.loads(out.getvalue()) == json.loads(expected.to_json())
    text = io.StringIO()
    assert main(["report", "--ledger", url, "--group-by", "tenant"], out=text) == 0
    assert "TOTAL" in text.getvalue() and f"{len(batch):,} calls" in text.getvalue()
    assert main(["report", "--ledger", url, "--group-by", "tenat"], out=io.StringIO()) == 2  # did you mean
    assert main(["report", "--ledger", database], out=io.StringIO()) == 1  # no ledger there
    assert sql(database, "SELECT to_regclass('tollgate_calls')") == [(None,)]  # and none made


def test_tag_values_of_every_json_type_group_and_match_as_build_report_does(database: str) -> None:
    values: list[Any] = ["acme", "5", 5, 5.5, True, None, "", "a'b\"c"]
    batch = [
        CallRecord(
            id=f"v{i}",
            started_at=START + i,
            ended_at=START + i,
            provider="openai",
            operation="chat",
            request_model="gpt-4o",
            usd=0.1 * (i + 1),
            tags={"v": value, "odd name!": i % 2},
        )
        for i, value in enumerate(values * 3)
    ]
    batch.append(CallRecord(id="none", started_at=START, ended_at=START, provider="openai",
                            operation="chat", request_model="gpt-4o", usd=0.01))  # fmt: skip
    with PostgresLedger(database) as ledger:
        for record in batch:
            ledger.write(record)
        for options in (
            {"group_by": ["v"]},
            {"group_by": ["odd name!", "v"]},
            {"where": {"v": 5}},
            {"where": {"v": "5"}},
            {"where": {"v": [None, "acme", 5.5]}},
            {"where": {"v": True}, "group_by": ["odd name!"]},
            {"where": {"odd name!": 1}, "group_by": ["v"]},
            {"where": {"model": "gpt-4o", "v": ""}},
        ):
            total, rows = ledger.report_rows(**options)  # type: ignore[arg-type]
            expected = build_report(batch, group_by=options.get("group_by"), where=options.get("where"))
            assert total == dict(expected.total), options
            assert rows == ([dict(row) for row in expected.rows] if options.get("group_by") else []), options


def test_the_html_report_reads_it(filled: tuple[str, list[CallRecord]], tmp_path: Path) -> None:
    from tollgate.cli import main

    url, batch = filled
    page = tmp_path / "report.html"
    out = io.StringIO()
    assert main(["report", "--ledger", url, "--group-by", "tenant", "--html", str(page)], out=out) == 0
    text = page.read_text()
    expected = build_report(batch, group_by=["tenant"])
    found = re.search(r'<script type="application/json" id="tollgate-data">(.*?)</script>', text, re.S)
    assert found is not None
    total = json.loads(found.group(1))["summary"]["total"]
    assert (total["calls"], total["usd"]) == (expected.total["calls"], expected.total["usd"])
    assert f"{len(batch):,}" in text


@pytest.mark.parametrize("period", PERIODS, ids=repr)
@pytest.mark.parametrize("selection", SELECTIONS, ids=repr)
def test_the_html_reports_summary_equals_the_python_paths(
    filled: tuple[str, list[CallRecord]], period: dict[str, Any], selection: dict[str, Any]
) -> None:
    url, batch = filled
    memory = MemoryLedger()
    for record in batch:
        memory.write(record)
    by_server = summarize(url, **period, **selection)
    by_python = summarize(memory, **period, **selection)
    assert {k: v for k, v in by_server.items() if k != "ledger"} == {
        k: v for k, v in by_python.items() if k != "ledger"
    }
    assert by_server["ledger"] == url and by_server["total"]["calls"] > 0
