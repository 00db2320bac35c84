"""The SQLite ledger's rollup: kept by the writer, read by summarize() for whole hours and days,
and never the cause of a wrong figure: a summary of a rolled-up file equals the summary of its
records added up one by one in Python, to the bit, whatever the period's edges, whoever wrote
the rows, and whatever was done to the file by hand."""

from __future__ import annotations

import logging
import math
import multiprocessing
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tollgate.decisions import step_from_dict, stored
from tollgate.ledger import MemoryLedger, SQLiteLedger, rollup
from tollgate.ledger.sqlite import _INSERT, SCHEMA_VERSION, _to_row
from tollgate.ledger.summary import summarize
from tollgate.request import CallRecord, Status, Usage

HOUR, DAY = 3_600.0, 86_400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STEPS: list[dict[str, Any]] = [
    {"action": "block", "budget": "daily"},
    {"action": "rate_limited", "limit": "rpm"},
    {"action": "downgrade", "from": "gpt-4o", "to": "gpt-4o-mini"},
    {"action": "clamp", "max_output_tokens": 256, "was": 1024},
    {"action": "truncate", "dropped_messages": 4},
    {"action": "cutoff", "budget": "daily", "output_tokens": 300},
    {"action": "record"},
]


def records(count: int, seed: int, days: float = 8.0, first: int = 0) -> list[CallRecord]:
    """``count`` records of every kind over ``days`` days, with awkward amounts (tiny, huge,
    0.1s that float sums drift on) and starts on and one ulp before hour and day boundaries."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        t = START + rnd.random() * days * DAY
        if i % 17 == 0:  # exactly on a boundary, or one ulp before it
            boundary = START + rnd.randrange(int(days * 24)) * HOUR
            t = boundary if i % 34 else math.nextafter(boundary, -math.inf)
        model = rnd.choice(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "house-llm"])
        status: Status = rnd.choices(["ok", "error", "blocked"], [90, 5, 5])[0]  # type: ignore[assignment]
        decisions = tuple(step_from_dict(d) for d in rnd.sample(STEPS, rnd.choice([0, 0, 0, 1, 2])))
        usd = rnd.choice([0.1, 0.2, 1e-17, 3.0e-9, 250.0, rnd.random() * 10 ** rnd.randint(-8, 2), 0.0])
        tags: dict[str, Any] = {"tenant": rnd.choice(["acme", "globex", "initech"])}
        if rnd.random() < 0.8:
            tags["feature"] = rnd.choice(["search", "chat", "agent"])
        usage = Usage(
            input_tokens=rnd.randint(0, 5_000),
            output_tokens=rnd.randint(0, 900),
            cache_read_tokens=rnd.choice([0, 0, 100]),
            reasoning_tokens=rnd.choice([0, 30]),
            unknown={"server_tool_use_v2": 1} if rnd.random() < 0.01 else {},
        )
        out.append(
            CallRecord(
                id=f"r{first + i}",
                started_at=t,
                ended_at=t + 1.0,
                provider="anthropic" if model.startswith("claude") else "openai",
                operation=rnd.choice(["chat", "chat", "responses"]),
                request_model=model,
                response_model=rnd.choice([model, None, ""]),
                usage=usage,
                usd=usd,
                priced=model != "house-llm",
                estimated=rnd.random() < 0.05,
                status=status,
                tags=tags,
                decisions=decisions,
                tool_calls=rnd.choice([0, 0, 0, 2]),
            )
        )
    return out


def write(path: Path, batch: list[CallRecord]) -> None:
    with SQLiteLedger(path) as ledger:
        for record in batch:
            ledger.write(record)


def insert_behind_its_back(path: Path, batch: list[CallRecord]) -> None:
    """Rows added as a writer that knows no rollup adds them (tollgate before schema 4)."""
    with sqlite3.connect(path) as conn:
        conn.executemany(_INSERT, [_to_row(r) for r in batch])
    conn.close()


def in_python(batch: list[CallRecord]) -> MemoryLedger:
    ledger = MemoryLedger()
    for record in batch:
        ledger.write(record)
    return ledger


def state(path: Path) -> tuple[int, int, int]:
    """(rollup_state.upto, the last rowid, the calls the day cells count)."""
    with sqlite3.connect(path) as conn:
        upto = rollup.upto(conn)
        last = conn.execute("SELECT max(rowid) FROM calls").fetchone()[0] or 0
        rolled = conn.execute("SELECT sum(calls) FROM rollup WHERE level = 86400").fetchone()[0] or 0
    conn.close()
    return upto, last, rolled


def same(path: Path, batch: list[CallRecord], **options: Any) -> dict[str, Any]:
    """summarize(file) == summarize(the records in Python), everything but the ledger's name."""
    by_file = summarize(f"sqlite:///{path}", **options)
    by_python = summarize(in_python(batch), **options)
    assert {k: v for k, v in by_file.items() if k != "ledger"} == {
        k: v for k, v in by_python.items() if k != "ledger"
    }, options
    return by_file


PERIODS: list[dict[str, Any]] = [
    {},
    {"bucket": "hour"},
    {"since": START + 5.3 * HOUR, "until": START + 6 * DAY + 7.7 * HOUR},  # days, hours and rows
    {"since": START + 5.3 * HOUR, "until": START + 6 * DAY + 7.7 * HOUR, "bucket": "hour"},
    {"since": START + 2 * DAY, "until": START + 4 * DAY},  # aligned: the margins read the rows
    {"since": START + 1.5 * DAY, "until": START + 1.5 * DAY + 1.5 * HOUR},  # no whole hour but one
    {"since": START + 7 * DAY + 0.25},
    {"until": START + DAY - 0.5},
]
SELECTIONS: list[dict[str, Any]] = [
    {},
    {"group_by": ["tenant", "feature"]},
    {"group_by": ["model", "status"], "where": {"tenant": ["acme", "globex"]}},
    {"group_by": ["feature"], "where": {"feature": [None, "chat"], "operation": "chat"}},
]


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[CallRecord]]]:
    """A file written in three goes by the ledger, then rows added behind its back."""
    path = tmp_path_factory.mktemp("rollup") / "calls.db"
    batch = records(3_000, seed=1)
    for part in (batch[:1_000], batch[1_000:1_900], batch[1_900:2_600]):
        write(path, part)
    upto, last, counted = state(path)
    assert upto == last == counted == 2_600  # every row rolled up by the writer, once
    insert_behind_its_back(path, batch[2_600:])
    yield path, batch


@pytest.mark.parametrize("period", PERIODS, ids=repr)
@pytest.mark.parametrize("selection", SELECTIONS, ids=repr)
def test_a_rolled_up_file_reads_as_its_records(
    rolled: tuple[Path, list[CallRecord]], period: dict[str, Any], selection: dict[str, Any]
) -> None:
    path, batch = rolled
    summary = same(path, batch, **period, **selection)
    assert summary["total"]["calls"] > 0


def test_the_rollup_holds_what_the_rows_hold(rolled: tuple[Path, list[CallRecord]]) -> None:
    path, batch = rolled
    rolled_up = batch[:2_600]
    with sqlite3.connect(path) as conn:
        for level in rollup.LEVELS:
            row = conn.execute(
                "SELECT sum(calls), sum(input_tokens), sum(tool_calls), sum(action_block), group_concat(usd) "
                "FROM rollup WHERE level = ?",
                (level,),
            ).fetchone()
            assert row[:4] == (
                len(rolled_up),
                sum(r.usage.input_tokens for r in rolled_up),
                sum(r.tool_calls for r in rolled_up),
                sum(any(stored(s).get("action") == "block" for s in r.decisions) for r in rolled_up),
            )
            assert math.fsum(rollup.parse(row[4])) == math.fsum(r.usd for r in rolled_up)  # exactly
        nulls = conn.execute("SELECT count(*) FROM rollup WHERE response_model IS NULL").fetchone()[0]
    conn.close()
    assert nulls == 0  # kept as '' so the cell's key is unique


def test_the_partials_are_the_exact_sum() -> None:
    rnd = random.Random(5)
    for _ in range(300):
        amounts = [
            rnd.choice([0.1, 1e-17, -0.3, 2.0**60, rnd.random() * 10 ** rnd.randint(-20, 6)])
            for _ in range(50)
        ]
        partials: list[float] = []
        for amount in amounts:
            rollup.add(partials, amount)
        again: list[float] = []
        for value in rollup.parse(",".join(map(repr, partials))):
            rollup.add(again, value)
        assert math.fsum(again) == math.fsum(amounts)
    for specials in ([math.inf, 1.0], [1.0, math.nan, 2.0]):
        partials = []
        for amount in specials:
            rollup.add(partials, amount)
        assert repr(math.fsum(partials)) == repr(math.fsum(specials))


def test_an_older_file_is_rolled_up_by_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    batch = records(1_500, seed=2)
    write(path, batch)
    with sqlite3.connect(path) as conn:  # back to schema 3: no rollup
        conn.execute("DROP TABLE rollup")
        conn.execute("DROP TABLE rollup_state")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    before = same(path, batch, group_by=["tenant"])  # read row by row, the file untouched
    assert state_version(path) == 3
    monkeypatch.setattr(rollup, "CHUNK", 200)  # several chunks, as a big file would take
    with SQLiteLedger(path) as ledger:
        assert state_version(path) == SCHEMA_VERSION
        deadline = time.monotonic() + 30
        while state(path)[0] < 1_500 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state(path) == (1_500, 1_500, 1_500)
        more = records(50, seed=3, first=1_500)
        for record in more:
            ledger.write(record)
    assert same(path, batch + more, group_by=["tenant"])["total"]["calls"] == before["total"]["calls"] + 50


def state_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    conn.close()
    return version


def test_rows_deleted_by_hand_are_read_again_and_the_rollup_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    batch = records(800, seed=4)
    write(path, batch)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM calls WHERE id IN ('r3', 'r400', 'r799')")
    conn.close()
    kept = [r for r in batch if r.id not in ("r3", "r400", "r799")]
    same(path, kept, group_by=["feature"])  # the rollup no longer adds up: the rows are read
    with SQLiteLedger(path):  # the writer notices and rolls the rows up again
        deadline = time.monotonic() + 30
        while state(path)[2] != len(kept) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert state(path) == (799, 799, 797)  # r799 was the last row
    same(path, kept, group_by=["feature"])


def test_clear_empties_the_rollup(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    with SQLiteLedger(path) as ledger:
        for record in records(100, seed=6):
            ledger.write(record)
        ledger.flush()
        ledger.clear()
        assert state(path) == (0, 0, 0)
        fresh = records(10, seed=7)
        for record in fresh:
            ledger.write(record)
    assert state(path) == (10, 10, 10)  # rowids start from 1 again: rolled up, not skipped
    same(path, fresh)


def test_a_rollup_that_fails_loses_no_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "calls.db"
    first, then = records(100, seed=8), records(100, seed=9, first=100)
    with SQLiteLedger(path) as ledger:
        for record in first:
            ledger.write(record)
        ledger.flush()
        with sqlite3.connect(path) as conn:  # broken behind the writer's back
            conn.execute("DROP TABLE rollup_state")
        conn.close()
        with caplog.at_level(logging.WARNING, logger="tollgate"):
            for record in then:
                ledger.write(record)
            ledger.flush()
        assert ledger.dropped() == 0
        assert len(ledger.records()) == 200
    assert "could not update the report rollup" in caplog.text and "no record is lost" in caplog.text
    same(path, first + then, group_by=["tenant"])  # no rollup: every row read


def _writer(path: str, seed: int) -> None:
    with SQLiteLedger(path, flush_interval=0.005) as ledger:
        for record in records(600, seed=seed, first=seed * 1_000):
            ledger.write(record)
            if random.random() < 0.01:
                time.sleep(0.002)


def test_processes_writing_one_file_keep_one_rollup(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    SQLiteLedger(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), seed)) for seed in (11, 12, 13)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    batch = [r for seed in (11, 12, 13) for r in records(600, seed=seed, first=seed * 1_000)]
    assert state(path) == (1_800, 1_800, 1_800)
    same(path, batch, group_by=["tenant", "feature"])
    same(path, batch, since=START + 3.5 * HOUR, until=START + 5 * DAY + 0.1, where={"tenant": "acme"})
