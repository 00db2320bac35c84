"""SQLiteStore: one file shared by processes (and forks), next to a ledger; no overspend."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tollgate.stores
import tollgate.stores.sqlite
from tests.stores.conftest import finish, run_child
from tollgate.errors import StoreUnavailable
from tollgate.ledger import SQLiteLedger
from tollgate.ledger.sqlite import SCHEMA_VERSION as LEDGER_SCHEMA
from tollgate.request import CallRecord
from tollgate.stores import SQLiteStore, open_store
from tollgate.stores.base import Charge
from tollgate.stores.windows import Lifetime

# The folder holding the `tollgate` package, for child interpreters.
T0 = 1_795_000_000.0


def charge(amount: float, limit: float | None = 1.0, key: str = "b") -> Charge:
    return Charge(key, Lifetime(), limit, amount)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(path)
    yield s
    s.close()


_PRELUDE = (
    "import os, sys, threading\nfrom tollgate.stores import SQLiteStore\n"
    "from tollgate.stores.base import Charge\nfrom tollgate.stores.windows import Lifetime\n"
)


def sqlite_child(path: Path, code: str) -> subprocess.Popen[str]:
    return run_child(_PRELUDE, code, STORE=str(path))


def test_another_process_sees_holds_and_standing_limits(store: SQLiteStore, path: Path) -> None:
    v0 = store.limits_version()
    child = sqlite_child(
        path,
        """
        store = SQLiteStore(os.environ["STORE"])
        assert store.reserve([Charge("b", Lifetime(), 1.0, 0.3)], 0.0).ok
        store.put_limit("tenant=acme", '{"usd": 5}')
        """,
    )
    finish(child)
    (state,) = store.read([charge(0)], 0.0)
    assert (state.spent, state.reserved) == (0.0, 0.3)
    version, documents = store.limits()
    assert version != v0 and documents == {"tenant=acme": '{"usd": 5}'}


def test_processes_never_overspend(store: SQLiteStore, path: Path) -> None:
    # 4 processes x 5 threads x 20 attempts at $0.01 against one $1.00 cap: exactly 100 fit.
    children = [
        sqlite_child(
            path,
            """
            store = SQLiteStore(os.environ["STORE"])
            granted = []

            def worker():
                for _ in range(20):
                    r = store.reserve([Charge("race", Lifetime(), 1.0, 0.01)], 0.0)
                    if r.ok:
                        granted.append(1)
                        store.settle(r.holds, [0.01])

            threads = [threading.Thread(target=worker) for _ in range(5)]
            print("ready", flush=True)
            sys.stdin.readline()  # start together
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(len(granted))
            """,
        )
        for _ in range(4)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    granted = sum(int(finish(child)) for child in children)
    assert granted == 100
    assert store.read([charge(0, key="race")], 0.0)[0].spent == pytest.approx(1.0)


def _reserve_in_child(store: SQLiteStore, parent_conn: int) -> None:
    ok = store.reserve([charge(0.2)], 0.0).ok
    fresh = store._conn is not None and id(store._conn) != parent_conn
    os._exit(0 if ok and fresh else 1)


def test_a_forked_child_opens_its_own_connection(store: SQLiteStore) -> None:
    assert store.reserve([charge(0.1)], 0.0).ok
    fork = multiprocessing.get_context("fork")
    # Another thread is mid-transaction when the process forks: the child must not inherit
    # that lock (nor the connection).
    with store._lock:
        child = fork.Process(target=_reserve_in_child, args=(store, id(store._conn)))
        child.start()
    child.join(30)
    if child.is_alive():  # deadlocked on the inherited lock
        child.kill()
    assert child.exitcode == 0
    assert store.read([charge(0)], 0.0)[0].reserved == pytest.approx(0.3)


def test_shares_a_file_with_a_ledger(path: Path) -> None:
    for first in ("store", "ledger"):
        path.unlink(missing_ok=True)
        opened = [SQLiteStore(path), SQLiteLedger(path)]
        if first == "ledger":
            opened.reverse()
        store = next(o for o in opened if isinstance(o, SQLiteStore))
        ledger = next(o for o in opened if isinstance(o, SQLiteLedger))
        r = store.reserve([charge(0.5)], T0)
        store.settle(r.holds, [0.4])
        store.put_limit("tenant=acme", "{}")
        ledger.write(CallRecord(id="c1", started_at=1.0, ended_at=2.0, provider="openai",
                                operation="chat", request_model="gpt-4o", usd=0.4))  # fmt: skip
        assert [rec.id for rec in ledger.records()] == ["c1"]
        assert store.read([charge(0)], T0)[0].spent == pytest.approx(0.4)
        assert store.limits()[1] == {"tenant=acme": "{}"}
        ledger.close()
        store.close()
        # Both open the file again, in either order, and find their data.
        with SQLiteLedger(path) as again:
            assert len(again.records()) == 1
        reopened = SQLiteStore(path)
        assert reopened.read([charge(0)], T0)[0].spent == pytest.approx(0.4)
        reopened.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == LEDGER_SCHEMA  # the ledger's alone


def test_leaves_user_version_alone(store: SQLiteStore, path: Path) -> None:
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {
            "tollgate_slots", "tollgate_limits", "tollgate_meta", "tollgate_flags", "tollgate_leases"
        }  # fmt: skip
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_expired_slots_start_from_zero_and_are_swept(
    store: SQLiteStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lifetime counter keeps its slot name, and expires after LIFETIME_TTL idle seconds.
    r = store.reserve([charge(0.7)], T0)
    store.settle(r.holds, [0.7])
    expired = T0 + r.holds[0].ttl
    assert store.read([charge(0)], expired - 1)[0].spent == pytest.approx(0.7)
    assert store.read([charge(0)], expired)[0].spent == 0.0  # an expired slot counts as zero
    assert store.reserve([charge(0.5)], expired).ok  # ... and starts again from zero
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT spent, reserved, expires_at FROM tollgate_slots").fetchone()
    assert row == (0.0, 0.5, expired + r.holds[0].ttl)
    # Every _SWEEP_EVERY reserves, the rows whose time is over are deleted.
    monkeypatch.setattr(tollgate.stores.sqlite, "_SWEEP_EVERY", 1)
    assert store.reserve([charge(0.1, key="other")], expired + 10 * 86_400).ok
    with sqlite3.connect(path) as conn:
        assert [row[0] for row in conn.execute("SELECT slot FROM tollgate_slots")] == ["other"]


def test_a_locked_file_raises_store_unavailable(path: Path) -> None:
    store = SQLiteStore(path, timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match=r"store\.db'.* during reserve: database is locked"):
            store.reserve([charge(0.1)], 0.0)
        # Reads still work while another process writes: WAL.
        assert store.read([charge(0)], 0.0)[0].reserved == 0.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.reserve([charge(0.1)], 0.0).ok
    store.close()


def test_refuses_a_file_that_is_not_a_database(path: Path) -> None:
    path.write_bytes(b"not a database, just some bytes" * 100)
    with pytest.raises(ValueError, match="cannot hold a tollgate store"):
        SQLiteStore(path)


def test_threads_share_one_connection(store: SQLiteStore) -> None:
    seen: set[int] = set()

    def use() -> None:
        store.reserve([charge(0.01)], 0.0)
        seen.add(id(store._conn))

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 1


def test_open_store_sqlite_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()  # a missing folder is refused: tests/test_config_validation.py
    relative = open_store("sqlite:///rel/budgets.db")
    absolute = open_store(f"sqlite:///{tmp_path / 'abs.db'}")  # sqlite:////tmp/.../abs.db
    assert isinstance(relative, SQLiteStore) and isinstance(absolute, SQLiteStore)
    assert (tmp_path / "rel" / "budgets.db").exists() and (tmp_path / "abs.db").exists()
    assert absolute.path == str(tmp_path / "abs.db")
    relative.close()
    absolute.close()
    with pytest.raises(ValueError, match=r"unknown store URI 'sqlite://'.*'memory://'"):
        open_store("sqlite://")
