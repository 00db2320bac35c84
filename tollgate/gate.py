"""The one pipeline every call goes through, whatever door it came in by.

    call = preflight(request)      # estimate, price, decide; may raise before any traffic
    ... the adapter applies call.decision to the native request and makes the call ...
    settle(call, usage, ...)       # exact cost, one CallRecord in the ledger, one span
    release(call, exc)             # the call failed or was cancelled: a record with the error
    raise_if_overrun(call)         # on_exceed="raise" budgets: the cap was crossed post-flight

Each step is a small function over plain dataclasses; the I/O is the store (reserve at
pre-flight, settle or release after), the ledger write and the span. The budget steps are
I/O-free (:func:`_enforcement`), driven by :func:`preflight` and its async twin
:func:`apreflight`. ``settle`` and ``release`` never raise into the caller's code path: a
problem in tollgate's own bookkeeping is logged, not turned into a failed LLM call.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from tollgate import telemetry
from tollgate.budgets.enforce import Check, checks_for, resolve
from tollgate.budgets.rates import RateCheck, rate_checks
from tollgate.budgets.scope import active_budgets
from tollgate.budgets.standing import StandingLimits
from tollgate.config import Settings, settings, watchers
from tollgate.errors import (
    BudgetExceeded,
    RateLimited,
    StoreUnavailable,
    UnpricedModelError,
    UnpricedModelWarning,
)
from tollgate.ids import random_hex
from tollgate.pricing import ModelPrice, cost, estimate_cost, has_price
from tollgate.pricing.tokens import count_messages, count_prompt
from tollgate.request import CallRecord, Estimate, LLMRequest, Status, Usage
from tollgate.stores.base import Charge, CounterState, Hold, Reservation
from tollgate.stores.windows import now as store_clock
from tollgate.tags import current_tags

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("tollgate")

Action = Literal["proceed", "block", "downgrade", "clamp", "truncate"]

#: Output cap assumed for the worst case when neither the caller nor the price table gives one.
DEFAULT_MAX_OUTPUT_TOKENS = 4096


@dataclass(slots=True)
class Decision:
    """What pre-flight decided; the adapter turns it into edits of the native request.

    ``model`` is the model to call (another one after a downgrade), ``max_output_tokens`` a
    cap to set (after a clamp), ``messages`` replacement messages (after a truncate).
    """

    action: Action
    model: str
    max_output_tokens: int | None = None
    messages: Sequence[Mapping[str, Any]] | None = None
    notes: tuple[Mapping[str, Any], ...] = ()


@dataclass(slots=True, eq=False)
class Call:
    """A call in flight: what pre-flight found and decided, and what settling needs."""

    id: str
    request: LLMRequest
    decision: Decision
    estimate: Estimate
    price: ModelPrice | None
    tags: Mapping[str, str]
    started_at: float
    span: Span
    settings: Settings
    settled: bool = field(default=False)
    checks: Sequence[Check | RateCheck] = ()
    holds: Sequence[Hold] = ()
    states: Sequence[CounterState] = ()
    overrun: BudgetExceeded | None = None
    #: The most output tokens a stream may produce before a budget would be crossed, with the
    #: budget that sets it (None when no budget applies): past it the stream is cut off.
    output_room: tuple[float, Check, CounterState] | None = None
    #: The budget behind the call's decision (the one that refused it, blocked it or cut it off)
    #: and its state when tollgate decided; telemetry reports its limit, spent and remaining.
    deciding: tuple[Check, CounterState] | None = None
    #: What the response says beyond usage, when the adapter knows it (for telemetry): one
    #: finish reason per choice, and the completions as OpenAI chat-shaped assistant messages.
    finish_reasons: Sequence[str] = ()
    output_messages: Sequence[Mapping[str, Any]] = ()
    #: Nothing was known to estimate before the call (a metered function without a model): every
    #: budget is checked after it, like an ``on_exceed="raise"`` budget.
    post_flight: bool = False
    #: When the call ended, if not when it was settled (a usage record for an earlier call).
    ended_at: float | None = None


#: The call an outer door (a LangChain guard, an agent middleware) is sending right now, in this
#: context. A client instrumented with instrument() used inside it passes the request straight
#: through: the outer door already gates and records it, and a call is counted once.
_sending: ContextVar[Call | None] = ContextVar("tollgate_sending", default=None)


@contextmanager
def sending(call: Call) -> Iterator[None]:
    """Wrap the sending of ``call``'s request by an integration: its span is current (so spans
    the SDK emits nest under it) and calls that reach an instrumented client inside are not
    gated, or counted, a second time."""
    token = _sending.set(call)
    try:
        with telemetry.current(call.span):
            yield
    finally:
        _sending.reset(token)


def covered() -> bool:
    """A call is being sent through another of tollgate's doors in this context."""
    return _sending.get() is not None


def estimate_request(
    request: LLMRequest, price: ModelPrice | None, expected_output: int | None = None
) -> Estimate:
    """Tokens and USD to reserve for ``request``: its prompt, and the most output it may get.

    The output is the caller's cap; without one, ``expected_output`` (see
    ``configure(expected_output_tokens=...)``), else the model's maximum output. Embeddings
    have no output. A request with ``units`` (audio, speech, images) is estimated by
    :func:`~tollgate.pricing.cost.estimate_media`.
    """
    input_tokens = 0
    if request.messages or request.tools:
        input_tokens = count_messages(request.messages, request.model, request.provider, request.tools)
    if request.prompt:
        input_tokens += count_prompt(request.prompt, request.model, request.provider)
    if request.units:  # audio, speech and images: billed in units beyond tokens
        from tollgate.pricing.cost import estimate_media

        return estimate_media(request, price, input_tokens, settings().prices)
    cap = request.max_output_tokens
    if request.operation == "embeddings":
        cap = 0
    elif cap is None:
        cap = expected_output or (price.max_output_tokens if price else None) or DEFAULT_MAX_OUTPUT_TOKENS
    output_tokens = cap * max(1, request.n)
    if price is None:
        return Estimate(input_tokens, output_tokens, 0.0, priced=False)
    return Estimate(input_tokens, output_tokens, estimate_cost(price, input_tokens, output_tokens))


def _warn_unpriced(call: Call, model: str) -> None:
    s = call.settings
    if s.on_unpriced != "warn" or model in s.warned_unpriced:
        return
    s.warned_unpriced.add(model)
    warnings.warn(
        f"tollgate has no price for model {model!r} (provider {call.request.provider}); its calls are "
        f"recorded with their tokens and $0. Add a price with tollgate.configure(prices=...).",
        UnpricedModelWarning,
        stacklevel=2,
    )


def _new_call(
    request: LLMRequest, notes: tuple[Mapping[str, Any], ...] = (), tags: Mapping[str, str] | None = None
) -> Call:
    """A call for ``request``, estimated and priced, its span started (tags: the ambient ones)."""
    s = settings()
    tags = current_tags() if tags is None else tags
    price = lookup_price(s, request.model, request.provider)
    return Call(
        id=random_hex(128),  # as unique as a uuid4, without its syscall
        request=request,
        decision=Decision("proceed", request.model, notes=notes),
        estimate=estimate_request(request, price, s.expected_output_tokens),
        price=price,
        tags=tags,
        started_at=time.time(),
        span=telemetry.start_span(request, tags),
        settings=s,
    )


def _begin(request: LLMRequest) -> Call:
    """Estimate and price ``request``: everything pre-flight does before asking the store."""
    call = _new_call(request)
    s = call.settings
    if call.price is None and s.on_unpriced == "raise" and request.model:
        exc = UnpricedModelError(request.model, request.provider)
        release(call, exc)
        raise exc
    return call


_standing = StandingLimits()
# How waiting for a rate limit sleeps (module attributes, so tests can run a fake clock).
sleep = time.sleep


async def asleep(seconds: float) -> None:
    # asyncio is imported here, not at import time: it costs ~25 ms, and only async callers
    # (who have imported it already) ever wait.
    import asyncio

    await asyncio.sleep(seconds)


def _checks(call: Call, *, trust_cache: bool = True) -> tuple[list[Check | RateCheck], int | None]:
    """The budgets and rate limits the call must pass, and the standing-limits version they
    assume when they were built from the cache (None when just checked against the store)."""
    frames = active_budgets()
    rates = rate_checks(call.settings.rate_limits, call.request) if call.settings.rate_limits else []
    store = call.settings.store
    cached = _standing.cached(store, call.tags) if trust_cache and (frames or rates) else None
    assumed: int | None = None
    if cached is not None:  # the call reserves anyway: the reservation will say if limits moved
        assumed, standing = cached
    else:
        try:
            standing = _standing.frames(store, call.tags)
        except StoreUnavailable as exc:
            _store_failed(call, exc)  # raises unless on_store_error="open"
            return [], None  # open: the call goes ahead unbudgeted, without a second timeout
    checks: list[Check | RateCheck] = []
    if frames or standing:
        checks.extend(checks_for((*standing, *frames), call.tags))
    checks.extend(rates)
    return checks, assumed


def preflight(request: LLMRequest) -> Call:
    """Estimate, price and budget ``request``; decide what to do with it.

    Raises :class:`~tollgate.BudgetExceeded` (a budget blocks it),
    :class:`~tollgate.UnpricedModelError` (``on_unpriced="raise"``) or
    :class:`~tollgate.StoreUnavailable` (the store is down and ``on_store_error="closed"``),
    always before any traffic, and always after writing a record of the refused call.
    """
    call = _begin(request)
    checks, assumed = _checks(call)
    store = call.settings.store
    while checks:
        steps = _enforcement(call, checks, assumed)
        try:
            step = next(steps)
            while True:  # seconds to wait for a rate limit, holds to release, or charges to reserve
                if isinstance(step, float):
                    sleep(step)
                    step = steps.send(None)
                elif isinstance(step, tuple):
                    store.release(step)
                    step = steps.send(None)
                else:
                    step = steps.send(store.reserve(step, store_clock()))
        except StopIteration as done:
            if done.value == _STALE:  # standing limits changed since cached: start again
                checks, assumed = _checks(call, trust_cache=False)
                continue
        except StoreUnavailable as exc:
            _store_failed(call, exc)
        except BaseException as exc:  # cancelled or interrupted while waiting: leave a record
            if not call.settled:
                release(call, exc)
            raise
        break
    return call


async def apreflight(request: LLMRequest) -> Call:
    """The async twin of :func:`preflight`: the same steps, with the store awaited."""
    call = _begin(request)
    checks, assumed = _checks(call)
    store = call.settings.store
    while checks:
        steps = _enforcement(call, checks, assumed)
        try:
            step = next(steps)
            while True:
                if isinstance(step, float):
                    await asleep(step)
                    step = steps.send(None)
                elif isinstance(step, tuple):
                    await store.arelease(step)
                    step = steps.send(None)
                else:
                    step = steps.send(await store.areserve(step, store_clock()))
        except StopIteration as done:
            if done.value == _STALE:
                checks, assumed = _checks(call, trust_cache=False)
                continue
        except StoreUnavailable as exc:
            _store_failed(call, exc)
        except BaseException as exc:  # cancelled or interrupted while waiting: leave a record
            if not call.settled:
                release(call, exc)
            raise
        break
    return call


def estimator(s: Settings) -> Any:
    """``request -> (estimate, price)`` under settings ``s``: what pre-flight reserves for a request."""

    def estimate(request: LLMRequest) -> tuple[Estimate, ModelPrice | None]:
        price = lookup_price(s, request.model, request.provider)
        return estimate_request(request, price, s.expected_output_tokens), price

    return estimate


_STALE = "stale"


def _enforcement(
    call: Call, checks: list[Check | RateCheck], assumed: int | None
) -> Generator[list[Charge] | float | tuple[Hold, ...], Reservation | None, str | None]:
    """Reserve the call's estimate on every budget and rate limit; when a rate limit is full,
    wait (or raise RateLimited); when a budget refuses, apply its action or block.

    I/O-free: it yields the charges to reserve (and is sent the store's answer), a number of
    seconds to wait, or holds to release, so the sync and async pre-flights drive the same
    steps. Returns ``_STALE`` when the checks were built from cached standing limits that
    the store says have changed: the caller rebuilds them and starts again.
    """
    deadline: float | None = None
    while True:
        reservation = yield [c.charge(call.estimate) for c in checks]
        assert reservation is not None
        if assumed is not None and reservation.limits_version not in (None, assumed):
            if reservation.holds:
                yield tuple(reservation.holds)
            return _STALE
        assumed = None  # verified: later reserves of this call need not check again
        if reservation.ok:
            break
        waiting = [i for i in reservation.refused if isinstance(checks[i], RateCheck)]
        if waiting:
            rate_check = checks[waiting[0]]
            assert isinstance(rate_check, RateCheck)
            now = store_clock()
            delay = rate_check.rate.retry_after(now)
            if deadline is None:
                deadline = now + min(c.rate.timeout for c in checks if isinstance(c, RateCheck))
            if not rate_check.rate.wait or now + delay > deadline:
                _rate_limited(call, rate_check, reservation.states[waiting[0]], delay)
            yield delay
            continue
        budget = [i for i, c in enumerate(checks) if isinstance(c, Check)]
        outcome = resolve(
            call.request,
            call.estimate,
            [checks[i] for i in budget],  # type: ignore[misc]
            [reservation.states[i] for i in budget],
            [budget.index(i) for i in reservation.refused],
            estimator(call.settings),
        )
        if outcome.request is None or outcome.estimate is None:
            assert outcome.blocking is not None and outcome.blocking_state is not None
            _block(call, outcome.blocking, outcome.blocking_state, outcome.notes)
        refusing = checks[reservation.refused[0]]
        if isinstance(refusing, Check):  # always: a refusing rate limit was waited for above
            call.deciding = (refusing, reservation.states[reservation.refused[0]])
        _apply(call, outcome.request, outcome.estimate, outcome.notes)
        reservation = yield [c.charge(call.estimate) for c in checks]
        assert reservation is not None
        if reservation.ok:
            break
        refused_budget = [i for i in reservation.refused if isinstance(checks[i], Check)]
        if refused_budget:  # another call took the room meanwhile
            blocking = checks[refused_budget[0]]
            assert isinstance(blocking, Check)
            _block(call, blocking, reservation.states[refused_budget[0]], outcome.notes)
        # Only a rate limit refused the edited call: wait for it like any other.
    call.checks, call.holds, call.states = checks, reservation.holds, reservation.states
    _touch(checks, reservation.holds)
    return None


def _touch(checks: Sequence[Check | RateCheck], holds: Sequence[Hold]) -> None:
    """Note the slots of lifetime budgets a call reserved on: dropped from the store when their
    block ends."""
    for check, hold in zip(checks, holds, strict=True):
        if isinstance(check, Check) and not check.spec.windowed:
            check.frame.touched.add(hold.slot)


def output_room(call: Call) -> tuple[float, Check, CounterState] | None:
    """How many output tokens the call may produce before some budget's cap is crossed.

    Counted from what the budgets had left at pre-flight (spent and others' holds), so a
    stream that runs past the output it reserved (a provider ignoring a clamp) or an
    ``on_exceed="raise"`` budget (which reserves nothing) is cut off before it overspends.
    """
    best: tuple[float, Check, CounterState] | None = None
    est, price = call.estimate, call.price
    per_token = (price.output or 0.0) if price is not None else 0.0
    input_usd = est.usd - est.output_tokens * per_token
    for check, state in zip(call.checks, call.states, strict=True):
        if not isinstance(check, Check):
            continue
        left = check.limit - state.spent - state.reserved
        if check.unit == "tokens":
            room = left - est.input_tokens
        elif per_token > 0:
            room = (left - input_usd) / per_token
        else:
            continue
        if best is None or room < best[0]:
            best = (room, check, state)
    return best


def cut_off(call: Call, usage: Usage, response_model: str | None, response_id: str | None) -> BudgetExceeded:
    """Settle a stream tollgate stops mid-way because its output passed :attr:`Call.output_room`.

    The partial usage is settled (estimated); the returned error is raised to the reader.
    """
    assert call.output_room is not None
    _, check, state = call.output_room
    call.deciding = (check, state)
    used = (
        float(usage.total_tokens)
        if check.unit == "tokens"
        else cost(call.price, usage)
        if call.price
        else 0.0
    )
    exc = BudgetExceeded(
        check.spec.name,
        limit=check.limit,
        spent=state.spent,
        reserved=state.reserved,
        requested=used,
        action="cutoff",
        unit=check.unit,
        detail=f"the stream was closed after {usage.output_tokens} output tokens",
    )
    call.decision.notes = (
        *call.decision.notes,
        {"action": "cutoff", "budget": check.spec.name, "output_tokens": usage.output_tokens},
    )
    settle(
        call,
        usage,
        response_model=response_model,
        response_id=response_id,
        estimated=True,
        status="error",
        error=describe_error(exc),
    )
    return exc


def _rate_limited(call: Call, check: RateCheck, state: CounterState, delay: float) -> NoReturn:
    exc = RateLimited(
        f"rate limit {check.rate.name!r}: {state.spent + state.reserved:g} of {check.limit:g} {check.unit} "
        f"used in the last {check.rate.per}; this call needs {check.amount(call.estimate):g}",
        retry_after=delay,
    )
    call.decision.notes = (*call.decision.notes, {"action": "rate_limited", "limit": check.rate.name})
    settle(call, Usage(), status="blocked", error=describe_error(exc))
    raise exc


def _store_failed(call: Call, exc: StoreUnavailable) -> None:
    """Fail closed (record and raise) or open (note it and go on), as configured."""
    if call.settings.on_store_error == "open":
        call.decision.notes = (*call.decision.notes, {"store": "unavailable", "error": str(exc)})
        return
    release(call, exc)
    raise exc


def _apply(call: Call, request: LLMRequest, estimate: Estimate, notes: tuple[Mapping[str, Any], ...]) -> None:
    actions = {n["action"] for n in notes}
    call.decision = Decision(
        action=notes[-1]["action"],
        model=request.model,
        max_output_tokens=request.max_output_tokens if "clamp" in actions else None,
        messages=request.messages if "truncate" in actions else None,
        notes=notes,
    )
    call.estimate = estimate
    call.price = lookup_price(call.settings, request.model, request.provider)


def _block(call: Call, check: Check, state: CounterState, notes: tuple[Mapping[str, Any], ...]) -> NoReturn:
    call.deciding = (check, state)
    exc = refusal(call, "; ".join(n.get("reason") or f"tried {n['action']}" for n in notes))
    call.decision.notes = (*notes, {"action": "block", "budget": check.spec.name})
    settle(call, Usage(), status="blocked", error=describe_error(exc))
    raise exc


def refusal(call: Call, detail: str) -> BudgetExceeded:
    """The BudgetExceeded (action "block") naming the budget that decided ``call``: for a call
    a budget blocks, and for one whose decision a door cannot apply (a LangChain callback
    cannot downgrade; a LiteLLM hook never sees positional arguments)."""
    if call.deciding is None:
        return BudgetExceeded("unknown", limit=0, spent=0, requested=0, action="block", detail=detail)
    check, state = call.deciding
    return BudgetExceeded(
        check.spec.name,
        limit=check.limit,
        spent=state.spent,
        reserved=state.reserved,
        requested=check.amount(call.estimate),
        action="block",
        unit=check.unit,
        detail=detail,
    )


def observe(
    request: LLMRequest, *, note: str = "observe_only", tags: Mapping[str, str] | None = None
) -> Call:
    """A call for the record only, gated by nobody (a door no hook can gate, a call a hook
    refused but its framework ran anyway): nothing is reserved or refused; settle it like any
    other. ``note`` is the decision it is recorded with; ``tags`` default to the ambient ones."""
    return _new_call(request, ({"action": note},), tags)


def probe(request: LLMRequest) -> None:
    """Raise :class:`~tollgate.BudgetExceeded` (with a "blocked" record) when the budgets would
    refuse ``request`` now; otherwise give back what pre-flight reserved and record nothing.
    For hooks that can only say yes or no, before the real request is known."""
    call = preflight(request)
    call.settled = True
    if call.holds:
        try:
            call.settings.store.release(tuple(call.holds))
        except Exception:
            log.exception("tollgate could not release a probe's reservation")
    try:
        call.span.end()
    except Exception:
        log.exception("tollgate could not end a probe's span")


def account(
    request: LLMRequest,
    usage: Usage,
    *,
    tags: Mapping[str, str],
    started_at: float | None = None,
    ended_at: float | None = None,
    **outcome: Any,
) -> CallRecord | None:
    """Record usage that happened elsewhere (:func:`tollgate.record`): it is charged to every
    budget and standing limit that applies, in the window of ``started_at`` (default: now),
    refused by none (the tokens are spent already),
    and written to the ledger, the span and the hooks like any call. ``outcome``: settle's
    keyword arguments (``usd``, ``response_model``, ``status``...)."""
    call = _new_call(request, ({"action": "record"},), tags)
    if started_at is not None:
        call.started_at = started_at
    call.ended_at = ended_at
    store = call.settings.store
    try:
        frames = active_budgets()
        standing = _standing.frames(store, call.tags)
        if frames or standing:
            checks = checks_for((*standing, *frames), call.tags)
            # No limit on the charges: a record is counted, never refused.
            charges = [Charge(c.key, c.frame.spec.window, None, 0.0) for c in checks]
            # Charged to the window the usage happened in (a record of last month's batch
            # does not fill this month's budget); never to a window that has not begun.
            now = store_clock()
            reservation = store.reserve(charges, now if started_at is None else min(started_at, now))
            call.checks, call.holds, call.states = checks, reservation.holds, reservation.states
            _touch(checks, reservation.holds)
    except StoreUnavailable as exc:  # still recorded: the ledger keeps what the budgets missed
        log.warning("tollgate could not charge a usage record to the budgets: %s", exc)
        call.decision.notes = (*call.decision.notes, {"store": "unavailable", "error": str(exc)})
    return settle(call, usage, **outcome)


def lookup_price(s: Settings, model: str, provider: str | None) -> ModelPrice | None:
    """The price ``model`` is billed at, or None when unpriced.

    Some table entries list only token limits (subscription products): for cost they are unpriced.
    """
    entry = s.prices.lookup(model, provider)
    return entry if entry is not None and has_price(entry) else None


def _price_for(call: Call, response_model: str | None) -> ModelPrice | None:
    # The model that answered is the one billed (a dated snapshot may cost more than its alias).
    if response_model and response_model != call.request.model:
        price = lookup_price(call.settings, response_model, call.request.provider)
        if price is not None:
            return price
    return call.price


def settle(
    call: Call,
    usage: Usage,
    *,
    response_model: str | None = None,
    response_id: str | None = None,
    estimated: bool = False,
    status: Status = "ok",
    error: str | None = None,
    usd: float | None = None,
    finish_reasons: Sequence[str] = (),
    output_messages: Sequence[Mapping[str, Any]] = (),
) -> CallRecord | None:
    """Close ``call`` with its usage: price it, settle its holds, write one CallRecord, end its span.

    ``usd`` is a cost the provider reported itself (OpenRouter's ``usage.cost``): it is
    recorded instead of the price table's. ``finish_reasons`` and ``output_messages`` (the
    completions, OpenAI chat-shaped) go on the span only (the latter when content capture is
    on), never in the ledger. Idempotent (a second settle of the same call is
    ignored and returns None) and never raises: bookkeeping trouble is logged on the
    ``tollgate`` logger, and the record is written even when the store could not be settled.
    """
    record = _record(call, usage, response_model, response_id, estimated, status, error, usd)
    if record is not None:
        call.finish_reasons, call.output_messages = finish_reasons, output_messages
        if call.holds:
            try:
                call.settings.store.settle(call.holds, _settle_amounts(call, record))
            except Exception:
                log.exception("tollgate could not settle call %s in the store", call.id)
        _publish(call, record)
    return record


async def asettle(
    call: Call,
    usage: Usage,
    *,
    response_model: str | None = None,
    response_id: str | None = None,
    estimated: bool = False,
    status: Status = "ok",
    error: str | None = None,
    usd: float | None = None,
    finish_reasons: Sequence[str] = (),
    output_messages: Sequence[Mapping[str, Any]] = (),
) -> CallRecord | None:
    """The async twin of :func:`settle`: the store is awaited (one round trip for Redis)."""
    record = _record(call, usage, response_model, response_id, estimated, status, error, usd)
    if record is not None:
        call.finish_reasons, call.output_messages = finish_reasons, output_messages
        if call.holds:
            try:
                await call.settings.store.asettle(call.holds, _settle_amounts(call, record))
            except Exception:
                log.exception("tollgate could not settle call %s in the store", call.id)
        _publish(call, record)
    return record


def _record(
    call: Call,
    usage: Usage,
    response_model: str | None,
    response_id: str | None,
    estimated: bool,
    status: Status,
    error: str | None,
    usd: float | None = None,
) -> CallRecord | None:
    """The call's CallRecord, priced (None if the call was settled already or pricing failed)."""
    if call.settled:
        return None
    call.settled = True
    try:
        price = _price_for(call, response_model)
        if price is None and usd is None and (usage.total_tokens or usage.units):
            # Warned here, not pre-flight: an Azure deployment name is unpriced until the
            # response names the model behind it.
            _warn_unpriced(call, response_model or call.request.model)
        return CallRecord(
            id=call.id,
            started_at=call.started_at,
            ended_at=call.ended_at or time.time(),
            provider=call.request.provider,
            operation=call.request.operation,
            request_model=call.request.model,
            response_model=response_model,
            usage=usage,
            usd=usd if usd is not None else cost(price, usage) if price is not None else 0.0,
            priced=usd is not None or price is not None,
            estimated=estimated,
            stream=call.request.stream,
            status=status,
            error=error,
            response_id=response_id,
            tags=call.tags,
            decisions=call.decision.notes,
        )
    except Exception:
        log.exception("tollgate could not settle call %s", call.id)
        return None


def _publish(call: Call, record: CallRecord) -> None:
    """Ledger, span, hooks: each guarded, so one failing cannot stop the others."""
    try:
        call.settings.ledger.write(record)
    except Exception:
        log.exception("tollgate could not record call %s in the ledger", call.id)
    try:
        telemetry.end_span(call.span, record, call)
    except Exception:
        log.exception("tollgate could not end the span of call %s", call.id)
    for hooks in (call.settings.on_record, watchers):
        for hook in hooks:
            try:
                hook(record)
            except Exception:
                log.exception("tollgate on_record hook %r failed", hook)


def _actual(unit: str, record: CallRecord) -> float:
    if unit == "usd":
        return record.usd
    # A request counts once it was sent, whatever became of it; tokens are refunded to the actual.
    return 1.0 if unit == "requests" else float(record.usage.total_tokens)


def _settle_amounts(call: Call, record: CallRecord) -> list[float]:
    """What each hold becomes; notes an ``on_exceed="raise"`` budget the call crossed."""
    actuals = [_actual(c.unit, record) for c in call.checks]
    for check, state, actual in zip(call.checks, call.states, actuals, strict=True):
        if (
            isinstance(check, Check)
            and (check.post_flight or call.post_flight)
            and state.spent + state.reserved + actual > check.limit
        ):
            call.overrun = BudgetExceeded(
                check.spec.name,
                limit=check.limit,
                spent=state.spent + actual,
                reserved=state.reserved,
                requested=actual,
                action="raise",
                unit=check.unit,
                detail="the call ran; its cost crossed the cap",
            )
            break
    return actuals


def raise_if_overrun(call: Call) -> None:
    """Raise the :class:`~tollgate.BudgetExceeded` of an ``on_exceed="raise"`` budget the call crossed."""
    if call.overrun is not None:
        raise call.overrun


def describe_error(exc: BaseException) -> str:
    """``"Type: message"`` for a record, with the HTTP status when the exception carries one."""
    status = getattr(exc, "status_code", None)
    if status is None:  # google-genai's errors carry the HTTP status as .code
        code = getattr(exc, "code", None)
        status = code if isinstance(code, int) and 100 <= code < 600 else None
    name = type(exc).__name__
    return f"{name}: HTTP {status}: {exc}" if status else f"{name}: {exc}"


async def arelease(
    call: Call, exc: BaseException, usage: Usage | None = None, *, estimated: bool = False
) -> None:
    """The async twin of :func:`release`."""
    await asettle(call, usage or Usage(), status="error", error=describe_error(exc), estimated=estimated)


def release(call: Call, exc: BaseException, usage: Usage | None = None, *, estimated: bool = False) -> None:
    """Close ``call`` as failed or cancelled: a record with the error and the cost of ``usage``.

    ``usage`` is what the provider billed before the failure (none for an HTTP error: zero cost).
    """
    settle(call, usage or Usage(), status="error", error=describe_error(exc), estimated=estimated)
