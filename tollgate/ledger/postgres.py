"""A ledger in PostgreSQL: one table of records for a fleet of processes and machines, queried
in SQL by finance, summed exactly.

``PostgresLedger("postgresql://user@host/db")`` (or ``configure(ledger="postgresql://...")``)
needs psycopg 3 (``pip install 'tollgate-llm[postgres]'``). Like the SQLite ledger, ``write()``
only queues the record; a writer thread sends the queue in batches (``COPY``, one transaction
each), so no call waits on the network.

**Acknowledged records.** A record is acknowledged when a ``flush()`` (or ``close()``) called
after its ``write()`` has returned, and ``dropped()`` did not grow meanwhile: it is then
committed by the server (durable as the server's ``synchronous_commit`` makes it), whatever
happens to the process after. Records not yet acknowledged are committed within
``flush_interval``; a process killed before then loses them. A batch the server refuses (it is
down, the disk is full, a lock waited past ``timeout``) is counted in ``dropped()`` and logged,
never raised into a call; one record the server cannot store (a NUL character in a tag) is
dropped alone, the rest of its batch committed.

**Schema** (created, and migrated, by the first process to connect, under an advisory lock;
its version in ``tollgate_schema``): ``tollgate_calls``, one row per record, the columns of the
SQLite ledger's ``calls`` (tags, decisions, units, parts and unknown usage as ``jsonb``) plus
``usd_exact``, the record's USD as the exact ``numeric`` value of its float, and ``seq``, the
order of arrival; indexed on ``started_at``, and partially on the few rows with unknown usage
or billed parts. ``tollgate_days``, kept by the writer in each batch's transaction: per UTC
day, provider, operation, model, response model, status and tag set, the counters a report
shows and their exact USD. A report reads the whole days of its period there and its ragged
edges from ``tollgate_calls``, so ten million records report in about a second::

    SELECT tags->>'feature' AS feature, sum(usd_exact) FROM tollgate_calls GROUP BY 1;
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tollgate.ledger.base import logger
from tollgate.ledger.batched import BatchedLedger
from tollgate.ledger.report import COUNTERS, FIELDS, ReportRow, _is_collection, unknown_name
from tollgate.ledger.rollup import ACTIONS, whole
from tollgate.ledger.sqlite import FIELD_COLUMNS
from tollgate.ledger.sqlite import _from_row as sqlite_record
from tollgate.ledger.sqlite import _to_row as sqlite_row
from tollgate.request import CallRecord

__all__ = [
    "SCHEMA_VERSION",
    "PostgresLedger",
    "cells",
    "connect",
    "details",
    "rebuild_days",
    "redacted",
    "window",
]

SCHEMA_VERSION = 1
_INSTALL = "install psycopg 3 to use a PostgreSQL ledger: pip install 'tollgate-llm[postgres]'"

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text NOT NULL"),
    ("started_at", "double precision NOT NULL"),
    ("ended_at", "double precision NOT NULL"),
    ("provider", "text NOT NULL"),
    ("operation", "text NOT NULL"),
    ("request_model", "text NOT NULL"),
    ("response_model", "text"),
    ("input_tokens", "bigint NOT NULL"),
    ("output_tokens", "bigint NOT NULL"),
    ("cache_read_tokens", "bigint NOT NULL"),
    ("cache_write_tokens", "bigint NOT NULL"),
    ("reasoning_tokens", "bigint NOT NULL"),
    ("audio_input_tokens", "bigint NOT NULL"),
    ("audio_output_tokens", "bigint NOT NULL"),
    ("units", "jsonb NOT NULL"),
    ("usd", "double precision NOT NULL"),
    ("priced", "boolean NOT NULL"),
    ("estimated", "boolean NOT NULL"),
    ("stream", "boolean NOT NULL"),
    ("status", "text NOT NULL"),
    ("error", "text"),
    ("response_id", "text"),
    ("tags", "jsonb NOT NULL"),
    ("decisions", "jsonb NOT NULL"),
    ("service_tier", "text"),
    ("parts", "jsonb NOT NULL"),
    ("unknown_usage", "jsonb NOT NULL"),
    ("tool_calls", "bigint NOT NULL"),
    ("usd_exact", "numeric NOT NULL"),
)
_NAMES = tuple(name for name, _ in _COLUMNS)
_READ = ", ".join(_NAMES[:-1])  # a record: every column but usd_exact
# The report's counters (its order, less usd) as per-row expressions, summed by the day cells.
_COUNTS: tuple[tuple[str, str], ...] = (
    ("calls", "1"),
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_tokens", "cache_read_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("unpriced_calls", "(NOT priced)::int"),
    ("blocked_calls", "(status = 'blocked')::int"),
    ("errors", "(status = 'error')::int"),
    ("estimated_calls", "estimated::int"),
    ("unknown_usage_calls", "(unknown_usage <> '{}'::jsonb)::int"),
    ("tool_calls", "tool_calls"),
    # Not report counters: the calls billed in parts, and the calls of each budget action (a
    # decision step that is an object with that action), for the HTML report.
    ("parts_calls", "(parts <> '[]'::jsonb)::int"),
    *((f"action_{a}", f'(decisions @> \'[{{"action": "{a}"}}]\'::jsonb)::int') for a in ACTIONS.values()),
)
assert [name for name, _ in _COUNTS[:12]] == [name for name in COUNTERS if name != "usd"]
_KEY = ("day", "provider", "operation", "request_model", "response_model", "status", "tags")
# Rows of a batch whose start is a real time (NaN and infinities are read from the rows).
_FINITE = "started_at BETWEEN -1e15 AND 1e15"
_DAY = "floor(started_at / 86400)::bigint"

_SCHEMA = (
    "CREATE TABLE tollgate_calls ("
    + ", ".join(f"{n} {t}" for n, t in _COLUMNS)
    + ", seq bigserial PRIMARY KEY)",
    "CREATE INDEX tollgate_calls_started_at ON tollgate_calls (started_at)",
    "CREATE INDEX tollgate_calls_unknown_usage ON tollgate_calls (started_at) "
    "WHERE unknown_usage <> '{}'::jsonb",
    "CREATE INDEX tollgate_calls_parts ON tollgate_calls (started_at) WHERE parts <> '[]'::jsonb",
    "CREATE TABLE tollgate_days (day bigint NOT NULL, provider text NOT NULL, operation text NOT NULL, "
    "request_model text NOT NULL, response_model text NOT NULL, status text NOT NULL, tags jsonb NOT NULL, "
    + ", ".join(f"{name} bigint NOT NULL" for name, _ in _COUNTS)
    + ", usd numeric NOT NULL, first double precision NOT NULL, last double precision NOT NULL, "
    f"UNIQUE ({', '.join(_KEY)}))",
)
_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS tollgate_batch "
    "(LIKE tollgate_calls INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_COPY = f"COPY tollgate_batch ({', '.join(_NAMES)}) FROM STDIN"
_MOVE = (
    f"INSERT INTO tollgate_calls ({', '.join(_NAMES)}) "
    f"SELECT {', '.join(_NAMES)} FROM tollgate_batch ORDER BY seq"
)
# The batch's day cells added to the table's, in the key's order so that two writers lock the
# same cells in the same order (no deadlock).


def _days_from(source: str) -> str:
    """The statement adding the day cells of the rows of ``source`` to ``tollgate_days``."""
    return (
        f"INSERT INTO tollgate_days ({', '.join(_KEY)}, {', '.join(n for n, _ in _COUNTS)}, "
        "usd, first, last) "
        f"SELECT {_DAY}, provider, operation, request_model, coalesce(response_model, ''), status, tags, "
        + ", ".join(f"sum({expression})" for _, expression in _COUNTS)
        + f", sum(usd_exact), min(started_at), max(started_at) FROM {source} WHERE {_FINITE} "
        "GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7 "
        f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
        + ", ".join(f"{name} = tollgate_days.{name} + excluded.{name}" for name, _ in _COUNTS)
        + ", usd = tollgate_days.usd + excluded.usd, first = least(tollgate_days.first, excluded.first), "
        "last = greatest(tollgate_days.last, excluded.last)"
    )


# A batch's day cells added to the table's, in the key's order so that two writers lock the
# same cells in the same order (no deadlock).
_ROLL_UP = _days_from("tollgate_batch")


def redacted(url: str) -> str:
    """``url`` without its password, for messages and ``repr``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class PostgresLedger(BatchedLedger):
    """Records in PostgreSQL, written in batches by a background thread (see the module).

    ``url``: a libpq connection URI, ``postgresql://user:password@host:5432/db?sslmode=require``
    (``postgres://`` too). ``timeout``: seconds to connect, and to wait for a lock or a
    statement, before a batch is counted as lost. Opening a database that cannot be reached,
    or whose tollgate schema is newer than this tollgate, raises ``ValueError``.
    """

    def __init__(
        self,
        url: str,
        *,
        flush_interval: float = 0.05,
        batch_size: int = 5_000,
        max_pending: int = 100_000,
        timeout: float = 10.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"PostgresLedger url must be a 'postgresql://user@host/db' URI, got {url!r}")
        self.url = url
        self.label = redacted(url)
        self._start(
            flush_interval=flush_interval, batch_size=batch_size, max_pending=max_pending, timeout=timeout
        )

    # -- reading ----------------------------------------------------------------------------------

    def records(self, since: float | None = None, until: float | None = None) -> list[CallRecord]:
        period, params = _period(since, until)
        query = f"SELECT {_READ} FROM tollgate_calls WHERE {period} ORDER BY started_at, seq"
        with self.reading() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_from_row(row) for row in rows]

    def report_rows(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, Any] | None = None,
        group_by: Sequence[str] = (),
    ) -> tuple[ReportRow, list[ReportRow]]:
        """``build_report(records(since, until), group_by, where)``'s ``total`` and ``rows``,
        aggregated by the server (exact USD: the ``numeric`` sum of the floats, rounded once,
        as ``fsum`` rounds): whole days from ``tollgate_days``, the rest from the rows."""
        from tollgate.ledger.summary import postgres_report  # summary reads this module

        with self.reading() as conn:
            return postgres_report(conn, since=since, until=until, where=where, group_by=group_by)

    def clear(self) -> None:
        """Delete every record (every process's) and reset the ``dropped()`` count."""
        self._check_open()
        with self._lock:
            self._pending.clear()
            with self._connection().transaction() as tx:
                tx.connection.execute("TRUNCATE tollgate_calls, tollgate_days")
        with self._drop_lock:
            self._dropped = 0

    # -- the writer ---------------------------------------------------------------------------------

    def _connect(self) -> Any:
        return connect(self.url, self._timeout, create=True)

    def _disconnect(self, conn: Any) -> None:
        conn.close()

    def _insert(self, batch: list[CallRecord]) -> None:
        import psycopg

        rows = self._rows(batch, _to_row)
        if not rows:
            return
        settled = 0  # rows committed or counted lost
        try:
            conn = self._connection()
            try:
                self._commit(conn, rows)
                settled = len(rows)
            except psycopg.DataError:  # one row the server cannot store: find it, keep the rest
                for row in rows:
                    try:
                        self._commit(conn, [row])
                    except psycopg.DataError as exc:
                        self._lose(1, f"record {row[0]!r} rejected by PostgreSQL: {_brief(exc)}")
                    settled += 1
        except (psycopg.Error, ValueError) as exc:  # ValueError: the server cannot be reached
            self._lose(len(rows) - settled, f"batch insert failed: {_brief(exc)}")
            self._reconnect_later()

    def _commit(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        with conn.transaction():
            conn.execute(_STAGE)
            with conn.cursor().copy(_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute(_MOVE)
            conn.execute(_ROLL_UP)

    def _reconnect_later(self) -> None:
        """After a failure the connection may be dead: the next batch opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("tollgate ledger %s: closing a failed connection", self.label, exc_info=True)


def connect(url: str, timeout: float, *, create: bool) -> Any:
    """An autocommit connection with the schema ready (``create``: made or migrated under an
    advisory lock; else a database without it is refused); ``ValueError`` naming the cause."""
    try:
        import psycopg
    except ImportError:
        raise ValueError(_INSTALL) from None
    label = redacted(url)
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, math.ceil(timeout)),
            options=f"-c lock_timeout={int(timeout * 1000)} -c statement_timeout={int(max(timeout, 60) * 1000)}",  # noqa: E501
        )
    except psycopg.Error as exc:
        raise ValueError(f"cannot open ledger {label}: {_brief(exc)}") from None
    try:
        version = _version(conn)
        if version is not None and version > SCHEMA_VERSION:
            raise ValueError(
                f"{label} holds a tollgate ledger of schema version {version}, newer than this "
                f"tollgate reads ({SCHEMA_VERSION}); upgrade tollgate"
            )
        if version is None and not create:
            raise ValueError(f"no tollgate ledger in {label}: it has no tollgate_calls table")
        if version != SCHEMA_VERSION:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('tollgate_schema'))")
                if _version(conn) is None:
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute("CREATE TABLE tollgate_schema (version integer NOT NULL)")
                    conn.execute("INSERT INTO tollgate_schema VALUES (%s)", (SCHEMA_VERSION,))
    except psycopg.Error as exc:
        conn.close()
        raise ValueError(f"cannot open ledger {label}: {_brief(exc)}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _brief(exc: BaseException) -> str:
    """The first line of a driver or server error: its DETAIL and CONTEXT lines can quote the
    row's values (a tag, a decision), which have no place in a log."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def rebuild_days(conn: Any) -> None:
    """Make ``tollgate_days`` again from ``tollgate_calls``: after rows were deleted or changed
    by hand (a retention job), or rows loaded behind the writer's back."""
    with conn.transaction():
        conn.execute("LOCK TABLE tollgate_days IN EXCLUSIVE MODE")
        conn.execute("TRUNCATE tollgate_days")
        conn.execute(_days_from("tollgate_calls"))


def _version(conn: Any) -> int | None:
    if conn.execute("SELECT to_regclass('tollgate_schema')").fetchone()[0] is None:
        if conn.execute("SELECT to_regclass('tollgate_calls')").fetchone()[0] is not None:
            raise ValueError("a tollgate_calls table without tollgate_schema: not a tollgate ledger")
        return None
    row = conn.execute("SELECT max(version) FROM tollgate_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else None


# -- records <-> rows -------------------------------------------------------------------------------

_json = json.JSONEncoder(default=str, separators=(",", ":")).encode


def _to_row(r: CallRecord) -> tuple[Any, ...]:
    """The SQLite ledger's row (JSON as text, which ``COPY`` reads into ``jsonb``) and the
    exact value of its USD."""
    return (*sqlite_row(r), Decimal(r.usd))


def _from_row(row: tuple[Any, ...]) -> CallRecord:
    return sqlite_record(row, loads=_decoded)


def _decoded(value: Any) -> Any:
    return value


# -- reports in SQL -----------------------------------------------------------------------------------


def _period(since: float | None, until: float | None) -> tuple[str, list[Any]]:
    terms, params = ["TRUE"], []
    if since is not None:
        terms.append("started_at >= %s")
        params.append(since)
    if until is not None:
        terms.append("started_at < %s")
        params.append(until)
    return " AND ".join(terms), params


def window(conn: Any, since: float | None, until: float | None) -> tuple[float | None, float | None]:
    """The first and last start of a call in the period (two index lookups)."""
    period, params = _period(since, until)
    query = (
        f"SELECT min(started_at), max(started_at) FROM tollgate_calls "
        f"WHERE {period} AND operation <> 'top_up' AND {_FINITE}"
    )
    first, last = conn.execute(query, params).fetchone()
    return first, last


class _Where:
    """The SQL of a report's names, and its parameters, in order."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def value(self, name: str) -> str:
        """A ``group_by`` name's value: a column, or the tag's JSON value (JSON null as NULL,
        as a missing tag: ``record.tags.get(name)`` cannot tell them apart)."""
        if name in FIELDS:
            return FIELD_COLUMNS[name]
        self.params.append(name)
        return "NULLIF(tags -> %s, 'null'::jsonb)"

    def matches(self, name: str, expected: Any) -> str:
        """``report._matches``: the value equals an option, or the option's ``str``."""
        options = tuple(expected) if _is_collection(expected) else (expected,)
        tests = []
        for option in options:
            column = self.value(name)
            if option is None:
                tests.append(f"{column} IS NULL")
                continue
            if name in FIELDS:
                self.params.append(str(option))
                tests.append(f"{column} = %s")
                continue
            candidates = {_json(str(option))}
            with contextlib.suppress(TypeError, ValueError):  # an option JSON cannot hold
                candidates.add(json.dumps(option, allow_nan=False))
            self.params.append(sorted(candidates))
            tests.append(f"{column} = ANY(%s::jsonb[])")
        return "(" + " OR ".join(tests) + ")" if tests else "FALSE"


def cells(
    conn: Any,
    *,
    since: float | None = None,
    until: float | None = None,
    where: Mapping[str, Any] | None = None,
    group_by: Sequence[str] = (),
    width: int | None = None,
) -> list[tuple[Any, ...]]:
    """The period's calls grouped by the ``group_by`` values: per group, the values, the
    counters of ``_COUNTS``, the exact USD (``Decimal``), the first and last start. A row:
    g..., counts..., usd, first, last.

    With ``width`` (3600 or 86400), the HTML report's three groupings at once, by the server
    (``GROUPING SETS``): by the ``group_by`` values (kind 0), by bucket of ``width`` seconds
    and the first value (kind 1), by requested model, provider and response model (kind 2).
    A row: kind, bucket, g..., m, p, r, counts..., usd, first, last (NULL where not grouped)."""
    names = tuple(group_by)
    # Whole days [first, end) from the day cells, a second inside the period at each end, so a
    # row whose day is among them is in the period however its day rounds; every other row of
    # the period (its edges; rows whose start is no time at all) from the rows. The two tests
    # of a row's day are the cells' own expression: each row is read exactly once. Hour
    # buckets read rows only.
    first, end = whole(since, until, 86_400)
    if width == 3_600:
        end = first
    edges, edge_params = _period(since, until)
    if end > first:
        day = "floor(started_at / 86400)"
        edges += f" AND (started_at < %s OR started_at >= %s OR NOT ({_FINITE}))"
        edges += f" AND NOT ({day} >= %s AND {day} < %s)"
        edge_params += [first * 86_400.0 + 1.0, end * 86_400.0 - 1.0, first, end]
    detailed = width is not None

    def part(
        table: str, counts: Sequence[str], tail: Sequence[str], period: str, params: list[Any]
    ) -> tuple[str, list[Any]]:
        select, test = _Where(), _Where()  # their parameters come before and after the period's
        keys = [f"{select.value(n)} AS g{i}" for i, n in enumerate(names)]
        if detailed:
            bucket = (
                "day"
                if table == "tollgate_days"
                else f"CASE WHEN {_FINITE} THEN floor(started_at / {width})::bigint END"
            )
            response = "nullif(response_model, '')"
            keys = [f"{bucket} AS b", *keys, "request_model AS m", "provider AS p", f"{response} AS r"]
        terms = ["operation <> 'top_up'", *(test.matches(n, v) for n, v in (where or {}).items())]
        columns = ", ".join([*keys, *counts, *tail])
        query = f"SELECT {columns} FROM {table} WHERE {period} AND {' AND '.join(terms)}"
        return query, [*select.params, *params, *test.params]

    rows_sql, rows_params = part(
        "tollgate_calls",
        [f"{e} AS c{i}" for i, (_, e) in enumerate(_COUNTS)],
        ["usd_exact AS usd", "started_at AS t0", "started_at AS t1"],
        edges,
        edge_params,
    )
    selects, params = [rows_sql], rows_params
    if end > first:
        days_sql, days_params = part(
            "tollgate_days",
            [f"{n} AS c{i}" for i, (n, _) in enumerate(_COUNTS)],
            ["usd", "first AS t0", "last AS t1"],
            "day >= %s AND day < %s",
            [first, end],
        )
        selects.append(days_sql)
        params = [*params, *days_params]
    keys = [f"g{i}" for i in range(len(names))]
    grouped = f" GROUP BY {', '.join(keys)}" if keys else ""
    if detailed:
        sets = f"({', '.join(keys)}), (b{''.join(', ' + k for k in keys[:1])}), (m, p, r)"
        grouped = f" GROUP BY GROUPING SETS ({sets})"
        keys = ["grouping(b) + 2 * grouping(m) AS kind", "b", *keys, "m", "p", "r"]
    sums = ", ".join(f"sum(c{i})" for i in range(len(_COUNTS)))
    query = (
        f"SELECT {', '.join([*keys, sums])}, sum(usd), min(t0), max(t1) "
        f"FROM ({' UNION ALL '.join(selects)}) AS cells{grouped}"
    )
    found = conn.execute(query, params).fetchall()
    return [row for row in found if row[len(keys)] is not None]  # no rows: SQL's one row of NULLs


def details(
    conn: Any,
    names: tuple[str, ...],
    since: float | None,
    until: float | None,
    where: Mapping[str, Any] | None,
) -> tuple[dict[tuple[Any, ...], dict[str, int]], dict[tuple[Any, ...], dict[str, list[float]]]]:
    """Per group: the unknown usage fields' calls, and the billed parts' USD by model, from the
    few rows that have any (partial indexes), in the order ``build_report`` meets them."""
    period, period_params = _period(since, until)
    out: list[dict[tuple[Any, ...], Any]] = []
    for column, empty, item in (
        ("unknown_usage", "'{}'::jsonb", "jsonb_object_keys(unknown_usage)"),
        ("parts", "'[]'::jsonb", "jsonb_array_elements(parts)"),
    ):
        select, test = _Where(), _Where()
        groups = [select.value(n) for n in names]
        terms = ["operation <> 'top_up'", *(test.matches(n, v) for n, v in (where or {}).items())]
        query = (
            f"SELECT {''.join(g + ', ' for g in groups)}provider, "
            f"coalesce(nullif(response_model, ''), request_model), {item} FROM tollgate_calls "
            f"WHERE {column} <> {empty} AND {period} AND {' AND '.join(terms)} "
            "ORDER BY started_at, seq"
        )
        found: dict[tuple[Any, ...], Any] = {}
        n = len(names)
        for row in conn.execute(query, [*select.params, *period_params, *test.params]):
            key = tuple(row[:n])
            if column == "unknown_usage":
                counts = found.setdefault(key, {})
                field = f"{row[n]}:{row[n + 2]}"
                counts[field] = counts.get(field, 0) + 1
            else:
                part = row[n + 2] if isinstance(row[n + 2], dict) else {}
                model = part.get("model") or row[n + 1]
                found.setdefault(key, {}).setdefault(model, []).append(part.get("usd") or 0.0)
        out.append(found)
    return out[0], out[1]


def unknown_names(conn: Any, names: Sequence[str], since: float | None, until: float | None) -> str | None:
    """``report.unknown_tag`` for the ledger's calls in the period (its days): a name no call
    carries, with the closest one, or None."""
    tags = [name for name in names if name not in FIELDS]
    if not tags:
        return None
    first = -(2**40) if since is None else math.floor(since / 86_400)
    end = 2**40 if until is None else math.floor(until / 86_400) + 1
    period = "day >= %s AND day < %s"
    if conn.execute(f"SELECT 1 FROM tollgate_days WHERE {period} LIMIT 1", [first, end]).fetchone() is None:
        return None  # no calls: nothing to check against
    seen = [
        key
        for (key,) in conn.execute(
            f"SELECT DISTINCT jsonb_object_keys(tags) FROM tollgate_days WHERE {period}", [first, end]
        )
    ]
    return unknown_name({str(key) for key in seen}, tags)
