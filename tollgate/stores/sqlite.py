"""``sqlite:///path.db``: counters in an SQLite file, shared by the processes of one machine.

Each operation that writes (reserve, settle, release, claim, acquire, ...) is one ``BEGIN
IMMEDIATE`` transaction: it takes the file's write lock first, so the check and the hold cannot
interleave with another process's. The file is in WAL mode with ``synchronous=NORMAL`` (commits
do not sync: a crash of the *machine* may lose the last few holds and spends, a crash of a
process loses nothing). A process waits up to ``timeout`` seconds for another's write lock, then
raises :class:`~tollgate.StoreUnavailable`.

Tables (prefixed, so a :class:`~tollgate.ledger.SQLiteLedger` can share the file; the store
leaves ``PRAGMA user_version`` to the ledger):

- ``tollgate_slots(slot, spent, reserved, expires_at)``: one row per counter slot (slot names
  come from :mod:`tollgate.stores.windows`); an expired row counts as zero, starts again from
  zero when next reserved, and is deleted by an occasional sweep.
- ``tollgate_limits(id, document)``: standing limits; ``tollgate_meta``: their version.
- ``tollgate_flags(flag, expires_at)``: flags set by :meth:`SQLiteStore.claim`.
- ``tollgate_leases(key, lease, expires_at)``: concurrency leases (:meth:`SQLiteStore.acquire`).

Times (``expires_at``) are on the store clock, the ``now`` the caller passes, as in the other
stores; an expired row counts as absent and is deleted by the occasional sweep.

One connection per process, guarded by a lock. SQLite lets one writer at a time into the file
anyway, and a mutex hands the turn to the next thread in microseconds, where connections per
thread would queue on SQLite's busy handler, which polls in sleeps of 1 to 100 ms. A forked
child opens its own connection (SQLite connections must not cross a fork).
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tollgate.errors import StoreUnavailable
from tollgate.stores.base import (
    EXPIRED,
    LIVE,
    NEW,
    Charge,
    CounterState,
    Hold,
    Reservation,
    SliceOp,
    SliceState,
    Store,
    fits,
    slice_step,
)

# Expired slots, flags and leases are deleted every this many reserves (per process): they cost
# nothing but space.
_SWEEP_EVERY = 1_000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tollgate_slots (slot TEXT PRIMARY KEY, spent REAL NOT NULL, "
    "reserved REAL NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS tollgate_limits (id TEXT PRIMARY KEY, document TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tollgate_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO tollgate_meta VALUES ('limits_version', 0)",
    # Added later: IF NOT EXISTS, and in _TABLES, so a file made by an older version gains them.
    "CREATE TABLE IF NOT EXISTS tollgate_flags (flag TEXT PRIMARY KEY, expires_at REAL NOT NULL) "
    "WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS tollgate_leases (key TEXT NOT NULL, lease TEXT NOT NULL, "
    "expires_at REAL NOT NULL, PRIMARY KEY (key, lease)) WITHOUT ROWID",
)
_TABLES = ("tollgate_slots", "tollgate_limits", "tollgate_meta", "tollgate_flags", "tollgate_leases")
# Escrow slices (SliceOp in base.py; state NEW, LIVE, EXPIRED or DONE): made by the first slice
# operation, so a file used without slices keeps the tables above and nothing else.
_SLICES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tollgate_slices (slice TEXT PRIMARY KEY, slot TEXT NOT NULL, "
    "held REAL NOT NULL, reported REAL NOT NULL, given REAL NOT NULL, state INTEGER NOT NULL, "
    "expires_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS tollgate_slices_slot ON tollgate_slices (slot, state)",
)

# An expired row starts again from zero; SET expressions all see the row as it was.
_HOLD = """
INSERT INTO tollgate_slots (slot, spent, reserved, expires_at) VALUES (:slot, 0.0, :amount, :expires)
ON CONFLICT (slot) DO UPDATE SET
    spent = CASE WHEN expires_at > :now THEN spent ELSE 0.0 END,
    reserved = CASE WHEN expires_at > :now THEN reserved ELSE 0.0 END + :amount,
    expires_at = max(CASE WHEN expires_at > :now THEN expires_at ELSE 0.0 END, :expires)
"""
_SETTLE = "UPDATE tollgate_slots SET reserved = max(0.0, reserved - ?), spent = spent + ? WHERE slot = ?"
# RETURNING (SQLite 3.35+) hands back the new spent from the UPDATE itself; older libraries
# read it with a SELECT, in the same transaction, so the answer is the same.
_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
_SPENT = "SELECT spent FROM tollgate_slots WHERE slot = ?"
_RELEASE = "UPDATE tollgate_slots SET reserved = max(0.0, reserved - ?) WHERE slot = ?"
_RENEW = "UPDATE tollgate_leases SET expires_at = ? WHERE key = ? AND lease = ? AND expires_at > ?"
_BUMP = "UPDATE tollgate_meta SET value = value + 1 WHERE key = 'limits_version'"
_VERSION = "SELECT value FROM tollgate_meta WHERE key = 'limits_version'"

_LIVE: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
_ABANDONED: list[sqlite3.Connection] = []  # see _connection()


def check_folder(path: str, what: str) -> None:
    """Refuse a SQLite file (a store's or a ledger's) in a folder that does not exist: a typo
    in the path would otherwise leave the data somewhere nobody looks."""
    folder = Path(path).parent
    if path != ":memory:" and not path.startswith("file:") and not folder.is_dir():
        raise ValueError(
            f"{what} {path!r}: the folder {str(folder)!r} does not exist; create it first "
            f"(mkdir -p {shlex.quote(str(folder))}) or put the file in a folder that exists"
        )


class SQLiteStore(Store):
    """Counters in an SQLite file: exact across the processes (and threads) of one machine.

    ``timeout``: how long to wait for another process's write lock before giving up.

    >>> import os, tempfile
    >>> from tollgate.stores.windows import Calendar
    >>> store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "budgets.db"))
    >>> daily = Charge("team=ml", Calendar("day"), limit=1.0, amount=0.6)
    >>> r = store.reserve([daily], now=0.0)
    >>> r.ok, store.reserve([daily], now=0.0).ok
    (True, False)
    >>> store.settle(r.holds, [0.25])  # what the slot has spent, once each actual is added
    [0.25]
    >>> store.read([daily], now=0.0)[0].spent
    0.25
    >>> store.close()
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        if not timeout > 0:
            raise ValueError(f"SQLiteStore timeout must be > 0, got {timeout!r}")
        self.path = os.fspath(path)
        check_folder(self.path, "SQLite store")
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._reserves = 0
        self._slices_made: sqlite3.Connection | None = None  # the connection that made sure of it
        with self._lock:
            self._connection()  # fail now, not at the first budgeted call, if the file is unusable
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        with self._transaction("reserve") as conn:
            looked = [_state(conn, charge, now) for charge in charges]
            states = tuple(state for state, _ in looked)
            version = int(conn.execute(_VERSION).fetchone()[0])
            pairs = zip(charges, states, strict=True)
            refused = tuple(i for i, (c, s) in enumerate(pairs) if not fits(s, c.amount))
            if refused:
                return Reservation(False, states, refused=refused, limits_version=version)
            holds = tuple(hold for _, hold in looked)
            conn.executemany(
                _HOLD,
                [{"slot": h.slot, "amount": h.amount, "expires": now + h.ttl, "now": now} for h in holds],
            )
            self._reserves += 1
            if self._reserves % _SWEEP_EVERY == 0:
                for table in ("tollgate_slots", "tollgate_flags", "tollgate_leases"):
                    conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))
            return Reservation(True, states, holds, limits_version=version)

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> list[float | None]:
        rows = [(h.amount, actual, h.slot) for h, actual in zip(holds, actuals, strict=True)]
        if not rows:
            return []
        with self._transaction("settle") as conn:
            return [_settle_one(conn, row) for row in rows]

    def release(self, holds: Sequence[Hold]) -> None:
        if holds:
            with self._transaction("release") as conn:
                conn.executemany(_RELEASE, [(h.amount, h.slot) for h in holds])

    def forget(self, slots: Sequence[str]) -> None:
        if slots:
            with self._transaction("forget") as conn:
                conn.executemany("DELETE FROM tollgate_slots WHERE slot = ?", [(slot,) for slot in slots])

    def read(self, charges: Sequence[Charge], now: float) -> tuple[CounterState, ...]:
        with self._transaction("read", "BEGIN") as conn:  # one snapshot for every charge
            return tuple(_state(conn, charge, now)[0] for charge in charges)

    def reset(self, charges: Sequence[Charge], now: float) -> None:
        live = [(slot, now) for c in charges for slot in c.window.slots(c.key, now).read]
        if live:
            with self._transaction("reset") as conn:
                conn.executemany(
                    "UPDATE tollgate_slots SET spent = 0.0 WHERE slot = ? AND expires_at > ?", live
                )

    def claim(self, flag: str, ttl: float, now: float) -> bool:
        with self._transaction("claim") as conn:
            # An expired flag is as good as unset: drop it, so the insert below can take its place.
            conn.execute("DELETE FROM tollgate_flags WHERE flag = ? AND expires_at <= ?", (flag, now))
            insert = "INSERT OR IGNORE INTO tollgate_flags VALUES (?, ?)"
            return conn.execute(insert, (flag, now + ttl)).rowcount == 1

    def acquire(self, key: str, lease: str, most: int, ttl: float, now: float) -> bool:
        with self._transaction("acquire") as conn:
            conn.execute("DELETE FROM tollgate_leases WHERE key = ? AND expires_at <= ?", (key, now))
            held, mine = conn.execute(
                "SELECT count(*), total(lease = ?) FROM tollgate_leases WHERE key = ?", (lease, key)
            ).fetchone()
            if not mine and held >= most:
                return False
            conn.execute("INSERT OR REPLACE INTO tollgate_leases VALUES (?, ?, ?)", (key, lease, now + ttl))
            return True

    def renew(self, leases: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        if leases:
            with self._transaction("renew") as conn:
                conn.executemany(_RENEW, [(now + ttl, key, lease, now) for key, lease in leases])

    def let_go(self, key: str, lease: str) -> None:
        with self._transaction("let_go") as conn:
            conn.execute("DELETE FROM tollgate_leases WHERE key = ? AND lease = ?", (key, lease))

    def take_slices(self, ops: Sequence[SliceOp], ttl: float, now: float) -> list[SliceState]:
        if not ops:
            return []
        with self._transaction("take_slices") as conn:
            self._slices_table(conn)
            return [_slice(conn, op, True, ttl, now) for op in ops]

    def return_slices(self, ops: Sequence[SliceOp], now: float) -> list[SliceState]:
        if not ops:
            return []
        with self._transaction("return_slices") as conn:
            self._slices_table(conn)
            return [_slice(conn, op, False, 0.0, now) for op in ops]

    def _slices_table(self, conn: sqlite3.Connection) -> None:
        """Make the slices' table, once per connection (inside the caller's transaction)."""
        if self._slices_made is not conn:
            for statement in _SLICES_SCHEMA:
                conn.execute(statement)
            self._slices_made = conn

    def swap_limit(self, limit_id: str, expected: str | None, document: str | None) -> bool:
        with self._transaction("swap_limit") as conn:
            row = conn.execute("SELECT document FROM tollgate_limits WHERE id = ?", (limit_id,)).fetchone()
            if (None if row is None else row[0]) != expected:
                return False
            if document is None:
                conn.execute("DELETE FROM tollgate_limits WHERE id = ?", (limit_id,))
            else:
                conn.execute("INSERT OR REPLACE INTO tollgate_limits VALUES (?, ?)", (limit_id, document))
            conn.execute(_BUMP)
            return True

    def put_limit(self, limit_id: str, document: str) -> None:
        with self._transaction("put_limit") as conn:
            conn.execute("INSERT OR REPLACE INTO tollgate_limits VALUES (?, ?)", (limit_id, document))
            conn.execute(_BUMP)

    def delete_limit(self, limit_id: str) -> bool:
        with self._transaction("delete_limit") as conn:
            existed = conn.execute("DELETE FROM tollgate_limits WHERE id = ?", (limit_id,)).rowcount > 0
            if existed:
                conn.execute(_BUMP)
            return existed

    def limits(self) -> tuple[int, dict[str, str]]:
        with self._transaction("limits", "BEGIN") as conn:
            version = int(conn.execute(_VERSION).fetchone()[0])
            return version, dict(conn.execute("SELECT id, document FROM tollgate_limits").fetchall())

    def limits_version(self) -> int:
        with self._transaction("limits_version", None) as conn:
            return int(conn.execute(_VERSION).fetchone()[0])

    def clear(self) -> None:
        with self._transaction("clear") as conn:
            for table in _TABLES:
                if table != "tollgate_meta":  # the version survives (and moves on), as in Redis
                    conn.execute(f"DELETE FROM {table}")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'tollgate_slices'").fetchone():
                conn.execute("DELETE FROM tollgate_slices")
            conn.execute(_BUMP)

    def close(self) -> None:
        """Close this process's connection; the store reopens it if used again."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    @contextmanager
    def _transaction(
        self, operation: str, begin: str | None = "BEGIN IMMEDIATE"
    ) -> Iterator[sqlite3.Connection]:
        """The connection, inside one transaction (``begin`` None: autocommit, for one statement)."""
        with self._lock:
            try:
                conn = self._connection()
                if begin is None:
                    yield conn
                    return
                conn.execute(begin)
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, I/O error
                raise StoreUnavailable(
                    f"SQLite store {self.path!r} unavailable during {operation}: {exc}"
                ) from exc

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened on first use; call with ``_lock`` held."""
        if self._pid != os.getpid():
            # Inherited from the parent across a fork: never use it, and never close it either
            # (that could disturb the parent's locks); keep it referenced so GC cannot close it.
            if self._conn is not None:
                _ABANDONED.append(self._conn)
            self._conn, self._pid = None, os.getpid()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path!r} cannot be opened: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not names.issuperset(_TABLES):
                conn.execute("BEGIN IMMEDIATE")  # two processes may create the file at once
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.close()
            raise StoreUnavailable(f"SQLite store {self.path!r} cannot be opened: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ValueError(f"{self.path!r} cannot hold a tollgate store: {exc}") from exc
        return conn


def _state(conn: sqlite3.Connection, charge: Charge, now: float) -> tuple[CounterState, Hold]:
    slots = charge.window.slots(charge.key, now)
    marks = ",".join("?" * len(slots.read))
    rows = conn.execute(
        f"SELECT slot, spent, reserved FROM tollgate_slots WHERE slot IN ({marks}) AND expires_at > ?",
        (*slots.read, now),
    ).fetchall()
    found = {slot: (spent, reserved) for slot, spent, reserved in rows}
    spent = reserved = 0.0
    for name in slots.read:  # summed in window order, as the other stores do, for identical floats
        if name in found:
            spent += found[name][0]
            reserved += found[name][1]
    return CounterState(spent, reserved, charge.limit), Hold(slots.write, charge.amount, slots.ttl)


def _settle_one(conn: sqlite3.Connection, row: tuple[float, float, str]) -> float | None:
    """Settle one hold (``row`` is ``_SETTLE``'s parameters); its slot's new spent, None if gone."""
    if _RETURNING:
        found = conn.execute(_SETTLE + " RETURNING spent", row).fetchall()  # fetchall: step to the end
    else:
        conn.execute(_SETTLE, row)
        found = conn.execute(_SPENT, (row[2],)).fetchall()
    return float(found[0][0]) if found else None


def _slice(conn: sqlite3.Connection, op: SliceOp, take: bool, ttl: float, now: float) -> SliceState:
    """One slice operation inside a write transaction: reap the slot's expired slices, then
    :func:`~tollgate.stores.base.slice_step` over the slot's row and the slice's."""
    conn.execute(_HOLD, {"slot": op.slot, "amount": 0.0, "expires": now + op.slot_ttl, "now": now})
    stale = conn.execute(
        "SELECT total(held) FROM tollgate_slices WHERE slot = ? AND state = ? AND expires_at <= ?",
        (op.slot, LIVE, now),
    ).fetchone()[0]
    if stale:
        conn.execute(_RELEASE, (stale, op.slot))
    conn.execute(
        "UPDATE tollgate_slices SET held = 0.0, state = ? WHERE slot = ? AND state = ? AND expires_at <= ?",
        (EXPIRED, op.slot, LIVE, now),
    )
    spent, reserved = conn.execute(
        "SELECT spent, reserved FROM tollgate_slots WHERE slot = ?", (op.slot,)
    ).fetchone()
    holders = conn.execute(
        "SELECT count(*) FROM tollgate_slices WHERE slot = ? AND state = ?", (op.slot, LIVE)
    ).fetchone()[0]
    if not op.slice:
        return SliceState(0.0, 0.0, spent, reserved, holders, False)
    row = conn.execute(
        "SELECT held, reported, given, state FROM tollgate_slices WHERE slice = ?", (op.slice,)
    ).fetchone()
    record = list(row) if row is not None else [0.0, 0.0, 0.0, NEW]
    pair = [spent, reserved]
    state = slice_step(op, take, pair, record, holders)
    conn.execute("UPDATE tollgate_slots SET spent = ?, reserved = ? WHERE slot = ?", (*pair, op.slot))
    conn.execute(
        "INSERT OR REPLACE INTO tollgate_slices VALUES (?, ?, ?, ?, ?, ?, ?)",
        (op.slice, op.slot, *record, now + ttl if state.alive else now + op.slot_ttl),
    )
    return state


def _after_fork_in_child() -> None:
    # A thread of the parent may have held a store's lock at the fork; it will never release it.
    for store in list(_LIVE):
        store._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
