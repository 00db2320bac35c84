"""After pre-flight: how far a call may run, what each hold becomes, and which budget a call crossed.

Pure functions over the checks a call passed and the counter states the store returned when
it reserved; the gate does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from tollgate.budgets.enforce import Check, Recent
from tollgate.budgets.rates import RateCheck
from tollgate.errors import BudgetExceeded
from tollgate.pricing import ModelPrice
from tollgate.request import Estimate
from tollgate.stores.base import CounterState


class Room(NamedTuple):
    """The most output tokens a call may produce before ``check``'s cap is crossed."""

    tokens: float
    check: Check
    state: CounterState


class BudgetFacts(NamedTuple):
    """A budget as it stood when tollgate decided (for spans): name, unit, limit, spent, held."""

    name: str
    unit: str
    limit: float
    spent: float
    reserved: float


def output_room(
    checks: Sequence[Check | RateCheck | Recent],
    states: Sequence[CounterState],
    estimate: Estimate,
    price: ModelPrice | None,
) -> Room | None:
    """How many output tokens a call may produce before some budget's cap is crossed (None
    when no budget limits it).

    Counted from what the budgets had left at pre-flight (spent and others' holds), so a
    stream that runs past the output it reserved (a provider ignoring a clamp) or an
    ``on_exceed="raise"`` budget (which reserves nothing) is cut off before it overspends.
    """
    best: Room | None = None
    per_token = (price.output or 0.0) if price is not None else 0.0
    input_usd = estimate.usd - estimate.output_tokens * per_token
    for check, state in zip(checks, states, strict=True):
        if not isinstance(check, Check):
            continue
        left = check.limit - state.spent - state.reserved
        if check.unit == "tokens":
            room = left - estimate.input_tokens
        elif check.unit == "usd" and per_token > 0:
            room = (left - input_usd) / per_token
        else:
            continue
        if best is None or room < best.tokens:
            best = Room(room, check, state)
    return best


def actual(unit: str, usd: float, tokens: int, tool_calls: int = 0) -> float:
    """What a call counts against a limit in ``unit``."""
    if unit == "usd":
        return usd
    if unit == "tokens":
        return float(tokens)
    # A request (a call) counts once it was sent, whatever became of it.
    return float(tool_calls) if unit == "tool_calls" else 1.0


def overrun(
    checks: Sequence[Check | RateCheck | Recent],
    states: Sequence[CounterState],
    actuals: Sequence[float],
    post_flight: bool,
) -> BudgetExceeded | None:
    """The error of the first ``on_exceed="raise"`` budget (every budget, for a call nothing
    could be estimated for) that the call's actual cost took past its cap."""
    for check, state, amount in zip(checks, states, actuals, strict=True):
        if (
            isinstance(check, Check)
            and (check.post_flight or post_flight)
            and state.spent + state.reserved + amount > check.limit
        ):
            return BudgetExceeded(
                check.spec.name,
                limit=check.limit,
                spent=state.spent + amount,
                reserved=state.reserved,
                requested=amount,
                action="raise",
                unit=check.unit,
                detail="the call ran; its cost crossed the cap",
            )
    return None


def tightest(
    checks: Sequence[Check | RateCheck | Recent], states: Sequence[CounterState]
) -> BudgetFacts | None:
    """The budget with the least room left, as it stood (None when no budget applied)."""
    budgets = [(c, s) for c, s in zip(checks, states, strict=False) if isinstance(c, Check)]
    if not budgets:
        return None
    check, state = min(budgets, key=lambda b: (b[0].limit - b[1].spent - b[1].reserved) / (b[0].limit or 1.0))
    return facts(check, state)


def facts(check: Check, state: CounterState) -> BudgetFacts:
    return BudgetFacts(check.spec.name, check.unit, check.limit, state.spent, state.reserved)
