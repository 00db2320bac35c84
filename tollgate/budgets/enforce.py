"""Pre-flight enforcement: which counters a call charges, and what to do when one refuses.

Pure functions over plain data; the gate does the store I/O. When the store refuses a call,
:func:`resolve` tries the actions the refusing budgets ask for, in a fixed order (downgrade,
then clamp, then truncate), re-checking every budget after each step against the states the
store returned. Every enclosing budget is re-checked, so an inner downgrade can never slip a
call past an outer hard cap. If nothing makes the call fit, it is blocked.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from tollgate.budgets.scope import Frame
from tollgate.budgets.spec import CLAMP_FLOOR, PREFLIGHT_ORDER, BudgetSpec
from tollgate.decisions import Clamped, Downgraded, Skipped, Step, Steps, Truncated
from tollgate.pricing import ModelPrice
from tollgate.pricing.tokens import count_messages
from tollgate.request import Estimate, LLMRequest
from tollgate.stores.base import Charge, CounterState, fits
from tollgate.stores.windows import Rolling

Unit = Literal["usd", "tokens", "calls", "tool_calls"]


@dataclass(slots=True)  # not frozen: made on every call, and frozen ones take 3x longer to make
class Check:
    """One limit of one budget, applied to one call."""

    frame: Frame
    unit: Unit
    key: str
    #: The budget's cap in ``unit`` (fields, not properties of the spec: read on every call).
    limit: float = dataclasses.field(init=False)
    #: ``on_exceed="raise"`` budgets only count pre-flight; they are checked after the call.
    post_flight: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        spec = self.frame.spec
        value = getattr(spec, self.unit)
        assert value is not None
        self.limit = float(value)
        self.post_flight = spec.on_exceed == "raise"

    @property
    def spec(self) -> BudgetSpec:
        return self.frame.spec

    def amount(self, estimate: Estimate) -> float:
        unit = self.unit
        if unit == "usd":
            return estimate.usd
        if unit == "tokens":
            return float(estimate.input_tokens + estimate.output_tokens)
        # A call counts once; tool calls are known only from the response: a call is refused
        # once the run's tool calls went past the limit (spent > limit), not before.
        return 1.0 if unit == "calls" else 0.0

    def charge(self, estimate: Estimate) -> Charge:
        return Charge(
            self.key, self.frame.spec.window, None if self.post_flight else self.limit, self.amount(estimate)
        )


#: Sub-slots of a burn rate's look-back counter: a rate to within a sixth of the look-back is
#: plenty to project from, and each sub-slot is one more read in every reserve.
LOOKBACK_PARTS = 6


@dataclass(slots=True)
class Recent:
    """What a budget with a burn-rate alert spent over its look-back: a counter that never
    refuses, reserved and settled with the budget's own check (see :mod:`tollgate.alerts`)."""

    of: Check
    key: str
    window: Rolling

    @property
    def unit(self) -> str:
        return self.of.unit

    def charge(self, estimate: Estimate) -> Charge:
        return Charge(self.key, self.window, None, self.of.amount(estimate))


def checks_for(frames: Sequence[Frame], tags: Mapping[str, str]) -> list[Check | Recent]:
    """The checks a call under ``frames`` (outermost first) and ``tags`` must pass (and the
    look-back counters of budgets with a burn-rate alert)."""
    checks: list[Check | Recent] = []
    for frame in frames:
        spec = frame.spec
        values = tuple(tags.get(k, "") for k in spec.key) if spec.key else ()
        made = frame.checks.get(values)
        if made is None:
            if "" in values:
                _warn_missing_key(spec, tags)
            key = frame.counter(tags)
            made = []
            for unit, _ in spec.limits():
                check = Check(frame, unit, f"{key}:{unit}")  # type: ignore[arg-type]
                made.append(check)
                if spec.lookback:
                    made.append(Recent(check, f"{key}:{unit}:recent", Rolling(spec.lookback, LOOKBACK_PARTS)))
            if len(frame.checks) < _CHECKS_KEPT:  # bounded: a key with endless values
                frame.checks[values] = made
        checks.extend(made)
    return checks


#: How many counters' checks one budget keeps made (see Frame.checks).
_CHECKS_KEPT = 1024

#: (budget name, tag) pairs already warned about: a budget warns once per tag it misses (and
#: after this many pairs, no more: budget names made per request must not grow it forever).
warned_keys: set[tuple[str, str]] = set()
_WARNED_KEPT = 1024


def _warn_missing_key(spec: BudgetSpec, tags: Mapping[str, str]) -> None:
    """A call reached a budget keyed by a tag it does not carry: it shares one counter with
    every other such call, which is rarely what ``key=`` meant (``key="tenat"``, or a request
    path that forgot ``track(tenant=...)``). Warn once per budget and tag, naming the fix."""
    for name in spec.key:
        if name in tags or (spec.name, name) in warned_keys or len(warned_keys) >= _WARNED_KEPT:
            continue
        warned_keys.add((spec.name, name))
        close = difflib.get_close_matches(name, list(tags), n=1)
        fix = f"tag the calls with tollgate.track({name}=...)"
        if close:
            fix = f"did you mean key={close[0]!r}? Else {fix}"
        carried = ", ".join(sorted(tags)) or "none"
        warnings.warn(
            f"budget {spec.name!r} is kept per {name!r}, but a call reached it without a {name!r} tag "
            f"(its tags: {carried}), so such calls share one counter: {fix}",
            UserWarning,
            stacklevel=2,
        )


@dataclass(frozen=True, slots=True)
class Context:
    """What a callable ``on_exceed`` receives to decide an action."""

    budget: BudgetSpec
    request: LLMRequest
    estimate: Estimate
    state: CounterState
    unit: Unit


@dataclass(frozen=True, slots=True)
class Resolution:
    """What :func:`resolve` found: a request that fits (with its estimate), or the budget that blocks."""

    request: LLMRequest | None
    estimate: Estimate | None
    steps: Steps
    blocking: Check | None = None
    blocking_state: CounterState | None = None


Estimator = Callable[[LLMRequest], tuple[Estimate, ModelPrice | None]]


def _action(check: Check, ctx: Context) -> str:
    on_exceed = check.spec.on_exceed
    if not callable(on_exceed):
        return on_exceed
    chosen = on_exceed(ctx)
    if chosen not in ("block", "downgrade", "clamp", "truncate"):
        raise ValueError(f"budget {check.spec.name!r}: on_exceed callable returned {chosen!r}")
    return chosen


def _all_fit(checks: Sequence[Check], states: Sequence[CounterState], estimate: Estimate) -> int | None:
    """Index of the first check the estimate does not fit, or None when all fit."""
    for i, (check, state) in enumerate(zip(checks, states, strict=True)):
        if not check.post_flight and not fits(state, check.amount(estimate)):
            return i
    return None


def resolve(
    request: LLMRequest,
    estimate: Estimate,
    checks: Sequence[Check],
    states: Sequence[CounterState],
    refused: Sequence[int],
    estimator: Estimator,
) -> Resolution:
    """Find the cheapest edit of ``request`` that every budget admits, or the budget that blocks."""
    wanted: set[str] = set()
    downgrades: dict[str, str] = {}
    for i in refused:
        check = checks[i]
        action = _action(check, Context(check.spec, request, estimate, states[i], check.unit))
        wanted.add(action)
        if action == "downgrade":
            for src, dst in check.spec.downgrade.items():
                downgrades.setdefault(src, dst)  # the innermost refusing budget's map wins
    floor = max((checks[i].spec.clamp_floor for i in refused), default=CLAMP_FLOOR)
    notes: list[Step] = []
    current, current_est, price = request, estimate, None
    for action in PREFLIGHT_ORDER:
        if action not in wanted:
            continue
        if action in request.fixed:
            reason = f"{action} does not apply to {request.provider} {request.operation} ({request.model})"
            notes.append(Skipped(action, reason))
            continue
        if action == "downgrade":
            seen = {current.model}
            while current.model in downgrades and downgrades[current.model] not in seen:
                cheaper = current._replace(model=downgrades[current.model])
                seen.add(cheaper.model)
                notes.append(Downgraded(current.model, cheaper.model))
                current = cheaper
                current_est, price = estimator(current)
                if _all_fit(checks, states, current_est) is None:
                    return Resolution(current, current_est, tuple(notes))
        elif action == "clamp":
            if price is None:
                current_est, price = estimator(current)
            cap = _affordable_output(checks, states, current_est, price, current.n)
            if current.max_output_tokens is not None:
                cap = min(cap, current.max_output_tokens)
            if cap >= floor:
                clamped = current._replace(max_output_tokens=cap)
                clamped_est, price = estimator(clamped)
                if _all_fit(checks, states, clamped_est) is None:
                    was = current.max_output_tokens
                    notes.append(Clamped(cap, was))
                    return Resolution(clamped, clamped_est, tuple(notes))
        elif action == "truncate":
            truncated = _truncate(current, checks, states, estimator)
            if truncated is not None:
                new, new_est, dropped = truncated
                notes.append(Truncated(dropped))
                return Resolution(new, new_est, tuple(notes))
    blocking = _all_fit(checks, states, current_est)
    index = blocking if blocking is not None else refused[0]
    return Resolution(None, None, tuple(notes), checks[index], states[index])


def _affordable_output(
    checks: Sequence[Check], states: Sequence[CounterState], est: Estimate, price: ModelPrice | None, n: int
) -> int:
    """The most output tokens every budget can still pay for, after the input."""
    cap = math.inf
    per_token_out = (price.output or 0.0) if price else 0.0
    input_usd = est.usd - est.output_tokens * per_token_out if price else 0.0
    for check, state in zip(checks, states, strict=True):
        if check.post_flight:
            continue
        if check.unit == "tokens":
            cap = min(cap, (state.remaining - est.input_tokens) / max(1, n))
        elif check.unit == "usd" and per_token_out > 0:
            cap = min(cap, (state.remaining - input_usd) / (per_token_out * max(1, n)))
    return int(cap) if cap != math.inf else (est.output_tokens // max(1, n))


def _truncate(
    request: LLMRequest, checks: Sequence[Check], states: Sequence[CounterState], estimator: Estimator
) -> tuple[LLMRequest, Estimate, int] | None:
    """Drop the oldest turns until the call fits: keep system messages and the last user turn,
    and drop an assistant tool call together with its tool results. O(n): each message is
    counted once and subtracted as it is dropped."""
    messages = list(request.messages)
    full_est, price = estimator(request)
    input_price = (price.input or 0.0) if price else 0.0
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages) - 1)
    protected = [m.get("role") in ("system", "developer") or i >= last_user for i, m in enumerate(messages)]
    # A message's share of the prompt: its count alone, less the reply priming counted once per prompt.
    sizes = [count_messages([m], request.model, request.provider) - 3 for m in messages]
    dropped = [False] * len(messages)
    input_tokens, n_dropped, i = full_est.input_tokens, 0, 0
    while i < len(messages):
        if protected[i]:
            i += 1
            continue
        j = i + 1
        if messages[i].get("tool_calls"):  # a tool call goes with its results
            while j < len(messages) and messages[j].get("role") == "tool" and not protected[j]:
                j += 1
        for k in range(i, j):
            dropped[k] = True
            input_tokens -= sizes[k]
            n_dropped += 1
        i = j
        saved = full_est.input_tokens - input_tokens
        usd = full_est.usd - saved * input_price
        candidate = dataclasses.replace(full_est, input_tokens=input_tokens, usd=usd)
        if _all_fit(checks, states, candidate) is None:
            kept = [m for m, d in zip(messages, dropped, strict=True) if not d]
            new = request._replace(messages=kept)
            # The running estimate is exact unless a price tier's rate moved with the prompt.
            return new, estimator(new)[0] if price is not None and price.tiers else candidate, n_dropped
    return None
