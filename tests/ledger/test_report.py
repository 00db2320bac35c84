"""build_report / Report / parse_time: grouping, filtering, totals, assert_under, output formats."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tollgate.ledger import Report, build_report, parse_time
from tollgate.request import CallRecord, Usage


def rec(
    id: str,
    usd: float = 0.0,
    tags: dict[str, str] | None = None,
    model: str = "gpt-4o",
    provider: str = "openai",
    **kw: object,
) -> CallRecord:
    return CallRecord(
        id=id,
        started_at=0.0,
        ended_at=1.0,
        provider=provider,
        operation="chat",
        request_model=model,
        usd=usd,
        tags=tags or {},
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def records() -> list[CallRecord]:
    return [
        rec(
            "1",
            0.10,
            {"feature": "search", "user_id": "alice"},
            usage=Usage(input_tokens=100, output_tokens=10),
        ),
        rec(
            "2",
            0.20,
            {"feature": "search", "user_id": "bob"},
            usage=Usage(input_tokens=200, output_tokens=20),
        ),
        rec(
            "3", 0.05, {"feature": "chat", "user_id": "alice"}, usage=Usage(input_tokens=50, output_tokens=5)
        ),
        rec(
            "4",
            0.0,
            {"feature": "chat"},
            model="house-llm",
            provider="house",
            priced=False,
            usage=Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=800, reasoning_tokens=40),
        ),
        rec("5", 0.0, {"feature": "search", "user_id": "bob"}, status="blocked"),
        rec("6", 0.0, {}, status="error", error="timeout"),
        rec(
            "7",
            0.01,
            {"feature": "chat", "user_id": "carol"},
            status="abandoned",
            estimated=True,
            usage=Usage(input_tokens=10, output_tokens=3, cache_write_tokens=7),
        ),
    ]


def by_tags(report: Report) -> dict[tuple[object, ...], dict[str, object]]:
    return {tuple(row["tags"].values()): dict(row) for row in report}


def test_group_by_one_tag(records: list[CallRecord]) -> None:
    report = build_report(records, group_by="feature")
    assert [row["tags"] for row in report] == [{"feature": "search"}, {"feature": "chat"}, {"feature": None}]
    search = report.rows[0]
    assert search["calls"] == 3
    assert search["usd"] == pytest.approx(0.30)
    assert search["input_tokens"] == 300
    assert search["output_tokens"] == 30
    assert search["blocked_calls"] == 1
    chat = report.rows[1]
    assert (chat["calls"], chat["unpriced_calls"], chat["estimated_calls"]) == (3, 1, 1)
    assert (chat["cache_read_tokens"], chat["cache_write_tokens"], chat["reasoning_tokens"]) == (800, 7, 40)
    assert report.rows[2]["errors"] == 1


def test_group_by_several_tags_and_a_missing_tag_is_none(records: list[CallRecord]) -> None:
    report = build_report(records, group_by=["feature", "user_id"])
    rows = by_tags(report)
    assert rows[("search", "bob")]["calls"] == 2
    assert rows[("chat", None)]["calls"] == 1
    assert rows[(None, None)]["errors"] == 1
    assert len(report) == 6
    assert set(report.rows[0]) == {
        "tags", "calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "reasoning_tokens", "usd", "unpriced_calls", "blocked_calls", "errors", "estimated_calls",
        "unknown_usage_calls", "unknown_usage", "tool_calls", "parts_usd",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model", {"gpt-4o": 6, "house-llm": 1}),
        ("provider", {"openai": 6, "house": 1}),
        ("operation", {"chat": 7}),
        ("status", {"ok": 4, "blocked": 1, "error": 1, "abandoned": 1}),
    ],
)
def test_group_by_record_fields(records: list[CallRecord], name: str, expected: dict[str, int]) -> None:
    report = build_report(records, group_by=name)
    assert {row["tags"][name]: row["calls"] for row in report} == expected


def test_rows_are_sorted_by_usd_descending(records: list[CallRecord]) -> None:
    usd = [row["usd"] for row in build_report(records, group_by="user_id")]
    assert usd == sorted(usd, reverse=True)
    assert usd[0] == pytest.approx(0.20)


def test_no_group_by_gives_one_row_equal_to_the_total(records: list[CallRecord]) -> None:
    report = build_report(records)
    assert len(report) == 1
    assert report.rows[0] == report.total
    assert report.total["tags"] == {}
    assert report.total["calls"] == 7
    assert report.total["usd"] == pytest.approx(0.36)
    assert report.total["input_tokens"] == 1360
    assert (report.total["unpriced_calls"], report.total["blocked_calls"]) == (1, 1)
    assert (report.total["errors"], report.total["estimated_calls"]) == (1, 1)


def test_no_records() -> None:
    report = build_report([], group_by="feature")
    assert list(report) == []
    assert report.total["calls"] == 0
    assert report.total["usd"] == 0.0


def test_where_by_tag_value_collection_field_and_callable(records: list[CallRecord]) -> None:
    assert build_report(records, where={"feature": "search"}).total["calls"] == 3
    assert build_report(records, where={"user_id": ["alice", "carol"]}).total["calls"] == 3
    assert build_report(records, where={"feature": "chat", "user_id": "alice"}).total["calls"] == 1
    assert build_report(records, where={"model": "house-llm"}).total["unpriced_calls"] == 1
    assert build_report(records, where={"user_id": None}).total["calls"] == 2  # records lacking the tag
    assert build_report(records, where=lambda r: r.usd > 0.06).total["calls"] == 2
    grouped = build_report(records, group_by="user_id", where={"feature": "search"})
    assert {row["tags"]["user_id"] for row in grouped} == {"alice", "bob"}


def test_where_compares_non_string_values_as_tags_are_strings() -> None:
    report = build_report([rec("1", tags={"user_id": "42"})], where={"user_id": 42})
    assert report.total["calls"] == 1


@pytest.mark.parametrize("bad", [["feature"], "feature", 3])
def test_bad_where_is_rejected(records: list[CallRecord], bad: object) -> None:
    with pytest.raises(ValueError, match="where"):
        build_report(records, where=bad)  # type: ignore[arg-type]


def test_bad_group_by_is_rejected(records: list[CallRecord]) -> None:
    with pytest.raises(ValueError, match="group_by"):
        build_report(records, group_by=["feature", 3])  # type: ignore[list-item]


def test_usd_total_does_not_depend_on_record_order() -> None:
    many = [rec(str(i), 0.1) for i in range(10)]
    assert build_report(many).total["usd"] == 1.0  # exact, not 0.9999999999999999


def test_assert_under_passes_and_chains(records: list[CallRecord]) -> None:
    report = build_report(records, group_by="feature")
    assert report.assert_under(usd=1.0) is report
    assert report.assert_under(usd=0.30, feature="search") is report  # the limit is inclusive
    report.assert_under(usd=0.01, user_id="nobody")  # nothing matches: nothing spent
    report.assert_under(usd=1, tokens=1_500, calls=7)


def test_assert_under_fails_with_the_numbers(records: list[CallRecord]) -> None:
    report = build_report(records, group_by="user_id")  # not grouped by feature: still filterable
    with pytest.raises(AssertionError) as info:
        report.assert_under(usd=0.05, feature="search")
    message = str(info.value)
    assert "feature='search'" in message
    assert "$0.3 > limit $0.05" in message
    assert "3 calls" in message


def test_assert_under_tokens_calls_and_several_tags(records: list[CallRecord]) -> None:
    report = build_report(records)
    with pytest.raises(AssertionError, match=r"tokens 330 > limit 100.*calls 3 > limit 2"):
        report.assert_under(tokens=100, calls=2, feature="search")
    with pytest.raises(AssertionError, match=r"for feature='chat', user_id=\['alice', 'carol'\]: usd"):
        report.assert_under(usd=0.01, feature="chat", user_id=["alice", "carol"])
    with pytest.raises(AssertionError, match=r"for all calls: .*\(7 calls, 1 unpriced and not in usd\)"):
        report.assert_under(usd=0.1)


def test_assert_under_filters_on_model(records: list[CallRecord]) -> None:
    report = build_report(records)
    report.assert_under(usd=0.0, model="house-llm")
    with pytest.raises(
        AssertionError, match=r"model='house-llm': tokens 1,100 > limit 1,000 \(1 call, 1 unp"
    ):
        report.assert_under(tokens=1000, model="house-llm")


def test_assert_under_needs_a_limit(records: list[CallRecord]) -> None:
    with pytest.raises(ValueError, match="at least one limit"):
        build_report(records).assert_under(feature="search")


def test_str_is_an_aligned_table(records: list[CallRecord]) -> None:
    text = str(build_report(records, group_by=["feature", "user_id"]))
    lines = text.splitlines()
    header = lines[0].split()
    assert header[:2] == ["feature", "user_id"]
    assert "usd" in header and "unpriced" in header and "cache read" in lines[0]
    assert set(lines[1]) == {"-"}
    assert lines[2].startswith("search") and "bob" in lines[2] and "$0.200000" in lines[2]
    assert "(none)" in text
    assert lines[-1].startswith("TOTAL") and "$0.360000" in lines[-1]
    # numeric columns are right-aligned: every usd cell ends at the same column
    usd_end = lines[0].index("usd") + len("usd")
    for line in [lines[2], lines[-1]]:
        assert line[usd_end - 1] == "0" and line[usd_end] == " "


def test_str_hides_counters_nobody_used() -> None:
    text = str(build_report([rec("1", 0.5, usage=Usage(input_tokens=1234, output_tokens=5))]))
    assert "cache read" not in text and "unpriced" not in text
    assert "1,234" in text
    assert text.splitlines()[-1].startswith("TOTAL")


def test_tool_calls_are_summed_and_shown_once_some_call_had_them() -> None:
    calls = [
        rec("1", 0.1, {"agent": "a"}, tool_calls=3),
        rec("2", 0.1, {"agent": "a"}, tool_calls=2),
        rec("3"),
    ]
    report = build_report(calls, group_by="agent")
    assert [row["tool_calls"] for row in report] == [5, 0] and report.total["tool_calls"] == 5
    header, *_, total = str(report).splitlines()
    assert header.endswith("tool calls") and total.endswith(" 5")
    assert "tool calls" not in str(build_report([rec("4")]))


def test_to_csv(records: list[CallRecord]) -> None:
    rows = list(csv.DictReader(io.StringIO(build_report(records, group_by="feature").to_csv())))
    assert [r["feature"] for r in rows] == ["search", "chat", ""]
    assert rows[0]["calls"] == "3"
    assert float(rows[0]["usd"]) == pytest.approx(0.3)
    assert rows[1]["unpriced_calls"] == "1"
    assert list(rows[0])[:3] == ["feature", "calls", "input_tokens"]


def test_to_json(records: list[CallRecord]) -> None:
    report = build_report(records, group_by="feature")
    data = json.loads(report.to_json())
    assert data["group_by"] == ["feature"]
    assert data["rows"] == report.rows
    assert data["total"]["calls"] == 7
    assert data["rows"][-1]["tags"] == {"feature": None}


# -- parse_time --------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (1_600_000_000, 1_600_000_000.0),
        (1_600_000_000.5, 1_600_000_000.5),
        ("1600000000", 1_600_000_000.0),
        (datetime(2024, 1, 1), 1_704_067_200.0),  # naive means UTC
        (datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 1_704_067_200.0),
        (date(2024, 1, 1), 1_704_067_200.0),
        (timedelta(hours=1), NOW - 3600),
        ("90s", NOW - 90),
        ("30m", NOW - 1800),
        ("24h", NOW - 86400),
        ("7d", NOW - 7 * 86400),
        ("2w", NOW - 14 * 86400),
        (" 1.5h ", NOW - 5400),
        ("2024-01-01T00:00:00Z", 1_704_067_200.0),
        ("2024-01-01T02:00:00+02:00", 1_704_067_200.0),
        ("2024-01-01", 1_704_067_200.0),
        ("2024-01-01 00:00:30", 1_704_067_230.0),
    ],
)
def test_parse_time(value: object, expected: float | None) -> None:
    assert parse_time(value, now=NOW) == expected


def test_parse_time_durations_count_back_from_the_clock() -> None:
    got = parse_time("1h")
    assert got is not None
    assert abs(got - (datetime.now(UTC).timestamp() - 3600)) < 5


@pytest.mark.parametrize("bad", ["yesterday", "7x", "", "-7d", True, math.nan, [1], "2024-13-01"])
def test_parse_time_rejects_what_it_cannot_read(bad: object) -> None:
    with pytest.raises(ValueError, match="cannot read") as info:
        parse_time(bad)
    assert repr(bad) in str(info.value)


# -- the usd column adds up as printed -----------------------------------------------------------


def printed(cells: list[str]) -> list[float]:
    return [float(cell.strip("$").replace(",", "")) for cell in cells]


def test_printed_rows_add_up_to_the_printed_total() -> None:
    # At 6 decimals these print as $0.010000 + $0.007355 = $0.017355 against a TOTAL of $0.017356.
    report = build_report([rec("1", 0.0100004, {"f": "a"}), rec("2", 0.0073554, {"f": "b"})], group_by="f")
    text = str(report)
    assert "$0.0100004" in text and "$0.0073554" in text
    assert text.splitlines()[-1].startswith("TOTAL") and text.splitlines()[-1].endswith("$0.0173558")
    rows, total = report.printed_usd()
    assert (rows, total) == (["$0.0100004", "$0.0073554"], "$0.0173558")


def test_six_decimals_when_they_add_up(records: list[CallRecord]) -> None:
    rows, total = build_report(records, group_by="feature").printed_usd()
    assert all(len(cell.split(".")[1]) == 6 for cell in [*rows, total])


def test_printed_rows_always_add_up() -> None:
    import random

    rng = random.Random(18)
    for _ in range(300):
        usd = [
            rng.choice([rng.random() * 0.02, rng.random() * 1e-4, rng.randrange(1, 10**6) / 3e9])
            for _ in range(9)
        ]
        report = build_report([rec(str(i), v, {"n": str(i)}) for i, v in enumerate(usd)], group_by="n")
        rows, total = report.printed_usd()
        places = len(total.split(".")[1])
        unit = 10.0**-places
        assert 6 <= places <= 9 and all(len(cell.split(".")[1]) == places for cell in rows)
        assert round(sum(printed(rows)) / unit) == round(printed([total])[0] / unit)  # to the last digit
        assert abs(printed([total])[0] - report.total["usd"]) <= unit / 2 + 1e-15
        for cell, row in zip(printed(rows), report.rows, strict=True):
            assert abs(cell - row["usd"]) < unit + 1e-15  # each row within one unit of its own amount


# -- unknown tag names ---------------------------------------------------------------------------


def test_unknown_tag_names_the_tags_seen_and_the_closest(records: list[CallRecord]) -> None:
    from tollgate.ledger.report import unknown_tag

    message = unknown_tag(records, ["featur"])
    assert message is not None and "'featur'" in message and "did you mean 'feature'?" in message
    assert "tags seen: feature, user_id" in message and "model" in message
    assert unknown_tag(records, ["feature", "model", "status"]) is None
    assert unknown_tag([], ["anything"]) is None  # no calls: nothing to tell by
