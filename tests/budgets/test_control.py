"""The control plane in one process, through the real OpenAI SDK, on every store: alerts before
the cap, state from code, credits, temporary raises, agent-run limits and concurrency caps."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tests.budgets.helpers import completion_body, per_call_usd
from tests.conftest import http_module
from tests.stores.conftest import configure_store, redis_url
from tollgate import gate
from tollgate.alerts import Alert
from tollgate.request import LLMRequest, Usage

openai = pytest.importorskip("openai")
http = http_module("openai")

__all__ = ["redis_url"]  # the session's Redis server fixture, used by the `store` fixture below

SAY_OK = [{"role": "user", "content": "Say OK."}]


class Provider:
    """A stand-in for /v1/chat/completions: 10 prompt tokens and exactly ``max_tokens`` output
    tokens (so a call costs what it reserved), counting the calls in flight at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = self.most = self.calls = 0

    def answer(self, request: Any) -> Any:
        with self.lock:
            self.in_flight += 1
            self.calls += 1
            self.most = max(self.most, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            return http.Response(200, json=completion_body(request.content))
        finally:
            with self.lock:
                self.in_flight -= 1

    def client(self) -> Any:
        transport = http.MockTransport(self.answer)
        return tollgate.instrument(
            openai.OpenAI(api_key="sk-test", max_retries=0, http_client=http.Client(transport=transport))
        )


usd = per_call_usd


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield configure_store(request, tmp_path)
    tollgate.reset()


@pytest.fixture
def alerts() -> list[Alert]:
    fired: list[Alert] = []
    tollgate.configure(on_alert=fired.append)
    return fired


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [datetime(2026, 12, 7, 0, 0, tzinfo=UTC).timestamp()]
    monkeypatch.setattr(tollgate.preflight, "store_clock", lambda: now[0])
    return now


# -- thresholds ------------------------------------------------------------------------------------


def test_each_threshold_fires_once_before_the_block(store: str, alerts: list[Alert]) -> None:
    client = Provider().client()
    cap = 20 * usd(20)
    blocked_after = None
    daily = tollgate.budget(usd=cap, per="day", key="tenant", warn_at=(0.5, 0.8, 0.95), name="daily")
    with daily, tollgate.track(tenant="acme"):
        for i in range(25):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
            except tollgate.BudgetExceeded:
                blocked_after = blocked_after or i
                assert [a.threshold for a in alerts] == [0.5, 0.8, 0.95]  # all before the block
    assert blocked_after == 20
    assert [a.threshold for a in alerts] == [0.5, 0.8, 0.95]
    first = alerts[0]
    assert (first.kind, first.name, dict(first.key), first.unit, first.limit) == (
        "threshold",
        "daily",
        {"tenant": "acme"},
        "usd",
        cap,
    )
    assert first.spent == pytest.approx(10 * usd(20)) and first.window_end is not None
    assert "crossed 50%" in first.message() and "tenant=acme" in first.message()
    # Another key has its own thresholds.
    with (
        tollgate.budget(usd=cap, per="day", key="tenant", warn_at=0.5, name="daily"),
        tollgate.track(tenant="b"),
    ):
        for _ in range(11):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
    assert [(a.threshold, a.key["tenant"]) for a in alerts[3:]] == [(0.5, "b")]


def test_one_call_crossing_two_thresholds_fires_both(store: str, alerts: list[Alert]) -> None:
    with tollgate.budget(usd=usd(100) * 1.1, warn_at=(0.2, 0.5, 0.99)):
        Provider().client().chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=100)
    assert [a.threshold for a in alerts] == [0.2, 0.5]


def test_a_new_window_arms_the_thresholds_again(store: str, alerts: list[Alert], clock: list[float]) -> None:
    client = Provider().client()
    for day in range(2):
        clock[0] += day * 86_400
        with tollgate.budget(usd=2 * usd(20), per="day", warn_at=0.5, name="d"):
            for _ in range(2):
                client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
    assert [a.window_end for a in alerts] == [
        datetime(2026, 12, 8, tzinfo=UTC),
        datetime(2026, 12, 9, tzinfo=UTC),
    ]


def test_standing_limit_alerts_carry_the_match(store: str, alerts: list[Alert]) -> None:
    tollgate.set_limit(usd=4 * usd(20), per="month", warn_at=(0.5,), tenant="acme")
    with tollgate.track(tenant="acme", feature="search"):
        for _ in range(3):
            Provider().client().chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
    (alert,) = alerts
    assert alert.name == "limit[tenant=acme]" and dict(alert.key) == {"tenant": "acme"}


def test_alert_hooks_that_fail_never_fail_the_call(
    alerts: list[Alert], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("hook bug")

    tollgate.configure(on_alert=[broken, alerts.append])
    with tollgate.budget(usd=usd(20) * 1.5, warn_at=0.5):
        Provider().client().chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
    assert len(alerts) == 1 and "on_alert hook" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"warn_at": (0.5, 1.2)}, "warn_at"),
        ({"warn_at": "half"}, "warn_at"),
        ({"warn_at": 0.5, "per": timedelta(hours=1)}, "rolling window"),
        ({"burn_rate": True}, "calendar window"),
        ({"burn_rate": timedelta(days=2), "per": "day"}, "shorter than the window"),
    ],
)
def test_bad_alert_settings_are_refused_at_creation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tollgate.budget(usd=1, **kwargs)


def test_on_alert_must_be_callable() -> None:
    with pytest.raises(ValueError, match="on_alert="):
        tollgate.configure(on_alert="https://hooks.slack.com/x")  # type: ignore[arg-type]


# -- burn rate ---------------------------------------------------------------------------------------


def spend(client: Any, clock: list[float], calls: int, every: float) -> int:
    """Make ``calls`` calls ``every`` seconds apart on the fake clock; the number that went through."""
    done = 0
    for _ in range(calls):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
            done += 1
        except tollgate.BudgetExceeded:
            break
        clock[0] += every
    return done


def test_burn_rate_fires_before_the_cap_in_a_runaway(
    store: str, alerts: list[Alert], clock: list[float]
) -> None:
    client = Provider().client()
    cap = 100 * usd(20)
    with tollgate.budget(usd=cap, per="day", burn_rate=timedelta(hours=1), name="runaway"):
        clock[0] += 8 * 3_600  # a quiet morning, then a loop at 60 calls an hour: the cap by ~09:40
        spend(client, clock, 5, every=3_600 / 5)
        assert alerts == []
        done = spend(client, clock, 200, every=60)
    assert done < 200  # the cap held
    (alert,) = alerts
    assert alert.kind == "burn_rate" and alert.exhausted_at is not None and alert.window_end is not None
    assert alert.spent < cap and alert.exhausted_at < alert.window_end
    assert alert.at < alert.exhausted_at
    assert "burning fast" in alert.message()


def test_burn_rate_is_quiet_under_a_steady_load(store: str, alerts: list[Alert], clock: list[float]) -> None:
    client = Provider().client()
    with tollgate.budget(usd=100 * usd(20), per="day", burn_rate=True, warn_at=0.5, name="steady"):
        done = spend(client, clock, 70, every=86_400 / 72)  # 70% of the cap, spread over the day
    assert done == 70
    assert [a.kind for a in alerts] == ["threshold"]


# -- state from code --------------------------------------------------------------------------------


def test_usage_of_a_windowed_budget_and_its_handle(store: str, clock: list[float]) -> None:
    client = Provider().client()
    cap = 10 * usd(20)
    with (
        tollgate.budget(usd=cap, per="day", key="tenant", name="per-tenant") as b,
        tollgate.track(tenant="acme"),
    ):
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        assert b.spent == pytest.approx(3 * usd(20))
        assert b.remaining == pytest.approx(7 * usd(20))
        assert b.limit == cap
    state = tollgate.usage("per-tenant", tenant="acme")
    assert (state.unit, state.spent, state.reserved) == ("usd", pytest.approx(3 * usd(20)), 0.0)
    assert state.window_start == datetime(2026, 12, 7, tzinfo=UTC)
    assert state.window_end == datetime(2026, 12, 8, tzinfo=UTC)
    assert tollgate.usage("per-tenant", tenant="other").spent == 0.0
    with pytest.raises(ValueError, match="kept per tenant"):
        tollgate.usage("per-tenant")
    with pytest.raises(ValueError, match="no windowed budget of that name"):
        tollgate.usage("no-such-budget")


def test_usage_sees_holds_of_calls_in_flight(store: str) -> None:
    with tollgate.budget(usd=1.0, per="hour", name="held") as b:
        call = gate.preflight(
            LLMRequest(
                provider="openai",
                operation="chat",
                model="gpt-4o-mini",
                messages=SAY_OK,
                max_output_tokens=20,
            )
        )
        assert b.reserved == pytest.approx(call.estimate.usd)
        call.finish(gate.Outcome(Usage(10, 20)))
        assert (b.reserved, b.spent) == (0.0, pytest.approx(usd(20)))


def test_reset_usage_starts_the_window_again(store: str) -> None:
    tollgate.set_limit(usd=3 * usd(20), per="day", tenant="acme")
    client = Provider().client()
    with tollgate.track(tenant="acme"):
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        with pytest.raises(tollgate.BudgetExceeded):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        state = tollgate.reset_usage(tenant="acme")
        assert state.spent == 0.0 and state.remaining == pytest.approx(3 * usd(20))
        client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
    assert tollgate.usage(tenant="acme").spent == pytest.approx(usd(20))


def test_a_temporary_raise_lapses_back(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tollgate.set_limit(usd=2 * usd(20), per="month", tenant="acme")
    until = datetime.now(UTC) + timedelta(hours=1)
    tollgate.set_limit(usd=4 * usd(20), per="month", until=until, tenant="acme")
    state = tollgate.usage(tenant="acme")
    assert state.limit == pytest.approx(4 * usd(20)) and state.until == until.replace(
        microsecond=state.until.microsecond if state.until else 0
    )
    client = Provider().client()
    with tollgate.track(tenant="acme"):
        for _ in range(3):  # the raise lets a third call through
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        later = until.timestamp() + 1
        monkeypatch.setattr(tollgate.budgets.standing.time, "time", lambda: later)
        monkeypatch.setattr(tollgate.control.time, "time", lambda: later)
        assert tollgate.usage(tenant="acme").limit == pytest.approx(2 * usd(20))
        with pytest.raises(tollgate.BudgetExceeded):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)


def test_a_raise_without_a_limit_lapses_into_none(store: str) -> None:
    tollgate.set_limit(usd=usd(20), per="day", until=datetime.now(UTC) + timedelta(minutes=5), tenant="t")
    assert tollgate.usage(tenant="t").limit == pytest.approx(usd(20))


@pytest.mark.parametrize(
    "until",
    [datetime(2030, 1, 1), datetime(2020, 1, 1, tzinfo=UTC), "2030-01-01"],
    ids=["naive", "past", "str"],
)
def test_a_bad_until_is_refused(until: Any) -> None:
    with pytest.raises(ValueError, match="until="):
        tollgate.set_limit(usd=1, per="day", until=until, tenant="acme")


def test_a_raise_must_keep_the_window() -> None:
    tollgate.set_limit(usd=1, per="day", tenant="acme")
    with pytest.raises(ValueError, match="keeps the limit's window"):
        tollgate.set_limit(usd=2, per="month", until=datetime.now(UTC) + timedelta(hours=1), tenant="acme")


# -- credits -------------------------------------------------------------------------------------------


def test_prepaid_credit_and_top_ups(store: str, clock: list[float]) -> None:
    tollgate.set_limit(usd=2 * usd(20), per=None, tenant="acme")
    client = Provider().client()
    with tollgate.track(tenant="acme"):
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        with pytest.raises(tollgate.BudgetExceeded):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        state = tollgate.top_up(usd=usd(20), tenant="acme")
        assert state.limit == pytest.approx(3 * usd(20)) and state.topped_up == pytest.approx(usd(20))
        assert state.window_start is None and state.window_end is None
        client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        clock[0] += 400 * 86_400  # credit never resets
        with pytest.raises(tollgate.BudgetExceeded):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
    assert tollgate.usage(tenant="acme").spent == pytest.approx(3 * usd(20))
    (top,) = [r for r in tollgate.records() if r.operation == "top_up"]
    assert (top.provider, dict(top.tags), top.usd) == ("tollgate", {"tenant": "acme"}, 0.0)
    assert top.decisions[0]["added_usd"] == pytest.approx(usd(20))
    assert (
        tollgate.report().total["calls"] == 5
    )  # 3 calls and 2 refused; the top-up is in the ledger, not counted as a call


def test_top_up_needs_a_lifetime_limit() -> None:
    with pytest.raises(ValueError, match="set one first"):
        tollgate.top_up(usd=5, tenant="acme")
    tollgate.set_limit(usd=5, per="month", tenant="acme")
    with pytest.raises(ValueError, match="lifetime limits only"):
        tollgate.top_up(usd=5, tenant="acme")
    with pytest.raises(ValueError, match="top_up usd"):
        tollgate.top_up(usd=-5, tenant="acme")


def test_concurrent_top_ups_all_count(store: str) -> None:
    tollgate.set_limit(usd=1.0, per=None, tenant="acme")
    threads = [
        threading.Thread(target=lambda: [tollgate.top_up(usd=0.25, tenant="acme") for _ in range(5)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tollgate.usage(tenant="acme").limit == pytest.approx(6.0)


# -- agent-run limits -----------------------------------------------------------------------------------


def test_calls_limit_counts_model_calls(store: str) -> None:
    client = Provider().client()
    with tollgate.budget(calls=3) as b:
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        with pytest.raises(tollgate.BudgetExceeded) as info:
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        assert b.spent == 3
    assert info.value.unit == "calls" and "3 calls" in str(info.value)


def test_tool_calls_limit_stops_the_run_once_past(store: str) -> None:
    req = LLMRequest(
        provider="openai", operation="chat", model="gpt-4o-mini", messages=SAY_OK, max_output_tokens=20
    )
    with tollgate.budget(tool_calls=3, usd=1.0) as b:
        for asked in (2, 1, 1):  # 2, 3, then 4 tool calls: past the limit
            gate.preflight(req).finish(gate.Outcome(Usage(10, 20), tool_calls=asked))
        assert b.state("tool_calls").spent == 4
        with pytest.raises(tollgate.BudgetExceeded) as info:
            gate.preflight(req)
    assert info.value.unit == "tool_calls"


# -- concurrency ------------------------------------------------------------------------------------


def test_concurrency_cap_holds_across_threads(store: str) -> None:
    provider = Provider(delay=0.02)
    client = provider.client()
    tollgate.limit(concurrent=3, model="gpt-4o-mini")

    def worker() -> None:
        for _ in range(5):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert provider.calls == 40 and provider.most == 3
    assert tollgate.leases.keeper.held() == 0


def test_concurrency_cap_refuses_without_waiting(store: str) -> None:
    tollgate.limit(concurrent=1, wait=False)
    req = LLMRequest(
        provider="openai", operation="chat", model="gpt-4o-mini", messages=SAY_OK, max_output_tokens=20
    )
    first = gate.preflight(req)
    with pytest.raises(tollgate.RateLimited, match="concurrency limit"):
        gate.preflight(req)
    first.finish(gate.Outcome(Usage(10, 20)))
    gate.preflight(req).finish(gate.Outcome(Usage(10, 20)))  # the slot came back
    blocked = [r for r in tollgate.records() if r.status == "blocked"]
    assert len(blocked) == 1 and blocked[0].decisions[-1]["action"] == "rate_limited"


def test_a_call_blocked_by_a_budget_gives_its_slot_back(store: str) -> None:
    tollgate.limit(concurrent=1, wait=False)
    req = LLMRequest(
        provider="openai", operation="chat", model="gpt-4o-mini", messages=SAY_OK, max_output_tokens=20
    )
    with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        gate.preflight(req)
    gate.preflight(req).finish(gate.Outcome(Usage(10, 20)))


def test_concurrency_limit_validation() -> None:
    with pytest.raises(ValueError, match="concurrent"):
        tollgate.limit(concurrent=0)
    with pytest.raises(ValueError, match="lease"):
        tollgate.limit(concurrent=2, lease=0)


# -- time zones ------------------------------------------------------------------------------------


def test_a_day_in_new_york_across_the_dst_change(store: str, clock: list[float]) -> None:
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    client = Provider().client()
    cap = 2 * usd(20)
    daily = tollgate.budget(usd=cap, per="day", tz="America/New_York", name="ny-daily")
    # 2026-11-01 is 25 hours long in New York: from 04:00 UTC to 05:00 UTC the next day.
    clock[0] = datetime(2026, 11, 1, 0, 30, tzinfo=ny).timestamp()
    with daily as b:
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        state = b.state()
        assert state.window_start == datetime(2026, 11, 1, tzinfo=ny)
        assert state.window_end is not None and state.window_start is not None
        assert state.window_end.timestamp() - state.window_start.timestamp() == 25 * 3_600
        clock[0] = datetime(2026, 11, 1, 23, 30, tzinfo=ny).timestamp()  # 04:30 UTC on the 2nd
        with pytest.raises(tollgate.BudgetExceeded):  # still the same New York day
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        clock[0] = datetime(2026, 11, 2, 0, 5, tzinfo=ny).timestamp()  # past local midnight
        client.chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
        assert b.spent == pytest.approx(usd(20))


def test_a_standing_limit_in_a_time_zone(store: str, clock: list[float]) -> None:
    tollgate.set_limit(usd=1.0, per="day", tz="Asia/Kolkata", tenant="acme")
    clock[0] = datetime(2026, 12, 7, 20, 0, tzinfo=UTC).timestamp()  # 01:30 on the 8th in Kolkata
    state = tollgate.usage(tenant="acme")
    assert state.window_start == datetime(2026, 12, 7, 18, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="did you mean"):
        tollgate.set_limit(usd=1.0, per="day", tz="Asia/Kolkatta", tenant="acme")


def test_a_raise_keeps_the_units_it_does_not_name(store: str) -> None:
    tollgate.set_limit(usd=1.0, tokens=1_000, per="day", tenant="acme")
    tollgate.set_limit(usd=2.0, per="day", until=datetime.now(UTC) + timedelta(hours=1), tenant="acme")
    assert tollgate.usage(tenant="acme").limit == 2.0
    assert tollgate.usage(unit="tokens", tenant="acme").limit == 1_000


def test_a_raise_over_a_lapsing_raise_still_lapses(monkeypatch: pytest.MonkeyPatch) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    tollgate.set_limit(usd=5, per="day", until=soon, tenant="a")
    tollgate.set_limit(usd=9, per="day", until=soon, tenant="a")
    assert tollgate.usage(tenant="a").limit == 9
    later = soon.timestamp() + 1
    monkeypatch.setattr(tollgate.budgets.standing.time, "time", lambda: later)
    monkeypatch.setattr(tollgate.control.time, "time", lambda: later)
    with pytest.raises(ValueError, match="no standing limit matches"):
        tollgate.usage(tenant="a")


def test_usage_of_a_keyed_limit_names_the_missing_key() -> None:
    tollgate.set_limit(usd=5, per="day", key="api_key", plan="free")
    with pytest.raises(ValueError, match="kept per api_key"):
        tollgate.usage(plan="free")
    assert tollgate.usage(plan="free", api_key="k-1").spent == 0.0


def test_a_lost_call_does_not_hold_its_slot_forever(store: str) -> None:
    import gc

    tollgate.limit(concurrent=1, lease=1, wait=False)
    req = LLMRequest(
        provider="openai", operation="chat", model="gpt-4o-mini", messages=SAY_OK, max_output_tokens=20
    )
    lost = gate.preflight(req)  # a door that never ends its call, then drops it
    assert tollgate.leases.keeper.held() == 1
    del lost
    gc.collect()
    for _ in range(100):  # the keeper notices at its next round (a third of the lease)
        if tollgate.leases.keeper.held() == 0:
            break
        time.sleep(0.05)
    assert tollgate.leases.keeper.held() == 0
    gate.preflight(req).finish(gate.Outcome(Usage(10, 20)))  # the slot is free in the store too
