"""The ledger: where every call's :class:`~tollgate.request.CallRecord` goes, and what reports read.

Pick a backend by URI with :func:`open_ledger`: ``"memory://"`` (a bounded in-process ring
buffer, the default), ``"sqlite:///path.db"`` (a file shared by the processes of one machine) or
``"postgresql://user@host/db"`` (one table for a fleet: :class:`~tollgate.ledger.postgres.PostgresLedger`,
psycopg 3 needed) or ``"https://host/path"`` (an :class:`HttpSink` POSTing batches to that
endpoint, with headers from ``$TOLLGATE_SINK_HEADERS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from tollgate.ledger.base import Ledger
from tollgate.ledger.memory import MemoryLedger
from tollgate.ledger.report import Report, ReportRow, build_report, parse_time
from tollgate.ledger.sqlite import SQLiteLedger

if TYPE_CHECKING:
    from tollgate.ledger.http import HttpSink

__all__ = [
    "HttpSink",
    "Ledger",
    "MemoryLedger",
    "Report",
    "ReportRow",
    "SQLiteLedger",
    "build_report",
    "open_ledger",
    "parse_time",
]

_SCHEMES = (
    "'memory://' (optionally '?maxlen=N'), 'sqlite:///path.db' ('sqlite:////abs/path.db'), "
    "'postgresql://user@host/db' or an 'https://' / 'http://' endpoint URL"
)


def open_ledger(uri: str) -> Ledger:
    """The ledger a URI names.

    ``memory://`` (``memory://?maxlen=N`` to bound it differently); ``sqlite:///rel/path.db``
    for a path relative to the working directory, ``sqlite:////abs/path.db`` for an absolute
    one, ``sqlite:///:memory:`` for a private in-memory database; ``https://host/path`` (or
    ``http://``) for an :class:`HttpSink` sending to that exact URL, with the headers in the
    ``TOLLGATE_SINK_HEADERS`` environment variable (a JSON object, e.g.
    ``{"Authorization": "Bearer <token>"}``).

    >>> open_ledger("memory://?maxlen=10").maxlen
    10
    >>> open_ledger("ftp://x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown ledger URI 'ftp://x': use 'memory://' ... or an 'https://' / 'http://' endpoint URL
    """
    if not isinstance(uri, str):
        raise ValueError(f"ledger URI must be a string like {_SCHEMES}, got {uri!r}")
    if uri == "memory://" or uri.startswith("memory://?"):
        options = dict(parse_qsl(uri.partition("?")[2], keep_blank_values=True))
        unknown = set(options) - {"maxlen"}
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ValueError(f"ledger URI {uri!r}: unknown option(s) {names}; only maxlen is accepted")
        if "maxlen" not in options:
            return MemoryLedger()
        try:
            maxlen = int(options["maxlen"])
        except ValueError:
            raise ValueError(f"ledger URI {uri!r}: maxlen must be an integer") from None
        return MemoryLedger(maxlen=maxlen)
    if uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"):
        return SQLiteLedger(uri[len("sqlite:///") :])
    if uri.startswith(("postgresql://", "postgres://")):
        from tollgate.ledger.postgres import PostgresLedger

        return PostgresLedger(uri)
    if uri.startswith(("https://", "http://")):
        from tollgate.ledger.http import HttpSink

        return HttpSink.from_env(uri)
    raise ValueError(f"unknown ledger URI {uri!r}: use {_SCHEMES}")


def __getattr__(name: str) -> Any:
    # HttpSink is imported when first used: urllib.request costs ~25 ms at import.
    if name == "HttpSink":
        from tollgate.ledger.http import HttpSink

        return HttpSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
