"""tollgate's pytest plugin: LLM spend per test, as a fixture, a marker and a report.

pytest loads it wherever tollgate is installed (entry point ``pytest11``). It gives:

- the ``tollgate`` fixture: a clean tollgate (``tollgate.reset()`` before and after the test,
  standing-limits cache dropped) and a :class:`Spend` of the test's calls::

      def test_summary(tollgate):
          summarize(client, text)
          assert tollgate.calls == 1
          tollgate.assert_under(usd=0.01, tokens=2_000)

- the ``@pytest.mark.tollgate(max_usd=..., max_tokens=..., max_calls=...)`` marker (on a test,
  a class or a module's ``pytestmark``): the test fails when its calls (setup and body) spent
  more than a cap, with the numbers and a per-model breakdown;
- ``--tollgate-report``: a table of the spend of every test that made calls, at the end.

Every call is attributed to the test running when it ended (setup, body and teardown), from
whatever thread made it and whatever ledger the test configured: the plugin watches records
with :func:`tollgate.config.watch`, which outlives ``configure()`` and ``reset()``. Each test
that made calls also carries ``tollgate_*`` ``user_properties`` (junit-xml ``<property>``
elements), which is how the report gathers spend from pytest-xdist workers too.

The module is imported by every pytest session. As it lives in the tollgate package, that
imports ``tollgate`` (which imports no SDK); the plugin itself imports nothing more, and
starts watching records only when tollgate's config is loaded or a test needs it (a marker,
the fixture, ``--tollgate-report``). ``-p no:tollgate`` turns it off; with
``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``, ``-p tollgate`` turns it on.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tollgate.ledger.report import Report
    from tollgate.request import CallRecord

__all__ = ["MarkerError", "Spend", "SpendTotals", "caps_of", "describe"]

#: The marker's keyword arguments, in the order they are reported.
CAPS = ("max_usd", "max_tokens", "max_calls")
_MARKER_HELP = (
    "tollgate(max_usd=None, max_tokens=None, max_calls=None): fail the test when its LLM calls "
    "(setup and body) spent more than a cap (USD, input+output tokens, calls); on a test, a "
    "class or a module (pytestmark); the closest marker wins for each cap"
)
#: The ``user_properties`` a test that made calls carries (in this order).
PROPERTIES = (
    "tollgate_calls",
    "tollgate_input_tokens",
    "tollgate_output_tokens",
    "tollgate_usd",
    "tollgate_unpriced_calls",
)


class MarkerError(ValueError):
    """A ``@pytest.mark.tollgate`` with arguments it does not take."""


# -- totals and messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendTotals:
    """What a list of records adds up to (``usd`` leaves out unpriced calls)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    unpriced_calls: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def of(cls, records: Sequence[CallRecord]) -> SpendTotals:
        return cls(
            calls=len(records),
            input_tokens=sum(r.usage.input_tokens for r in records),
            output_tokens=sum(r.usage.output_tokens for r in records),
            usd=math.fsum(r.usd for r in records),
            unpriced_calls=sum(not r.priced for r in records),
        )


def _usd(value: float) -> str:
    """Dollars with 4 decimals, or 3 significant digits below a cent: $0.0612, $0.0000165."""
    if value == 0:
        return "$0"
    decimals = max(4, 2 - math.floor(math.log10(abs(value))))
    return f"${value:,.{decimals}f}"


def _cap(name: str, value: float) -> str:
    if name == "max_usd":
        return f"{name}=${f'{value:.10f}'.rstrip('0').rstrip('.')}"
    return f"{name}={value:,}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _summary(totals: SpendTotals) -> str:
    text = (
        f"{_usd(totals.usd)} in {_plural(totals.calls, 'call')} ({totals.tokens:,} tokens: "
        f"{totals.input_tokens:,} in, {totals.output_tokens:,} out)"
    )
    if totals.unpriced_calls:
        text += f", {_plural(totals.unpriced_calls, 'unpriced call')} not counted in USD"
    return text


def _by_model(records: Sequence[CallRecord]) -> str:
    groups: dict[str, list[CallRecord]] = {}
    for record in records:
        groups.setdefault(record.request_model, []).append(record)
    parts = sorted(
        ((model, SpendTotals.of(members)) for model, members in groups.items()),
        key=lambda item: (-item[1].usd, -item[1].calls, item[0]),
    )
    return "; ".join(
        f"{model} {_usd(t.usd)} ({_plural(t.calls, 'call')}, {t.tokens:,} tokens)" for model, t in parts
    )


def _over(totals: SpendTotals, caps: dict[str, float]) -> list[str]:
    used = {"max_usd": totals.usd, "max_tokens": totals.tokens, "max_calls": totals.calls}
    over = []
    for name in CAPS:
        cap = caps.get(name)
        # Float sums drift: a spend within a rounding error of the cap is not over it.
        if cap is not None and used[name] > cap and not math.isclose(used[name], cap, rel_tol=1e-9):
            over.append(_cap(name, cap))
    return over


def describe(records: Sequence[CallRecord], over: Sequence[str] = ()) -> str:
    """The spend of ``records`` in one line (and a per-model line), as the marker reports it.

    >>> from tollgate.request import CallRecord, Usage
    >>> rec = CallRecord(id="1", started_at=0.0, ended_at=1.0, provider="openai", operation="chat",
    ...                  request_model="gpt-4o", usage=Usage(9000, 3000), usd=0.0612)
    >>> print(describe([rec], ["max_usd=$0.05"]))
    tollgate: test spent $0.0612 in 1 call (12,000 tokens: 9,000 in, 3,000 out), over max_usd=$0.05
      by model: gpt-4o $0.0612 (1 call, 12,000 tokens)
    """
    text = f"tollgate: test spent {_summary(SpendTotals.of(records))}"
    if over:
        text += f", over {', '.join(over)}"
    if records:
        text += f"\n  by model: {_by_model(records)}"
    return text


def caps_of(item: pytest.Item) -> dict[str, float] | None:
    """The caps of the ``tollgate`` markers on ``item`` (None when it has none); the closest
    marker wins for each cap, and ``None`` means "no cap". Raises :class:`MarkerError`."""
    marks = list(item.iter_markers("tollgate"))
    if not marks:
        return None
    caps: dict[str, float | None] = {}
    for mark in marks:  # closest first: the test, then its class, then its module
        if mark.args:
            raise MarkerError(
                f"@pytest.mark.tollgate takes keyword arguments only ({', '.join(f'{c}=' for c in CAPS)}), "
                f"got positional {', '.join(map(repr, mark.args))}"
            )
        if not mark.kwargs:
            raise MarkerError(f"@pytest.mark.tollgate needs a cap: {', '.join(f'{c}=' for c in CAPS)}")
        for name, value in mark.kwargs.items():
            if name not in CAPS:
                raise MarkerError(
                    f"@pytest.mark.tollgate got an unknown argument {name}={value!r}; "
                    f"it takes {', '.join(f'{c}=' for c in CAPS)}"
                )
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and not (number and math.isfinite(value) and value >= 0):
                raise MarkerError(
                    f"@pytest.mark.tollgate({name}={value!r}): {name} must be a number >= 0 "
                    f"(or None for no cap)"
                )
            caps.setdefault(name, value)
    return {name: value for name, value in caps.items() if value is not None}


# -- the fixture's handle -----------------------------------------------------------------------


class _TestRecords:
    """The records of one test, appended from any thread while it runs."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self._records: list[CallRecord] = []
        self._lock = threading.Lock()

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)


class Spend:
    """What the ``tollgate`` fixture yields: the LLM calls of the running test, so far.

    Counts every call that ended during the test's setup, body and teardown, from any thread,
    whatever ledger the test configured. The numbers are read when asked, so they grow as the
    test makes calls. ``tokens`` is input plus output tokens; ``usd`` leaves out unpriced calls.
    """

    def __init__(self, test: _TestRecords) -> None:
        self._test = test

    @property
    def records(self) -> list[CallRecord]:
        """The :class:`~tollgate.CallRecord` of each call of this test, oldest first (a copy)."""
        return self._test.snapshot()

    @property
    def totals(self) -> SpendTotals:
        return SpendTotals.of(self.records)

    @property
    def calls(self) -> int:
        return self.totals.calls

    @property
    def usd(self) -> float:
        return self.totals.usd

    @property
    def input_tokens(self) -> int:
        return self.totals.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.totals.output_tokens

    @property
    def tokens(self) -> int:
        return self.totals.tokens

    def report(self, **kwargs: Any) -> Report:
        """:func:`tollgate.build_report` over this test's records (``group_by=``, ``where=``)."""
        from tollgate.ledger.report import build_report

        return build_report(self.records, **kwargs)

    def assert_under(
        self, usd: float | None = None, tokens: int | None = None, calls: int | None = None
    ) -> Spend:
        """Raise ``AssertionError`` (with the numbers) if this test spent more than a limit so far;
        limits are inclusive. For a limit on some calls only, use ``report().assert_under(usd=...,
        feature="search")``."""
        if usd is None and tokens is None and calls is None:
            raise ValueError("assert_under needs at least one limit: usd=, tokens= or calls=")
        caps = {"max_usd": usd, "max_tokens": tokens, "max_calls": calls}
        records = self.records
        over = _over(SpendTotals.of(records), {k: v for k, v in caps.items() if v is not None})
        if over:
            raise AssertionError(describe(records, [o.removeprefix("max_") for o in over]))
        return self

    def __repr__(self) -> str:
        t = self.totals
        return f"<tollgate.Spend {self._test.nodeid} calls={t.calls} tokens={t.tokens} usd={_usd(t.usd)}>"


# -- the plugin ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    nodeid: str
    totals: SpendTotals


_CAPS_KEY = pytest.StashKey[dict[str, float]]()


class Accountant:
    """The per-session part of the plugin: attributes records to the running test.

    ``current`` is a plain attribute, not a context variable, so calls made by threads the
    test started count too.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.report: bool = bool(config.getoption("tollgate_report", False))
        self.current: _TestRecords | None = None
        self.rows: list[_Row] = []
        self._unwatch: Callable[[], None] | None = None
        if self.report:
            self.watch(load=True)

    # watching --------------------------------------------------------------------------------

    def watch(self, *, load: bool) -> bool:
        """Start watching records if tollgate is imported (or ``load``); True when watching."""
        if self._unwatch is None and (load or "tollgate.config" in sys.modules):
            from tollgate.config import watch

            self._unwatch = watch(self._on_record)
        return self._unwatch is not None

    def unwatch(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def _on_record(self, record: CallRecord) -> None:
        test = self.current
        if test is not None:
            test.add(record)

    # hooks -----------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        needed = (
            self.report
            or item.get_closest_marker("tollgate") is not None
            or "tollgate" in getattr(item, "fixturenames", ())
        )
        self.current = _TestRecords(item.nodeid) if self.watch(load=needed) else None
        try:
            return (yield)
        finally:
            self.current = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        try:
            caps = caps_of(item)
        except MarkerError as exc:
            problem = str(exc)
        else:
            problem = ""
        if problem:  # outside the except block, so the error is the message alone
            pytest.fail(problem, pytrace=False)
        if caps:
            item.stash[_CAPS_KEY] = caps

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        try:
            result = yield
        except BaseException:
            # The body's own failure stands; the spend goes alongside as a report section.
            test = self.current
            records = test.snapshot() if test is not None else []
            if records:
                item.add_report_section("call", "tollgate", describe(records))
            raise
        caps = item.stash.get(_CAPS_KEY, None)
        test = self.current
        if caps and test is not None:
            records = test.snapshot()
            over = _over(SpendTotals.of(records), caps)
            if over:
                pytest.fail(describe(records, over), pytrace=False)
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> None:
        test = self.current
        if call.when != "teardown" or test is None:
            return
        records = test.snapshot()
        if records:
            t = SpendTotals.of(records)
            values = (t.calls, t.input_tokens, t.output_tokens, t.usd, t.unpriced_calls)
            item.user_properties.extend(zip(PROPERTIES, values, strict=True))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.report or report.when != "teardown":
            return
        found = {name: value for name, value in report.user_properties if name in PROPERTIES}
        if "tollgate_calls" in found:
            calls, input_tokens, output_tokens, usd, unpriced = (_number(found.get(n)) for n in PROPERTIES)
            totals = SpendTotals(int(calls), int(input_tokens), int(output_tokens), usd, int(unpriced))
            self.rows.append(_Row(report.nodeid, totals))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.report:
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "tollgate: LLM spend per test")
        if not self.rows:
            write("no test made an LLM call")
            return
        rows = sorted(self.rows, key=lambda r: (-r.totals.usd, -r.totals.calls, r.nodeid))
        total = SpendTotals(
            calls=sum(r.totals.calls for r in rows),
            input_tokens=sum(r.totals.input_tokens for r in rows),
            output_tokens=sum(r.totals.output_tokens for r in rows),
            usd=math.fsum(r.totals.usd for r in rows),
            unpriced_calls=sum(r.totals.unpriced_calls for r in rows),
        )
        for line in _table(rows, total):
            write(line)
        unpriced = [r for r in rows if r.totals.unpriced_calls]
        if unpriced:
            write(
                f"{_plural(total.unpriced_calls, 'call')} of unpriced models, not counted in USD: "
                + ", ".join(f"{r.nodeid} ({r.totals.unpriced_calls})" for r in unpriced)
            )


def _number(value: object) -> float:
    """A ``user_properties`` value as a number (a report from elsewhere may carry it as text)."""
    if isinstance(value, int | float | str):
        try:
            return float(value)
        except ValueError:
            pass
    return 0.0


def _table(rows: Sequence[_Row], total: SpendTotals) -> list[str]:
    def cells(label: str, t: SpendTotals) -> list[str]:
        return [label, f"{t.calls:,}", f"{t.input_tokens:,}", f"{t.output_tokens:,}", f"${t.usd:,.6f}"]

    header = ["test", "calls", "input tokens", "output tokens", "usd"]
    tests = "test" if len(rows) == 1 else "tests"
    lines = [cells(r.nodeid, r.totals) for r in rows]
    last = cells(f"TOTAL ({len(rows)} {tests} with calls)", total)
    widths = [max(len(c[i]) for c in [header, *lines, last]) for i in range(len(header))]

    def render(c: list[str]) -> str:
        return "  ".join(
            [c[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(c[1:], widths[1:], strict=True)]
        )

    rule = "-" * len(render(header))
    return [render(header), rule, *(render(c) for c in lines), rule, render(last)]


# -- module-level hooks and the fixture ---------------------------------------------------------

_ACCOUNTANT = pytest.StashKey[Accountant]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tollgate", "tollgate: LLM spend per test")
    group.addoption(
        "--tollgate-report",
        action="store_true",
        default=False,
        dest="tollgate_report",
        help="at the end, list the LLM spend (calls, tokens, USD) of every test that made calls",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)
    accountant = Accountant(config)
    config.stash[_ACCOUNTANT] = accountant
    config.pluginmanager.register(accountant, "tollgate-accountant")


def pytest_unconfigure(config: pytest.Config) -> None:
    accountant = config.stash.get(_ACCOUNTANT, None)
    if accountant is not None:
        accountant.unwatch()
        if config.pluginmanager.is_registered(accountant):
            config.pluginmanager.unregister(accountant)
        del config.stash[_ACCOUNTANT]


def _clean() -> None:
    """tollgate.reset() (which also forgets the standing limits cached from the closed store)."""
    import tollgate

    tollgate.reset()


@pytest.fixture
def tollgate(request: pytest.FixtureRequest) -> Iterator[Spend]:
    """A clean tollgate for the test (reset before and after) and the :class:`Spend` of its calls."""
    accountant = request.config.stash[_ACCOUNTANT]
    accountant.watch(load=True)
    if accountant.current is None:  # requested outside pytest_runtest_protocol: count from here
        accountant.current = _TestRecords(request.node.nodeid)
    spend = Spend(accountant.current)
    _clean()
    try:
        yield spend
    finally:
        _clean()
