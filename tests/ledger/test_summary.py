"""summarize: what the HTML report shows, aggregated in SQL for an SQLite ledger (in Python for
any other), equal to build_report's figures to the bit, without ever writing to the file."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tollgate import demo
from tollgate.config import settings
from tollgate.decisions import stored
from tollgate.ledger import MemoryLedger, SQLiteLedger, build_report
from tollgate.ledger.sqlite import _COLUMNS, SCHEMA_VERSION
from tollgate.ledger.summary import ACTIONS, TOP_SERIES, summarize
from tollgate.pricing.table import ModelPrice, PriceTable
from tollgate.request import CallRecord, Usage, UsagePart

KEYS = [
    "ledger", "since", "until", "where", "group_by", "bucket", "first", "last",
    "total", "groups", "over_time", "models", "tokens", "decisions", "flagged",
]  # fmt: skip
HOUR, DAY = 3_600.0, 86_400.0
TENANTS = ["acme", "globex", "initech", "umbrella"]
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def rec(id: str, started_at: float = 1_767_225_600.0, **kw: Any) -> CallRecord:
    fields: dict[str, Any] = {"provider": "openai", "operation": "chat", "request_model": "gpt-4o", **kw}
    return CallRecord(id=id, started_at=started_at, ended_at=started_at + 1, **fields)


def populate(now: float) -> None:
    """Every kind of record tollgate writes, into the configured ledger: gated calls (plain,
    blocked by a budget, downgraded, clamped, truncated, cut off mid-stream, refused by a rate
    limit), recorded calls over five days (cache tokens, estimated, failed, unpriced, an invoice
    line with its own usd, tool calls, one without tags), a call with unknown usage fields and
    billed parts, and a prepaid credit's top-up (no call)."""
    client = demo.offline_client()
    ask = [{"role": "user", "content": "Summarise the contract in one line."}]
    for tenant, feature, model in [("acme", "search", "gpt-4o-mini"), ("globex", "support", "gpt-4o")]:
        with tollgate.track(tenant=tenant, feature=feature):
            client.chat.completions.create(model=model, messages=ask, max_tokens=60)
    tiny = tollgate.budget(usd=1e-9)
    with tollgate.track(tenant="initech", feature="agent"), tiny, pytest.raises(tollgate.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=ask, max_tokens=60)
    long = [{"role": "system", "content": "You summarise."}, {"role": "user", "content": "clause " * 300}]
    downgrade = tollgate.budget(usd=0.003, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"})
    with tollgate.track(tenant="globex", feature="summarize"), downgrade:
        client.chat.completions.create(model="gpt-4o", messages=long, max_tokens=600)
    with tollgate.track(tenant="acme", feature="reports"), tollgate.budget(tokens=1500, on_exceed="clamp"):
        client.chat.completions.create(model="gpt-4o-mini", messages=ask, max_tokens=4000)
    chat: list[dict[str, str]] = [{"role": "system", "content": "You help."}]
    for i in range(12):
        chat.append({"role": "user", "content": f"question {i} " + "about the invoice " * 5})
        chat.append({"role": "assistant", "content": "answer " * 40})
    chat.append({"role": "user", "content": "and now?"})
    truncate = tollgate.budget(tokens=600, on_exceed="truncate")
    with tollgate.track(tenant="globex", feature="support"), truncate:
        client.chat.completions.create(model="gpt-4o-mini", messages=chat, max_tokens=150)
    story = [{"role": "user", "content": "Tell me a very long story about the sea."}]
    cutoff = tollgate.budget(usd=0.00005, on_exceed="raise")
    with tollgate.track(tenant="acme", feature="stories"), cutoff, pytest.raises(tollgate.BudgetExceeded):
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=story, stream=True):
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unpriced model's warning, on purpose
        for i in range(30):
            tags: dict[str, Any] = {"tenant": TENANTS[i % 4], "feature": ["chat", "search"][i % 2]}
            tollgate.record(
                provider="openai",
                model=["gpt-4o-mini", "gpt-4o", "house-llm"][i % 3],
                input_tokens=1000 + 37 * i,
                output_tokens=50 + 3 * i,
                cache_read_tokens=(200 * i) % 900,
                cache_write_tokens=100 if i % 6 == 0 else 0,
                reasoning_tokens=i % 4,
                started_at=now - i * 4 * HOUR,
                estimated=i % 5 == 0,
                status="error" if i % 7 == 3 else "ok",
                tool_calls=i % 3,
                **(tags if i != 17 else {}),
            )
        for usd in (0.1, 0.2, 0.3):  # invoice lines: float sums that drift when added one by one
            at = now - 2 * DAY
            tollgate.record(provider="openai", model="gpt-4o", usd=usd, started_at=at, tenant="acme")
    settings().ledger.write(
        rec(
            "advisor",
            started_at=now - DAY,
            provider="anthropic",
            request_model="claude-sonnet-4-5",
            response_model="claude-sonnet-4-5-20250929",
            usd=0.0123,
            usage=Usage(
                input_tokens=900,
                output_tokens=300,
                unknown={"server_tool_use_v9": 1, "new_dimension": 2},
                parts=(
                    UsagePart(None, Usage(input_tokens=900, output_tokens=100), "message", 0.0042),
                    UsagePart("claude-opus-4-1", Usage(output_tokens=200), "advisor_message", 0.0081),
                ),
            ),
            tags={"tenant": "globex", "feature": "chat"},
        )
    )
    tollgate.set_limit(usd=20, per=None, tenant="acme")
    tollgate.top_up(usd=5, tenant="acme")  # a record in the ledger, but no call
    tollgate.limit(rpm=1, model="gpt-4o", wait=False)
    with tollgate.track(tenant="globex", feature="search"):
        client.chat.completions.create(model="gpt-4o", messages=ask, max_tokens=20)
        with pytest.raises(tollgate.RateLimited):
            client.chat.completions.create(model="gpt-4o", messages=ask, max_tokens=20)


@dataclass
class Ledgers:
    path: Path
    records: list[CallRecord]  # as read back from the file
    now: float

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.path}"

    def memory(self) -> MemoryLedger:
        ledger = MemoryLedger()
        for r in self.records:
            ledger.write(r)
        return ledger


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledgers]:
    path = tmp_path_factory.mktemp("summary") / "calls.db"
    now = time.time()
    tollgate.configure(ledger=f"sqlite:///{path}", store="memory://")
    try:
        populate(now)
        records = tollgate.records()
    finally:
        tollgate.reset()  # closes the ledger: every record is in the file
    yield Ledgers(path, records, now)


def expected(
    records: Sequence[CallRecord],
    since: float | None = None,
    until: float | None = None,
    where: Any = None,
    group_by: Sequence[str] = (),
) -> tollgate.ledger.Report:
    low, high = -math.inf if since is None else since, math.inf if until is None else until
    window = [r for r in records if low <= r.started_at < high]
    return build_report(window, group_by=list(group_by) or None, where=where)


def actions_of(record: CallRecord) -> set[str]:
    return {stored(step).get("action") for step in record.decisions}  # type: ignore[misc]


def assert_adds_up(summary: dict[str, Any], report: tollgate.ledger.Report) -> None:
    """The charts' figures add up to the totals, and each series has one value per bucket."""
    total = summary["total"]
    buckets = summary["over_time"]["buckets"]
    series = summary["over_time"]["series"]
    assert all(len(s["usd"]) == len(s["calls"]) == len(buckets) for s in series)
    assert sum(sum(s["calls"]) for s in series) == total["calls"]
    assert close(math.fsum(v for s in series for v in s["usd"]), total["usd"])
    models = summary["models"]
    assert sum(m["calls"] for m in models) == total["calls"]
    for field in TOKEN_FIELDS:
        assert sum(m[field] for m in models) == total[field], field
    assert close(math.fsum(m["usd"] for m in models), total["usd"])
    assert [m["usd"] for m in models] == sorted((m["usd"] for m in models), reverse=True)
    tokens = summary["tokens"]
    assert tokens["uncached_input"] + tokens["cache_read"] + tokens["cache_write"] == total["input_tokens"]
    assert (tokens["output"], tokens["reasoning"]) == (total["output_tokens"], total["reasoning_tokens"])
    flagged = summary["flagged"]
    for kind in ("unpriced", "estimated"):
        by_model = sum(m["calls"] for m in flagged[f"{kind}_models"])
        assert flagged[f"{kind}_calls"] == total[f"{kind}_calls"] == by_model, kind
    decisions = summary["decisions"]
    assert decisions["buckets"] == buckets and list(decisions["series"]) == list(ACTIONS)
    for name, action in ACTIONS.items():
        assert len(decisions["series"][name]) == len(buckets)
        assert sum(decisions["series"][name]) == sum(action in actions_of(r) for r in report.records), name
    if total["calls"]:
        assert summary["first"] == iso(min(r.started_at for r in report.records))
        assert summary["last"] == iso(max(r.started_at for r in report.records))


def close(a: float, b: float) -> bool:
    """Equal but for the float rounding of adding the per-bucket (per-model) amounts."""
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def without_ledger(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "ledger"}


# -- the same figures as build_report, by both paths ----------------------------------------------

SELECTIONS: list[dict[str, Any]] = [
    {},
    {"group_by": ["tenant"]},
    {"group_by": ["tenant", "feature"]},
    {"group_by": ["model", "status"]},
    {"group_by": ["feature"], "where": {"tenant": ["acme", "globex"]}},
    {"group_by": ["tenant"], "where": {"model": "gpt-4o", "operation": "chat"}},
    {"where": {"tenant": "acme"}},
    {"group_by": ["provider", "tenant"], "since": "ago:3d"},
    {"group_by": ["tenant"], "since": "ago:5d", "until": "ago:1d"},
    {"group_by": ["tenant"], "where": {"tenant": [None, "umbrella"]}},
    {"group_by": ["feature"], "where": {"status": ["error", "blocked"]}},
    {"group_by": ["tenant"], "where": {"tenant": []}},
]


def resolve(options: dict[str, Any], now: float) -> dict[str, Any]:
    out = dict(options)
    for key in ("since", "until"):
        if isinstance(out.get(key), str):
            out[key] = now - float(out[key][4:-1]) * DAY
    return out


@pytest.mark.parametrize("options", SELECTIONS, ids=lambda o: json.dumps(o) or "all")
def test_figures_equal_build_reports_in_sql_and_in_python(ledgers: Ledgers, options: dict[str, Any]) -> None:
    options = resolve(options, ledgers.now)
    report = expected(ledgers.records, **options)
    by_sql = summarize(ledgers.uri, **options)
    assert by_sql["total"] == dict(report.total)  # usd to the bit: fsum's exact sum
    assert by_sql["groups"] == ([dict(row) for row in report.rows] if options.get("group_by") else [])
    assert_adds_up(by_sql, report)
    by_python = summarize(ledgers.memory(), **options)
    assert without_ledger(by_python) == without_ledger(by_sql)  # the two paths agree on everything
    with SQLiteLedger(ledgers.path) as opened:
        assert without_ledger(summarize(opened, **options)) == without_ledger(by_sql)


def test_the_python_path_on_a_live_memory_ledger() -> None:
    """Records as the gate made them (typed steps, not read back from a file)."""
    now = time.time()
    tollgate.configure(ledger="memory://", store="memory://")
    populate(now)
    records = tollgate.records()
    for options in ({}, {"group_by": ["tenant", "feature"]}, {"group_by": ["model"], "since": now - DAY}):
        report = expected(records, **options)
        summary = summarize(settings().ledger, **options)
        assert summary["ledger"] == "memory://"
        assert summary["total"] == dict(report.total)
        assert summary["groups"] == ([dict(r) for r in report.rows] if options.get("group_by") else [])
        assert_adds_up(summary, report)


def test_the_shape_is_json_and_keeps_its_keys(ledgers: Ledgers) -> None:
    summary = summarize(ledgers.uri, group_by=["tenant"], where={"feature": ["chat", "search"]})
    assert list(summary) == KEYS
    assert json.loads(json.dumps(summary)) == summary
    assert summary["ledger"] == ledgers.uri and summary["group_by"] == ["tenant"]
    assert summary["where"] == {"feature": ["chat", "search"]}
    assert list(summary["tokens"]) == [
        "uncached_input", "cache_read", "cache_write", "output", "reasoning", "cache_saved_usd",
    ]  # fmt: skip
    assert list(summary["flagged"]) == [
        "estimated_calls", "unpriced_calls", "unpriced_models", "estimated_models",
    ]  # fmt: skip
    assert list(summary["models"][0]) == [
        "model", "calls", "usd", "input_tokens", "output_tokens",
        "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    ]  # fmt: skip
    unpriced = [r for r in ledgers.records if not r.priced and r.tags.get("feature") in ("chat", "search")]
    assert {r.request_model for r in unpriced} == {"house-llm"}
    assert summary["flagged"]["unpriced_models"] == [{"model": "house-llm", "calls": len(unpriced)}]
    since = summarize(ledgers.uri, since=ledgers.now - DAY, until=ledgers.now)
    assert (since["since"], since["until"]) == (iso(ledgers.now - DAY), iso(ledgers.now))


def test_every_budget_action_has_its_series(ledgers: Ledgers) -> None:
    summary = summarize(ledgers.uri)
    counts = {name: sum(values) for name, values in summary["decisions"]["series"].items()}
    assert counts == {
        "blocked": 1, "downgraded": 1, "clamped": 1, "truncated": 1, "cutoff": 1, "rate_limited": 1,
    }  # fmt: skip
    # A call a rate limit refused is a blocked call too (its status), though no budget blocked it.
    assert summary["total"]["blocked_calls"] == 2


def test_a_top_up_is_no_call(ledgers: Ledgers) -> None:
    top_ups = [r for r in ledgers.records if r.operation == "top_up"]
    assert len(top_ups) == 1
    summary = summarize(ledgers.uri, group_by=["tenant"], where={"tenant": "acme"})
    acme = [r for r in ledgers.records if r.tags.get("tenant") == "acme"]
    assert summary["total"]["calls"] == len(acme) - 1
    assert "" not in [m["model"] for m in summary["models"]]  # the top-up's request model


def test_unknown_usage_and_parts_are_reported_per_group(ledgers: Ledgers) -> None:
    summary = summarize(ledgers.uri, group_by=["tenant"])
    globex = next(row for row in summary["groups"] if row["tags"] == {"tenant": "globex"})
    assert globex["unknown_usage"] == {"anthropic:server_tool_use_v9": 1, "anthropic:new_dimension": 2 - 1}
    assert globex["parts_usd"] == {"claude-sonnet-4-5-20250929": 0.0042, "claude-opus-4-1": 0.0081}
    assert summary["total"]["unknown_usage"] == globex["unknown_usage"]
    assert summary["total"]["unknown_usage_calls"] == 1 and summary["total"]["tool_calls"] > 0


def test_tokens_split_the_input_and_price_the_cache_reads(ledgers: Ledgers) -> None:
    table = PriceTable(
        [
            ModelPrice("gpt-4o-mini", "openai", input=1.5e-07, output=6e-07, cache_read=7.5e-08),
            ModelPrice("gpt-4o", "openai", input=2.5e-06, output=1e-05),  # no cache price: no saving
        ]
    )
    summary = summarize(ledgers.uri, prices=table)
    read = dict.fromkeys(("gpt-4o-mini", "gpt-4o"), 0)
    for r in ledgers.records:
        if r.request_model in read:
            read[r.request_model] += r.usage.cache_read_tokens
    assert read["gpt-4o-mini"] and read["gpt-4o"]
    assert summary["tokens"]["cache_saved_usd"] == read["gpt-4o-mini"] * (1.5e-07 - 7.5e-08)
    t = summary["total"]
    uncached = t["input_tokens"] - t["cache_read_tokens"] - t["cache_write_tokens"]
    assert summary["tokens"]["uncached_input"] == uncached
    # The configured table lists a cache-read price for gpt-4o too: more saved.
    assert summarize(ledgers.uri)["tokens"]["cache_saved_usd"] > summary["tokens"]["cache_saved_usd"]


def test_the_top_values_get_a_series_and_the_rest_other(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    with SQLiteLedger(path) as ledger:
        for i in range(TOP_SERIES + 3):
            for j in range(i + 1):  # tenant t10 spends most
                ledger.write(rec(f"{i}-{j}", usd=0.01, tags={"tenant": f"t{i:02d}"}))
        ledger.write(rec("untagged", usd=0.001))
    summary = summarize(f"sqlite:///{path}", group_by=["tenant"])
    names = [s["name"] for s in summary["over_time"]["series"]]
    assert names == [f"t{i:02d}" for i in range(TOP_SERIES + 2, 2, -1)] + ["other"]
    other = summary["over_time"]["series"][-1]
    assert sum(other["calls"]) == 1 + 2 + 3 + 1  # t00, t01, t02 and the call without a tenant
    untagged = summarize(f"sqlite:///{path}", group_by=["tenant"], where={"tenant": [None]})
    assert [s["name"] for s in untagged["over_time"]["series"]] == ["(none)"]
    assert [s["name"] for s in summarize(f"sqlite:///{path}")["over_time"]["series"]] == ["all"]


def test_the_bucket_follows_the_period(tmp_path: Path) -> None:
    path = tmp_path / "days.db"
    start = 1_767_225_600.0  # 2026-01-01T00:00Z
    with SQLiteLedger(path) as ledger:
        for i in range(10):
            ledger.write(rec(str(i), started_at=start + i * 12 * HOUR + 60, usd=0.5))
    uri = f"sqlite:///{path}"
    whole = summarize(uri)  # 4.5 days: per day, from the first call's day to the last's
    assert whole["bucket"] == "day" and whole["over_time"]["buckets"][0] == "2026-01-01T00:00:00+00:00"
    assert len(whole["over_time"]["buckets"]) == 5 and whole["over_time"]["series"][0]["calls"] == [2] * 5
    short = summarize(uri, since=start, until=start + DAY)  # a day: per hour, the whole period drawn
    assert short["bucket"] == "hour" and len(short["over_time"]["buckets"]) == 24
    assert short["over_time"]["series"][0]["calls"][0] == short["over_time"]["series"][0]["calls"][12] == 1
    assert sum(short["over_time"]["series"][0]["calls"]) == 2
    forced = summarize(uri, bucket="hour")
    assert forced["bucket"] == "hour" and len(forced["over_time"]["buckets"]) == 4 * 24 + 12 + 1
    ahead = summarize(uri, since=start - 3 * DAY, until=start + 20 * DAY)  # empty days included
    assert len(ahead["over_time"]["buckets"]) == 23 and sum(ahead["over_time"]["series"][0]["calls"]) == 10
    wide = summarize(uri, since=0.0)  # 56 years of empty days narrow to the calls'
    assert len(wide["over_time"]["buckets"]) == 5
    with pytest.raises(ValueError, match="bucket="):
        summarize(uri, bucket="week")  # type: ignore[arg-type]


# -- exact USD -------------------------------------------------------------------------------------


def test_usd_is_fsums_where_sqlites_sum_drifts(tmp_path: Path) -> None:
    path = tmp_path / "drift.db"
    amounts = [0.1, 0.2, 0.3, 1e-9, 12345.678, 3e-7, 0.7, 1e-12] * 250
    with SQLiteLedger(path) as ledger:
        for i, usd in enumerate(amounts):
            ledger.write(rec(str(i), started_at=1_767_225_600.0 + i, usd=usd, tags={"k": str(i % 3)}))
    with sqlite3.connect(path) as conn:
        in_order = conn.execute("SELECT sum(usd) FROM calls").fetchone()[0]
    conn.close()
    assert in_order != math.fsum(amounts)  # SQLite adds in row order: the last digits drift
    summary = summarize(f"sqlite:///{path}", group_by=["k"])
    assert summary["total"]["usd"] == math.fsum(amounts)
    for row in summary["groups"]:
        assert row["usd"] == math.fsum(a for i, a in enumerate(amounts) if str(i % 3) == row["tags"]["k"])


def test_a_rounding_in_doubt_is_summed_again(tmp_path: Path) -> None:
    """1 + 2^-53 lies exactly between two floats: the split sum's error bound straddles it, so
    the rows are summed again with fsum (which rounds the tie to even: 1.0)."""
    path = tmp_path / "tie.db"
    with SQLiteLedger(path) as ledger:
        ledger.write(rec("one", usd=1.0))
        ledger.write(rec("tiny", usd=2.0**-53))
        ledger.write(rec("huge", usd=1.5e9, tags={"big": "yes"}))  # past the exact split: from its rows
    summary = summarize(f"sqlite:///{path}", group_by=["big"])
    assert summary["total"]["usd"] == math.fsum([1.0, 2.0**-53, 1.5e9])
    assert [row["usd"] for row in summary["groups"]] == [1.5e9, 1.0]
    assert summary["over_time"]["series"][1]["usd"] == [1.0]


def test_more_than_the_exact_split_holds_is_read_from_the_records(tmp_path: Path) -> None:
    path = tmp_path / "billions.db"
    with SQLiteLedger(path) as ledger:
        for i in range(4):
            ledger.write(rec(str(i), usd=1.5e9 + i))  # 6 billion USD: over the split's 2^31
    summary = summarize(f"sqlite:///{path}")
    assert summary["total"]["usd"] == math.fsum(1.5e9 + i for i in range(4))
    assert summary["total"]["calls"] == 4


# -- names -----------------------------------------------------------------------------------------


def test_tag_names_that_are_not_identifiers(tmp_path: Path) -> None:
    path = tmp_path / "names.db"
    records = [
        rec(str(i), usd=0.25 * i, tags={"team-name": f"t{i % 2}", "a.b": "x", 'quo"te': str(i % 3)})
        for i in range(6)
    ]
    with SQLiteLedger(path) as ledger:
        for r in records:
            ledger.write(r)
    memory = MemoryLedger()
    for r in records:
        memory.write(r)
    selections: list[dict[str, Any]] = [
        {"group_by": ["team-name", "a.b"]},
        {"group_by": ['quo"te'], "where": {"team-name": "t1"}},
        {"where": {'quo"te': ["0", "2"]}},
    ]
    for options in selections:
        by_sql = summarize(f"sqlite:///{path}", **options)
        assert without_ledger(by_sql) == without_ledger(summarize(memory, **options))
        report = build_report(records, group_by=options.get("group_by"), where=options.get("where"))
        assert by_sql["total"] == dict(report.total)


def test_where_matches_as_build_report_does(tmp_path: Path) -> None:
    path = tmp_path / "where.db"
    records = [rec(str(i), usd=0.5, tags={"n": str(i)} if i else {}) for i in range(4)]
    with SQLiteLedger(path) as ledger:
        for r in records:
            ledger.write(r)
    wheres: list[dict[str, Any]] = [{"n": 2}, {"n": [1, "3"]}, {"n": None}, {"n": [None, 1]}, {"n": []}]
    for where in [*wheres, {"model": "gpt-4o"}]:
        summary = summarize(f"sqlite:///{path}", where=where)
        assert summary["total"] == dict(build_report(records, where=where).total), where


def test_a_name_no_call_carries_is_refused_with_the_closest(ledgers: Ledgers) -> None:
    with pytest.raises(ValueError, match=r"group_by: no call has a tag 'tenat' \(did you mean 'tenant'\?\)"):
        summarize(ledgers.uri, group_by=["tenat"])
    with pytest.raises(ValueError, match=r"where: no call has a tag 'featur'"):
        summarize(ledgers.uri, where={"featur": "chat"})
    with pytest.raises(ValueError, match="tenat"):
        summarize(ledgers.memory(), group_by=["tenat"])
    assert summarize(ledgers.uri, group_by=["model"])["groups"]  # a record field, not a tag
    later = summarize(ledgers.uri, group_by=["tenat"], since=ledgers.now + DAY)  # no call to tell by
    assert later["total"]["calls"] == 0


# -- the file: empty, older, missing, foreign, never written --------------------------------------


def test_an_empty_ledger(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    SQLiteLedger(path).close()
    for ledger in (f"sqlite:///{path}", MemoryLedger()):
        summary = summarize(ledger, group_by=["tenant"])
        assert summary["total"] == dict(build_report([]).total) and summary["groups"] == []
        assert (summary["first"], summary["last"]) == (None, None)
        assert summary["over_time"] == {"buckets": [], "series": []}
        assert summary["models"] == [] and summary["decisions"]["series"]["blocked"] == []
        assert summary["tokens"]["cache_saved_usd"] == 0.0 and summary["flagged"]["unpriced_models"] == []
        plain = summarize(ledger, since=1_767_225_600.0, until=1_767_225_600.0 + 2 * HOUR)
        assert plain["over_time"]["series"] == [{"name": "all", "usd": [0.0, 0.0], "calls": [0, 0]}]


def _older_file(path: Path, version: int) -> CallRecord:
    """A ledger file as tollgate wrote it at schema ``version`` (1 or 2), with one record."""
    lacking = {"tool_calls"} | ({"service_tier", "parts", "unknown_usage"} if version < 2 else set())
    columns = [(n, t) for n, t in _COLUMNS if n not in lacking]
    values = {"id": "old", "started_at": 1.0, "ended_at": 2.0, "provider": "openai", "operation": "chat"}
    values |= {"request_model": "gpt-4o", "units": "{}", "usd": 0.5, "tags": '{"tenant":"acme"}'}
    values |= {"decisions": "[]", "status": "ok", "parts": "[]", "unknown_usage": "{}", "priced": 1}
    values |= {"input_tokens": 10, "output_tokens": 3}
    row = [values.get(n, 0 if "INTEGER" in t else None) for n, t in columns]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE calls (" + ", ".join(f"{n} {t}" for n, t in columns) + ")")
        names, marks = ", ".join(n for n, _ in columns), ", ".join("?" * len(row))
        conn.execute(f"INSERT INTO calls ({names}) VALUES ({marks})", row)
        conn.execute(f"pragma user_version = {version}")
    conn.close()
    usage = Usage(input_tokens=10, output_tokens=3)
    return rec("old", started_at=1.0, usd=0.5, tags={"tenant": "acme"}, usage=usage)


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_file_is_read_as_it_is(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    record = _older_file(path, version)
    before = path.read_bytes()
    summary = summarize(f"sqlite:///{path}", group_by=["tenant"])
    assert summary["total"] == dict(build_report([record]).total)
    assert summary["groups"] == [dict(row) for row in build_report([record], group_by="tenant").rows]
    assert path.read_bytes() == before  # not migrated: a report changes nothing
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma user_version").fetchone()[0] == version < SCHEMA_VERSION
    conn.close()


def test_a_missing_or_foreign_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(ValueError, match=r"no ledger at '.*nope\.db': the file does not exist"):
        summarize(f"sqlite:///{missing}")
    assert not missing.exists()  # not created
    with pytest.raises(ValueError, match="is a folder"):
        summarize(str(tmp_path))
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, just some text that is long enough to be a header" * 3)
    with pytest.raises(ValueError, match="is not a tollgate ledger"):
        summarize(str(text))
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(ValueError, match=r"it has no 'calls' table \(its tables are users\)"):
        summarize(f"sqlite:///{other}")
    assert other.read_bytes() == before
    wrong = tmp_path / "wrong.db"
    with sqlite3.connect(wrong) as conn:
        conn.execute("CREATE TABLE calls (id TEXT, amount REAL)")
    conn.close()
    with pytest.raises(ValueError, match="lacks the columns"):
        summarize(f"sqlite:///{wrong}")
    newer = tmp_path / "newer.db"
    SQLiteLedger(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute(f"pragma user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ValueError, match="newer than this tollgate reads"):
        summarize(f"sqlite:///{newer}")
    for uri in ("sqlite:///:memory:", "memory://", "https://example.com/ingest"):
        with pytest.raises(ValueError, match=r"Ledger|in-memory"):
            summarize(uri)


def test_summarize_never_writes_to_the_file(ledgers: Ledgers) -> None:
    stat = ledgers.path.stat()
    digest = hashlib.sha256(ledgers.path.read_bytes()).hexdigest()
    for options in SELECTIONS[:4]:
        summarize(ledgers.uri, **options)
    with pytest.raises(ValueError):
        summarize(ledgers.uri, group_by=["tenat"])
    assert ledgers.path.stat().st_mtime_ns == stat.st_mtime_ns
    assert hashlib.sha256(ledgers.path.read_bytes()).hexdigest() == digest


def test_an_open_ledger_is_read_with_its_pending_writes(tmp_path: Path) -> None:
    path = tmp_path / "open.db"
    with SQLiteLedger(path, flush_interval=60) as ledger:
        ledger.write(rec("a", usd=0.25))
        assert summarize(ledger)["total"]["calls"] == 1  # flushed first
        ledger.write(rec("b", usd=0.5))
        assert summarize(f"sqlite:///{path}")["total"]["calls"] == 1  # another reader: not yet committed
        assert summarize(ledger)["total"]["usd"] == 0.75
        assert summarize(ledger)["ledger"] == f"sqlite:///{path}"
