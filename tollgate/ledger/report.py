"""Cost reports over call records: grouping, filtering, totals, and ``assert_under`` for tests.

``build_report`` aggregates a list of :class:`~tollgate.request.CallRecord` (usually what a
ledger's ``records(since, until)`` returned) into rows; ``parse_time`` reads the ``since`` /
``until`` values users type (``"7d"``, a datetime, an ISO string).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict

from tollgate.request import CallRecord

#: ``group_by`` / ``where`` names that read a record field instead of a tag.
FIELDS: dict[str, Callable[[CallRecord], str]] = {
    "model": lambda r: r.request_model,
    "provider": lambda r: r.provider,
    "operation": lambda r: r.operation,
    "status": lambda r: r.status,
}

#: The numeric columns of a row, in display order.
COUNTERS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usd",
    "unpriced_calls",
    "blocked_calls",
    "errors",
    "estimated_calls",
    "unknown_usage_calls",
    "tool_calls",
)

Where = Mapping[str, Any] | Callable[[CallRecord], bool]


class ReportRow(TypedDict):
    """One group's totals; ``tags`` holds the grouping values (``None`` where a record lacked the tag)."""

    tags: dict[str, str | None]
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    usd: float
    unpriced_calls: int
    blocked_calls: int
    errors: int
    estimated_calls: int
    #: Calls whose usage carried fields tollgate does not know (the drift alarm), and how
    #: many calls carried each field, as ``"<provider>:<field>"``.
    unknown_usage_calls: int
    unknown_usage: dict[str, int]
    #: The tool calls the calls' responses asked for.
    tool_calls: int
    #: USD by the model that ran each part of the calls billed in parts (an advisor, a
    #: compaction step): ``{"claude-opus-4-6": 0.21, ...}``; empty when no call had parts.
    parts_usd: dict[str, float]


class Report:
    """Aggregated calls: iterable over rows (dicts, most expensive first), plus ``total``.

    ``records`` keeps the records the report was built from, so ``assert_under`` can filter
    on any tag, grouped or not.

    >>> recs = [CallRecord(id=str(i), started_at=0.0, ended_at=1.0, provider="openai", operation="chat",
    ...                    request_model="gpt-4o", usd=0.01 * i, tags={"feature": f})
    ...         for i, f in enumerate(["search", "search", "chat"])]
    >>> report = build_report(recs, group_by="feature")
    >>> [(row["tags"]["feature"], row["calls"]) for row in report]
    [('chat', 1), ('search', 2)]
    >>> report.assert_under(usd=0.05, feature="search").total["calls"]
    3
    """

    def __init__(
        self,
        rows: list[ReportRow],
        total: ReportRow,
        group_by: tuple[str, ...],
        records: list[CallRecord],
    ) -> None:
        self.rows = rows
        self.total = total
        self.group_by = group_by
        self.records = records

    def __iter__(self) -> Iterator[ReportRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> ReportRow:
        return self.rows[index]

    def __repr__(self) -> str:
        return (
            f"<Report group_by={list(self.group_by)} rows={len(self.rows)} "
            f"calls={self.total['calls']} usd={_fmt_usd(self.total['usd'])}>"
        )

    def assert_under(
        self,
        usd: float | None = None,
        tokens: int | None = None,
        calls: int | None = None,
        **tag_match: Any,
    ) -> Report:
        """Raise ``AssertionError`` if the matching calls spent more than a limit; return self.

        ``tokens`` counts input plus output tokens. ``tag_match`` selects records by tag (or
        by ``model``/``provider``/``operation``/``status``); a value may be a collection
        meaning "any of". Limits are inclusive: spending exactly the limit passes.

        >>> rec = CallRecord(id="1", started_at=0.0, ended_at=1.0, provider="openai",
        ...                  operation="chat", request_model="gpt-4o", usd=0.08, tags={"feature": "search"})
        >>> build_report([rec]).assert_under(usd=0.05, feature="search")
        Traceback (most recent call last):
        ...
        AssertionError: spend over limit for feature='search': usd $0.08 > limit $0.05 (1 call)
        """
        if usd is None and tokens is None and calls is None:
            raise ValueError("assert_under needs at least one limit: usd=, tokens= or calls=")
        records = [r for r in self.records if _matches(r, tag_match)] if tag_match else self.records
        total = _aggregate(records, {})
        used_tokens = total["input_tokens"] + total["output_tokens"]
        over: list[str] = []
        # Float sums drift (0.1 + 0.2 > 0.3): spend within a rounding error of the limit passes.
        if usd is not None and total["usd"] > usd and not math.isclose(total["usd"], usd, rel_tol=1e-9):
            over.append(f"usd {_fmt_usd(total['usd'])} > limit {_fmt_usd(usd)}")
        if tokens is not None and used_tokens > tokens:
            over.append(f"tokens {used_tokens:,} > limit {tokens:,}")
        if calls is not None and total["calls"] > calls:
            over.append(f"calls {total['calls']:,} > limit {calls:,}")
        if over:
            scope = ", ".join(f"{k}={v!r}" for k, v in tag_match.items()) or "all calls"
            n = total["calls"]
            detail = f"{n:,} call{'s' if n != 1 else ''}"
            if total["unpriced_calls"]:
                detail += f", {total['unpriced_calls']:,} unpriced and not in usd"
            raise AssertionError(f"spend over limit for {scope}: {'; '.join(over)} ({detail})")
        return self

    def printed_usd(self) -> tuple[list[str], str]:
        """The usd column as ``str(report)`` prints it: one amount per row (none without
        ``group_by``) and the total; the amounts add up to the total (see :func:`usd_cells`)."""
        return usd_cells([row["usd"] for row in self.rows] if self.group_by else [], self.total["usd"])

    def to_json(self, indent: int | None = None) -> str:
        """``{"group_by": [...], "rows": [...], "total": {...}}`` as JSON text."""
        data = {"group_by": list(self.group_by), "rows": self.rows, "total": self.total}
        return json.dumps(data, indent=indent)

    def to_csv(self) -> str:
        """One line per row: the grouping names, then the counters (no total line)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.group_by, *COUNTERS])
        for row in self.rows:
            tags = [row["tags"].get(name) for name in self.group_by]
            writer.writerow(["" if v is None else v for v in tags] + [row[c] for c in COUNTERS])  # type: ignore[literal-required]
        return out.getvalue()

    def __str__(self) -> str:
        # Optional counters are shown only when some call has them, to keep the table narrow.
        always = {"calls", "input_tokens", "output_tokens", "usd"}
        counters = [c for c in COUNTERS if c in always or self.total[c]]  # type: ignore[literal-required]
        labels = list(self.group_by) or [""]
        header = labels + [_HEADERS[c] for c in counters]
        shown = self.rows if self.group_by else []
        usd, total_usd = self.printed_usd()
        lines: list[list[str]] = []
        for row, row_usd in zip(shown, usd, strict=True):
            tags = [_fmt_tag(row["tags"].get(name)) for name in self.group_by]
            lines.append(tags + [row_usd if c == "usd" else _fmt_count(row[c]) for c in counters])  # type: ignore[literal-required]
        total = ["TOTAL"] + [""] * (len(labels) - 1)
        lines.append(total + [total_usd if c == "usd" else _fmt_count(self.total[c]) for c in counters])  # type: ignore[literal-required]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

        def render(cells: list[str]) -> str:
            parts = [
                cell.ljust(width) if i < len(labels) else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        rule = "-" * len(render(header))
        body = [render(cells) for cells in lines[:-1]]
        table = [render(header), rule, *body, *([rule] if body else []), render(lines[-1])]
        unknown = self.total["unknown_usage"]
        if unknown:
            fields = ", ".join(
                f"{name} ({n:,} call{'s' if n != 1 else ''})" for name, n in sorted(unknown.items())
            )
            table.append(f"usage fields tollgate does not know (cost may be short): {fields}")
        return "\n".join(table)


_HEADERS = {
    "calls": "calls",
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cache read",
    "cache_write_tokens": "cache write",
    "reasoning_tokens": "reasoning",
    "usd": "usd",
    "unpriced_calls": "unpriced",
    "blocked_calls": "blocked",
    "errors": "errors",
    "estimated_calls": "estimated",
    "unknown_usage_calls": "unknown usage",
    "tool_calls": "tool calls",
}


def build_report(
    records: Sequence[CallRecord],
    group_by: str | Sequence[str] | None = None,
    where: Where | None = None,
) -> Report:
    """Aggregate ``records`` into a :class:`Report`, one row per distinct ``group_by`` value.

    ``group_by`` is a tag name, a list of them, or ``"model"`` (the requested model),
    ``"provider"``, ``"operation"``, ``"status"``; a record without a tag groups under
    ``None``. Without ``group_by`` there is one row (none when there are no records).
    ``where`` keeps the records matching a dict of name -> value (a collection value means
    "any of") or a callable returning true. Rows are sorted by usd, highest first. Credit
    top-ups (operation ``top_up``) are not calls: :func:`tollgate.records` lists them.

    >>> rec = CallRecord(id="1", started_at=0.0, ended_at=1.0, provider="openai",
    ...                  operation="chat", request_model="gpt-4o", usd=0.5, priced=True)
    >>> build_report([rec], group_by=["model", "tenant"]).rows[0]["tags"]
    {'model': 'gpt-4o', 'tenant': None}
    """
    names = _group_names(group_by)
    # A credit top-up (tollgate.top_up) is in the ledger for the record, but it is no call.
    selected = [r for r in select(records, where) if r.operation != "top_up"]
    groups: dict[tuple[str | None, ...], list[CallRecord]] = {}
    for record in selected:
        groups.setdefault(tuple(_value(record, name) for name in names), []).append(record)
    rows = [_aggregate(members, dict(zip(names, key, strict=True))) for key, members in groups.items()]
    rows.sort(key=lambda row: (-row["usd"], -row["calls"], [_sort_key(row["tags"][n]) for n in names]))
    return Report(rows, _aggregate(selected, {}), names, selected)


def select(records: Sequence[CallRecord], where: Where | None) -> list[CallRecord]:
    """The ``records`` that ``where`` keeps: a dict of name -> value (a collection value means
    "any of"; names as in ``group_by``) or a callable returning true; None keeps them all.

    >>> recs = [CallRecord(id=str(i), started_at=0.0, ended_at=1.0, provider="openai", operation="chat",
    ...                    request_model="gpt-4o", tags={"tenant": t}) for i, t in enumerate("aba")]
    >>> [r.id for r in select(recs, {"tenant": "a"})]
    ['0', '2']
    """
    if where is None:
        return list(records)
    if callable(where):
        return [r for r in records if where(r)]
    if isinstance(where, Mapping):
        return [r for r in records if _matches(r, where)]
    raise ValueError(
        f"where={where!r}: give a dict of tag name to value, e.g. where={{'tenant': 'acme'}}, "
        "or a function of a CallRecord returning True for the records to keep"
    )


def unknown_tag(records: Sequence[CallRecord], names: Iterable[str]) -> str | None:
    """A one-line message about the first of ``names`` that none of ``records`` carries as a
    tag (nor is a record field such as ``model``), naming the tags they do carry and the
    closest one; None when every name is known, or when there are no records to tell by.

    >>> rec = CallRecord(id="1", started_at=0.0, ended_at=1.0, provider="openai",
    ...                  operation="chat", request_model="gpt-4o", tags={"tenant": "acme"})
    >>> print(unknown_tag([rec], ["tenat"]))  # doctest: +ELLIPSIS
    no call has a tag 'tenat' (did you mean 'tenant'?); tags seen: tenant (and model, provider, ...)
    """
    if not records:
        return None
    return unknown_name({name for r in records for name in r.tags}, names)


def unknown_name(seen: Collection[str], names: Iterable[str]) -> str | None:
    """:func:`unknown_tag` given the tag names the calls carry (a database's distinct keys)."""
    for name in names:
        if name in seen or name in FIELDS:
            continue
        close = difflib.get_close_matches(name, [*seen, *FIELDS], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        tags = ", ".join(sorted(seen)) or "none"
        return f"no call has a tag {name!r}{hint}; tags seen: {tags} (and {', '.join(FIELDS)})"
    return None


def parse_time(value: Any, *, now: float | None = None) -> float | None:
    """Read a ``since``/``until`` value as Unix epoch seconds (``None`` stays ``None``).

    Accepts epoch seconds (int, float, or a numeric string), a ``datetime`` (naive means
    UTC), a ``date`` (midnight UTC), a ``timedelta`` or a duration string meaning "that long
    before now" (``"90s"``, ``"30m"``, ``"24h"``, ``"7d"``, ``"2w"``), or an ISO-8601 string.

    >>> parse_time("2024-01-01T00:00:00Z")
    1704067200.0
    >>> parse_time("2h", now=10_000.0)
    2800.0
    >>> parse_time(timedelta(minutes=1), now=100.0)
    40.0
    """
    if value is None:
        return None
    current = time.time() if now is None else now
    if isinstance(value, bool):
        pass  # bool is an int, but True is surely not a timestamp
    elif isinstance(value, int | float):
        if math.isfinite(value):
            return float(value)
    elif isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    elif isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    elif isinstance(value, timedelta):
        return current - value.total_seconds()
    elif isinstance(value, str):
        text = value.strip()
        match = _DURATION.fullmatch(text)
        if match:
            return current - float(match[1]) * _UNIT_SECONDS[match[2].lower()]
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return parse_time(parsed)
    raise ValueError(
        f"cannot read {value!r} as a time: expected epoch seconds, a datetime, a timedelta, "
        f"a duration like '90s', '30m', '24h', '7d', '2w', or an ISO-8601 date-time"
    )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdwSMHDW])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _group_names(group_by: str | Sequence[str] | None) -> tuple[str, ...]:
    if group_by is None:
        return ()
    names = (group_by,) if isinstance(group_by, str) else tuple(group_by)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"group_by must be a tag name or a list of them, got {group_by!r}")
    return tuple(dict.fromkeys(names))


def _value(record: CallRecord, name: str) -> str | None:
    field = FIELDS.get(name)
    return field(record) if field is not None else record.tags.get(name)


def _matches(record: CallRecord, wanted: Mapping[str, Any]) -> bool:
    for name, expected in wanted.items():
        actual = _value(record, name)
        options = expected if _is_collection(expected) else (expected,)
        if not any(actual == option or (option is not None and actual == str(option)) for option in options):
            return False
    return True


def _is_collection(value: Any) -> bool:
    return isinstance(value, Collection) and not isinstance(value, str | bytes | Mapping)


def _aggregate(records: Sequence[CallRecord], tags: dict[str, str | None]) -> ReportRow:
    row = ReportRow(
        tags=tags,
        calls=len(records),
        input_tokens=0,
        output_tokens=0,
        cache_read_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=0,
        usd=0.0,
        unpriced_calls=0,
        blocked_calls=0,
        errors=0,
        estimated_calls=0,
        unknown_usage_calls=0,
        unknown_usage={},
        tool_calls=0,
        parts_usd={},
    )
    usd: list[float] = []
    parts: dict[str, list[float]] = {}
    for r in records:
        u = r.usage
        row["input_tokens"] += u.input_tokens
        row["output_tokens"] += u.output_tokens
        row["cache_read_tokens"] += u.cache_read_tokens
        row["cache_write_tokens"] += u.cache_write_tokens
        row["reasoning_tokens"] += u.reasoning_tokens
        usd.append(r.usd)
        row["unpriced_calls"] += not r.priced
        row["blocked_calls"] += r.status == "blocked"
        row["errors"] += r.status == "error"
        row["estimated_calls"] += r.estimated
        row["tool_calls"] += r.tool_calls
        if u.unknown:
            row["unknown_usage_calls"] += 1
            for name in u.unknown:
                key = f"{r.provider}:{name}"
                row["unknown_usage"][key] = row["unknown_usage"].get(key, 0) + 1
        for part in u.parts:
            parts.setdefault(part.model or r.response_model or r.request_model, []).append(part.usd or 0.0)
    row["usd"] = math.fsum(usd)  # exact sum: totals must not depend on record order
    row["parts_usd"] = {model: math.fsum(values) for model, values in parts.items()}
    return row


def _sort_key(value: str | None) -> tuple[bool, str]:
    return (value is None, "" if value is None else str(value))


def _fmt_usd(value: float) -> str:
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return f"${text}" if value else "$0"


def _fmt_tag(value: str | None) -> str:
    return "(none)" if value is None else str(value)


def _fmt_count(value: float) -> str:
    return f"{int(value):,}"


def usd_cells(values: Sequence[float], total: float) -> tuple[list[str], str]:
    """USD amounts and their total as a table prints them, so that the amounts printed add up
    to the total printed: each to the fewest decimals, 6 to 9, at which they do (a cost is a
    count of tokens times a price of a few significant digits, so one of those is exact). Only
    past that do the amounts with the largest remainders round up instead of down.

    >>> usd_cells([0.0000125, 0.0000125], 0.000025)  # at 6 decimals they would not add up
    (['$0.0000125', '$0.0000125'], '$0.0000250')
    >>> usd_cells([], 0.5)
    ([], '$0.500000')
    >>> usd_cells([1 / 3e3] * 3, 1e-3)
    (['$0.000333334', '$0.000333333', '$0.000333333'], '$0.001000000')
    """
    for places in range(6, 10):
        scale = 10**places
        total_units = round(total * scale)
        units = [round(value * scale) for value in values]
        if not units or sum(units) == total_units:
            break
    else:
        units = [math.floor(value * scale) for value in values]
        by_remainder = sorted(range(len(values)), key=lambda i: units[i] - values[i] * scale)
        for i in by_remainder[: total_units - sum(units)]:
            units[i] += 1

    def cell(amount: int) -> str:
        whole, fraction = divmod(amount, scale)
        return f"${whole:,}.{fraction:0{places}d}"

    return [cell(u) for u in units], cell(total_units)
