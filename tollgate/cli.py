"""The ``tollgate`` command: reports, a live dashboard, prices, estimates, standing limits and the
offline demo.

    tollgate report --ledger sqlite:///tollgate.db --group-by feature,user_id --since 7d
    tollgate report --ledger sqlite:///tollgate.db --group-by feature --html report.html
    tollgate dashboard --ledger sqlite:///tollgate.db --store sqlite:///tollgate.db
    tollgate prices gpt-4o
    tollgate estimate gpt-4o --messages chat.json --max-tokens 500
    tollgate limits --store sqlite:///tollgate.db
    tollgate limits set --usd 50 --per month tenant=acme
    tollgate limits raise --usd 80 --until 7d tenant=acme
    tollgate limits remove tenant=acme
    tollgate demo

Exit status: 0 on success, 1 when the command could not do its work (a missing or foreign
database, an unreadable file, a store that cannot be reached), 2 for a usage mistake, 130 when
interrupted. Errors are one line on stderr, never a traceback.

This module is not imported by ``import tollgate``; ``python -m tollgate`` and the
``tollgate`` console script both run :func:`main`.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

DEFAULT_LEDGER = "sqlite:///tollgate.db"
DEFAULT_STORE = "sqlite:///tollgate.db"
DEMO_LEDGER = "sqlite:///tollgate-demo.db"  # tollgate.demo.DEFAULT_LEDGER, without importing the demo

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CommandError(Exception):
    """A command could not do its work; the message is printed as one line, exit status 1."""


class UsageError(CommandError):
    """The command was given something it cannot take: one line, exit status 2, as argparse's."""


# -- output helpers ------------------------------------------------------------------------------


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, also_left: Sequence[int] = ()
) -> str:
    """Plain aligned columns: the first ``left`` columns (and ``also_left``) left-aligned, the
    others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left or i in also_left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    line = render(header)
    return "\n".join([line, "-" * len(line), *(render(r) for r in rows)])


def _usd(value: float) -> str:
    return f"${value:,.6f}"


def _amount(value: float) -> str:
    """A limit as people write it: $50, $0.002."""
    return "$" + f"{value:,.6f}".rstrip("0").rstrip(".")


def _per_million(value: float | None) -> str:
    if value is None:
        return "-"
    text = f"{value * 1e6:,.4f}".rstrip("0").rstrip(".")
    return f"${text}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


# -- ledger and store URIs -----------------------------------------------------------------------


def _sqlite_path(uri: str) -> str | None:
    return uri[len("sqlite:///") :] if uri.startswith("sqlite:///") and uri != "sqlite:///" else None


def _open_existing_ledger(uri: str) -> Any:
    """The ledger ``uri`` names; a missing SQLite file is an error here (a report never creates one)."""
    from tollgate.ledger import open_ledger

    path = _sqlite_path(uri)
    if path is not None and path != ":memory:" and not Path(path).is_file():
        what = "is a folder" if Path(path).is_dir() else "does not exist"
        raise CommandError(
            f"no ledger at {path!r} ({uri}): the file {what}. Point --ledger at the file "
            "your application writes (tollgate.configure(ledger='sqlite:///...'))"
        )
    if path is not None and path != ":memory:":
        _check_ledger_file(path)
    if uri.startswith(("postgresql://", "postgres://")):  # a database with no ledger: refused, not given one
        from tollgate.ledger.postgres import connect

        try:
            connect(uri, 10.0, create=False).close()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    try:
        return open_ledger(uri)
    except ValueError as exc:
        raise _uri_error(exc) from None


def _uri_error(exc: ValueError) -> CommandError:
    """A URI of no known kind is a usage mistake (2); a file that cannot be opened, a failure (1)."""
    unknown = str(exc).startswith("unknown ")  # open_ledger / open_store: "unknown ledger URI ..."
    return (UsageError if unknown else CommandError)(str(exc))


def _sqlite_tables(path: str, what: str) -> list[str]:
    """The tables of an SQLite file, read-only (so a foreign file is never changed)."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            return [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CommandError(f"{path!r} is not a tollgate {what}: {exc}") from None


def _check_ledger_file(path: str) -> None:
    """Refuse a file that holds no ledger: opening it as one would add a table to it."""
    tables = _sqlite_tables(path, "ledger")
    if "calls" in tables:
        return  # the ledger checks its columns and schema version itself
    if "tollgate_limits" in tables:
        raise CommandError(
            f"{path!r} is not a tollgate ledger: it holds a budget store's tables but no 'calls' table"
        )
    found = f"its tables are {', '.join(sorted(tables))}" if tables else "it has no tables"
    raise CommandError(f"{path!r} is not a tollgate ledger: it has no 'calls' table ({found})")


def _open_store(uri: str, *, must_exist: bool) -> Any:
    """The store ``uri`` names, or None when ``must_exist`` and the SQLite file has no store tables."""
    from tollgate.stores import open_store

    path = _sqlite_path(uri)
    if path is not None and path != ":memory:" and Path(path).exists():
        tables = _sqlite_tables(path, "store")
        if must_exist and "tollgate_limits" not in tables:
            return None
    elif must_exist and path is not None and path != ":memory:":
        raise CommandError(f"no store at {path!r} ({uri}): the file does not exist")
    try:
        return open_store(uri)
    except ValueError as exc:
        raise _uri_error(exc) from None


# -- report --------------------------------------------------------------------------------------


def _parse_where(items: Sequence[str]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--where {item!r}: use NAME=VALUE, e.g. --where tenant=acme")
        where.setdefault(name, []).append(value)
    return where


def _names(text: str | None) -> list[str]:
    """``--group-by tenant,feature``: the names, in order."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    """Spend from a ledger, grouped by tags: as text, JSON, CSV or an HTML page."""
    from tollgate.ledger import build_report
    from tollgate.ledger.report import unknown_tag

    since, until = _parse_time("--since", args.since), _parse_time("--until", args.until)
    group_by = _names(args.group_by)
    where = _parse_where(args.where)
    if args.html is not None:
        return _html_report(args, out, since=since, until=until, group_by=group_by, where=where)
    if args.ledger.startswith(("postgresql://", "postgres://")):
        report = _postgres_report(args.ledger, since=since, until=until, group_by=group_by, where=where)
    else:
        ledger = _open_existing_ledger(args.ledger)
        try:
            try:
                records = ledger.records(since, until)
            except Exception as exc:  # sqlite3 errors from a damaged file
                raise CommandError(f"cannot read the ledger {args.ledger}: {exc}") from None
        finally:
            ledger.close()
        for option, names in (("--group-by", group_by), ("--where", where)):
            problem = unknown_tag(records, names)
            if problem is not None:
                raise UsageError(f"{option}: {problem}")
        report = build_report(records, group_by=group_by or None, where=where or None)
    if args.format == "json":
        out.write(report.to_json(indent=2) + "\n")
    elif args.format == "csv":
        out.write(report.to_csv())
    else:
        if not report.total["calls"]:
            window = f" since {args.since}" if args.since else ""
            out.write(f"no calls in {args.ledger}{window}\n")
            return EXIT_OK
        out.write(str(report) + "\n")
        total = report.total
        n = total["calls"]
        summary = [
            f"{n:,} call{'s' if n != 1 else ''}",
            f"{total['input_tokens'] + total['output_tokens']:,} tokens",
            report.printed_usd()[1],  # as the table's TOTAL says it
            f"{total['blocked_calls']:,} blocked",
            f"{total['unpriced_calls']:,} unpriced",
        ]
        if total["errors"]:
            summary.append(f"{total['errors']:,} failed")
        out.write("\n" + ", ".join(summary) + "\n")
    return EXIT_OK


def _postgres_report(uri: str, **options: Any) -> Any:
    """The report of a PostgreSQL ledger, aggregated by the server (ten million rows in about
    a second): read-only, a database without a tollgate ledger is refused, not given one."""
    from tollgate.ledger.postgres import connect, unknown_names
    from tollgate.ledger.report import Report
    from tollgate.ledger.summary import postgres_report

    try:
        conn = connect(uri, 10.0, create=False)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        for option, names in (("--group-by", options["group_by"]), ("--where", list(options["where"]))):
            problem = unknown_names(conn, names, options["since"], options["until"])
            if problem is not None:
                raise UsageError(f"{option}: {problem}")
        total, rows = postgres_report(conn, **options)
    except (UsageError, CommandError):
        raise
    except Exception as exc:
        raise CommandError(f"cannot read the ledger {uri}: {exc}") from None
    finally:
        conn.close()
    return Report(rows, total, tuple(options["group_by"]), [])


def _html_target(path: str) -> Path | None:
    """``--html FILE``: where the page goes (None: stdout), checked before the ledger is read;
    a file in a folder that does not exist is a usage mistake (a typo would lose the page)."""
    if path == "-":
        return None
    target = Path(path)
    if target.is_dir():
        raise UsageError(
            f"--html {path!r} is a folder: give a file name, e.g. --html {target / 'report.html'}"
        )
    folder = target.parent
    if not folder.is_dir():
        raise UsageError(
            f"--html {path!r}: the folder {str(folder)!r} does not exist; create it first "
            f"(mkdir -p {shlex.quote(str(folder))}) or write the page to a folder that exists"
        )
    return target


def _summary(ledger: Any, uri: str, **options: Any) -> dict[str, Any]:
    """``summarize(ledger, **options)`` with the ledger named as the user wrote it; its refusals
    worded as the text report words them."""
    from tollgate.ledger.summary import summarize

    try:
        summary = summarize(ledger, **options)
    except ValueError as exc:
        message = str(exc)
        for name in ("group_by", "where"):  # a name no call has, with the closest: a usage mistake
            if message.startswith(f"{name}: "):
                raise UsageError(f"--{name.replace('_', '-')}{message[len(name) :]}") from None
        raise CommandError(message) from None
    except Exception as exc:  # sqlite3 errors from a damaged file
        raise CommandError(f"cannot read the ledger {uri}: {exc}") from None
    summary["ledger"] = uri
    return summary


def _html_report(
    args: argparse.Namespace,
    out: TextIO,
    *,
    since: float | None,
    until: float | None,
    group_by: list[str],
    where: dict[str, list[str]],
) -> int:
    """``report --html FILE``: the page of :mod:`tollgate.html` for the same selection; its
    figures are the text report's, to the digit."""
    from tollgate import html

    if args.format is not None:
        raise UsageError(f"--html writes a page: leave out --format {args.format}")
    target = _html_target(args.html)
    ledger = _open_existing_ledger(args.ledger)
    try:
        summary = _summary(
            ledger, args.ledger, since=since, until=until, where=where or None, group_by=group_by
        )
    finally:
        ledger.close()
    page = html.render_report(summary, title="tollgate report")
    if target is None:
        out.write(page)
        return EXIT_OK
    # Written whole, then moved into place: a browser reloading the file never sees half a page.
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise CommandError(f"cannot write {args.html!r}: {exc.strerror or exc}") from None
    calls = int((summary.get("total") or {}).get("calls") or 0)
    usd = html.page_data(summary)["headline"]["usd"]
    out.write(f"wrote {args.html} ({calls:,} call{'s' if calls != 1 else ''}, {usd})\n")
    return EXIT_OK


def _parse_time(option: str, value: str | None) -> float | None:
    from tollgate.ledger import parse_time

    try:
        return parse_time(value)
    except ValueError:
        raise UsageError(
            f"{option} {value!r}: give a duration before now (90s, 30m, 24h, 7d, 2w), "
            "an ISO date-time (2026-01-31 or 2026-01-31T08:00) or epoch seconds"
        ) from None


# -- dashboard -----------------------------------------------------------------------------------


class _StoreLimits:
    """The standing limits of the store at ``uri`` as ``/limits.json`` serves them, read as
    ``tollgate limits`` reads them. Nothing is created: a file without a store's tables is
    looked at again on each reading, so limits set while the dashboard runs appear."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._store = _open_store(uri, must_exist=True)

    def __call__(self) -> dict[str, Any]:
        if self._store is None:
            self._store = _open_store(self.uri, must_exist=True)
        rows = []
        if self._store is not None:
            rows = [_limit_row(self._store, i, d) for i, d in sorted(self._store.limits()[1].items())]
        table = _limits_table(rows) if rows else f"no standing limits in {self.uri}"
        return {"store": self.uri, "limits": rows, "table": table}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _dashboard_store(args: argparse.Namespace) -> _StoreLimits | None:
    """The store whose standing limits the dashboard shows (None: none).

    A store named by ``--store`` or ``$TOLLGATE_STORE`` must exist (exit 1, as ``tollgate
    limits``); the default file, when missing, only means no limits are shown."""
    named = args.store or os.environ.get("TOLLGATE_STORE")
    uri = named or DEFAULT_STORE
    path = _sqlite_path(uri)
    if not named and path is not None and path != ":memory:" and not Path(path).is_file():
        return None
    return _StoreLimits(uri)


def cmd_dashboard(args: argparse.Namespace, out: TextIO) -> int:
    """A local, read-only web page of the ledger's spend and the store's standing limits."""
    from tollgate import dashboard
    from tollgate.ledger import parse_time

    _parse_time("--since", args.since)  # checked now; a span is measured from each request's now
    group_by, where = _names(args.group_by), _parse_where(args.where)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: give a port from 1 to 65535, or 0 for a free one")
    ledger = _open_existing_ledger(args.ledger)
    # An SQLite ledger is read by its URI: each summary opens the file read-only, so the
    # dashboard holds no connection that could write; another kind is read through its object.
    source = args.ledger if _sqlite_path(args.ledger) is not None else ledger
    if source is not ledger:
        ledger.close()
    limits = None
    try:
        limits = _dashboard_store(args)

        def summary() -> dict[str, Any]:
            since = parse_time(args.since)  # "24h" moves with the clock
            return _summary(source, args.ledger, since=since, where=where or None, group_by=group_by)

        summary()  # a --group-by or --where name no call has is refused now, not on the page
        store_uri = limits.uri if limits is not None else None
        board = dashboard.Dashboard(summary, ledger=args.ledger, limits=limits, store=store_uri)
        try:
            server = dashboard.make_server(board, args.host, args.port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        if not dashboard.is_loopback(args.host):
            print(
                f"tollgate dashboard: warning: listening on {args.host}, not 127.0.0.1: the dashboard has "
                "no authentication, so anyone who can reach this port can read the spend and the limits",
                file=sys.stderr,
            )
        shows = f"{args.ledger}" + (f" and the standing limits in {store_uri}" if store_uri else "")
        try:  # from here on Ctrl-C is how it stops: exit 0
            out.write(f"tollgate dashboard: {server.url} shows {shows} (read-only; Ctrl-C stops it)\n")
            out.flush()
            server.serve_forever()
        except KeyboardInterrupt:
            out.write("tollgate dashboard: stopped\n")
        finally:
            server.server_close()
    finally:
        ledger.close()
        if limits is not None:
            limits.close()
    return EXIT_OK


# -- prices --------------------------------------------------------------------------------------


def _matches(name: str, pattern: str) -> bool:
    name, pattern = name.lower(), pattern.lower()
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name.split("/")[-1], pattern)
    return pattern in name


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _source_checkout() -> Path | None:
    """The source checkout this tollgate runs from (it has the price script), or None."""
    root = Path(__file__).resolve().parent.parent
    script = root / "scripts" / "update_prices.py"
    return root if script.is_file() and (root / "pyproject.toml").is_file() else None


def _update_prices(output: str | None, out: TextIO) -> int:
    root = _source_checkout()
    if root is None:
        raise CommandError(
            "--update regenerates the price table in a source checkout of tollgate, and this copy "
            f"is installed ({Path(__file__).resolve().parent}): for newer prices upgrade it "
            "(pip install --upgrade tollgate-llm), or price a model yourself with "
            "tollgate.configure(prices={'my-model': {'input': 1e-06, 'output': 2e-06}})"
        )
    script = root / "scripts" / "update_prices.py"
    spec = importlib.util.spec_from_file_location("tollgate_update_prices", script)
    assert spec is not None and spec.loader is not None
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.find_source() is None:
        raise CommandError("tollgate prices --update reads litellm's cost map: pip install litellm")
    out.write("regenerating the price table from the installed litellm cost map...\n")
    out.flush()
    code: int = module.main(["--output", output] if output else [])
    return code


def cmd_prices(args: argparse.Namespace, out: TextIO) -> int:
    """The bundled price table, or part of it."""
    if args.update:
        if args.pattern is not None:
            raise UsageError(f"--update regenerates the whole table: leave out {args.pattern!r}")
        return _update_prices(args.output, out)
    from tollgate.pricing import default_table

    table = default_table()
    prices = [
        p
        for p in table
        if (args.pattern is None or _matches(p.model, args.pattern))
        and (args.provider is None or p.provider.lower() == args.provider.lower())
        and (args.all or p.input is not None or p.output is not None)
    ]
    # A model's own name shows the price tollgate bills it at, not every name containing it.
    named = args.pattern is not None and not _is_glob(args.pattern)
    exact = table.lookup(args.pattern, args.provider) if named else None
    others = [p for p in prices if p is not exact]
    if exact is not None:
        prices = [exact]
    prices.sort(key=lambda p: (p.provider, p.model))
    meta = table.metadata
    if args.format == "json":
        from dataclasses import asdict

        unset = (None, (), False)  # False == 0: a listed price of 0.0 is kept
        entries = [{k: v for k, v in asdict(p).items() if not any(v is u for u in unset)} for p in prices]
        out.write(json.dumps({"metadata": dict(meta), "models": entries}, indent=2) + "\n")
        return EXIT_OK
    if not prices:
        raise CommandError(f"no model in the price table matches {args.pattern!r}{_close_model(table, args)}")
    header = ["model", "provider", "input", "output", "cache read", "cache write", "reasoning"]
    header += ["max input", "max output"]
    rows = [
        [
            p.model,
            p.provider,
            _per_million(p.input),
            _per_million(p.output),
            _per_million(p.cache_read),
            _per_million(p.cache_write),
            _per_million(p.reasoning),
            _count(p.max_input_tokens),
            _count(p.max_output_tokens),
        ]
        for p in prices
    ]
    out.write(_table(header, rows, left=2) + "\n")
    version = meta.get("litellm_version")
    source = f"{meta.get('source', 'bundled table')}" + (f" {version}" if version else "")
    out.write(
        f"\n{len(prices):,} model{'s' if len(prices) != 1 else ''}; USD per 1M tokens; "
        f"from {source}, generated {meta.get('generated', '?')}\n"
    )
    if exact is not None and others:
        provider = f" --provider {args.provider}" if args.provider else ""
        out.write(
            f"{len(others):,} more model{'s' if len(others) != 1 else ''} contain {args.pattern!r} "
            f"(other providers, snapshots, variants): tollgate prices '*{args.pattern}*'{provider}\n"
        )
    return EXIT_OK


def _close_model(table: Any, args: argparse.Namespace) -> str:
    """`` (did you mean 'gpt-4o'?)`` for a mistyped model name, else ``""``."""
    import difflib

    if args.pattern is None or _is_glob(args.pattern):
        return ""
    names = {p.model.lower().split("/")[-1] for p in table}
    close = difflib.get_close_matches(args.pattern.lower(), names, n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- estimate ------------------------------------------------------------------------------------


def _read_messages(path: str) -> tuple[list[dict[str, Any]], list[Any]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path!r} is not JSON: {exc}") from None
    tools: list[Any] = []
    if isinstance(data, dict):  # a whole request body: {"model": ..., "messages": [...], "tools": [...]}
        tools = list(data.get("tools") or [])
        data = data.get("messages")
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise CommandError(
            f"{path!r}: expected a JSON list of messages, e.g. "
            '[{"role": "user", "content": "hi"}], or an object with a "messages" list'
        )
    return data, tools


def cmd_estimate(args: argparse.Namespace, out: TextIO) -> int:
    """Worst-case tokens and USD of a chat call, with no network call."""
    import tollgate

    if args.max_tokens is not None and args.max_tokens < 0:
        raise UsageError(f"--max-tokens {args.max_tokens}: give zero or more tokens, e.g. --max-tokens 500")
    messages, tools = _read_messages(args.messages)
    tollgate.configure(on_unpriced="ignore")
    est = tollgate.estimate(
        args.model, messages, max_tokens=args.max_tokens, provider=args.provider, tools=tools
    )
    if args.format == "json":
        data = {
            "model": args.model,
            "input_tokens": est.input_tokens,
            "output_tokens": est.output_tokens,
            "usd": est.usd if est.priced else None,
            "priced": est.priced,
        }
        out.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    cap = "--max-tokens" if args.max_tokens is not None else "the model's maximum output"
    out.write(f"model          {args.model}\n")
    out.write(f"input tokens   {est.input_tokens:,}\n")
    out.write(f"output tokens  {est.output_tokens:,} (at most: {cap})\n")
    if est.priced:
        out.write(f"usd            {_usd(est.usd)} (worst case)\n")
    else:
        out.write("usd            unknown: no price for this model (tollgate.configure(prices=...))\n")
    return EXIT_OK


# -- limits --------------------------------------------------------------------------------------


def _parse_match(items: Sequence[str]) -> dict[str, str]:
    match: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"{item!r}: give the tags the limit applies to as NAME=VALUE, e.g. tenant=acme")
        match[name] = value
    if not match:
        raise UsageError("name the calls the limit applies to, e.g. tenant=acme")
    return match


def _select_limit(store: Any, tags: Mapping[str, str], uri: str) -> tuple[str, dict[str, str] | None]:
    """The standing limit ``tags`` name (its match, then values of its key tags): its id, and
    the key values that say whose counter (None: a keyed limit, and no key values given)."""
    from tollgate.budgets.standing import limit_id, parse

    _, documents = store.limits()
    exact = limit_id(tags)
    found: list[tuple[str, dict[str, str]]] = [(exact, {})] if exact in documents else []
    for ident, document in [] if found else sorted(documents.items()):
        match, base, raised = parse(document)
        key = _definition(base, raised).spec.key
        if match.items() <= tags.items() and set(tags) - set(match) <= set(key):
            found.append((ident, {k: v for k, v in tags.items() if k not in match}))
    wanted = " ".join(f"{k}={v}" for k, v in tags.items())
    if not found:
        raise UsageError(
            f"no standing limit for {wanted} in {uri}: give the tags a limit matches, plus the values "
            f"of its key tags (tollgate limits --store {uri} lists them)"
        )
    if len(found) > 1:
        raise UsageError(f"{wanted} selects {', '.join(i for i, _ in found)}: give the tags of one")
    ident, key_values = found[0]
    _, base, raised = parse(documents[ident])
    key = _definition(base, raised).spec.key
    missing = [k for k in key if k not in key_values]
    if key_values and missing:
        raise UsageError(
            f"{ident} is kept per {', '.join(key)}: give {' '.join(f'{k}=VALUE' for k in missing)}"
        )
    return ident, None if missing else key_values


def _definition(base: Any, raised: Any) -> Any:
    """The frame a stored limit is defined by (a raise from no limit has only its raise's)."""
    return base if base is not None else raised[0]


def _limit_row(
    store: Any, ident: str, document: str, key_values: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A standing limit as ``tollgate limits`` shows it, with its counter's state per unit: for a
    limit kept per key tag, only when ``key_values`` say whose counter."""
    import time

    from tollgate.budgets.standing import UNITS, in_force, parse
    from tollgate.control import frame_state

    match, base, raised = parse(document)
    spec = _definition(base, raised).spec
    applies = in_force(base, raised, time.time())
    over = raised is not None and applies is not raised[0]
    added: dict[str, float] = json.loads(document).get("topped_up") or {}
    row: dict[str, Any] = {
        "id": ident,
        "match": dict(match),
        **{unit: None if base is None else getattr(base.spec, unit) for unit in UNITS},
        "per": spec.per if isinstance(spec.per, str) or spec.per is None else f"{spec.per}",
        "tz": spec.tz,
        "window": _window(spec),
        "key": list(spec.key),
        "on_exceed": spec.on_exceed,
        "downgrade": dict(spec.downgrade),
        "warn_at": list(spec.warn_at),
        "burn_rate": spec.lookback or None,  # seconds of look-back
        "raise": None
        if raised is None
        else {**dict(raised[0].spec.limits()), "until": _when(raised[1]), "over": over},
        "topped_up": added,
        "usage": [],
    }
    if applies is not None and (key_values is not None or not spec.key):
        until = None if raised is None or over else datetime.fromtimestamp(raised[1], UTC)
        for unit, _ in applies.spec.limits():
            tags = {**match, **(key_values or {})}
            state = frame_state(
                applies, tags, unit, store, topped_up=float(added.get(unit, 0.0)), until=until
            )
            row["usage"].append(state.to_dict())
            row[f"spent_{unit}"] = state.spent
    return row


def _limits_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per limit and unit: its cap, spent, reserved and remaining, and notes."""
    header = ["limit", "window", "key", "on_exceed", "cap", "spent", "reserved", "remaining", "notes"]
    lines = []
    for r in rows:
        states = {s["unit"]: s for s in r["usage"]}
        raised = r["raise"] or {}
        units = list(states) or [u for u in ("usd", "tokens", "calls", "tool_calls") if r[u] or u in raised]
        key = ",".join(f"{k}={states[units[0]]['key'][k]}" if states else k for k in r["key"]) or "-"
        notes = [f"one counter per {','.join(r['key'])} value"] if r["key"] and not states else []
        notes += _alert_notes(r["warn_at"], r["burn_rate"])
        for unit in units:
            state = states.get(unit)
            cap = state["limit"] if state else r[unit]
            unit_notes = []
            if unit in raised and raised[unit] != r[unit]:  # not the units a raise kept
                when, amount = raised["until"], _cap(unit, raised[unit])
                unit_notes.append(
                    f"raise over ({amount} until {when})"
                    if raised["over"]
                    else f"raised to {amount} until {when}"
                )
            if r["topped_up"].get(unit):
                unit_notes.append(f"topped up {_cap(unit, r['topped_up'][unit])}")
            figures = (
                [_figure(unit, state[k]) for k in ("spent", "reserved", "remaining")] if state else ["-"] * 3
            )
            cells = [r["id"], r["window"], key, str(r["on_exceed"]), "-" if cap is None else _cap(unit, cap)]
            lines.append([*cells, *figures, "; ".join([*notes, *unit_notes])])
            notes = []  # the limit's own notes once, on its first line
    return _table(header, lines, left=4, also_left=(8,))


def _window(spec: Any) -> str:
    """``lifetime``, ``per day``, ``per day (America/New_York)``, ``per rolling 1:00:00``."""
    return str(spec.window.describe()) if spec.tz or not isinstance(spec.per, str) else f"per {spec.per}"


def _cap(unit: str, amount: float) -> str:
    return _amount(amount) if unit == "usd" else f"{amount:,.0f} {unit.replace('_', ' ')}"


def _figure(unit: str, value: float) -> str:
    if unit != "usd":
        return _cap(unit, value)
    return ("-" if value < 0 else "") + _usd(abs(value))


def _when(epoch: float) -> str:
    """A UTC time as ``2026-12-31T00:00Z`` (with seconds when it has them)."""
    moment = datetime.fromtimestamp(round(epoch), UTC)
    return moment.strftime("%Y-%m-%dT%H:%MZ" if moment.second == 0 else "%Y-%m-%dT%H:%M:%SZ")


_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SPAN_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


def _span(option: str, text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``7d``, ``2w`` as a timedelta."""
    found = _SPAN.fullmatch(text.strip().lower())
    if found is None or float(found[1]) == 0:
        raise UsageError(f"{option} {text!r}: give a duration, e.g. 90s, 30m, 1h, 7d or 2w")
    return timedelta(seconds=float(found[1]) * _SPAN_SECONDS[found[2]])


def _span_text(seconds: float) -> str:
    unit = next((u for u, s in _SPAN_SECONDS.items() if seconds % s == 0), "s")
    return f"{seconds / _SPAN_SECONDS[unit]:g}{unit}"


def _until(text: str) -> datetime:
    """``--until``: a span from now (``7d``, ``24h``) or an ISO date-time with its offset."""
    if _SPAN.fullmatch(text.strip().lower()):
        return datetime.now(UTC) + _span("--until", text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--until {text!r}: give a span from now (24h, 7d) or an ISO date-time with its offset, "
            "e.g. 2026-12-31T00:00Z"
        ) from None
    if when.tzinfo is None:
        example = text if "T" in text else f"{text}T00:00"
        raise UsageError(f"--until {text!r} has no UTC offset: add Z or +00:00, e.g. {example}Z")
    return when


def _warn_at(text: str | None) -> tuple[float, ...]:
    if text is None:
        return ()
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"--warn-at {text!r}: fractions of the limit, comma-separated, e.g. --warn-at 0.5,0.8,0.95"
        ) from None


def _set_document(args: argparse.Namespace, match: dict[str, str]) -> tuple[str, str]:
    """``limits set``: the id and document of the limit the options describe (UsageError if bad)."""
    from tollgate.budgets.standing import limit_document

    burn_rate: timedelta | bool | None = args.burn_rate or None
    if args.burn_rate_lookback is not None:
        burn_rate = _span("--burn-rate-lookback", args.burn_rate_lookback)
    try:
        return limit_document(
            args.usd,
            args.tokens,
            per=None if args.per == "lifetime" else args.per,
            on_exceed=args.on_exceed,
            downgrade=dict(_parse_pair(p, "--downgrade") for p in args.downgrade) or None,
            key=tuple(k.strip() for k in (args.key or "").split(",") if k.strip()),
            match=match,
            calls=args.calls,
            tool_calls=args.tool_calls,
            warn_at=_warn_at(args.warn_at),
            burn_rate=burn_rate,
            tz=args.tz,
        )
    except ValueError as exc:  # a limit or model the options name is refused
        raise UsageError(str(exc)) from None


def _raise_limit(args: argparse.Namespace, store: Any, match: dict[str, str], until: datetime) -> str:
    """``limits raise``: ``set_limit(..., until=...)`` with the existing limit's window, key and
    action, and its amounts for the units not raised; returns the limit's id."""
    import tollgate
    from tollgate.budgets.standing import UNITS, limit_id, parse

    ident = limit_id(match)
    current = store.limits()[1].get(ident)
    amounts = {u: a for u, a in (("usd", args.usd), ("tokens", args.tokens)) if a is not None}
    if current is None:
        if args.per is None:
            raise UsageError(
                f"no standing limit {ident} in {args.store} to raise: set one first, or give --per "
                "for a limit that lapses when the raise ends"
            )
        options: dict[str, Any] = {"per": None if args.per == "lifetime" else args.per}
    else:
        _, base, raised = parse(current)
        spec = _definition(base, raised).spec
        kept = {} if base is None else {u: getattr(base.spec, u) for u in UNITS if getattr(base.spec, u)}
        amounts = {**kept, **amounts}
        per = spec.per if args.per is None else None if args.per == "lifetime" else args.per
        options = {"per": per, "tz": spec.tz, "key": spec.key, "on_exceed": spec.on_exceed}
        options["downgrade"] = dict(spec.downgrade)
    tollgate.set_limit(**amounts, **options, until=until, store=store, **_keywords(match, tollgate.set_limit))
    return ident


def _keywords(tags: Mapping[str, str], function: Callable[..., Any]) -> dict[str, Any]:
    """``tags`` to pass as ``function(**tags)``: a tag named like one of its options cannot be."""
    import inspect

    options = [p.name for p in inspect.signature(function).parameters.values() if p.kind != p.VAR_KEYWORD]
    taken = [name for name in tags if name in options]
    if taken:
        raise UsageError(
            f"{taken[0]}={tags[taken[0]]}: tollgate.{function.__name__}() takes {taken[0]}= as its own "
            "option, so it cannot name this tag"
        )
    return dict(tags)


def _given(args: argparse.Namespace) -> str:
    """``$20 and 1,000 tokens``: the amounts ``--usd`` and ``--tokens`` give."""
    given = (("usd", args.usd), ("tokens", args.tokens))
    return " and ".join(_cap(unit, float(amount)) for unit, amount in given if amount is not None)


def _write_limit(out: TextIO, args: argparse.Namespace, row: Mapping[str, Any], headline: str) -> int:
    if args.format == "json":
        out.write(json.dumps(row, indent=2) + "\n")
    else:
        out.write((headline + "\n" if headline else "") + _limits_table([row]) + "\n")
    return EXIT_OK


def cmd_limits(args: argparse.Namespace, out: TextIO) -> int:
    """Show, set, remove, reset, raise or top up standing limits in a store."""
    import tollgate
    from tollgate.budgets.standing import limit_id

    action = args.limits_command or "show"
    # What the options say is checked before the store is opened: a mistake creates no file.
    match = _parse_match(args.match) if args.match else {}
    written = _set_document(args, match) if action == "set" else None
    until = _until(args.until) if action == "raise" else None
    if action == "raise" and args.usd is None and args.tokens is None:
        raise UsageError("raise to what: give --usd and/or --tokens")
    creates = action == "set" or (action == "raise" and args.per is not None)
    store = _open_store(args.store, must_exist=not creates)
    if store is None:  # an SQLite file without a store's tables: nothing to list or change
        if action == "show" and not match:
            out.write("[]\n" if args.format == "json" else f"no standing limits in {args.store}\n")
            return EXIT_OK
        error = CommandError if action == "remove" else UsageError
        raise error(f"no standing limit {limit_id(match)} in {args.store}")
    try:
        if written is not None:
            store.put_limit(*written)
            out.write(f"set {written[0]}: {_describe_limit(written[1])}\n")
            return EXIT_OK
        if action == "remove":
            if tollgate.remove_limit(store=store, **match):
                out.write(f"removed {limit_id(match)}\n")
                return EXIT_OK
            raise CommandError(f"no standing limit {limit_id(match)} in {args.store}")
        if action == "show" and not match:
            rows = [_limit_row(store, i, d) for i, d in sorted(store.limits()[1].items())]
            if args.format == "json":
                out.write(json.dumps(rows, indent=2) + "\n")
            else:
                out.write(_limits_table(rows) + "\n" if rows else f"no standing limits in {args.store}\n")
            return EXIT_OK
        try:
            return _change_limit(action, args, store, match, out, until)
        except ValueError as exc:  # the control API refused what the options say
            raise UsageError(str(exc)) from None
    except tollgate.StoreUnavailable as exc:
        raise CommandError(f"the store {args.store} cannot be reached: {exc}") from None
    finally:
        store.close()


def _change_limit(
    action: str,
    args: argparse.Namespace,
    store: Any,
    match: dict[str, str],
    out: TextIO,
    until: datetime | None,
) -> int:
    """``limits show|reset|raise|top-up NAME=VALUE ...``: do it, then show the limit."""
    import tollgate

    headline, key_values = "", None
    if action in ("show", "reset"):
        ident, key_values = _select_limit(store, match, args.store)
        if action == "reset":
            tollgate.reset_usage(ident, store=store, **_keywords(key_values or {}, tollgate.reset_usage))
            whose = "".join(f" {k}={v}" for k, v in (key_values or {}).items())
            headline = f"reset {ident}{whose}: spent is 0 again"
    elif action == "raise":
        assert until is not None
        ident = _raise_limit(args, store, match, until)
        headline = f"raised {ident} to {_given(args)} until {_when(until.timestamp())}"
    else:  # top-up
        if args.ledger:  # where the top-up is recorded
            tollgate.configure(ledger=args.ledger)
        try:
            state = tollgate.top_up(args.usd, args.tokens, store=store, **_keywords(match, tollgate.top_up))
        finally:
            if args.ledger:
                tollgate.configure(ledger="memory://")  # closes the file, the record written
        ident = state.name
        headline = (
            f"topped up {ident} by {_given(args)}: limit {_cap(state.unit, state.limit)}, "
            f"remaining {_figure(state.unit, state.remaining)}"
        )
    document = store.limits()[1][ident]
    return _write_limit(out, args, _limit_row(store, ident, document, key_values), headline)


def _tokens(text: str) -> float:
    """``--tokens``: ``20000``, ``20_000`` or ``2e4``; set_limit refuses what is not whole."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of tokens, e.g. --tokens 20000") from None
    return int(value) if value.is_integer() else value


def _parse_pair(item: str, option: str) -> tuple[str, str]:
    src, sep, dst = item.partition("=")
    if not sep or not src or not dst:
        raise UsageError(f"{option} {item!r}: use MODEL=CHEAPER_MODEL, e.g. gpt-4o=gpt-4o-mini")
    return src, dst


def _describe_limit(document: str) -> str:
    """``$50 and 1,000 tokens per month per api_key, on_exceed=block``: a limit as ``set`` echoes it."""
    from tollgate.budgets.standing import parse

    _, base, raised = parse(document)
    spec = _definition(base, raised).spec
    amounts = " and ".join(_cap(unit, amount) for unit, amount in spec.limits())
    each = f" per {','.join(spec.key)}" if spec.key else ""
    alerts = "".join(f", {note}" for note in _alert_notes(spec.warn_at, spec.lookback))
    return f"{amounts} {_window(spec)}{each}, on_exceed={spec.on_exceed}{alerts}"


def _alert_notes(warn_at: Sequence[float], lookback: float | None) -> list[str]:
    notes = ["warn at " + ", ".join(f"{f:.0%}" for f in warn_at)] if warn_at else []
    return notes + ([f"burn-rate alert ({_span_text(lookback)} look-back)"] if lookback else [])


# -- demo ----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """The offline demo (see :mod:`tollgate.demo`)."""
    from tollgate import demo

    return demo.run(ledger=args.ledger, otlp=args.otlp, live=args.live, out=out)


# -- the parser ----------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _selection_options(parser: argparse.ArgumentParser, *, since: str | None) -> None:
    """The options that pick a ledger's calls and group them (report and dashboard)."""
    parser.add_argument(
        "--ledger",
        default=os.environ.get("TOLLGATE_LEDGER", DEFAULT_LEDGER),
        help="ledger URI (default: $TOLLGATE_LEDGER or %(default)s)",
    )
    parser.add_argument(
        "--group-by",
        metavar="NAMES",
        help="comma-separated tag names (or model, provider, operation, status)",
    )
    default = f" (default: {since})" if since else ""
    forms = f"90s, 30m, 24h, 7d, 2w, an ISO date-time or epoch{default}"
    parser.add_argument("--since", default=since, help=f"only calls since: {forms}")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="keep calls with this tag (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``tollgate`` argument parser (one sub-command per job)."""
    from tollgate import __version__

    parser = argparse.ArgumentParser(
        prog="tollgate",
        description="Budgets, rate limits and cost attribution for LLM calls: reports, prices, "
        "estimates, standing limits and an offline demo.",
        epilog="Exit status: 0 ok, 1 the command failed (message on stderr), 2 usage error.\n"
        "Start with:  tollgate demo",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"tollgate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    report = commands.add_parser(
        "report",
        help="spend from a ledger, grouped by tags",
        description="Calls, tokens and USD from a ledger, grouped by tags (or model, provider, "
        "operation, status), most expensive first, with totals, blocked and unpriced counts.",
        epilog="example:\n"
        "  tollgate report --ledger sqlite:///tollgate.db --group-by tenant,feature --since 7d",
        formatter_class=_Formatter,
    )
    _selection_options(report, since=None)
    report.add_argument("--until", help="only calls before this time (same forms as --since)")
    report.add_argument(
        "--format", choices=("table", "json", "csv"), help="how to print the report (default: table)"
    )
    report.add_argument(
        "--html",
        metavar="FILE",
        help="write the report as one self-contained HTML page with charts ('-': to stdout)",
    )
    report.set_defaults(handler=cmd_report)

    dashboard = commands.add_parser(
        "dashboard",
        help="a live, read-only web page of a ledger's spend and a store's standing limits",
        description="Serve the report page on this machine, refreshed every few seconds from the "
        "ledger as calls come in, with the store's standing limits (spent, reserved, remaining). "
        "It only reads: GET /, /data.json and /limits.json. Budgets made in code with "
        "tollgate.budget(...) live in their process and are not shown.",
        epilog="example:\n"
        "  tollgate dashboard --ledger sqlite:///tollgate.db --store sqlite:///tollgate.db --since 7d",
        formatter_class=_Formatter,
    )
    dashboard.add_argument(
        "--store",
        help=f"store URI whose standing limits to show (default: $TOLLGATE_STORE or {DEFAULT_STORE}, "
        "when that file exists)",
    )
    dashboard.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; any other is reachable without a password)",
    )
    dashboard.add_argument(
        "--port", type=int, default=8765, help="port (default: %(default)s; 0: a free one)"
    )
    _selection_options(dashboard, since="24h")
    dashboard.set_defaults(handler=cmd_dashboard)

    prices = commands.add_parser(
        "prices",
        help="the bundled price table (USD per 1M tokens)",
        description="Model prices from the bundled table: input, output, cache read / write and "
        "reasoning prices per 1M tokens, maximum tokens, and the table's source and date.",
        epilog="examples:\n  tollgate prices gpt-4o          # that model\n"
        "  tollgate prices '*gpt-4o*'      # every name containing gpt-4o\n"
        "  tollgate prices 'claude-*' --provider anthropic\n"
        "  tollgate prices --update        # a source checkout: regenerate from litellm's cost map",
        formatter_class=_Formatter,
    )
    prices.add_argument(
        "pattern",
        nargs="?",
        help="a model name (that model), part of one (every name containing it), or a glob like 'gpt-4o*'",
    )
    prices.add_argument("--provider", help="only this provider's entries (openai, anthropic, gemini, ...)")
    prices.add_argument(
        "--all", action="store_true", help="include entries without token prices (images, audio)"
    )
    prices.add_argument("--format", choices=("table", "json"), default="table")
    prices.add_argument(
        "--update", action="store_true", help="regenerate the table from the installed litellm package"
    )
    prices.add_argument("--output", help=argparse.SUPPRESS)  # --update's target (tests)
    prices.set_defaults(handler=cmd_prices)

    estimate = commands.add_parser(
        "estimate",
        help="tokens and worst-case USD of a chat call, offline",
        description="Count a chat request's input tokens and price its worst case (input plus "
        "the output cap), with no network call.",
        epilog='example:\n  echo \'[{"role": "user", "content": "Summarise this contract."}]\' > chat.json\n'
        "  tollgate estimate gpt-4o --messages chat.json --max-tokens 500",
        formatter_class=_Formatter,
    )
    estimate.add_argument("model", help="model name, e.g. gpt-4o")
    estimate.add_argument(
        "--messages",
        required=True,
        metavar="FILE.json",
        help='a JSON list of chat messages, or a request body with "messages" ("-": stdin)',
    )
    estimate.add_argument("--max-tokens", type=int, help="output cap (default: the model's maximum output)")
    estimate.add_argument("--provider", help="provider hint for the price lookup")
    estimate.add_argument("--format", choices=("table", "json"), default="table")
    estimate.set_defaults(handler=cmd_estimate)

    store_help = f"store URI (default: $TOLLGATE_STORE or {DEFAULT_STORE})"
    store_default = os.environ.get("TOLLGATE_STORE", DEFAULT_STORE)
    limits = commands.add_parser(
        "limits",
        help="show and manage standing limits in a store",
        description="Standing limits live in the store, so every worker sharing it applies a "
        "change from its next call on: raise a tenant's cap without a deploy.",
        epilog="examples:\n  tollgate limits --store sqlite:///tollgate.db\n"
        "  tollgate limits set --usd 50 --per month --tz America/New_York --warn-at 0.5,0.8 tenant=acme\n"
        "  tollgate limits set --usd 5 --per day --key api_key plan=free\n"
        "  tollgate limits set --usd 20 --per lifetime tenant=trial      # prepaid credit\n"
        "  tollgate limits top-up --usd 10 tenant=trial\n"
        "  tollgate limits show plan=free api_key=k-1                    # that key's counter\n"
        "  tollgate limits raise --usd 80 --until 7d tenant=acme         # then back to $50\n"
        "  tollgate limits reset tenant=acme\n"
        "  tollgate limits remove tenant=acme",
        formatter_class=_Formatter,
    )
    limits.add_argument("--store", default=store_default, help=store_help)
    limits.add_argument("--format", choices=("table", "json"), default="table")
    limits.set_defaults(handler=cmd_limits, limits_command=None, match=[])
    limit_commands = limits.add_subparsers(dest="limits_command", metavar="ACTION")

    def action(name: str, tags: str, **kwargs: Any) -> argparse.ArgumentParser:
        command = limit_commands.add_parser(name, **kwargs)
        command.add_argument(
            "match", nargs=tags, metavar="NAME=VALUE", help="the tags of the calls it covers"
        )
        command.add_argument("--store", default=argparse.SUPPRESS, help=store_help)
        return command

    def formatted(command: argparse.ArgumentParser) -> None:
        command.add_argument("--format", choices=("table", "json"), default=argparse.SUPPRESS)

    formatted(
        action(
            "show",
            "*",
            help="the standing limits and where they stand (the default action)",
            description="Every standing limit, or the one NAME=VALUE selects (for a limit kept per key "
            "tag, add the key's value to see that counter), with what is spent, reserved and left.",
        )
    )
    limit_set = action(
        "set",
        "+",
        help="create or change the limit for calls with these tags",
        description="Create or change the standing limit for calls whose tags match NAME=VALUE "
        "(what was already spent in the window is kept).",
    )
    limit_set.add_argument("--usd", type=float, help="USD cap per window")
    limit_set.add_argument("--tokens", type=_tokens, help="token cap per window (a whole number)")
    limit_set.add_argument("--calls", type=int, help="cap on model calls per window")
    limit_set.add_argument("--tool-calls", type=int, help="cap on tool calls asked for per window")
    limit_set.add_argument(
        "--per",
        required=True,
        choices=("lifetime", "minute", "hour", "day", "week", "month"),
        help="the window (lifetime: never resets, prepaid credit)",
    )
    limit_set.add_argument("--tz", help="IANA time zone of a calendar window, e.g. America/New_York")
    limit_set.add_argument(
        "--on-exceed", default="block", choices=("block", "downgrade", "clamp", "truncate", "raise")
    )
    limit_set.add_argument(
        "--downgrade", action="append", default=[], metavar="MODEL=CHEAPER", help="for --on-exceed downgrade"
    )
    limit_set.add_argument(
        "--key", metavar="NAMES", help="one counter per value of these tags (comma-separated)"
    )
    limit_set.add_argument(
        "--warn-at", metavar="FRACTIONS", help="alert at these fractions, e.g. 0.5,0.8,0.95"
    )
    limit_set.add_argument(
        "--burn-rate", action="store_true", help="alert when recent spend would reach the cap this window"
    )
    limit_set.add_argument(
        "--burn-rate-lookback",
        metavar="SPAN",
        help="--burn-rate, projecting from the spend of this span, e.g. 1h (default: a 24th of the window)",
    )
    action("remove", "+", help="remove the limit for calls with these tags")
    formatted(
        action(
            "reset",
            "+",
            help="start the limit's current window again from zero spent",
            description="Zero what the limit NAME=VALUE selects has spent in its current window "
            "(for a limit kept per key tag, add the key's value); calls in flight keep their holds.",
        )
    )
    limit_raise = action(
        "raise",
        "+",
        help="raise the limit until a time, then back to what it was",
        description="A temporary raise: the limit for calls with these tags is --usd / --tokens "
        "until --until, then what it was before (its window, key and action are kept).",
    )
    formatted(limit_raise)
    limit_raise.add_argument("--usd", type=float, help="USD cap during the raise")
    limit_raise.add_argument("--tokens", type=_tokens, help="token cap during the raise")
    limit_raise.add_argument(
        "--until", required=True, metavar="WHEN", help="a span from now (24h, 7d) or 2026-12-31T00:00Z"
    )
    limit_raise.add_argument(
        "--per",
        choices=("lifetime", "minute", "hour", "day", "week", "month"),
        help="the window, when there is no limit to raise (the raise then lapses into none)",
    )
    limit_top_up = action(
        "top-up",
        "+",
        help="add prepaid credit to a lifetime limit",
        description="Add to the lifetime limit (set --per lifetime) for calls with these tags.",
    )
    formatted(limit_top_up)
    limit_top_up.add_argument("--usd", type=float, help="USD to add")
    limit_top_up.add_argument("--tokens", type=_tokens, help="tokens to add")
    limit_top_up.add_argument(
        "--ledger",
        default=os.environ.get("TOLLGATE_LEDGER"),
        help="record the top-up in this ledger (default: $TOLLGATE_LEDGER, else not recorded)",
    )

    demo = commands.add_parser(
        "demo",
        help="an offline demo: budgets stopping a runaway agent, and where the money went",
        description="Runs an agent-style workload for several tenants against a local stand-in "
        "for the OpenAI API (no API key, no network) with budgets enforcing a daily cap, a "
        "downgrade, a clamp, a truncate and a mid-stream cutoff, then prints the report.",
        formatter_class=_Formatter,
    )
    demo.add_argument(
        "--ledger",
        help=f"keep the records in this sqlite:/// ledger (default: {DEMO_LEDGER}, emptied by each run)",
    )
    demo.add_argument("--otlp", metavar="URL", help="also send spans and metrics to this OTLP/HTTP endpoint")
    demo.add_argument("--live", action="store_true", help="call the real OpenAI API (needs OPENAI_API_KEY)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the ``tollgate`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, TextIO], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    stream = out or sys.stdout
    try:
        return handler(args, stream)
    except CommandError as exc:
        _error(args.command, exc)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tollgate prices | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        from tollgate.errors import TollgateError

        if isinstance(exc, TollgateError | ValueError | OSError | ImportError):
            _error(args.command, exc)
            return EXIT_FAILED
        raise


def _error(command: str, exc: Exception) -> None:
    """One line on stderr, whatever the message holds (an SQLite or OS message may span lines)."""
    print(f"tollgate {command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
