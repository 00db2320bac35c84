"""tollgate.record(): usage learned elsewhere counts against budgets, and shows in reports and spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import tollgate
from tests.stores.conftest import redis_url  # noqa: F401 - a private redis-server, if there is one
from tollgate.demo import offline_client
from tollgate.pricing import default_table

MESSAGES = [{"role": "user", "content": "Name the capital of France in one word."}]


def gpt4o() -> tuple[float, float]:
    p = default_table().lookup("gpt-4o", "openai")
    assert p is not None and p.input and p.output
    return p.input, p.output


def test_record_is_priced_tagged_and_reported() -> None:
    i, o = gpt4o()
    with tollgate.track(tenant="acme"):
        rec = tollgate.record(
            provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300, feature="batch"
        )
    assert rec.usd == pytest.approx(1200 * i + 300 * o)
    assert dict(rec.tags) == {"tenant": "acme", "feature": "batch"}
    assert (rec.status, rec.estimated, rec.operation, rec.decisions) == (
        "ok",
        False,
        "chat",
        ({"action": "record"},),
    )
    (row,) = tollgate.report(group_by=["tenant", "feature"])
    assert row["tags"] == {"tenant": "acme", "feature": "batch"}
    assert (row["calls"], row["input_tokens"], row["output_tokens"]) == (1, 1200, 300)
    assert row["usd"] == pytest.approx(rec.usd)


def test_other_usage_fields_units_and_a_known_cost() -> None:
    i, o = gpt4o()
    p = default_table().lookup("gpt-4o", "openai")
    assert p is not None and p.cache_read is not None
    rec = tollgate.record(
        provider="openai",
        model="gpt-4o",
        input_tokens=2000,
        output_tokens=100,
        cache_read_tokens=1024,
        reasoning_tokens=0,
        feature="batch",
    )
    assert rec.usage.cache_read_tokens == 1024
    assert rec.usd == pytest.approx(976 * i + 1024 * p.cache_read + 100 * o)
    invoiced = tollgate.record(
        provider="openai", model="gpt-4o", input_tokens=10, output_tokens=1, usd=1.25, units={"images": 2}
    )
    assert invoiced.usd == 1.25 and invoiced.usage.units == {"images": 2}


def test_record_counts_against_the_enclosing_budget_and_is_never_refused() -> None:
    with tollgate.budget(usd=0.01, on_exceed="block"):
        # $0.0275 against a $0.01 cap: counted, not refused (the tokens are spent already)
        tollgate.record(provider="openai", model="gpt-4o", input_tokens=3000, output_tokens=2000)
        client = offline_client()
        with pytest.raises(tollgate.BudgetExceeded) as info:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    assert info.value.spent == pytest.approx(0.0275)
    recorded, blocked = tollgate.config.settings().ledger.records()
    assert (recorded.status, blocked.status) == ("ok", "blocked")


def test_record_counts_against_a_tenants_windowed_budget_and_standing_limit() -> None:
    client = offline_client()
    tollgate.set_limit(usd=0.05, per="month", on_exceed="block", tenant="acme")
    tollgate.record(
        provider="openai", model="gpt-4o", input_tokens=10_000, output_tokens=2_000, tenant="acme"
    )
    tollgate.record(
        provider="openai", model="gpt-4o", input_tokens=10_000, output_tokens=2_000, tenant="beta"
    )
    with tollgate.track(tenant="acme"), pytest.raises(tollgate.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=2_000)
    with tollgate.track(tenant="beta"):  # another tenant's record does not count against acme
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=2_000)
    daily = tollgate.budget(usd=0.06, per="day", key="tenant", on_exceed="block")
    with daily, tollgate.track(tenant="gamma"):
        tollgate.record(provider="openai", model="gpt-4o", input_tokens=20_000, output_tokens=0)
    with daily, tollgate.track(tenant="gamma"), pytest.raises(tollgate.BudgetExceeded) as info:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=2_000)
    assert info.value.spent == pytest.approx(0.05)


def test_record_works_with_the_sqlite_store_across_processes_view(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "state.db"
    tollgate.configure(store=f"sqlite:///{db}")
    with tollgate.budget(usd=1, per="day", name="team", on_exceed="block"):
        tollgate.record(provider="openai", model="gpt-4o", input_tokens=100_000, output_tokens=0)
    tollgate.configure(store=f"sqlite:///{db}")  # a fresh store object on the same file
    with (
        tollgate.budget(usd=1, per="day", name="team", on_exceed="block"),
        pytest.raises(tollgate.BudgetExceeded) as info,
    ):
        tollgate.record(provider="openai", model="gpt-4o", input_tokens=300_000, output_tokens=0)
        offline_client().chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=10)
    assert info.value.spent == pytest.approx(1.0)


def test_record_dates_the_call_for_reports() -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    tollgate.record(
        provider="openai",
        model="gpt-4o",
        input_tokens=100,
        output_tokens=10,
        started_at=yesterday,
        job="nightly",
    )
    tollgate.record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=10, job="now")
    assert [r["tags"]["job"] for r in tollgate.report(group_by="job", since="1h")] == ["now"]
    old = tollgate.config.settings().ledger.records()[0]
    assert old.started_at == pytest.approx(yesterday.timestamp()) and old.ended_at == old.started_at


@pytest.mark.parametrize("store", ["memory://", "sqlite", "redis"])
def test_windowed_budgets_count_a_record_in_the_window_it_happened(store: str, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    if store == "redis":
        import uuid

        from tollgate.stores.redis import RedisStore

        tollgate.configure(
            store=RedisStore(request.getfixturevalue("redis_url"), prefix=f"t{uuid.uuid4().hex}")
        )
    else:
        tollgate.configure(store=f"sqlite:///{tmp_path / 's.db'}" if store == "sqlite" else store)
    daily = tollgate.budget(usd=1, per="day", name="daily", on_exceed="block")
    big = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1_000_000, "output_tokens": 0}  # $2.50
    client = offline_client()
    with daily:
        tollgate.record(**big, started_at=datetime.now(UTC) - timedelta(days=1))  # yesterday's batch
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)  # today: room
        tollgate.record(**big)  # today's
        with pytest.raises(tollgate.BudgetExceeded) as info:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    assert info.value.spent == pytest.approx(2.5, rel=1e-3)


def test_record_reaches_on_record_hooks_and_spans() -> None:
    seen: list[tollgate.CallRecord] = []
    tollgate.configure(on_record=seen.append)
    rec = tollgate.record(provider="anthropic", model="claude-sonnet-4-5", input_tokens=50, output_tokens=5)
    assert seen == [rec] and rec.usd > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_tokens": -5}, r"record\(input_tokens=-5\): a count of tokens"),
        ({"output_tokens": 1.5}, r"record\(output_tokens=1.5\)"),
        ({"cache_read_tokens": True}, r"record\(cache_read_tokens=True\)"),
        ({"model": ""}, r"record\(model=''\): a non-empty string"),
        ({"usd": -1}, r"record\(usd=-1\)"),
        ({"status": "done"}, r"record\(status='done'\) is not one of"),
        ({"feature": ["a"]}, r"tag feature=\['a'\]: tag values must be"),
        ({"started_at": "yesterday"}, r"record\(started_at='yesterday'\)"),
        ({"units": {"images": -1}}, r"record\(units="),
        ({"tool_calls": -1}, r"record\(tool_calls=-1\): a count of tool calls"),
    ],
)
def test_bad_input_is_refused_with_the_problem_named(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1}
    with pytest.raises(ValueError, match=message):
        tollgate.record(**{**args, **kwargs})  # type: ignore[arg-type]
    assert tollgate.config.settings().ledger.records() == []


def test_record_keeps_the_tool_calls_and_reports_them() -> None:
    rec = tollgate.record(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=5, tool_calls=3)
    assert rec.tool_calls == 3 and "tool_calls" not in rec.tags
    tollgate.record(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=5)
    assert [r.tool_calls for r in tollgate.records()] == [3, 0]
    assert tollgate.report().total["tool_calls"] == 3


def test_unpriced_model_follows_on_unpriced() -> None:
    with pytest.warns(tollgate.UnpricedModelWarning):
        rec = tollgate.record(provider="acme", model="house-model", input_tokens=10, output_tokens=1)
    assert (rec.usd, rec.priced) == (0.0, False)
    tollgate.configure(on_unpriced="raise")
    with pytest.raises(tollgate.UnpricedModelError):
        tollgate.record(provider="acme", model="house-model", input_tokens=10, output_tokens=1)
    assert len(tollgate.config.settings().ledger.records()) == 1
    rec = tollgate.record(provider="acme", model="house-model", input_tokens=10, output_tokens=1, usd=0.5)
    assert rec.usd == 0.5 and rec.priced


def test_a_store_that_is_down_still_records(caplog: pytest.LogCaptureFixture) -> None:
    tollgate.configure(store="redis://127.0.0.1:1/0")  # nothing listens on port 1
    with tollgate.budget(usd=1, per="day", on_exceed="block"):
        rec = tollgate.record(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=1)
    assert rec.decisions[-1]["store"] == "unavailable"
    assert tollgate.config.settings().ledger.records() == [rec]
    assert "could not charge a usage record" in caplog.text
