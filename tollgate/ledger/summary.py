"""Everything the HTML report and the live dashboard show, in one JSON-ready dict.

:func:`summarize` aggregates an SQLite ledger in SQL, through read-only connections (a report
never writes to the file), so a page of a million calls takes seconds, not the minutes that
reading every record into Python would. Any other ledger (memory, an HTTP sink) is aggregated
from its ``records()`` in Python, by the same rules. Either way the figures are
:func:`~tollgate.ledger.report.build_report`'s: the same calls, tokens, counts and USD.

**Exact USD.** ``build_report`` adds amounts with ``math.fsum``: the exact sum, rounded once.
SQLite's ``sum()`` and ``total()`` of floats add them one by one in row order (SQLite 3.43+
compensates the error, Kahan-Babuska-Neumaier, but is still not exact; ``sum()`` differs from
``total()`` only in returning NULL for no rows, and in summing integers exactly, raising on
overflow), so their last digits depend on the row order. Here each amount is split in SQL into
its whole number of 2^-32 USD, which ``sum()`` adds exactly as integers, and the remainder,
which ``total()`` adds as floats; the cells' remainders are split again (2^-52 USD) when the
cells are added up. Python adds the parts exactly and rounds once, knowing a bound on the float
parts' error (2^-53 x the rows of each cell squared, at most): whenever it cannot change the
rounding (all but a few sums in a thousand, on a million calls) the result is ``fsum``'s to
the bit; otherwise, or for a call of over 2^30 USD, that sum is made again from its rows with
``fsum``. Past 2^31 USD in one sum (SQLite refuses the integer overflow), the records are
read instead.

**Cost.** One SQL statement groups the selected rows into cells (bucket x ``group_by`` values x
model) and derives from the cells the groups, the time series and the models; a second, light
one reads the budget actions of the calls that have any (and two more, the unknown usage fields
and the billed parts of the calls that have any, through partial indexes, when some do).
SQLite has no hash aggregation: its GROUP BY sorts the rows, 3-5 microseconds a row here, so a
file of schema 4 is read through its rollup (:mod:`tollgate.ledger.rollup`): the whole days
(or hours) of the period come from its cells, which already carry their counters and their
exact USD (``fsum`` partials, added in Python), and only the period's ragged edges and the rows
not rolled up yet are read one by one. A million calls over a month summarise in about 1.4 s
instead of 5; the work in Python grows with the cells, not the rows.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any, Literal, NamedTuple

from tollgate.decisions import stored
from tollgate.ledger import rollup
from tollgate.ledger.base import Ledger
from tollgate.ledger.memory import MemoryLedger
from tollgate.ledger.postgres import PostgresLedger  # psycopg is imported when one is opened
from tollgate.ledger.report import (
    COUNTERS,
    FIELDS,
    ReportRow,
    _group_names,
    _is_collection,
    _sort_key,
    _value,
    build_report,
    parse_time,
    unknown_name,
    unknown_tag,
)
from tollgate.ledger.rollup import ACTIONS
from tollgate.ledger.sqlite import _NAMES, FIELD_COLUMNS, SQLiteLedger, _check_schema, _from_row
from tollgate.pricing.table import ModelPrice, PriceTable, has_price
from tollgate.request import CallRecord

__all__ = ["ACTIONS", "HOURLY_SPAN", "TOP_SERIES", "Bucket", "summarize"]

Bucket = Literal["hour", "day"]

#: ``over_time`` draws one line per value of the first ``group_by`` name, for this many values
#: (the most expensive), and one ``"other"`` line for the rest.
TOP_SERIES = 8
#: With ``bucket=None``, a selected span of at most this many seconds is drawn per hour.
HOURLY_SPAN = 3 * 86_400.0
#: An axis longer than this many buckets narrows to the selected calls' own first and last.
MAX_BUCKETS = 5_000

_WIDTH: dict[str, float] = {"hour": 3_600.0, "day": 86_400.0}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The counters of a cell, in the order the SQL returns them: the report's counters in their
# order, less "usd" (summed apart, exactly: see _Usd), then "parts" (calls billed in parts; not
# a report counter: says whether parts_usd needs reading).
_COUNTS = (*(name for name in COUNTERS if name != "usd"), "parts")
_N = len(_COUNTS)
_CALLS, _INPUT, _OUTPUT, _CACHE_READ, _CACHE_WRITE, _REASONING = range(6)
_UNPRICED, _BLOCKED, _ERRORS, _ESTIMATED, _UNKNOWN, _TOOLS, _PARTS = range(6, 13)


# -- exact USD ------------------------------------------------------------------------------------

_SCALE = 2.0**32  # usd x _SCALE: its integer part is summed exactly, as SQLite integers
_FINE = 2.0**20  # a cell's remainder x _FINE: split the same way when the cells are added up
_UNITS = _SCALE * _FINE  # what _Usd counts: 2^-52 USD
_SAFE_USD = 2.0**30  # one call costing more would not fit the integer part: summed from its rows
_ROUNDING = 2.0**-53
_CHUNK = (1 << 52) - 1
_EXACT = Context(prec=2_000, Emax=2_000, Emin=-2_000)  # any sum of floats, exactly


class _Usd:
    """A sum of USD amounts, kept exactly and rounded once by :meth:`value`: amounts (the Python
    path's, one by one, or the rollup's exact partials) and SQL's split sums of rows, with a
    bound on their float part's error."""

    __slots__ = ("exact", "rest", "slack", "unsafe", "values", "whole")

    def __init__(self) -> None:
        self.exact: Decimal | None = None  # PostgreSQL's numeric sums: exact already
        self.whole = 0  # in units of 1 / _UNITS
        self.rest: list[float] = []  # float sums, in the same units, each off by at most ...
        self.slack = 0.0  # ... this much together
        self.unsafe = False  # an amount too large for the split: sum again from the rows
        self.values: list[float] = []

    def add_split(self, whole: int | None, rest: float | None, slack: float, biggest: float | None) -> None:
        self.whole += whole or 0
        if rest:
            self.rest.append(rest)
        self.slack += slack
        if biggest is not None and not biggest < _SAFE_USD:
            self.unsafe = True

    def add_exact(self, amount: Decimal) -> None:
        with localcontext(_EXACT):
            self.exact = amount if self.exact is None else self.exact + amount

    def merge(self, other: _Usd) -> None:
        if other.exact is not None:
            self.add_exact(other.exact)
        self.whole += other.whole
        self.rest.extend(other.rest)
        self.slack += other.slack
        self.unsafe = self.unsafe or other.unsafe
        self.values.extend(other.values)

    def value(self) -> float | None:
        """The exact sum rounded to a float, as ``math.fsum`` of the amounts would be; None when
        the float part's error bound straddles a rounding boundary (sum the rows again)."""
        if self.exact is not None:
            return float(self.exact)  # correctly rounded, as fsum rounds
        if self.unsafe:
            return None
        if not self.whole and not self.rest:
            return math.fsum(self.values)
        parts = [*_pieces(self.whole), *self.rest, *(value * _UNITS for value in self.values)]
        low = math.fsum([*parts, -self.slack])
        high = math.fsum([*parts, self.slack])
        return low / _UNITS if low == high else None


def _pieces(number: int) -> list[float]:
    """``number`` as floats that add up to it exactly (52 bits each)."""
    sign, number = (-1.0, -number) if number < 0 else (1.0, number)
    out: list[float] = []
    shift = 0
    while number:
        out.append(sign * math.ldexp(float(number & _CHUNK), shift))
        number >>= 52
        shift += 52
    return out


class _Cell:
    """The counters and USD of one group of calls."""

    __slots__ = ("counts", "first", "last", "usd")

    def __init__(self) -> None:
        self.counts = [0] * _N
        self.usd = _Usd()
        self.first: float | None = None
        self.last: float | None = None

    def add_times(self, first: float | None, last: float | None) -> None:
        if first is not None and (self.first is None or first < self.first):
            self.first = first
        if last is not None and (self.last is None or last > self.last):
            self.last = last

    def merge(self, other: _Cell) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.usd.merge(other.usd)
        self.add_times(other.first, other.last)


class _Cells(NamedTuple):
    """A summary's cells: by ``group_by`` values, by bucket and first value, by model; and the
    calls per bucket and budget action."""

    groups: dict[tuple[Any, ...], _Cell]
    over: dict[tuple[int, Any], _Cell]
    models: dict[tuple[str, str, str | None], _Cell]
    decisions: dict[tuple[int, str], int]


#: The time axis: the bucket, its width in seconds, the buckets (see :func:`_axis`).
Axis = tuple[Bucket, float, list[int]]


#: A condition that selects the rows of a sum: a ``group_by`` name (or :data:`_BUCKET`) and the
#: values it may take. The SQL path sums those rows again when a rounding is in doubt.
Condition = tuple[str, Sequence[Any]]
_BUCKET = "\x00bucket"  # no tag's name: tag names are identifiers
Resolve = Callable[[_Usd, Sequence[Condition]], float]


class _Selection(NamedTuple):
    """What ``summarize()`` was asked for, as both paths take it."""

    since: float | None
    until: float | None
    names: tuple[str, ...]
    wanted: dict[str, tuple[Any, ...]]
    bucket: Bucket | None
    prices: PriceTable
    head: dict[str, Any]


# -- the entry point -------------------------------------------------------------------------------


def summarize(
    ledger: Ledger | str,
    *,
    since: float | None = None,
    until: float | None = None,
    where: Mapping[str, str | Collection[str | None] | None] | None = None,
    group_by: Sequence[str] = (),
    bucket: Bucket | None = None,
    prices: PriceTable | None = None,
) -> dict[str, Any]:
    """What the report page shows of ``ledger``, as a JSON-ready dict.

    ``ledger``: an ``sqlite:///path.db`` URI or a file path (opened read-only; a missing file,
    or a file that is not a tollgate ledger, raises ``ValueError`` naming it), or a
    :class:`~tollgate.ledger.Ledger` (an :class:`~tollgate.ledger.SQLiteLedger` is read from
    its file; any other from its ``records()``). ``since`` / ``until`` select on the calls'
    start (inclusive / exclusive; epoch seconds or what :func:`~tollgate.ledger.parse_time`
    reads), ``where`` and ``group_by`` as :func:`~tollgate.ledger.build_report` takes them (a
    name no call in the period carries raises ``ValueError`` naming the closest one).
    ``bucket``: the time axis' step, UTC hours or days; ``None``: hours when the period (from
    ``since``, or the first call, to ``until``, or the last call) is at most 3 days.
    ``prices``: the table ``tokens["cache_saved_usd"]`` is priced from (default: the
    configured one).

    The keys: ``ledger``, ``since``, ``until`` (ISO-8601, UTC), ``where``, ``group_by``,
    ``bucket``; ``first`` / ``last`` (start of the first / last selected call); ``total`` and
    ``groups``: ``build_report(...).total`` and ``.rows``, to the bit; ``over_time``: the
    buckets and, per value of the first ``group_by`` name (the 8 most expensive, then
    ``"other"``; one series ``"all"`` without ``group_by``), USD and calls per bucket;
    ``models``: per requested model, most expensive first; ``tokens``: input in its parts
    (``uncached_input + cache_read + cache_write`` is the input), output (reasoning
    included), and ``cache_saved_usd``: cache reads at the input price less their own price;
    ``decisions``: calls per bucket that a budget blocked, downgraded, clamped, truncated,
    cut off, or a rate limit refused; ``flagged``: estimated and unpriced calls, by model.

    >>> from tollgate.ledger import MemoryLedger
    >>> ledger = MemoryLedger()
    >>> ledger.write(CallRecord(id="1", started_at=0.0, ended_at=1.0, provider="openai",
    ...              operation="chat", request_model="gpt-4o", usd=0.25, tags={"tenant": "acme"}))
    >>> s = summarize(ledger, group_by=["tenant"])
    >>> s["total"]["usd"], s["groups"][0]["tags"], s["over_time"]["series"][0]["name"]
    (0.25, {'tenant': 'acme'}, 'acme')
    """
    names = _group_names(group_by)
    wanted = _wanted(where)
    if bucket not in (None, "hour", "day"):
        raise ValueError(f"bucket={bucket!r}: 'hour', 'day', or None to choose by the period")
    start, end = parse_time(since), parse_time(until)
    if prices is None:
        from tollgate.config import settings

        prices = settings().prices
    head = {
        "since": _iso(start),
        "until": _iso(end),
        "where": {  # as given: a value, or a list of them
            name: list(wanted[str(name)]) if _is_collection(value) else value
            for name, value in (where or {}).items()
        },
        "group_by": list(names),
    }
    selection = _Selection(start, end, names, wanted, bucket, prices, head)
    if isinstance(ledger, str) and ledger.startswith(("postgresql://", "postgres://")):
        return _from_postgres(ledger, selection)
    if isinstance(ledger, str):
        return _from_file(_file_of(ledger), ledger, selection)
    if isinstance(ledger, PostgresLedger):
        return _from_postgres(ledger, selection)
    if isinstance(ledger, SQLiteLedger) and ledger.path != ":memory:" and not ledger.path.startswith("file:"):
        ledger.flush()
        label = f"sqlite:///{ledger.path}"
        return _from_file(ledger.path, label, selection)
    if isinstance(ledger, Ledger):
        records = ledger.records(start, end)
        return _from_records(records, _label(ledger), selection)
    raise TypeError(f"summarize() takes a Ledger or an 'sqlite:///path.db' URI, got {ledger!r}")


def _wanted(where: Mapping[str, Any] | None) -> dict[str, tuple[Any, ...]]:
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise ValueError(f"where={where!r}: give a dict of name to value, e.g. where={{'tenant': 'acme'}}")
    return {str(name): tuple(value) if _is_collection(value) else (value,) for name, value in where.items()}


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _label(ledger: Ledger) -> str:
    if isinstance(ledger, SQLiteLedger):
        return f"sqlite:///{ledger.path}"
    if isinstance(ledger, MemoryLedger):
        return "memory://"
    url = getattr(ledger, "url", None)
    return str(url) if isinstance(url, str) else type(ledger).__name__


def _axis(
    bucket: Bucket | None,
    since: float | None,
    until: float | None,
    window: tuple[float | None, float | None],
) -> tuple[Bucket, float, list[int]]:
    """The bucket, its width in seconds and the buckets of the time axis (bucket ``b`` starts at
    ``b * width``): from ``since`` (or the first call) to ``until`` (or the last call)."""
    start = since if since is not None else window[0]
    end = math.nextafter(until, -math.inf) if until is not None else window[1]
    if bucket is None:
        bucket = "hour" if start is None or end is None or end - start <= HOURLY_SPAN else "day"
    width = _WIDTH[bucket]
    if start is None or end is None or end < start:
        return bucket, width, []
    first, last = int(start / width), int(end / width)
    if last - first >= MAX_BUCKETS and window[0] is not None and window[1] is not None:
        # e.g. since=0 on a week of calls: draw the calls, not 50 years of empty days
        first, last = max(first, int(window[0] / width)), min(last, int(window[1] / width))
    return bucket, width, list(range(first, last + 1))


# -- the Python path: any ledger's records ---------------------------------------------------------


def _from_records(records: list[CallRecord], label: str, selection: _Selection) -> dict[str, Any]:
    """The summary of ``records`` (a ledger's ``records(since, until)``), aggregated in Python."""
    since, until, names, wanted, bucket, prices, head = selection
    for option, checked in (("group_by", names), ("where", tuple(wanted))):
        problem = unknown_tag(records, checked)
        if problem is not None:
            raise ValueError(f"{option}: {problem}")
    report = build_report(records, group_by=names or None, where=wanted or None)
    calls = [r for r in records if r.operation != "top_up"]
    window = (min(r.started_at for r in calls), max(r.started_at for r in calls)) if calls else (None, None)
    bucket, width, axis = _axis(bucket, since, until, window)
    over: dict[tuple[int, Any], _Cell] = {}
    models: dict[tuple[str, str, str | None], _Cell] = {}
    decisions: dict[tuple[int, str], int] = {}
    wanted_actions = set(ACTIONS.values())
    for r in report.records:
        b = int(r.started_at / width)
        at = (b, _value(r, names[0]) if names else None)
        cell = over.get(at)
        if cell is None:
            cell = over[at] = _Cell()
        cell.counts[_CALLS] += 1
        cell.usd.values.append(r.usd)
        which = (r.request_model, r.provider, r.response_model or None)
        model = models.get(which)
        if model is None:
            model = models[which] = _Cell()
        u, counts = r.usage, model.counts
        counts[_CALLS] += 1
        counts[_INPUT] += u.input_tokens
        counts[_OUTPUT] += u.output_tokens
        counts[_CACHE_READ] += u.cache_read_tokens
        counts[_CACHE_WRITE] += u.cache_write_tokens
        counts[_REASONING] += u.reasoning_tokens
        counts[_UNPRICED] += not r.priced
        counts[_ESTIMATED] += r.estimated
        model.usd.values.append(r.usd)
        actions = {a for a in (stored(step).get("action") for step in r.decisions) if isinstance(a, str)}
        for action in actions & wanted_actions:
            decisions[(b, action)] = decisions.get((b, action), 0) + 1
    selected = report.records
    return _assemble(
        head,
        label,
        names,
        (bucket, width, axis),
        (
            min((r.started_at for r in selected), default=None),
            max((r.started_at for r in selected), default=None),
        ),
        (report.total, report.rows if names else []),
        _Cells({}, over, models, decisions),
        lambda usd, conditions: math.fsum(usd.values),
        prices,
    )


# -- the SQL path: an SQLite ledger file -----------------------------------------------------------


def _file_of(uri: str) -> str:
    """The file an ``sqlite:///`` URI (or a plain path) names; other URIs are refused."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
    elif "://" in uri:
        raise ValueError(
            f"summarize({uri!r}): give an 'sqlite:///path.db' URI or a path, or the Ledger itself "
            "(a memory or HTTP ledger has nothing to read back from a URI)"
        )
    else:
        path = uri
    if not path or path == ":memory:":
        raise ValueError(f"no ledger at {uri!r}: a private in-memory database holds no calls to read")
    return path


def _connect(path: str) -> sqlite3.Connection:
    """A connection that only reads: the file is never created, changed or migrated.

    Where the file may be written, it is opened read-write with ``query_only`` on rather than
    with ``mode=ro``: a read-only connection to a WAL file creates its ``-wal`` and ``-shm``
    files when they are missing and cannot remove them, so every report left two files behind
    beside a closed ledger; a query-only connection that is the last to close removes them, as
    the writer's does, and writes nothing to the file itself (its WAL holds no frames)."""
    uri = Path(path).resolve().as_uri()
    if not os.access(path, os.W_OK) or not os.access(Path(path).resolve().parent, os.W_OK):
        return sqlite3.connect(f"{uri}?mode=ro", uri=True)
    conn = sqlite3.connect(f"{uri}?mode=rw", uri=True)
    conn.execute("PRAGMA query_only = ON")
    return conn


def _open(path: str) -> tuple[sqlite3.Connection, set[str]]:
    """A read-only connection to the ledger at ``path`` and its table's columns."""
    target = Path(path)
    if not target.is_file():
        what = "is a folder" if target.is_dir() else "does not exist"
        raise ValueError(f"no ledger at {path!r}: the file {what}")
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        raise ValueError(f"cannot open ledger file {path!r}: {exc}") from None
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if "calls" not in tables:
            found = f"its tables are {', '.join(sorted(tables))}" if tables else "it has no tables"
            raise ValueError(f"{path!r} is not a tollgate ledger: it has no 'calls' table ({found})")
        _check_schema(conn, path)  # foreign columns, or a newer schema: ValueError
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(calls)")}
    except sqlite3.OperationalError as exc:  # locked, unreadable, ...
        conn.close()
        raise ValueError(f"cannot read ledger file {path!r}: {exc}") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", ...
        conn.close()
        raise ValueError(f"{path!r} is not a tollgate ledger: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn, columns


class _Sql:
    """The SQL of one summary: the selection, the expressions of the names, the parameters."""

    def __init__(
        self,
        columns: set[str],
        names: tuple[str, ...],
        wanted: dict[str, tuple[Any, ...]],
        since: float | None,
        until: float | None,
    ) -> None:
        self.params: dict[str, Any] = {"scale": _SCALE, "fine": _FINE, "width": 86_400.0}
        # Columns an older schema lacks read as the value a new file would hold.
        self.unknown_usage = "calls.unknown_usage" if "unknown_usage" in columns else "'{}'"
        self.parts = "calls.parts" if "parts" in columns else "'[]'"
        self.tool_calls = "calls.tool_calls" if "tool_calls" in columns else "0"
        self.time: list[str] = []
        if since is not None:
            self.time.append("calls.started_at >= :since")
            self.params["since"] = since
        if until is not None:
            self.time.append("calls.started_at < :until")
            self.params["until"] = until
        self.groups = [self.expression(name) for name in names]
        self.filters = ["calls.operation != 'top_up'"]
        for name, options in wanted.items():
            self.filters.append(self.matches(self.expression(name), options))
        self.where = [self.filters[0], *self.time, *self.filters[1:]]
        # With a rollup (see use_rollup): the terms that leave the rows it holds to it, and
        # the terms that select its cells.
        self.raw: list[str] = []
        self.rolled: list[str] = []
        self.rolled_bucket = ""  # a rollup cell's bucket of the report's width

    def use_rollup(self, last: int, since: float | None, until: float | None, width: float) -> None:
        """Read the whole hours (and, for ``width`` a day, the whole days) of the period from
        the rollup, which holds the rows up to rowid ``last``; every other row from ``calls``.

        A rolled-up row counts in the rollup when its day is in [d0, d1) or its hour in
        [h0, h1) (each as the bucket expression computes it, so exactly); those bounds keep a
        second inside the period, so such a row is in it whatever the rounding of its hour.
        The rows of ``calls`` read are those past ``last`` or outside both, found through the
        rowid and the ``started_at`` index: the edges [since, lo) and [hi, until)."""
        h0, h1 = rollup.whole(since, until, 3_600)
        d0, d1 = rollup.whole(since, until, 86_400) if width == 86_400 else (0, 0)
        if h1 <= h0:
            return
        self.params |= {"last": last, "h0": h0, "h1": h1, "d0": d0, "d1": d1}
        self.rolled_bucket = "calls.day" if width == 86_400 else "calls.bucket"
        self.params |= {"lo": h0 * 3_600.0 + 1.0, "hi": h1 * 3_600.0 - 1.0}
        after = " AND started_at >= :since" if since is not None else ""
        before = " AND started_at < :until" if until is not None else ""
        day = "CAST(calls.started_at / 86400 AS INTEGER)"
        hour = "CAST(calls.started_at / 3600 AS INTEGER)"
        # The rowids first, through the indexes: left to the planner, a where term or a join
        # made it scan the table.
        self.raw = [
            "calls.rowid IN (SELECT rowid FROM calls WHERE rowid > :last "
            f"UNION ALL SELECT rowid FROM calls WHERE started_at < :lo{after} "
            f"UNION ALL SELECT rowid FROM calls WHERE started_at >= :hi{before})",
            f"(calls.rowid > :last OR NOT ({day} >= :d0 AND {day} < :d1 OR {hour} >= :h0 AND {hour} < :h1))",
        ]
        self.rolled = [
            "(calls.level = 86400 AND calls.bucket >= :d0 AND calls.bucket < :d1 OR calls.level = 3600 "
            "AND calls.bucket >= :h0 AND calls.bucket < :h1 AND NOT (calls.day >= :d0 AND calls.day < :d1))",
            *self.filters,
        ]

    def _param(self, value: Any) -> str:
        key = f"p{len(self.params)}"
        self.params[key] = value
        return f":{key}"

    def expression(self, name: str) -> str:
        """The SQL value of a ``group_by`` / ``where`` name: a column, or the tag's value."""
        if name == _BUCKET:
            return "CAST(calls.started_at / :width AS INTEGER)"
        if name in FIELD_COLUMNS:
            return f"calls.{FIELD_COLUMNS[name]}"
        if _IDENTIFIER.fullmatch(name):
            return f"json_extract(calls.tags, '$.{name}')"
        if '"' not in name:  # a JSON path quotes any name but one with a double quote
            path = self._param(f'$."{name}"')
            return f"json_extract(calls.tags, {path})"
        return f"(SELECT value FROM json_each(calls.tags) WHERE key = {self._param(name)})"

    def present(self, name: str) -> str:
        """True for a row whose tags have ``name`` (with any value, null included)."""
        if _IDENTIFIER.fullmatch(name):
            return f"json_type(calls.tags, '$.{name}') IS NOT NULL"
        return f"EXISTS (SELECT 1 FROM json_each(calls.tags) WHERE key = {self._param(name)})"

    def matches(self, expression: str, options: Sequence[Any]) -> str:
        """``report.select``'s test in SQL: the value equals an option, or the option's str."""
        tests: list[str] = []
        values: list[str] = []
        for option in options:
            if option is None:
                tests.append(f"{expression} IS NULL")
            else:
                values.extend(self._param(v) for v in _bindable(option))
        if values:
            tests.append(f"{expression} IN ({', '.join(values)})")
        return "(" + " OR ".join(tests) + ")" if tests else "0"

    def selection(self, first: Sequence[str] = ()) -> str:
        """The selected rows, tested by ``first`` before the rest: SQLite tests the terms in
        this order, so a cheap filter first spares most rows the JSON work of ``where``."""
        return " AND ".join([*first, *self.where])

    def cells(self) -> str:
        """One statement: the rows grouped into cells (bucket x group_by values x model), then
        the cells grouped three ways: by group_by values (kind 0), by bucket and first value
        (kind 1), by model (kind 2). With a rollup, its cells join the rows' cells."""
        gs = [f"g{i}" for i in range(len(self.groups))]
        cell_keys = ["b", *gs, "m", "p", "r"]
        keys = ["CAST(calls.started_at / :width AS INTEGER)", *self.groups]
        # A response model of '' reads as NULL (the rollup keeps NULL as '').
        keys += ["calls.request_model", "calls.provider", "NULLIF(calls.response_model, '')"]
        usd = "calls.usd * :scale"
        # Per cell: counters; the USD split (its whole 2^-32 USD, summed exactly, and the
        # remainders' float total); the biggest amount; the rows whose remainders were added as
        # floats (k); first and last start; the rollup's exact partials (u).
        counts = [f"sum({self.over_rows(e)}) AS c{i}" for i, (_, e) in enumerate(rollup.COUNTS)]
        split = [
            f"sum(CAST({usd} AS INTEGER)) AS h",
            f"total({usd} - CAST({usd} AS INTEGER)) AS f",
            "max(abs(calls.usd)) AS big",
            "count(*) AS k",
        ]
        times = ["min(calls.started_at) AS t0", "max(calls.started_at) AS t1"]
        columns = [f"{expr} AS {alias}" for expr, alias in zip(keys, cell_keys, strict=True)]
        rows = (
            f"SELECT {', '.join([*columns, *counts, *split, *times])}, NULL AS u FROM calls "
            f"WHERE {' AND '.join([*self.where, *self.raw])} "
            f"GROUP BY {', '.join(map(str, range(1, len(keys) + 1)))}"
        )
        if self.rolled:  # each of the rollup's rows is a cell already: no GROUP BY to sort
            columns = [
                f"{expr} AS {alias}"
                for expr, alias in zip([self.rolled_bucket, *keys[1:]], cell_keys, strict=True)
            ]
            columns += [f"calls.{name} AS c{i}" for i, (name, _) in enumerate(rollup.COUNTS)]
            columns += [
                "0 AS h",
                "0.0 AS f",
                "NULL AS big",
                "0 AS k",
                "calls.first AS t0",
                "calls.last AS t1",
            ]
            where = " AND ".join(self.rolled)
            rolled = f"SELECT {', '.join(columns)}, calls.usd AS u FROM rollup AS calls WHERE {where}"
            rows = f"{rows} UNION ALL {rolled}"
        sums = ", ".join(f"sum(c{i})" for i in range(len(rollup.COUNTS)))
        aggregates = (
            f"{sums}, sum(h), sum(CAST(f * :fine AS INTEGER)), "
            "total(f * :fine - CAST(f * :fine AS INTEGER)), max(big), sum(k * k), sum(k > 0), "
            "min(t0), max(t1), group_concat(u)"
        )

        def family(kind: int, shown: Sequence[str]) -> str:
            columns = [alias if alias in shown else "NULL" for alias in cell_keys]
            grouped = f" GROUP BY {', '.join(shown)}" if shown else ""
            return f"SELECT {kind}, {', '.join(columns)}, {aggregates} FROM cells{grouped}"

        first = gs[:1]
        return (
            f"WITH cells AS MATERIALIZED ({rows}) "
            f"{family(0, gs)} UNION ALL {family(1, ['b', *first])} UNION ALL {family(2, ['m', 'p', 'r'])}"
        )

    def over_rows(self, expression: str) -> str:
        """A rollup counter's expression over this file's rows (an older one lacks columns)."""
        for column, value in (
            ("calls.unknown_usage", self.unknown_usage),
            ("calls.parts", self.parts),
            ("calls.tool_calls", self.tool_calls),
        ):
            expression = expression.replace(column, value)
        return expression

    def decisions(self) -> str:
        """Calls per bucket and budget action: a call counts once per action it has."""
        action = "json_extract(d.value, '$.action')"
        wanted = ", ".join(f"'{a}'" for a in ACTIONS.values())
        selection = self.selection(["calls.decisions != '[]'", "d.type = 'object'"])
        raw = "".join(f" AND {term}" for term in self.raw)
        return (
            f"SELECT CAST(calls.started_at / :width AS INTEGER), {action}, count(DISTINCT calls.rowid) "
            f"FROM calls, json_each(calls.decisions) AS d "
            f"WHERE {selection}{raw} AND {action} IN ({wanted}) GROUP BY 1, 2"
        )

    def rolled_decisions(self) -> str:
        """The rollup's share of :meth:`decisions`: per bucket, the calls of each action."""
        counts = ", ".join(f"sum(calls.action_{action})" for action in ACTIONS.values())
        where = " AND ".join(self.rolled)
        return f"SELECT {self.rolled_bucket}, {counts} FROM rollup AS calls WHERE {where} GROUP BY 1"


def _bindable(option: Any) -> list[Any]:
    """What an SQL value may equal to match ``option`` as ``report._matches`` does: the option
    itself (when SQLite can hold it) or its ``str``."""
    if isinstance(option, str):
        return [option]
    text = str(option)
    if isinstance(option, bool):
        return [int(option), text]
    if isinstance(option, float) or (isinstance(option, int) and -(2**63) <= option < 2**63):
        return [option, text]
    return [text]


def _from_file(path: str, label: str, selection: _Selection) -> dict[str, Any]:
    since, until, names, wanted, bucket, prices, head = selection
    conn, columns = _open(path)
    try:
        conn.execute("BEGIN")  # one snapshot for every query below, whoever writes meanwhile
        sql = _Sql(columns, names, wanted, since, until)
        _check_names(conn, sql, names, tuple(wanted))
        window = _window(conn, sql)
        bucket, width, axis = _axis(bucket, since, until, window)
        sql.params["width"] = width
        last = _rolled_up(conn)
        if last is not None:
            sql.use_rollup(last, since, until, width)
        try:
            cells = conn.execute(sql.cells(), sql.params).fetchall()
        except sqlite3.OperationalError as exc:
            if "integer overflow" not in str(exc):
                raise
            # Over 2^31 USD in one group: beyond the exact split; read the records instead.
            records = _records(conn, columns, sql)
            return _from_records(records, label, selection._replace(bucket=bucket))  # as resolved by _axis
        steps = conn.execute(sql.decisions(), sql.params).fetchall()
        if sql.rolled:
            for b, *counts in conn.execute(sql.rolled_decisions(), sql.params):
                steps.extend((b, action, n) for action, n in zip(ACTIONS.values(), counts, strict=True) if n)
        return _finish(
            head,
            label,
            names,
            (bucket, width, axis),
            _merge(cells, steps, names),
            _resolver(conn, sql),
            lambda unknown, parts: (
                _unknown_usage(conn, sql) if unknown else {},
                _parts_usd(conn, sql) if parts else {},
            ),
            prices,
        )
    finally:
        conn.close()


def _rolled_up(conn: sqlite3.Connection) -> int | None:
    """The last rowid the file's rollup holds; None when it has none, or one that no longer
    counts the rows it claims (rows deleted by hand, the writer not run since): read the rows."""
    if not rollup.exists(conn):
        return None
    last = rollup.upto(conn)
    return last if last and rollup.consistent(conn, last) else None


def _records(conn: sqlite3.Connection, columns: set[str], sql: _Sql) -> list[CallRecord]:
    """The records of the period, as ``SQLiteLedger.records`` reads them (an older file's
    missing columns read as a new file's defaults)."""
    defaults = {"service_tier": "NULL", "parts": "'[]'", "unknown_usage": "'{}'", "tool_calls": "0"}
    select = ", ".join(name if name in columns else defaults[name] for name in _NAMES)
    period = " AND ".join(sql.time) or "1"
    rows = conn.execute(f"SELECT {select} FROM calls WHERE {period} ORDER BY started_at, rowid", sql.params)
    return [_from_row(row) for row in rows]


def _check_names(conn: sqlite3.Connection, sql: _Sql, names: tuple[str, ...], where: tuple[str, ...]) -> None:
    """Refuse a tag name that no call of the period carries, as ``tollgate report`` does
    (``unknown_tag``): a typo would otherwise group every call under None."""
    period = " AND ".join(sql.time) or "1"
    tags = [name for name in (*names, *where) if name not in FIELDS]
    if not tags or conn.execute(f"SELECT 1 FROM calls WHERE {period} LIMIT 1", sql.params).fetchone() is None:
        return
    for option, checked in (("group_by", names), ("where", where)):
        for name in checked:
            if name in FIELDS:
                continue
            query = f"SELECT 1 FROM calls WHERE {period} AND {sql.present(name)} LIMIT 1"
            if conn.execute(query, sql.params).fetchone() is not None:
                continue
            seen = conn.execute(
                f"SELECT DISTINCT t.key FROM calls, json_each(calls.tags) AS t WHERE {period}", sql.params
            ).fetchall()
            problem = unknown_name({str(key) for (key,) in seen}, [name])
            if problem is not None:
                raise ValueError(f"{option}: {problem}")


def _window(conn: sqlite3.Connection, sql: _Sql) -> tuple[float | None, float | None]:
    """The first and last start of a call in the period, whatever ``where`` says: the ends of
    the time axis when ``since`` / ``until`` leave them open (two index lookups)."""
    period = " AND ".join(["calls.operation != 'top_up'", *sql.time])
    ends: list[float | None] = []
    for order in ("ASC", "DESC"):
        row = conn.execute(
            f"SELECT started_at FROM calls WHERE {period} ORDER BY started_at {order} LIMIT 1", sql.params
        ).fetchone()
        ends.append(None if row is None else float(row[0]))
    return ends[0], ends[1]


def _merge(cells: list[tuple[Any, ...]], steps: list[tuple[Any, ...]], names: tuple[str, ...]) -> _Cells:
    """The cells grouped by group_by values, by bucket and first value, by model; and the
    decision counts by bucket and action."""
    groups: dict[tuple[Any, ...], _Cell] = {}
    over: dict[tuple[int, Any], _Cell] = {}
    models: dict[tuple[str, str, str | None], _Cell] = {}
    decisions: dict[tuple[int, str], int] = {}
    n = len(names)
    for row in cells:
        kind, b = row[0], row[1]
        values = row[2 : 2 + n]
        m, p, r = row[2 + n : 5 + n]
        stats = row[5 + n :]
        key: Any
        if kind == 0:
            if stats[0] is None:  # no GROUP BY and no rows: SQL's one row of NULLs
                continue
            target, key = groups, tuple(values)
        elif kind == 1:
            target, key = over, (b, values[0] if n else None)
        else:
            target, key = models, (m, p, r)
        cell = target.get(key)
        if cell is None:
            cell = target[key] = _Cell()
        counts = cell.counts
        for i in range(_N):
            counts[i] += stats[i] or 0
        whole, fine, rest, biggest, squares, merged, first, last, partials = stats[_N:]
        # Units of 2^-52 USD. total() adds floats in row order: the remainders of a cell's rows
        # (each under 2^20 units) are off by at most 2^-53 x 2^20 x rows^2 units; split again,
        # the cells' remainders (each under 1 unit) by at most 2^-53 x cells^2.
        slack = 1.01 * _ROUNDING * (squares * _FINE + merged * merged)
        whole = (whole or 0) * int(_FINE) + (fine or 0)
        cell.usd.add_split(whole, rest, slack, biggest)
        if partials:
            cell.usd.values.extend(rollup.parse(partials))
        cell.add_times(first, last)
    for b, action, count in steps:
        decisions[(b, action)] = decisions.get((b, action), 0) + count
    return _Cells(groups, over, models, decisions)


def _resolver(conn: sqlite3.Connection, sql: _Sql) -> Resolve:
    """Round a sum; when in doubt, sum its rows again with ``fsum``."""

    def resolve(usd: _Usd, conditions: Sequence[Condition]) -> float:
        value = usd.value()
        if value is not None:
            return value
        extra = [sql.matches(sql.expression(name), options) for name, options in conditions]
        rows = conn.execute(f"SELECT calls.usd FROM calls WHERE {sql.selection(extra)}", sql.params)
        return math.fsum(usd for (usd,) in rows)

    return resolve


Details = tuple[dict[tuple[Any, ...], dict[str, int]], dict[tuple[Any, ...], dict[str, list[float]]]]


def _report_rows(
    names: tuple[str, ...],
    groups: dict[tuple[Any, ...], _Cell],
    resolve: Resolve,
    details: Callable[[bool, bool], Details],
) -> tuple[ReportRow, list[ReportRow]]:
    """``build_report``'s total and rows, from the cells by group_by values. ``details(unknown,
    parts)``: per group, the unknown usage fields' calls and the billed parts' USD by model,
    read only when some call has them."""
    everything = _Cell()
    for cell in groups.values():
        everything.merge(cell)
    unknown, parts = details(bool(everything.counts[_UNKNOWN]), bool(everything.counts[_PARTS]))
    rows = [
        _row(
            cell,
            dict(zip(names, key, strict=True)),
            resolve(cell.usd, _conditions(names, key)),
            unknown,
            parts,
        )
        for key, cell in groups.items()
    ]
    rows.sort(key=lambda row: (-row["usd"], -row["calls"], [_sort_key(row["tags"][n]) for n in names]))
    total = _row(everything, {}, resolve(everything.usd, ()), {}, {})
    total["unknown_usage"] = _merged_counts(unknown.values())
    total["parts_usd"] = {model: math.fsum(v) for model, v in _merged_lists(parts.values()).items()}
    return total, rows if names else []


def _conditions(names: Sequence[str], key: Sequence[Any]) -> list[Condition]:
    return [(name, [value]) for name, value in zip(names, key, strict=True)]


def _row(
    cell: _Cell,
    tags: dict[str, Any],
    usd: float,
    unknown: Mapping[tuple[Any, ...], dict[str, int]],
    parts: Mapping[tuple[Any, ...], dict[str, list[float]]],
) -> ReportRow:
    c = cell.counts
    key = tuple(tags.values())
    return ReportRow(
        tags=tags,
        calls=c[_CALLS],
        input_tokens=c[_INPUT],
        output_tokens=c[_OUTPUT],
        cache_read_tokens=c[_CACHE_READ],
        cache_write_tokens=c[_CACHE_WRITE],
        reasoning_tokens=c[_REASONING],
        usd=usd,
        unpriced_calls=c[_UNPRICED],
        blocked_calls=c[_BLOCKED],
        errors=c[_ERRORS],
        estimated_calls=c[_ESTIMATED],
        unknown_usage_calls=c[_UNKNOWN],
        unknown_usage=dict(unknown.get(key, {})),
        tool_calls=c[_TOOLS],
        parts_usd={model: math.fsum(values) for model, values in parts.get(key, {}).items()},
    )


def _unknown_usage(conn: sqlite3.Connection, sql: _Sql) -> dict[tuple[Any, ...], dict[str, int]]:
    """Per group_by values: calls per ``"<provider>:<field>"`` of usage tollgate did not know,
    in the order ``build_report`` meets them (the calls in order, the fields as stored)."""
    groups = "".join(f"{expr}, " for expr in sql.groups)
    selection = sql.selection([sql.unknown_usage + " != '{}'"])
    # "+started_at": sort the few rows found; ordering by the index would visit every row by it.
    query = (
        f"SELECT {groups}calls.provider, u.key FROM calls, json_each({sql.unknown_usage}) AS u "
        f"WHERE {selection} ORDER BY +calls.started_at, calls.rowid, u.id"
    )
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    n = len(sql.groups)
    for row in conn.execute(query, sql.params):
        counts = out.setdefault(tuple(row[:n]), {})
        name = f"{row[n]}:{row[n + 1]}"
        counts[name] = counts.get(name, 0) + 1
    return out


def _parts_usd(conn: sqlite3.Connection, sql: _Sql) -> dict[tuple[Any, ...], dict[str, list[float]]]:
    """Per group_by values: the USD of the parts of calls billed in parts, by the model that ran
    each (the part's, else the call's response model, else its request model)."""
    groups = "".join(f"{expr}, " for expr in sql.groups)
    model = (
        "COALESCE(NULLIF(json_extract(p.value, '$.model'), ''), NULLIF(calls.response_model, ''), "
        "calls.request_model)"
    )
    selection = sql.selection([sql.parts + " != '[]'"])
    query = (
        f"SELECT {groups}{model}, json_extract(p.value, '$.usd') FROM calls, json_each({sql.parts}) AS p "
        f"WHERE {selection} ORDER BY +calls.started_at, calls.rowid, p.id"
    )
    out: dict[tuple[Any, ...], dict[str, list[float]]] = {}
    n = len(sql.groups)
    for row in conn.execute(query, sql.params):
        out.setdefault(tuple(row[:n]), {}).setdefault(row[n], []).append(row[n + 1] or 0.0)
    return out


def _merged_counts(dicts: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for counts in dicts:
        for name, count in counts.items():
            merged[name] = merged.get(name, 0) + count
    return merged


def _merged_lists(dicts: Any) -> dict[str, list[float]]:
    merged: dict[str, list[float]] = {}
    for lists in dicts:
        for name, values in lists.items():
            merged.setdefault(name, []).extend(values)
    return merged


# -- the PostgreSQL path ------------------------------------------------------------------------------


def _from_postgres(ledger: Any, selection: _Selection) -> dict[str, Any]:
    """The summary of a PostgreSQL ledger (a ``PostgresLedger`` or its URI, read-only),
    aggregated by the server: the day cells for whole days, the rows for the rest."""
    from tollgate.ledger import postgres as pg

    if isinstance(ledger, str):
        with contextlib.closing(pg.connect(ledger, 10.0, create=False)) as conn:
            return _summarize_postgres(conn, pg.redacted(ledger), selection)
    with ledger.reading() as conn:
        return _summarize_postgres(conn, ledger.label, selection)


def _summarize_postgres(conn: Any, label: str, selection: _Selection) -> dict[str, Any]:
    from tollgate.ledger import postgres as pg

    since, until, names, wanted, bucket, prices, head = selection
    for option, checked in (("group_by", names), ("where", tuple(wanted))):
        problem = pg.unknown_names(conn, checked, since, until)
        if problem is not None:
            raise ValueError(f"{option}: {problem}")
    bucket, width, axis = _axis(bucket, since, until, pg.window(conn, since, until))
    cells = _Cells({}, {}, {}, {})
    n = len(names)
    kinds = {3: cells.groups, 2: cells.over, 1: cells.models}  # grouping(b) + 2 x grouping(m)
    for row in pg.cells(conn, since=since, until=until, where=wanted, group_by=names, width=int(width)):
        target, b, values = kinds[row[0]], row[1], tuple(row[2 : 2 + n])
        key: Any = values
        if target is cells.over:
            if b is None:  # calls whose start is no time (NaN): in the totals, on no axis
                continue
            key = (b, values[0] if n else None)
            for action, count in zip(ACTIONS.values(), row[5 + n + _N : -3], strict=True):
                if count:
                    cells.decisions[(b, action)] = cells.decisions.get((b, action), 0) + int(count)
        elif target is cells.models:
            key = tuple(row[2 + n : 5 + n])
        target[key] = _exact_cell(row[5 + n :])
    return _finish(
        head,
        label,
        names,
        (bucket, width, axis),
        cells,
        _exact,
        lambda unknown, parts: pg.details(conn, names, since, until, wanted),
        prices,
    )


def postgres_report(
    conn: Any,
    *,
    since: float | None = None,
    until: float | None = None,
    where: Mapping[str, Any] | None = None,
    group_by: str | Sequence[str] = (),
) -> tuple[ReportRow, list[ReportRow]]:
    """``build_report``'s ``total`` and ``rows`` for the calls of a PostgreSQL ledger (``conn``,
    a connection to its database) in the period, aggregated by the server (see
    :func:`tollgate.ledger.postgres.cells`); USD exact, rounded once as ``fsum`` rounds."""
    from tollgate.ledger import postgres as pg

    names, wanted = _group_names(group_by), _wanted(where)
    found = pg.cells(conn, since=since, until=until, where=wanted, group_by=names)
    groups = {tuple(row[: len(names)]): _exact_cell(row[len(names) :]) for row in found}
    return _report_rows(
        names, groups, _exact, lambda unknown, parts: pg.details(conn, names, since, until, wanted)
    )


def _exact_cell(stats: Sequence[Any]) -> _Cell:
    """A cell of the server's sums: the counters (then, unused here, the budget actions'), the
    exact USD (``numeric``), the first and last start."""
    cell = _Cell()
    cell.counts = [int(count or 0) for count in stats[:_N]]
    cell.usd.exact = stats[-3]
    cell.add_times(stats[-2], stats[-1])
    return cell


def _exact(usd: _Usd, conditions: Sequence[Condition] = ()) -> float:
    """A sum the server made exactly, rounded once (every cell's has one)."""
    return float(usd.exact) if usd.exact is not None else 0.0


def _ends(groups: Mapping[Any, _Cell]) -> tuple[float | None, float | None]:
    """The start of the first and of the last call the cells hold."""
    firsts = [c.first for c in groups.values() if c.first is not None]
    lasts = [c.last for c in groups.values() if c.last is not None]
    return min(firsts, default=None), max(lasts, default=None)


# -- the summary, from the cells (both paths) ------------------------------------------------------


def _finish(
    head: dict[str, Any],
    label: str,
    names: tuple[str, ...],
    timeline: Axis,
    cells: _Cells,
    resolve: Resolve,
    details: Callable[[bool, bool], Details],
    prices: PriceTable,
) -> dict[str, Any]:
    """The summary from cells aggregated in SQL: the report's rows from the cells by values."""
    report = _report_rows(names, cells.groups, resolve, details)
    return _assemble(head, label, names, timeline, _ends(cells.groups), report, cells, resolve, prices)


def _assemble(
    head: dict[str, Any],
    label: str,
    names: tuple[str, ...],
    timeline: Axis,
    ends: tuple[float | None, float | None],
    report: tuple[ReportRow, list[ReportRow]],
    cells: _Cells,
    resolve: Resolve,
    prices: PriceTable,
) -> dict[str, Any]:
    bucket, width, axis = timeline
    (total, groups), over, models, decisions = report, cells.over, cells.models, cells.decisions
    buckets = [_iso(b * width) for b in axis]
    at = {b: i for i, b in enumerate(axis)}
    by_model: dict[str, _Cell] = {}
    saved: list[float] = []
    for (model, provider, response_model), cell in models.items():
        by_model.setdefault(model, _Cell()).merge(cell)
        if cell.counts[_CACHE_READ]:
            saved.append(cell.counts[_CACHE_READ] * _cache_saving(prices, model, provider, response_model))
    model_rows: list[dict[str, Any]] = []
    for model, cell in by_model.items():
        c = cell.counts
        model_rows.append(
            {
                "model": model,
                "calls": c[_CALLS],
                "usd": resolve(cell.usd, [("model", [model])]),
                "input_tokens": c[_INPUT],
                "output_tokens": c[_OUTPUT],
                "cache_read_tokens": c[_CACHE_READ],
                "cache_write_tokens": c[_CACHE_WRITE],
                "reasoning_tokens": c[_REASONING],
            }
        )
    model_rows.sort(key=lambda m: (-m["usd"], -m["calls"], m["model"]))

    def flagged(index: int) -> list[dict[str, Any]]:
        found = [(model, cell.counts[index]) for model, cell in by_model.items() if cell.counts[index]]
        return [{"model": m, "calls": n} for m, n in sorted(found, key=lambda x: (-x[1], x[0]))]

    t = total
    return {
        "ledger": label,
        **head,
        "bucket": bucket,
        "first": _iso(ends[0]),
        "last": _iso(ends[1]),
        "total": dict(t),
        "groups": [dict(row) for row in groups],
        "over_time": {"buckets": buckets, "series": _series(names, axis, at, over, resolve)},
        "models": model_rows,
        "tokens": {
            "uncached_input": max(0, t["input_tokens"] - t["cache_read_tokens"] - t["cache_write_tokens"]),
            "cache_read": t["cache_read_tokens"],
            "cache_write": t["cache_write_tokens"],
            "output": t["output_tokens"],
            "reasoning": t["reasoning_tokens"],
            "cache_saved_usd": math.fsum(saved),
        },
        "decisions": {
            "buckets": buckets,
            "series": {
                name: [decisions.get((b, action), 0) for b in axis] for name, action in ACTIONS.items()
            },
        },
        "flagged": {
            "estimated_calls": t["estimated_calls"],
            "unpriced_calls": t["unpriced_calls"],
            "unpriced_models": flagged(_UNPRICED),
            "estimated_models": flagged(_ESTIMATED),
        },
    }


def _series(
    names: tuple[str, ...],
    axis: list[int],
    at: dict[int, int],
    over: dict[tuple[int, Any], _Cell],
    resolve: Resolve,
) -> list[dict[str, Any]]:
    """USD and calls per bucket: one series per value of the first group_by name (the
    :data:`TOP_SERIES` most expensive, then ``"other"``), or one ``"all"``."""
    lines: list[tuple[str, list[Any]]] = [("all", [None])]
    line_of: dict[Any, int] = {None: 0}
    if names:
        per_value: dict[Any, _Cell] = {}
        for (_, value), cell in over.items():
            per_value.setdefault(value, _Cell()).merge(cell)
        usd = {v: resolve(cell.usd, [(names[0], [v])]) for v, cell in per_value.items()}
        ranked = sorted(per_value, key=lambda v: (-usd[v], -per_value[v].counts[_CALLS], _sort_key(v)))
        lines = [("(none)" if v is None else str(v), [v]) for v in ranked[:TOP_SERIES]]
        if len(ranked) > TOP_SERIES:
            lines.append(("other", ranked[TOP_SERIES:]))
        line_of = {v: min(i, TOP_SERIES) for i, v in enumerate(ranked)}
    cells: list[dict[int, _Cell]] = [{} for _ in lines]
    for (b, value), cell in over.items():
        cells[line_of[value]].setdefault(b, _Cell()).merge(cell)
    out = []
    for (label, values), by_bucket in zip(lines, cells, strict=True):
        usd_line = [0.0] * len(axis)
        calls = [0] * len(axis)
        for b, cell in by_bucket.items():
            conditions: list[Condition] = [(_BUCKET, [b])] + ([(names[0], values)] if names else [])
            usd_line[at[b]] = resolve(cell.usd, conditions)
            calls[at[b]] = cell.counts[_CALLS]
        out.append({"name": label, "usd": usd_line, "calls": calls})
    return out


def _cache_saving(prices: PriceTable, model: str, provider: str, response_model: str | None) -> float:
    """USD one cache-read token saved: the input price less the cache-read price, of the model
    the call was billed as (its response model when priced, else its request model)."""
    price: ModelPrice | None = None
    for name in (response_model, model) if response_model and response_model != model else (model,):
        entry = prices.lookup(name, provider) if name else None
        if entry is not None and has_price(entry):
            price = entry
            break
    if price is None or price.input is None:
        return 0.0
    read = price.cache_read if price.cache_read is not None else price.input
    return price.input - read
