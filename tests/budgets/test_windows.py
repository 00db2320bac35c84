"""Windowed and keyed budgets: persistent counters, UTC rollover (injected clock), tenants."""

from __future__ import annotations

from datetime import timedelta

import pytest

import tollgate
from tests.budgets.helpers import request, run

MIDNIGHT = 1_795_046_400.0  # 2026-11-18 00:00:00 UTC


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    now = [MIDNIGHT - 60]
    monkeypatch.setattr(tollgate.preflight, "store_clock", lambda: now[0])
    return now


def daily() -> tollgate.budget:
    return tollgate.budget(usd=0.011, per="day", key="tenant")


def test_windowed_budget_accumulates_across_blocks_and_rolls_over_at_midnight(clock) -> None:  # type: ignore[no-untyped-def]
    with tollgate.track(tenant="acme"):
        for _ in range(2):  # separate blocks, like separate requests: one counter
            with daily():
                run(request(cap=500), output_tokens=500)
        with daily(), pytest.raises(tollgate.BudgetExceeded, match=r"usd=0\.011/day/tenant"):
            run(request(cap=500))
        clock[0] = MIDNIGHT  # a new UTC day
        with daily():
            run(request(cap=500))


def test_key_keeps_one_counter_per_tenant(clock) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        with tollgate.track(tenant="acme"), daily():
            run(request(cap=500), output_tokens=500)
    with tollgate.track(tenant="acme"), daily(), pytest.raises(tollgate.BudgetExceeded):
        run(request(cap=500))
    with tollgate.track(tenant="globex"), daily():  # untouched by acme's spending
        run(request(cap=500))


def test_rolling_window_frees_spend_as_it_ages(clock) -> None:  # type: ignore[no-untyped-def]
    def hourly() -> tollgate.budget:
        return tollgate.budget(usd=0.006, per=timedelta(hours=1))

    with hourly():
        run(request(cap=500), output_tokens=500)
    clock[0] += 1800
    with hourly(), pytest.raises(tollgate.BudgetExceeded):
        run(request(cap=500))
    clock[0] += 1800 + 120  # the first call has left the window
    with hourly():
        run(request(cap=500))
