"""The SQLite ledger's rollup: what the report of a million calls reads instead of a million rows.

The ``rollup`` table keeps, per UTC hour and per UTC day, one row per cell: the calls that
share provider, operation, request and response model, status and tags (their JSON text), with
the counters :func:`~tollgate.ledger.summary.summarize` shows (calls, tokens, unpriced,
blocked, errors, estimated, unknown usage, tool calls, billed parts, the calls of each budget
action), the first and last start, and the USD **exactly**: the sum's non-overlapping float
partials (Shewchuk's, as ``math.fsum`` keeps them), so ``fsum`` of the partials of any set of
cells is ``fsum`` of their calls' amounts, to the bit.

The ledger's writer keeps it up to date in the transaction that inserts a batch: it rolls up
the rows past ``rollup_state.upto`` (the last rowid rolled up), its own and any other
process's, then moves ``upto``. A file of an older schema is rolled up when first opened, by
the writer thread, ``CHUNK`` rows per transaction; until then its rows are read one by one.
A report reads, for its period, the whole days and hours of rolled-up rows from here and every
other row (the period's ragged edges, the rows past ``upto``) from ``calls``.

A cell's key holds the hour *and* the day of its rows (each computed as the report's SQL
computes its buckets), so an hour's rows count in the same day by either route. Rows deleted
from ``calls`` by hand leave the rollup counting them: the writer notices (the rollup's calls
no longer equal the table's) when it opens the file and rebuilds it; a report meanwhile reads
the rows alone.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any, cast

__all__ = [
    "ACTIONS",
    "CHUNK",
    "COUNTS",
    "LEVELS",
    "add",
    "behind",
    "consistent",
    "create",
    "exists",
    "parse",
    "reset",
    "roll_up",
    "upto",
    "whole",
]

#: The budget actions a report draws over time: its series name -> the action the ledger stores.
ACTIONS: dict[str, str] = {
    "blocked": "block",
    "downgraded": "downgrade",
    "clamped": "clamp",
    "truncated": "truncate",
    "cutoff": "cutoff",
    "rate_limited": "rate_limited",
}
#: The rollup's levels: bucket widths in seconds.
LEVELS = (3_600, 86_400)
#: Rows rolled up per transaction when catching up.
CHUNK = 20_000

#: A cell's counters: the rollup column and the expression of one ``calls`` row it sums (the
#: summary's cells statement sums the same expressions over rows).
COUNTS: tuple[tuple[str, str], ...] = (
    ("calls", "1"),
    ("input_tokens", "calls.input_tokens"),
    ("output_tokens", "calls.output_tokens"),
    ("cache_read_tokens", "calls.cache_read_tokens"),
    ("cache_write_tokens", "calls.cache_write_tokens"),
    ("reasoning_tokens", "calls.reasoning_tokens"),
    ("unpriced", "calls.priced = 0"),
    ("blocked", "calls.status = 'blocked'"),
    ("errors", "calls.status = 'error'"),
    ("estimated", "calls.estimated != 0"),
    ("unknown", "calls.unknown_usage != '{}'"),
    ("tool_calls", "calls.tool_calls"),
    ("parts", "calls.parts != '[]'"),
)
_KEY = (
    "level",
    "bucket",
    "day",
    "provider",
    "operation",
    "request_model",
    "response_model",
    "status",
    "tags",
)
_ACTION_COLUMNS = tuple(f"action_{action}" for action in ACTIONS.values())
_COUNTERS = (*(name for name, _ in COUNTS), *_ACTION_COLUMNS)

_CREATE = (
    "CREATE TABLE rollup (level INTEGER NOT NULL, bucket INTEGER NOT NULL, day INTEGER NOT NULL, "
    "provider TEXT NOT NULL, operation TEXT NOT NULL, request_model TEXT NOT NULL, "
    "response_model TEXT NOT NULL, status TEXT NOT NULL, tags TEXT NOT NULL, "
    + ", ".join(f"{name} INTEGER NOT NULL" for name in _COUNTERS)
    + ", usd TEXT NOT NULL, first REAL NOT NULL, last REAL NOT NULL)",
    f"CREATE UNIQUE INDEX rollup_cell ON rollup ({', '.join(_KEY)})",
    "CREATE TABLE rollup_state (upto INTEGER NOT NULL)",
    "INSERT INTO rollup_state VALUES (0)",
    # The few calls whose unknown usage fields and billed parts a report lists, without a scan.
    "CREATE INDEX IF NOT EXISTS calls_unknown_usage ON calls (started_at) WHERE unknown_usage != '{}'",
    "CREATE INDEX IF NOT EXISTS calls_parts ON calls (started_at) WHERE parts != '[]'",
)
_ACTION = "json_extract(d.value, '$.action')"
_WANTED = ", ".join(f"'{action}'" for action in ACTIONS.values())
_KEYS = ", ".join(_KEY[3:])  # a cell's key but its level, bucket and day
# The rows (rowid in (:start, :end]) grouped into hour cells, and the hour cells into day cells,
# added to the rollup's. A row's budget actions are its distinct wanted actions, comma-joined:
# the calls the summary's decisions statement counts. A response model of NULL is kept as ''
# (a key column must not be NULL to be unique); the summary reads both as NULL.
_ROLL_UP = (
    "WITH rows AS (SELECT CAST(calls.started_at / 3600 AS INTEGER) AS hour, "
    "CAST(calls.started_at / 86400 AS INTEGER) AS day, calls.provider, calls.operation, "
    "calls.request_model, ifnull(calls.response_model, '') AS response_model, calls.status, calls.tags, "
    + ", ".join(f"{expression} AS {name}" for name, expression in COUNTS)
    + f", CASE WHEN calls.decisions != '[]' THEN ',' || (SELECT group_concat(DISTINCT {_ACTION}) "
    f"FROM json_each(calls.decisions) AS d WHERE d.type = 'object' AND {_ACTION} IN ({_WANTED})) || ',' "
    "END AS actions, calls.usd, calls.started_at FROM calls "
    "WHERE calls.rowid > :start AND calls.rowid <= :end), "
    f"hours AS MATERIALIZED (SELECT 3600 AS level, hour AS bucket, day, {_KEYS}, "
    + ", ".join(f"sum({name}) AS {name}" for name, _ in COUNTS)
    + ", "
    + ", ".join(
        f"sum(ifnull(instr(actions, ',{action},'), 0) > 0) AS action_{action}" for action in ACTIONS.values()
    )
    + ", tollgate_usd(usd) AS usd, min(started_at) AS first, max(started_at) AS last FROM rows "
    f"GROUP BY hour, day, {_KEYS}) "
    f"INSERT INTO rollup ({', '.join((*_KEY, *_COUNTERS))}, usd, first, last) "
    f"SELECT * FROM hours UNION ALL SELECT 86400, day, day, {_KEYS}, "
    + ", ".join(f"sum({name})" for name in _COUNTERS)
    + f", tollgate_usd(usd), min(first), max(last) FROM hours WHERE true GROUP BY day, {_KEYS} "
    f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in _COUNTERS)
    + ", usd = tollgate_usd_add(usd, excluded.usd), first = min(first, excluded.first), "
    "last = max(last, excluded.last)"
)
_END = "SELECT max(rowid) FROM (SELECT rowid FROM calls WHERE rowid > ? ORDER BY rowid LIMIT ?)"


def whole(since: float | None, until: float | None, width: int) -> tuple[int, int]:
    """The buckets [first, end) of ``width`` seconds whose rows are in [since, until) with a
    second to spare at each end, so a row counted in one of them is in the period whatever the
    rounding of its bucket (open ends: as far as any bucket goes)."""
    first = -(2**62) if since is None else math.ceil((since + 1.0) / width)
    end = 2**62 if until is None else math.floor((until - 1.0) / width)
    return first, end


def create(conn: sqlite3.Connection) -> None:
    """Create the rollup (empty, nothing rolled up) in the open transaction."""
    for statement in _CREATE:
        conn.execute(statement)


def exists(conn: sqlite3.Connection) -> bool:
    """Whether the file has a rollup (a file of schema 4 or later does, unless dropped by hand)."""
    found = conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('rollup', 'rollup_state')")
    return int(found.fetchone()[0]) == 2


def reset(conn: sqlite3.Connection) -> None:
    """Forget everything rolled up (the rows are rolled up again), in the open transaction."""
    conn.execute("DELETE FROM rollup")
    conn.execute("UPDATE rollup_state SET upto = 0")


def upto(conn: sqlite3.Connection) -> int:
    """The last rowid of ``calls`` the rollup holds."""
    return int(conn.execute("SELECT upto FROM rollup_state").fetchone()[0])


def behind(conn: sqlite3.Connection) -> bool:
    """Whether ``calls`` has rows the rollup does not hold yet (a read: no lock taken)."""
    last = conn.execute("SELECT max(rowid) FROM calls").fetchone()[0]
    return last is not None and last > upto(conn)


def consistent(conn: sqlite3.Connection, last: int) -> bool:
    """Whether the rollup holds as many calls as ``calls`` has up to rowid ``last``: not so
    when rows were deleted (or added under it) by hand. Two index counts and the day cells."""
    rows = int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])
    later = int(conn.execute("SELECT count(*) FROM calls WHERE rowid > ?", (last,)).fetchone()[0])
    rolled = conn.execute("SELECT sum(calls) FROM rollup WHERE level = 86400").fetchone()[0]
    return rows - later == (rolled or 0)


def roll_up(conn: sqlite3.Connection, limit: int = CHUNK) -> bool:
    """Roll up at most ``limit`` rows past ``upto``, in the open write transaction; True when
    rows remain past the new ``upto``."""
    start = upto(conn)
    end = conn.execute(_END, (start, limit)).fetchone()[0]
    if end is None:
        return False
    conn.create_aggregate("tollgate_usd", 1, cast(Any, _Sum))
    conn.create_function("tollgate_usd_add", 2, _joined, deterministic=True)
    conn.execute(_ROLL_UP, {"start": start, "end": end})
    conn.execute("UPDATE rollup_state SET upto = ?", (end,))
    return conn.execute("SELECT 1 FROM calls WHERE rowid > ? LIMIT 1", (end,)).fetchone() is not None


class _Sum:
    """SQL aggregate ``tollgate_usd(usd)``: the exact sum of amounts, or of sums (as text)."""

    def __init__(self) -> None:
        self.partials: list[float] = []

    def step(self, value: float | str) -> None:
        if isinstance(value, str):  # a cell's sum: its partials
            for amount in parse(value):
                add(self.partials, amount)
        else:
            add(self.partials, value)

    def finalize(self) -> str:
        return _format(self.partials)


def _joined(old: str, new: str) -> str:
    """SQL function ``tollgate_usd_add(a, b)``: the exact sum of two sums, as text."""
    total = _Sum()
    total.step(old)
    total.step(new)
    return total.finalize()


def add(partials: list[float], value: float) -> None:
    """Add ``value`` to the exact sum ``partials``: non-overlapping floats, smallest first, as
    ``math.fsum`` keeps them. Once an amount is not finite, the amounts are kept as they come
    after it, so ``fsum`` meets them as it would have (inf, nan, or its error)."""
    x = float(value)
    if not math.isfinite(x) or (partials and not math.isfinite(partials[-1])):
        partials.append(x)
        return
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        high = x + y
        low = y - (high - x)
        if low:
            partials[i] = low
            i += 1
        x = high
    partials[i:] = [x]


def _format(partials: list[float]) -> str:
    """The partials as text, exactly (``repr``): ``"5.551115123125783e-18,0.1"``."""
    return ",".join(map(repr, partials)) or "0.0"


def parse(text: str) -> list[float]:
    """The amounts of a ``usd`` column, or of several joined by commas (``group_concat``)."""
    return [float(value) for value in text.split(",")]
