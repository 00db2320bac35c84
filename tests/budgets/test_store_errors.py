"""An unreachable store fails closed by default, or open when configured, and says so."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import tollgate
from tests.budgets.helpers import request, run
from tollgate.config import settings
from tollgate.stores.base import Charge, Hold, Reservation
from tollgate.stores.memory import MemoryStore


class DownStore(MemoryStore):
    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        raise tollgate.StoreUnavailable("redis://cache:6379/0 unreachable during reserve")

    def limits_version(self) -> int:
        raise tollgate.StoreUnavailable("redis://cache:6379/0 unreachable during limits")


def test_fails_closed_by_default() -> None:
    # Even with no ambient budget: a standing limit might apply, and the store cannot say.
    tollgate.configure(store=DownStore())
    with pytest.raises(tollgate.StoreUnavailable, match="during limits"):
        run(request())
    (record,) = settings().ledger.records()
    assert record.status == "error" and "StoreUnavailable" in (record.error or "")


def test_fails_closed_with_a_budget() -> None:
    class ReserveDown(MemoryStore):
        def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
            raise tollgate.StoreUnavailable("store down")

    tollgate.configure(store=ReserveDown())
    with tollgate.budget(usd=1), pytest.raises(tollgate.StoreUnavailable, match="store down"):
        tollgate.gate.preflight(request())
    (record,) = settings().ledger.records()
    assert record.status == "error" and record.error == "StoreUnavailable: store down"


def test_fails_open_when_configured_and_records_it() -> None:
    tollgate.configure(store=DownStore(), on_store_error="open")
    with tollgate.budget(usd=1):
        call, record = run(request())
    assert call.holds == ()
    # Once the store failed to answer, the call is not made to wait for it a second time.
    assert record.decisions == (
        {"store": "unavailable", "error": "redis://cache:6379/0 unreachable during limits"},
    )


def test_settle_trouble_never_fails_the_call(caplog: pytest.LogCaptureFixture) -> None:
    class SettleDown(MemoryStore):
        def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> None:
            raise tollgate.StoreUnavailable("store down at settle")

    tollgate.configure(store=SettleDown())
    with tollgate.budget(usd=1):
        call = tollgate.gate.preflight(request())
        record = call.finish(tollgate.gate.Outcome(tollgate.Usage(input_tokens=5, output_tokens=5)))
    assert record is not None and settings().ledger.records() == [record]  # nothing lost
    assert "could not settle call" in caplog.text and "in the store" in caplog.text
