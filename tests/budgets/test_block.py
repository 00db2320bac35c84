from __future__ import annotations

import pytest

import tollgate
from tests.budgets.helpers import request, run
from tollgate.config import settings


def test_block_stops_the_call_before_traffic_and_records_it() -> None:
    with tollgate.budget(usd=0.012, name="loop"):
        first, _ = run(request(cap=500), output_tokens=500)  # ~ $0.005 each
        run(request(cap=500), output_tokens=500)
        with pytest.raises(tollgate.BudgetExceeded) as info:
            run(request(cap=500))
    e = info.value
    assert (e.budget, e.action, e.unit, e.limit) == ("loop", "block", "usd", 0.012)
    assert e.spent == pytest.approx(2 * first.estimate.usd, rel=0.01)
    assert e.requested == pytest.approx(first.estimate.usd)
    for part in ("'loop'", "limit $0.012", "spent $0.01", "reserved $0", "needs $0.005", "action: block"):
        assert part in str(e)
    records = settings().ledger.records()
    assert [r.status for r in records] == ["ok", "ok", "blocked"]
    assert records[-1].usd == 0 and records[-1].decisions[-1] == {"action": "block", "budget": "loop"}
    assert tollgate.report().total["blocked_calls"] == 1


def test_tokens_budget_blocks_on_input_plus_worst_case_output() -> None:
    with tollgate.budget(tokens=600):
        call, _ = run(request(cap=500), output_tokens=100)  # spent: ~18 + 100
        assert call.estimate.input_tokens + 500 <= 600
        with pytest.raises(tollgate.BudgetExceeded, match="tokens"):
            run(request(cap=500))


def test_lifetime_budget_counts_only_its_own_block() -> None:
    for _ in range(3):  # each block starts from zero
        with tollgate.budget(usd=0.006):
            run(request(cap=500), output_tokens=500)


def test_decorated_function_gets_a_fresh_budget_per_call() -> None:
    @tollgate.budget(usd=0.006)
    def answer() -> float:
        return run(request(cap=500), output_tokens=500)[1].usd

    assert answer() > 0 and answer() > 0


def test_raise_lets_the_call_run_then_raises_once_crossed() -> None:
    with tollgate.budget(usd=0.004, on_exceed="raise"):
        call, _ = run(request(cap=500), output_tokens=100)  # $0.00128: under
        assert call.overrun is None
        with pytest.raises(tollgate.BudgetExceeded, match="action: raise"):
            run(request(cap=500), output_tokens=400)  # crosses the cap: raised once settled
        (crossing,) = [r for r in tollgate.config.settings().ledger.records() if r.usage.output_tokens == 400]
        assert crossing.status == "ok"


def test_failed_call_releases_its_reservation() -> None:
    with tollgate.budget(usd=0.006):
        for _ in range(5):  # each reserves ~$0.005; released, not spent
            call = tollgate.gate.preflight(request(cap=500))
            call.fail(RuntimeError("HTTP 500"))
        run(request(cap=500))
