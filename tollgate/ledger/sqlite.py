"""A ledger in an SQLite file: survives the process and is shared by the processes of one machine.

``write()`` only appends to an in-memory queue; a daemon thread inserts the queue in batches,
one transaction each, so no call waits on the disk. The file is in WAL mode with
``synchronous=NORMAL``: commits do not sync, and a crash of the *machine* may lose the last
batches, but a crash of the process loses at most the queue (``flush_interval`` worth of
records), and a normal exit loses nothing (the queue is flushed on ``close()`` and at exit).

**Acknowledged records.** A record is *acknowledged* when a ``flush()`` (or ``close()``)
called after its ``write()`` returned has returned, and ``dropped()`` did not grow meanwhile
(a loss is always counted there, and logged). An acknowledged record is committed to the file:
it survives the process being killed at any moment after (SIGKILL included: the commit is in
the WAL, which the next opener recovers), and is read back by every process. It is not
promised to survive the *machine* crashing (``synchronous=NORMAL``). Records not yet
acknowledged are committed by the writer thread within ``flush_interval``, but a process
killed before then loses them.

**Failures.** Opening a ledger the process cannot write (a read-only file, folder or file
system, a folder that cannot be created, a full disk) raises ``ValueError`` at once, naming the
path and the cause, so ``configure(ledger=...)`` fails at start-up. Once open, storage trouble
never reaches the caller: a batch that cannot be committed (the disk or the database is full,
the file became read-only, another process held the write lock past ``timeout``) is counted in
``dropped()`` and logged on the ``tollgate`` logger with the cause, at most once per 10 seconds.
Several processes may write one file at once: each waits up to ``timeout`` for the others'
write lock, so "database is locked" is never raised to a caller.

The table is plain so reports are possible by hand::

    sqlite3 tollgate.db "select json_extract(tags, '$.feature') as feature, sum(usd)
                         from calls group by feature"

Schema version 4 (``PRAGMA user_version``): one ``calls`` table with the record's scalar
fields, the usage fields (``units`` as a JSON object), ``priced``/``estimated``/``stream`` as
0/1, ``tags`` as a JSON object and ``decisions`` as a JSON array; indexed on ``started_at``.
Version 2 added ``service_tier``, ``parts`` (a JSON array of the usage's priced parts) and
``unknown_usage`` (a JSON object of the usage fields tollgate did not know); version 3 added
``tool_calls`` (the tool calls the response asked for); version 4 the ``rollup`` and
``rollup_state`` tables (per hour and day, what a report of the calls shows: see
:mod:`tollgate.ledger.rollup`), which the writer keeps in step with ``calls`` in the
transaction of each batch. An older file gains the columns it lacks (empty, 0) when opened,
and its rollup is built by the writer thread in the background.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, cast

from tollgate.decisions import step_from_dict, stored
from tollgate.ledger import rollup
from tollgate.ledger.base import logger
from tollgate.ledger.batched import BatchedLedger
from tollgate.request import CallRecord, Status, Usage, parts_of, usage_dict
from tollgate.stores.sqlite import check_folder

SCHEMA_VERSION = 4

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "TEXT NOT NULL"),
    ("started_at", "REAL NOT NULL"),
    ("ended_at", "REAL NOT NULL"),
    ("provider", "TEXT NOT NULL"),
    ("operation", "TEXT NOT NULL"),
    ("request_model", "TEXT NOT NULL"),
    ("response_model", "TEXT"),
    ("input_tokens", "INTEGER NOT NULL"),
    ("output_tokens", "INTEGER NOT NULL"),
    ("cache_read_tokens", "INTEGER NOT NULL"),
    ("cache_write_tokens", "INTEGER NOT NULL"),
    ("reasoning_tokens", "INTEGER NOT NULL"),
    ("audio_input_tokens", "INTEGER NOT NULL"),
    ("audio_output_tokens", "INTEGER NOT NULL"),
    ("units", "TEXT NOT NULL"),
    ("usd", "REAL NOT NULL"),
    ("priced", "INTEGER NOT NULL"),
    ("estimated", "INTEGER NOT NULL"),
    ("stream", "INTEGER NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("error", "TEXT"),
    ("response_id", "TEXT"),
    ("tags", "TEXT NOT NULL"),
    ("decisions", "TEXT NOT NULL"),
    ("service_tier", "TEXT"),
    ("parts", "TEXT NOT NULL DEFAULT '[]'"),
    ("unknown_usage", "TEXT NOT NULL DEFAULT '{}'"),
    ("tool_calls", "INTEGER NOT NULL DEFAULT 0"),
)
#: The column of each report field (``FIELDS``): the same in every SQL ledger's table.
FIELD_COLUMNS = {
    "model": "request_model",
    "provider": "provider",
    "operation": "operation",
    "status": "status",
}
#: The columns each schema version added, which a file of an older version gains when opened.
_ADDED = {2: _COLUMNS[-4:-1], 3: _COLUMNS[-1:]}
_NAMES = tuple(name for name, _ in _COLUMNS)
_CREATE_TABLE = "CREATE TABLE calls (" + ", ".join(f"{n} {t}" for n, t in _COLUMNS) + ")"
_CREATE_INDEX = "CREATE INDEX calls_started_at ON calls (started_at)"
_INSERT = f"INSERT INTO calls ({', '.join(_NAMES)}) VALUES ({', '.join('?' * len(_NAMES))})"
_SELECT = f"SELECT {', '.join(_NAMES)} FROM calls"

# Errors that belong to one row (a value SQLite cannot store), as opposed to the database.
_ROW_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    ValueError,
    TypeError,
    OverflowError,
)


class SQLiteLedger(BatchedLedger):
    """Records in an SQLite file (WAL mode), written in batches by a background thread.

    ``write()`` costs a queue append. Records reach the file within ``flush_interval``
    seconds, at ``flush()``/``close()``/``records()``, and at a normal interpreter exit. Up to
    ``max_pending`` records wait in memory; beyond that, writes are dropped and counted.
    Several processes may use the same file (``timeout`` is how long one waits for another's
    write lock). Opening a file that is not a tollgate ledger raises ``ValueError``.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "calls.db")
    >>> with SQLiteLedger(path) as ledger:
    ...     ledger.write(CallRecord(id="c1", started_at=1.0, ended_at=2.0, provider="openai",
    ...                             operation="chat", request_model="gpt-4o", usd=0.25))
    ...     [(r.id, r.usd) for r in ledger.records()]
    [('c1', 0.25)]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval: float = 0.05,
        batch_size: int = 5_000,
        max_pending: int = 100_000,
        timeout: float = 10.0,
    ) -> None:
        self.path = os.fspath(path)
        self.label = self.path
        self._behind = False  # rows wait to be rolled up (an older file's): see _connect
        self._start(
            flush_interval=flush_interval, batch_size=batch_size, max_pending=max_pending, timeout=timeout
        )

    # -- reading and housekeeping -------------------------------------------------------------

    def records(self, since: float | None = None, until: float | None = None) -> list[CallRecord]:
        clauses: list[str] = []
        params: list[float] = []
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("started_at < ?")
            params.append(until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"{_SELECT}{where} ORDER BY started_at, rowid"
        with self.reading() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_from_row(row) for row in rows]

    def clear(self) -> None:
        """Delete every record in the file (every process's) and reset the ``dropped()`` count."""
        self._check_open()
        with self._lock:
            self._pending.clear()
            with _writing(self._connection()) as conn:
                conn.execute("DELETE FROM calls")
                rollup.reset(conn)  # rowids start again from 1
        with self._drop_lock:
            self._dropped = 0

    # -- internals ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        check_folder(self.path, "cannot open ledger file")
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open ledger file {self.path!r}: {_cause(self.path, exc)}") from exc
        try:
            _prepare(conn, self.path)
            # Only then a transaction at start: a process that forks right after opening must
            # not fork while its writer holds the file's write lock (SQLite's lock state is
            # per process, and a child's new connection would find it held for good).
            self._behind = rollup.behind(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            raise ValueError(f"cannot open ledger file {self.path!r}: {_cause(self.path, exc)}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _disconnect(self, conn: sqlite3.Connection) -> None:
        conn.close()

    def _idle(self) -> bool:
        """Roll up the next chunk of rows not rolled up yet, in a transaction of its own."""
        if not self._behind:
            return False
        try:
            with self._lock, _writing(self._connection()) as conn:
                self._behind = rollup.roll_up(conn)
        except Exception as exc:  # the rows stay in the file, read one by one by reports
            self._behind = False
            self._note_rollup_failure(exc)
        return self._behind

    def _roll_up_batch(self, conn: sqlite3.Connection, count: int) -> None:
        """Roll up the rows just inserted (and any other writer's before them), inside the
        batch's transaction; a failure leaves them for reports to read one by one, and the
        batch is committed all the same."""
        conn.execute("SAVEPOINT rollup")
        try:
            self._behind = rollup.roll_up(conn, count + rollup.CHUNK)
        except Exception as exc:
            conn.execute("ROLLBACK TO rollup")
            self._note_rollup_failure(exc)
        conn.execute("RELEASE rollup")

    def _note_rollup_failure(self, exc: BaseException) -> None:
        if self._may_log("rollup"):
            logger.warning(
                "tollgate ledger %s: could not update the report rollup (%s); no record is lost, "
                "reports read the rows instead",
                self.path,
                _cause(self.path, exc),
            )

    def _insert(self, batch: list[CallRecord]) -> None:
        rows = self._rows(batch, _to_row)
        if not rows:
            return
        rejected = 0
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
            except _ROW_ERRORS:
                # One bad row failed the statement: start over row by row, keeping the good ones.
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                for row in rows:
                    try:
                        conn.execute(_INSERT, row)
                    except _ROW_ERRORS as exc:
                        rejected += 1
                        self._lose(1, f"record {row[0]!r} rejected by SQLite: {exc!r}")
            self._roll_up_batch(conn, len(rows))
            conn.execute("COMMIT")
        except (sqlite3.Error, ValueError, OSError) as exc:
            try:
                if self._conn is not None and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._lose(len(rows) - rejected, f"batch insert failed: {_cause(self.path, exc)}")


@contextlib.contextmanager
def _writing(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on ``conn`` (holding the file's write lock): committed at the end,
    rolled back if the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _cause(path: str, exc: BaseException) -> str:
    """What went wrong with the ledger file, in words, for an error or a log line."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        code &= 0xFF  # the primary result code
    if code == sqlite3.SQLITE_FULL or getattr(exc, "errno", None) == errno.ENOSPC:
        return f"the disk is full (or the database reached its size limit): {exc}"
    if code == sqlite3.SQLITE_BUSY:
        return f"another process held its write lock for too long (raise timeout=): {exc}"
    if path == ":memory:" or path.startswith("file:"):
        return str(exc)
    parent = os.path.dirname(os.path.abspath(path))
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR):
        try:
            read_only_fs = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        except OSError:
            read_only_fs = False
        if read_only_fs:
            return f"it is on a read-only file system: {exc}"
        if os.path.exists(path) and not os.access(path, os.W_OK):
            return f"the file is read-only (not writable by this user): {exc}"
        if not os.access(parent, os.W_OK | os.X_OK):
            return (
                f"its folder {parent!r} is not writable by this user (SQLite creates the file and "
                f"its -wal and -shm files there): {exc}"
            )
    return str(exc)


def _prepare(conn: sqlite3.Connection, path: str) -> None:
    """Check the file is a tollgate ledger (or empty), switch it to WAL, create the table."""
    try:
        _check_schema(conn, path)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed", ...
        raise ValueError(f"{path!r} is not a tollgate ledger: {exc}") from exc
    # Only after the check: switching a foreign database to WAL would change it for good.
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal" and path != ":memory:":
        logger.warning("tollgate ledger %s: WAL journal not available (mode %s)", path, mode)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA temp_store=MEMORY")  # the rollup's sorts: no temporary file per batch
    if _check_schema(conn, path) == SCHEMA_VERSION and _rollup_sound(conn):
        return
    # Two processes may create the same new file at once: check again under the write lock.
    with _writing(conn):
        version = _check_schema(conn, path)
        if version is None:
            conn.execute(_CREATE_TABLE)
            conn.execute(_CREATE_INDEX)
        elif version < SCHEMA_VERSION:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
            for name, kind in _added_since(version):
                if name not in columns:
                    conn.execute(f"ALTER TABLE calls ADD COLUMN {name} {kind}")
        if not rollup.exists(conn):
            rollup.create(conn)  # empty: the writer thread rolls up the rows an older file has
        elif not _rollup_sound(conn):
            logger.warning(
                "tollgate ledger %s: rows were deleted or added by hand; rebuilding the report rollup", path
            )
            rollup.reset(conn)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _rollup_sound(conn: sqlite3.Connection) -> bool:
    """Whether the rollup is there and counts the rows of ``calls`` it claims to."""
    return rollup.exists(conn) and rollup.consistent(conn, rollup.upto(conn))


def _check_schema(conn: sqlite3.Connection, path: str) -> int | None:
    """The ledger's schema version, ``None`` when there is no ledger yet; raises if foreign."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    columns = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    if not columns:
        if version != 0:
            raise ValueError(
                f"{path!r} is not a tollgate ledger: it has no 'calls' table but its "
                f"user_version is {version} (set by another application)"
            )
        return None
    added = {name for name, _ in _added_since(version)}
    missing = [name for name in _NAMES if name not in columns and name not in added]
    if missing:
        raise ValueError(
            f"{path!r} is not a tollgate ledger: its 'calls' table lacks the columns {', '.join(missing)}"
        )
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path!r} is a tollgate ledger of schema version {version}, newer than this tollgate "
            f"reads ({SCHEMA_VERSION}); upgrade tollgate"
        )
    return version


def _added_since(version: int) -> list[tuple[str, str]]:
    """The columns added by the schema versions after ``version``."""
    return [column for v, columns in _ADDED.items() if v > version for column in columns]


# default=str: a decision holding an odd object is better stored as text than lost. One shared
# encoder: json.dumps with options builds a new one per call, which tripled the cost of a row.
_json = json.JSONEncoder(default=str, separators=(",", ":")).encode


def _to_row(r: CallRecord) -> tuple[Any, ...]:
    u = r.usage
    return (
        r.id, r.started_at, r.ended_at, r.provider, r.operation, r.request_model, r.response_model,
        u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens,
        u.audio_input_tokens, u.audio_output_tokens, _json(dict(u.units)) if u.units else "{}",
        r.usd, r.priced, r.estimated, r.stream, r.status, r.error, r.response_id,
        _json(dict(r.tags)) if r.tags else "{}",
        _json([stored(d) for d in r.decisions]) if r.decisions else "[]",
        u.service_tier, _json(usage_dict(u)["parts"]) if u.parts else "[]",
        _json(dict(u.unknown)) if u.unknown else "{}", r.tool_calls,
    )  # fmt: skip


def _from_row(row: tuple[Any, ...], loads: Callable[[Any], Any] = json.loads) -> CallRecord:
    """The record of a row in the table's column order. ``loads`` reads a JSON column: the
    text SQLite keeps; PostgreSQL's driver hands ``jsonb`` over decoded already."""
    (id_, started_at, ended_at, provider, operation, request_model, response_model,
     input_tokens, output_tokens, cache_read, cache_write, reasoning, audio_in, audio_out, units,
     usd, priced, estimated, stream, status, error, response_id, tags, decisions,
     service_tier, parts, unknown, tool_calls) = row  # fmt: skip
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        audio_input_tokens=audio_in,
        audio_output_tokens=audio_out,
        units=loads(units),
        service_tier=service_tier,
        parts=parts_of(loads(parts)) if parts and parts != "[]" else (),
        unknown=loads(unknown) if unknown and unknown != "{}" else {},
    )
    return CallRecord(
        id=id_,
        started_at=started_at,
        ended_at=ended_at,
        provider=provider,
        operation=operation,
        request_model=request_model,
        response_model=response_model,
        usage=usage,
        usd=usd,
        priced=bool(priced),
        estimated=bool(estimated),
        stream=bool(stream),
        status=cast(Status, status),
        error=error,
        response_id=response_id,
        tags=loads(tags),
        decisions=tuple(step_from_dict(d) for d in loads(decisions)),
        tool_calls=tool_calls,
    )
