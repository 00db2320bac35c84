"""SQLiteLedger: persistence, batching writer, concurrency (threads, processes), foreign files."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import tollgate.ledger
from tollgate.ledger import SQLiteLedger, open_ledger
from tollgate.ledger.sqlite import SCHEMA_VERSION
from tollgate.request import CallRecord, Usage

# The folder holding the `tollgate` package, for child interpreters.
ROOT = str(Path(tollgate.ledger.__file__).parents[2])


def rec(id: str, started_at: float = 0.0, **kw: object) -> CallRecord:
    fields: dict[str, object] = {"provider": "openai", "operation": "chat", "request_model": "gpt-4o", **kw}
    return CallRecord(id=id, started_at=started_at, ended_at=started_at + 1, **fields)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(path: Path) -> Iterator[SQLiteLedger]:
    with SQLiteLedger(path) as ledger:
        yield ledger


def raw_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("select count(*) from calls").fetchone()[0])


def run_child(path: Path, code: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": ROOT, "LEDGER": str(path)}
    script = "import os\nfrom tollgate.ledger import SQLiteLedger\nfrom tollgate.request import CallRecord\n"
    return subprocess.Popen(
        [sys.executable, "-c", script + textwrap.dedent(code)], env=env, stderr=subprocess.PIPE, text=True
    )


def test_every_field_round_trips(path: Path) -> None:
    full = CallRecord(
        id="call-1",
        started_at=1_700_000_000.125,
        ended_at=1_700_000_002.5,
        provider="anthropic",
        operation="chat",
        request_model="claude-x",
        response_model="claude-x-2025",
        usage=Usage(
            input_tokens=1200,
            output_tokens=300,
            cache_read_tokens=1024,
            cache_write_tokens=100,
            reasoning_tokens=50,
            audio_input_tokens=7,
            audio_output_tokens=9,
            units={"audio_seconds": 12.5, "images": 2},
        ),
        usd=0.0123456789,
        priced=False,
        estimated=True,
        stream=True,
        status="abandoned",
        error="stream closed by caller",
        response_id="msg_123",
        tags={"tenant": "acme", "feature": "séarch"},
        decisions=({"budget": "daily", "action": "clamp", "limit": 5.0, "nested": {"a": [1, 2]}},),
        tool_calls=3,
    )
    # A record with every field at its default, so neither shape is special-cased.
    bare = rec("call-2", started_at=1_700_000_003.0)
    with SQLiteLedger(path) as ledger:
        ledger.write(full)
        ledger.write(bare)
    with SQLiteLedger(path) as reopened:
        got = reopened.records()
    assert got == [full, bare]
    assert isinstance(got[0].priced, bool)
    assert got[0].decisions == full.decisions


def test_the_table_has_a_column_for_every_field() -> None:
    # A new CallRecord or Usage field must get a column (and a schema migration), not be lost.
    from tollgate.ledger.sqlite import _NAMES

    scalar = {f.name for f in dataclasses.fields(CallRecord)} - {"usage"}
    usage = {f.name for f in dataclasses.fields(Usage)} - {"unknown"} | {"unknown_usage"}
    assert set(_NAMES) == scalar | usage


def test_the_file_is_a_plain_wal_table_with_a_version_and_an_index(ledger: SQLiteLedger, path: Path) -> None:
    ledger.write(rec("a", usd=0.5, tags={"feature": "search"}))
    ledger.write(rec("b", usd=0.25, tags={"feature": "chat"}))
    ledger.flush()
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION == 4
        indexes = conn.execute("select sql from sqlite_master where type = 'index'").fetchall()
        assert any("started_at" in sql for (sql,) in indexes)
        assert conn.execute("select sum(usd) from calls").fetchone()[0] == 0.75
        feature = conn.execute("select json_extract(tags, '$.feature') from calls where id = 'a'").fetchone()
        assert feature == ("search",)


def _older_file(path: Path, version: int) -> None:
    """A ledger file as tollgate wrote it at schema ``version`` (1 or 2), with one record."""
    from tollgate.ledger.sqlite import _COLUMNS

    lacking = {"tool_calls"} | ({"service_tier", "parts", "unknown_usage"} if version < 2 else set())
    columns = [(n, t) for n, t in _COLUMNS if n not in lacking]
    values = {"id": "old", "started_at": 1.0, "ended_at": 2.0, "provider": "openai", "operation": "chat"}
    values |= {"request_model": "gpt-4o", "units": "{}", "usd": 0.5, "tags": "{}", "decisions": "[]"}
    values |= {"status": "ok", "parts": "[]", "unknown_usage": "{}"}
    row = [values.get(n, 0 if "INTEGER" in t else None) for n, t in columns]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE calls (" + ", ".join(f"{n} {t}" for n, t in columns) + ")")
        conn.execute(
            f"INSERT INTO calls ({', '.join(n for n, _ in columns)}) VALUES ({', '.join('?' * len(row))})",
            row,
        )
        conn.execute(f"pragma user_version = {version}")
    conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_file_gains_the_tool_calls_column_when_opened(path: Path, version: int) -> None:
    _older_file(path, version)
    with SQLiteLedger(path) as ledger:
        ledger.write(rec("new", started_at=5.0, tool_calls=2))
        old, new = ledger.records()
    assert (old.id, old.usd, old.tool_calls) == ("old", 0.5, 0)  # kept, with no tool calls
    assert (new.id, new.tool_calls) == ("new", 2)
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
        column = [c for c in conn.execute("pragma table_info(calls)") if c[1] == "tool_calls"]
        assert [(c[2], c[3], c[4]) for c in column] == [("INTEGER", 1, "0")]  # type, NOT NULL, default
        assert conn.execute("select sum(tool_calls) from calls").fetchone()[0] == 2
    conn.close()


def test_write_only_enqueues_and_records_reads_its_writes(path: Path) -> None:
    with SQLiteLedger(path, flush_interval=60) as ledger:
        ledger.write(rec("a"))
        assert raw_count(path) == 0  # not on disk yet: no I/O on the caller's path
        assert [r.id for r in ledger.records()] == ["a"]
        assert raw_count(path) == 1


def test_the_writer_thread_commits_without_being_asked(path: Path) -> None:
    with SQLiteLedger(path, flush_interval=0.01) as ledger:
        ledger.write(rec("a"))
        for _ in range(500):
            if raw_count(path) == 1:
                break
            threading.Event().wait(0.01)
        assert raw_count(path) == 1


def test_since_until_and_order(ledger: SQLiteLedger) -> None:
    for t in (30.0, 10.0, 20.0, 40.0):
        ledger.write(rec(f"t{int(t)}", t))
    assert [r.id for r in ledger.records()] == ["t10", "t20", "t30", "t40"]
    assert [r.id for r in ledger.records(since=20.0, until=40.0)] == ["t20", "t30"]
    assert [r.id for r in ledger.records(until=10.0)] == []


def test_records_survive_reopening_and_clear_deletes_them(path: Path) -> None:
    with SQLiteLedger(path) as ledger:
        ledger.write(rec("a"))
    with SQLiteLedger(path) as ledger:
        assert [r.id for r in ledger.records()] == ["a"]
        ledger.clear()
        assert ledger.records() == []
    assert raw_count(path) == 0


def test_a_child_that_exits_without_close_loses_nothing(path: Path) -> None:
    n = 2_000
    child = run_child(
        path,
        f"""
        ledger = SQLiteLedger(os.environ["LEDGER"], flush_interval=60)
        for i in range({n}):
            ledger.write(CallRecord(id=str(i), started_at=float(i), ended_at=float(i),
                                    provider="openai", operation="chat", request_model="gpt-4o", usd=0.001))
        # no flush(), no close(): the atexit hook must persist the queue
        """,
    )
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    with SQLiteLedger(path) as ledger:
        got = ledger.records()
    assert [r.id for r in got] == [str(i) for i in range(n)]
    assert sum(r.usd for r in got) == pytest.approx(n * 0.001)


def test_concurrent_threads(ledger: SQLiteLedger) -> None:
    threads, per_thread = 8, 2_000
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            ledger.write(rec(f"{t}-{i}", float(i), tags={"thread": str(t)}))
            if i % 500 == 0:
                ledger.records(since=1e12)  # readers flushing mid-stream must not lose or duplicate

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    got = ledger.records()
    assert len(got) == threads * per_thread
    assert len({r.id for r in got}) == threads * per_thread
    assert ledger.dropped() == 0


def test_several_processes_write_the_same_file(path: Path) -> None:
    n = 1_500
    SQLiteLedger(path).close()  # the file exists; the children race on writes, not creation
    code = f"""
        ledger = SQLiteLedger(os.environ["LEDGER"], flush_interval=0.001, batch_size=50)
        for i in range({n}):
            ledger.write(CallRecord(id=f"{{os.getpid()}}-{{i}}", started_at=float(i), ended_at=float(i),
                                    provider="openai", operation="chat", request_model="gpt-4o"))
        ledger.close()
        assert ledger.dropped() == 0, ledger.dropped()
        """
    children = [run_child(path, code) for _ in range(3)]
    with SQLiteLedger(path, flush_interval=0.001) as mine:  # and this process too, meanwhile
        for i in range(n):
            mine.write(rec(f"parent-{i}", float(i)))
        for child in children:
            _, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
        got = mine.records()
    assert len(got) == 4 * n
    assert len({r.id for r in got}) == 4 * n


def test_both_processes_can_create_a_new_file_at_once(path: Path) -> None:
    code = """
        SQLiteLedger(os.environ["LEDGER"]).close()
        """
    children = [run_child(path, code) for _ in range(4)]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    with SQLiteLedger(path) as ledger:
        assert ledger.records() == []


def _write_in_forked_child(ledger: SQLiteLedger, n: int) -> None:
    for i in range(n):
        ledger.write(rec(f"child-{i}", float(i)))
    # returns without flush(): multiprocessing exits through os._exit, skipping atexit


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_a_forked_child_writes_through_the_inherited_ledger(path: Path) -> None:
    with SQLiteLedger(path, flush_interval=60) as ledger:
        ledger.write(rec("parent-before-fork"))  # queued in the parent only: the child must not duplicate it
        child = multiprocessing.get_context("fork").Process(target=_write_in_forked_child, args=(ledger, 300))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        ids = [r.id for r in ledger.records()]
    assert sorted(ids) == sorted(["parent-before-fork", *(f"child-{i}" for i in range(300))])


def test_a_full_queue_drops_and_counts(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with SQLiteLedger(path, flush_interval=60, max_pending=10) as ledger:
        with caplog.at_level(logging.ERROR, logger="tollgate"):
            for i in range(15):
                ledger.write(rec(str(i)))
        assert ledger.dropped() == 5
        assert len(ledger.records()) == 10
        assert "queue is full" in caplog.text


def test_a_bad_record_is_dropped_alone(ledger: SQLiteLedger, caplog: pytest.LogCaptureFixture) -> None:
    ledger.write(rec("good-1"))
    ledger.write(rec("no-provider", provider=None))  # NOT NULL column
    ledger.write(rec("decimal", usd=Decimal("0.1")))  # a type SQLite cannot bind
    ledger.write(rec("good-2"))
    with caplog.at_level(logging.ERROR, logger="tollgate"):
        assert [r.id for r in ledger.records()] == ["good-1", "good-2"]
    assert ledger.dropped() == 2
    assert "no-provider" in caplog.text


def test_a_locked_file_fails_the_batch_without_raising(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with SQLiteLedger(path, flush_interval=60, timeout=0.05) as ledger:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("begin immediate")  # another process holding the write lock too long
        try:
            ledger.write(rec("a"))
            with caplog.at_level(logging.ERROR, logger="tollgate"):
                ledger.flush()  # must not raise
            assert ledger.dropped() == 1
            assert "locked" in caplog.text
        finally:
            blocker.execute("rollback")
            blocker.close()
        ledger.write(rec("b"))
        assert [r.id for r in ledger.records()] == ["b"]


def test_after_close_writes_are_counted_and_reads_refused(path: Path) -> None:
    ledger = SQLiteLedger(path)
    ledger.write(rec("a"))
    ledger.close()
    ledger.close()  # idempotent
    ledger.write(rec("late"))  # must not raise
    assert ledger.dropped() == 1
    with pytest.raises(ValueError, match="closed"):
        ledger.records()
    assert raw_count(path) == 1


def test_a_foreign_calls_table_is_refused_and_left_alone(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("create table calls (number text, duration integer)")
    with pytest.raises(ValueError, match=r"ledger\.db.*not a tollgate ledger.*'calls' table lacks"):
        SQLiteLedger(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"  # not switched to WAL
        assert conn.execute("pragma user_version").fetchone()[0] == 0


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(path: Path) -> None:
    path.write_text("name,usd\nalice,3\n" * 100)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"ledger\.db.*not a tollgate ledger.*not a database"):
        SQLiteLedger(path)
    assert path.read_bytes() == before


def test_another_applications_versioned_database_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("create table invoices (id integer)")
        conn.execute("pragma user_version = 7")
    with pytest.raises(ValueError, match="user_version is 7"):
        SQLiteLedger(path)


def test_a_ledger_from_a_newer_tollgate_is_refused(path: Path) -> None:
    SQLiteLedger(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"pragma user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ValueError, match=r"newer.*upgrade tollgate"):
        SQLiteLedger(path)


def test_a_database_with_other_tables_gets_the_ledger_added(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("create table budgets (key text)")
    with SQLiteLedger(path) as ledger:
        ledger.write(rec("a"))
        assert [r.id for r in ledger.records()] == ["a"]


@pytest.mark.parametrize(
    ("option", "value"),
    [("flush_interval", 0), ("timeout", -1), ("batch_size", 0), ("max_pending", 1.5)],
)
def test_bad_options_are_rejected(path: Path, option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        SQLiteLedger(path, **{option: value})  # type: ignore[arg-type]


def test_open_ledger_sqlite_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # a missing folder is refused: test_a_missing_folder_is_refused
    relative = open_ledger("sqlite:///data/rel.db")
    absolute = open_ledger(f"sqlite:///{tmp_path / 'abs.db'}")  # four slashes: '/' + '/tmp/...'
    private = open_ledger("sqlite:///:memory:")
    try:
        assert isinstance(relative, SQLiteLedger)
        assert relative.path == "data/rel.db"
        assert isinstance(absolute, SQLiteLedger)
        assert absolute.path == str(tmp_path / "abs.db")
        for ledger in (relative, absolute, private):
            ledger.write(rec("a"))
            assert [r.id for r in ledger.records()] == ["a"]
        assert (tmp_path / "data" / "rel.db").exists()
        assert (tmp_path / "abs.db").exists()
    finally:
        for ledger in (relative, absolute, private):
            ledger.close()


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"the folder '.*missing' does not exist; create it first \(mkdir -p"
    ):
        SQLiteLedger(tmp_path / "missing" / "ledger.db")
    assert not (tmp_path / "missing").exists()
