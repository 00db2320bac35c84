"""tollgate's pytest plugin (tollgate/pytest_plugin.py): fixture, marker, --tollgate-report.

Inner sessions run in a subprocess (pytester.runpytest_subprocess), so their tollgate state
is their own; the plugin is loaded there from the installed entry point, as for any user.
Inner tests make real gated calls: the offline OpenAI stand-in of tollgate.demo, and the
real openai SDK replayed from a vcrpy cassette.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET

import pytest

import tollgate
from tests.conftest import CASSETTES
from tollgate.pytest_plugin import MarkerError, SpendTotals, _usd, describe

pytest_plugins = ["pytester"]

# Shared by the inner sessions: a gated, offline OpenAI client and a one-line call.
CONFTEST = """
import pytest
from tollgate.demo import offline_client

@pytest.fixture
def client():
    return offline_client()

def ask(client, model="gpt-4o-mini", max_tokens=10, agent=False):
    system = "You are an agent." if agent else "You are terse."
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "go"}]
    return client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def one_call_spend(model: str = "gpt-4o-mini", max_tokens: int = 10) -> tollgate.CallRecord:
    """The record of the inner sessions' ``ask(client, model, max_tokens)``, made here."""
    from tollgate.demo import offline_client

    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "go"}]
    offline_client().chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
    (record,) = tollgate.config.settings().ledger.records()
    return record


# -- the fixture, per-test accounting and the report ------------------------------------------

FIXTURE_TESTS = """
import sqlite3
import threading

import tollgate as tg
from conftest import ask


def test_a_spends_and_leaves_state_behind(client, tollgate):
    assert tollgate.calls == 0 and tollgate.records == []
    tg.set_limit(usd=0.000001, per="day", feature="x")       # standing limit in the store
    tg.configure(on_unpriced="raise")
    ask(client)
    ask(client, model="gpt-4o")
    assert tollgate.calls == 2
    assert [r.request_model for r in tollgate.records] == ["gpt-4o-mini", "gpt-4o"]
    assert tollgate.tokens == tollgate.input_tokens + tollgate.output_tokens > 0
    assert tollgate.usd == sum(r.usd for r in tollgate.records) > 0
    assert tollgate.report(group_by="model").total["calls"] == 2
    assert [row["tags"]["model"] for row in tollgate.report(group_by="model")] == ["gpt-4o", "gpt-4o-mini"]
    tollgate.assert_under(usd=1, tokens=10_000, calls=2)
    try:
        tollgate.assert_under(calls=1)
    except AssertionError as exc:
        assert "in 2 calls" in str(exc) and "over calls=1" in str(exc), exc
    else:
        raise AssertionError("assert_under(calls=1) passed")


def test_b_starts_clean(client, tollgate):
    s = tg.config.settings()
    assert s.on_unpriced == "warn" and s.ledger.records() == []
    assert s.store.limits()[1] == {}
    with tg.track(feature="x"):
        ask(client)                      # not blocked: test a's standing limit is gone
    assert tollgate.calls == 1 and len(s.ledger.records()) == 1


def test_c_threads_count(client, tollgate):
    threads = [threading.Thread(target=ask, args=(client,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tollgate.calls == 3


def test_d_own_sqlite_ledger(client, tollgate, tmp_path):
    db = tmp_path / "ledger.db"
    tg.configure(ledger=f"sqlite:///{db}")
    ask(client, model="gpt-4o", max_tokens=300, agent=True)
    assert tollgate.calls == 1 and tollgate.output_tokens >= 300
    tg.reset()                            # the records are on disk, and still counted here
    assert sqlite3.connect(db).execute("select count(*) from calls").fetchone()[0] == 1
    assert tollgate.calls == 1


def test_e_no_fixture_still_reported(client):
    ask(client)
    ask(client)


def test_g_unpriced_model(client, tollgate):
    tg.configure(on_unpriced="ignore")
    ask(client, model="my-local-model")
    assert tollgate.calls == 1 and tollgate.usd == 0 and not tollgate.records[0].priced


def test_f_no_calls(tollgate):
    assert tollgate.usd == 0 and tollgate.tokens == 0
    tollgate.assert_under(usd=0, tokens=0, calls=0)
"""


def test_fixture_isolation_threads_own_ledger_and_report(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_fixture=FIXTURE_TESTS)
    result = inner.runpytest_subprocess(
        "--tollgate-report", "--junitxml=junit.xml", "-p", "no:cacheprovider", "-p", "no:asyncio"
    )
    result.assert_outcomes(passed=7)
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "tollgate: LLM spend per test" in line)
    header, rule, *rest = lines[start + 1 :]
    assert header.split() == ["test", "calls", "input", "tokens", "output", "tokens", "usd"]
    assert set(rule) == {"-"}
    end = rest.index(rule)
    rows, total, note = rest[:end], rest[end + 1].split(), rest[end + 2]
    # sorted by USD: d (gpt-4o, 300+ tokens out), a (gpt-4o + mini), c (3 x mini), e (2), b (1), g ($0)
    order = ["d_own_sqlite_ledger", "a_spends_and_leaves_state_behind", "c_threads_count"]
    order += ["e_no_fixture_still_reported", "b_starts_clean", "g_unpriced_model"]
    assert [row.split()[0] for row in rows] == [f"test_fixture.py::test_{x}" for x in order]
    assert [int(row.split()[1]) for row in rows] == [1, 2, 3, 2, 1, 1]
    assert total[:6] == ["TOTAL", "(6", "tests", "with", "calls)", "10"]
    usds = [float(row.split()[-1].lstrip("$")) for row in rows]
    assert usds == sorted(usds, reverse=True) and usds[-1] == 0
    assert float(total[-1].lstrip("$")) == pytest.approx(sum(usds), abs=5e-6)
    assert note == "1 call of unpriced models, not counted in USD: test_fixture.py::test_g_unpriced_model (1)"
    assert "test_f_no_calls" not in result.stdout.str()  # zero calls: no row

    junit = ET.parse(inner.path / "junit.xml").getroot()
    cases = {case.get("name"): case for case in junit.iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_c_threads_count"].iter("property")}
    assert props["tollgate_calls"] == "3" and float(props["tollgate_usd"] or 0) > 0
    assert not list(cases["test_f_no_calls"].iter("property"))


# -- the marker ---------------------------------------------------------------------------------

MARKER_TESTS = """
import threading

import pytest
from conftest import ask


@pytest.mark.tollgate(max_usd=0.001)
def test_usd_over(client):
    ask(client)
    ask(client, model="gpt-4o", max_tokens=300, agent=True)


@pytest.mark.tollgate(max_usd=0.001)
def test_usd_exact_numbers(client):
    ask(client)


@pytest.mark.tollgate(max_usd=0.000001)
def test_usd_over_exact_numbers(client):
    ask(client)


@pytest.mark.tollgate(max_tokens=30)
def test_tokens_over(client):
    ask(client)
    ask(client)


@pytest.mark.tollgate(max_calls=2)
def test_calls_over(client, tollgate):
    for _ in range(3):
        ask(client)


@pytest.mark.tollgate(max_calls=3, max_tokens=10_000, max_usd=1)
def test_under_every_cap(client, tollgate):
    for _ in range(3):
        ask(client)


@pytest.mark.tollgate(max_calls=1)
def test_thread_calls_count(client):
    threads = [threading.Thread(target=ask, args=(client,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.tollgate(max_calls=0)
def test_body_failure_is_not_masked(client):
    ask(client)
    assert 1 == 2, "the body's own failure"


@pytest.mark.tollgate(max_usd=0)
def test_a_skip_stays_a_skip():
    pytest.skip("not today")


@pytest.mark.tollgate(max_calls=1)
class TestClassCap:
    def test_under(self, client):
        ask(client)

    def test_over(self, client):
        ask(client)
        ask(client)

    @pytest.mark.tollgate(max_calls=None)
    def test_closer_marker_lifts_it(self, client):
        ask(client)
        ask(client)
"""

MODULE_TESTS = """
import pytest
from conftest import ask

pytestmark = pytest.mark.tollgate(max_calls=1)


def test_module_cap_under(client):
    ask(client)


def test_module_cap_over(client):
    ask(client)
    ask(client)
"""

BAD_MARKERS = """
import pytest


@pytest.mark.tollgate(max_dollars=1)
def test_unknown_keyword():
    pass


@pytest.mark.tollgate(max_usd=-1)
def test_negative():
    pass


@pytest.mark.tollgate(max_tokens="lots")
def test_not_a_number():
    pass


@pytest.mark.tollgate(max_calls=True)
def test_bool():
    pass


@pytest.mark.tollgate(0.05)
def test_positional():
    pass


@pytest.mark.tollgate
def test_bare():
    pass


def test_unmarked_still_runs():
    pass
"""


def test_marker_caps_messages_classes_modules_and_bad_arguments(inner: pytest.Pytester) -> None:
    one = one_call_spend()
    inner.makepyfile(test_marker=MARKER_TESTS, test_module_mark=MODULE_TESTS, test_bad=BAD_MARKERS)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "-rfEs")
    result.assert_outcomes(passed=6, failed=8, skipped=1, errors=6)
    out = result.stdout.str()
    failed = {line.split()[1] for line in result.stdout.lines if line.startswith("FAILED ")}
    assert failed == {
        "test_marker.py::test_usd_over",
        "test_marker.py::test_usd_over_exact_numbers",
        "test_marker.py::test_tokens_over",
        "test_marker.py::test_calls_over",
        "test_marker.py::test_thread_calls_count",
        "test_marker.py::test_body_failure_is_not_masked",
        "test_marker.py::TestClassCap::test_over",
        "test_module_mark.py::test_module_cap_over",
    }
    # The exact numbers of one gpt-4o-mini call, computed in this process.
    tokens = one.usage.input_tokens + one.usage.output_tokens
    result.stdout.fnmatch_lines(
        [
            f"tollgate: test spent {_usd(one.usd)} in 1 call ({tokens:,} tokens: "
            f"{one.usage.input_tokens:,} in, {one.usage.output_tokens:,} out), over max_usd=$0.000001",
            f"  by model: gpt-4o-mini {_usd(one.usd)} (1 call, {tokens:,} tokens)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "tollgate: test spent $0.0* in 2 calls (* tokens: * in, * out), over max_usd=$0.001",
            "  by model: gpt-4o $0.0* (1 call, * tokens); gpt-4o-mini $0.0000* (1 call, * tokens)",
        ]
    )
    result.stdout.fnmatch_lines(
        [f"tollgate: test spent * in 2 calls ({2 * tokens} tokens: *), over max_tokens=30"]
    )
    result.stdout.fnmatch_lines(["tollgate: test spent * in 3 calls (*), over max_calls=2"])
    result.stdout.fnmatch_lines(["tollgate: test spent * in 2 calls (*), over max_calls=1"])  # threads
    # The body's failure is reported as is, the spend alongside it.
    result.stdout.fnmatch_lines(
        [
            "*_ test_body_failure_is_not_masked _*",
            "*AssertionError: the body's own failure*",
            "*- Captured tollgate call -*",
            "tollgate: test spent * in 1 call (*)",
        ]
    )
    assert "over max_calls=0" not in out
    # Bad arguments: one clear error per test, at setup; the session goes on.
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_unknown_keyword _*",
            "@pytest.mark.tollgate got an unknown argument max_dollars=1; "
            "it takes max_usd=, max_tokens=, max_calls=",
            "*_ ERROR at setup of test_negative _*",
            "@pytest.mark.tollgate(max_usd=-1): max_usd must be a number >= 0 (or None for no cap)",
            "*_ ERROR at setup of test_not_a_number _*",
            "@pytest.mark.tollgate(max_tokens='lots'): max_tokens must be a number >= 0 (or None for no cap)",
            "*_ ERROR at setup of test_bool _*",
            "@pytest.mark.tollgate(max_calls=True): max_calls must be a number >= 0 (or None for no cap)",
            "*_ ERROR at setup of test_positional _*",
            "@pytest.mark.tollgate takes keyword arguments only (max_usd=, max_tokens=, max_calls=), "
            "got positional 0.05",
            "*_ ERROR at setup of test_bare _*",
            "@pytest.mark.tollgate needs a cap: max_usd=, max_tokens=, max_calls=",
        ]
    )
    assert "During handling" not in out
    assert "INTERNALERROR" not in out
    assert "tollgate: LLM spend per test" not in out  # no report without --tollgate-report


# -- recorded HTTP: vcrpy cassettes guard cost regressions ---------------------------------------

VCR_TESTS = """
import openai
import pytest
import vcr

import tollgate

CASSETTE = {cassette!r}
player = vcr.VCR(
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path", "query"],
    decode_compressed_response=False,
)


def capital():
    client = tollgate.instrument(openai.OpenAI(api_key="sk-test", max_retries=0))
    messages = [
        {{"role": "system", "content": "You are a terse assistant."}},
        {{"role": "user", "content": "Name the capital of France in one word."}},
    ]
    with player.use_cassette(CASSETTE):
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages)


@pytest.mark.tollgate(max_usd=0.000005)
def test_recorded_call_over_cap():
    assert capital().choices[0].message.content == "Paris."


@pytest.mark.tollgate(max_usd=0.00001, max_tokens=28)
def test_recorded_call_under_cap(tollgate):
    assert capital().choices[0].message.content == "Paris."
    assert (tollgate.input_tokens, tollgate.output_tokens) == (26, 2)
"""


def test_vcr_cassette_replay_is_capped(pytester: pytest.Pytester) -> None:
    pytest.importorskip("vcr")
    pytest.importorskip("openai")
    cassette = CASSETTES / "openai" / "chat_basic.yaml"
    pytester.makepyfile(test_vcr=VCR_TESTS.format(cassette=str(cassette)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "--tollgate-report")
    result.assert_outcomes(passed=1, failed=1)
    # gpt-4o-mini, 26 tokens in and 2 out: 26 x $0.15/M + 2 x $0.60/M = $0.0000051
    result.stdout.fnmatch_lines(
        [
            "*_ test_recorded_call_over_cap _*",
            "tollgate: test spent $0.00000510 in 1 call (28 tokens: 26 in, 2 out), over max_usd=$0.000005",
            "  by model: gpt-4o-mini $0.00000510 (1 call, 28 tokens)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*tollgate: LLM spend per test*",
            "test_vcr.py::test_recorded_call_over_cap *1 *26 *2 *$0.000005",
            "test_vcr.py::test_recorded_call_under_cap *1 *26 *2 *$0.000005",
            "*",
            "TOTAL (2 tests with calls) *2 *52 *4 *$0.000010",
        ]
    )


# -- the pieces, in this process ----------------------------------------------------------------


def test_describe_and_money_formats() -> None:
    records = [
        tollgate.CallRecord(
            id=str(i),
            started_at=0.0,
            ended_at=1.0,
            provider="openai",
            operation="chat",
            request_model=model,
            usage=tollgate.Usage(input_tokens=i, output_tokens=o),
            usd=usd,
            priced=priced,
        )
        for i, (model, i, o, usd, priced) in enumerate(
            [
                ("gpt-4o", 6000, 2000, 0.04, True),
                ("gpt-4o", 2000, 500, 0.02, True),
                ("m", 1000, 500, 0.0, False),
            ]
        )
    ]
    assert describe(records, ["max_usd=$0.05"]) == (
        "tollgate: test spent $0.0600 in 3 calls (12,000 tokens: 9,000 in, 3,000 out), "
        "1 unpriced call not counted in USD, over max_usd=$0.05\n"
        "  by model: gpt-4o $0.0600 (2 calls, 10,500 tokens); m $0 (1 call, 1,500 tokens)"
    )
    assert describe([]) == "tollgate: test spent $0 in 0 calls (0 tokens: 0 in, 0 out)"
    assert [_usd(v) for v in (0.0612, 1234.5, 0.0000165, 0.009)] == [
        "$0.0612",
        "$1,234.5000",
        "$0.0000165",
        "$0.00900",
    ]
    assert SpendTotals.of(records).tokens == 12_000
    assert issubclass(MarkerError, ValueError)


def test_fixture_in_this_session(tollgate) -> None:  # type: ignore[no-untyped-def]
    """The plugin is active in tollgate's own suite too: the fixture works here."""
    from tollgate.demo import offline_client

    tollgate_module = __import__("tollgate")
    tollgate_module.configure(on_unpriced="raise")
    client = offline_client()
    messages = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=5)
    assert tollgate.calls == 1 and tollgate.output_tokens == 5
    assert "calls=1" in repr(tollgate)
    with pytest.raises(AssertionError, match=r"in 1 call \(.*\), over tokens=1\n  by model: gpt-4o-mini "):
        tollgate.assert_under(tokens=1)
    with pytest.raises(ValueError, match="at least one limit"):
        tollgate.assert_under()


def test_a_session_without_tollgate_use_is_left_alone(pytester: pytest.Pytester) -> None:
    """No marker, no fixture, no flag: tests run as they would without the plugin."""
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_plain():
                assert True
            """
        )
    )
    watchers = list(tollgate.config.watchers)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "--junitxml=j.xml")
    result.assert_outcomes(passed=1)
    assert "LLM spend" not in result.stdout.str()
    assert b"property" not in (pytester.path / "j.xml").read_bytes()
    assert tollgate.config.watchers == watchers  # the inner session's watcher is gone


def test_the_plugin_imports_nothing_beyond_tollgate() -> None:
    """pytest imports the plugin in every session: it adds no module to what ``import tollgate``
    loads (no SDK, no vcrpy, no HTTP client)."""
    import subprocess
    import sys

    code = (
        "import sys, pytest, tollgate; before = set(sys.modules); import tollgate.pytest_plugin; "
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['tollgate.pytest_plugin']"
