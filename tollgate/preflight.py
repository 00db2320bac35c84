"""The way in: read a door's request, estimate and price it, check every budget and rate limit,
reserve, and decide (proceed, downgrade, clamp, truncate, or refuse with a record).

Pure budget rules live in :mod:`tollgate.budgets`; this module drives them against the store,
sync and async alike (:func:`_enforcement` is I/O-free: it yields what to reserve, release or
wait for). The call it hands back is a :class:`~tollgate.call.Call`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from tollgate import alerts, leases
from tollgate.budgets import waiting
from tollgate.budgets.enforce import Check, Recent, checks_for, resolve
from tollgate.budgets.rates import RateCheck, RateLimit, rate_checks
from tollgate.budgets.room import facts
from tollgate.budgets.scope import active_budgets
from tollgate.budgets.standing import limits_cache
from tollgate.decisions import (
    Action,
    Blocked,
    Clamped,
    Observation,
    Observed,
    RateLimitedStep,
    Steps,
    StoreDown,
    Unreadable,
    actions,
)
from tollgate.errors import (
    RateLimited,
    StoreUnavailable,
    UnpricedModelError,
)
from tollgate.pricing.estimate import estimator, lookup_price
from tollgate.request import CallRecord, Estimate, LLMRequest
from tollgate.stores.base import Charge, CounterState, Hold, Reservation
from tollgate.stores.windows import now as _now

if TYPE_CHECKING:
    pass

from tollgate.call import Call, Decision, Outcome

log = logging.getLogger("tollgate")

#: The store clock (a module attribute, so tests can run a fake clock).
store_clock = _now


# -- reading --------------------------------------------------------------------------------------


Reader = Callable[[], LLMRequest]


def _read(
    request: LLMRequest | Reader, provider: str, operation: str, model: Any
) -> tuple[LLMRequest, Steps]:
    """The request a door reads, or what can be known of it when reading fails (it is sent as
    given: the SDK answers malformed input its own way)."""
    if type(request) is LLMRequest and type(request.model) is str:
        return request, ()
    if isinstance(request, LLMRequest):
        read = request
    else:
        try:
            read = request()
        except Exception as exc:
            return _basis(provider, operation, model), (Unreadable("request", type(exc).__name__),)
    if type(read.model) is not str:
        return read._replace(model="", messages=(), tools=(), prompt=()), (
            Unreadable("model", type(read.model).__name__),
        )
    return read, ()


def _basis(provider: str, operation: str, model: Any) -> LLMRequest:
    return LLMRequest(provider=provider, operation=operation, model=model if type(model) is str else "")


def _begin(request: LLMRequest, steps: Steps, secrets: tuple[str, ...]) -> Call:
    """Estimate and price ``request``: everything pre-flight does before asking the store."""
    call = Call(request, steps, secrets=secrets)
    s = call.settings
    if call.price is None and s.on_unpriced == "raise" and call.request.model:
        exc = UnpricedModelError(call.request.model, call.request.provider)
        call.fail(exc)
        raise exc
    return call


# How waiting for a rate limit sleeps (module attributes, so tests can run a fake clock).
sleep = time.sleep


async def asleep(seconds: float) -> None:
    # asyncio is imported here, not at import time: it costs ~25 ms, and only async callers
    # (who have imported it already) ever wait.
    import asyncio

    await asyncio.sleep(seconds)


def _checks(call: Call, *, trust_cache: bool = True) -> tuple[list[Check | RateCheck | Recent], int | None]:
    """The budgets and rate limits the call must pass, and the standing-limits version they
    assume when they were built from the cache (None when just checked against the store)."""
    frames = active_budgets()
    rates = rate_checks(call.settings.rate_limits, call.request) if call.settings.rate_limits else []
    store = call.settings.store
    cached = limits_cache.cached(store, call.tags) if trust_cache and (frames or rates) else None
    assumed: int | None = None
    if cached is not None:  # the call reserves anyway: the reservation will say if limits moved
        assumed, standing = cached
    else:
        try:
            standing = limits_cache.frames(store, call.tags)
        except StoreUnavailable as exc:
            _store_failed(call, exc)  # raises unless on_store_error="open"
            return [], None  # open: the call goes ahead unbudgeted, without a second timeout
    checks: list[Check | RateCheck | Recent] = []
    if frames or standing:
        checks.extend(checks_for((*standing, *frames), call.tags))
    checks.extend(rates)
    return checks, assumed


def preflight(
    request: LLMRequest | Reader,
    *,
    provider: str = "unknown",
    operation: str = "chat",
    model: Any = "",
    secrets: tuple[str, ...] = (),
) -> Call:
    """Read, estimate, price and budget a request; decide what to do with it; return the call.

    ``request`` is the request, or a function that reads it from the door's native arguments:
    should that fail, the call is budgeted as ``provider`` / ``operation`` / ``model`` with no
    prompt, and sent as given. Raises :class:`~tollgate.BudgetExceeded` (a budget blocks it),
    :class:`~tollgate.RateLimited`, :class:`~tollgate.UnpricedModelError`
    (``on_unpriced="raise"``) or :class:`~tollgate.StoreUnavailable` (the store is down and
    ``on_store_error="closed"``), always before any traffic and after writing its record.
    """
    call = _begin(*_read(request, provider, operation, model), secrets)
    if call.settings.rate_limits and (slots := leases.matching(call.settings.rate_limits, call.request)):
        _take_slots(call, slots)
    checks, assumed = _checks(call)
    store = call.settings.store
    while checks:
        steps = _enforcement(call, checks, assumed)
        try:
            step = next(steps)
            while True:  # charges to reserve, seconds to wait for a rate limit or holds, holds to release
                if isinstance(step, list):
                    step = steps.send(store.reserve(step, store_clock()))
                elif isinstance(step, float):
                    sleep(step)
                    step = steps.send(None)
                elif isinstance(step, waiting.Pause):
                    step.wait()
                    step = steps.send(None)
                else:
                    store.release(step)
                    step = steps.send(None)
        except StopIteration as done:
            if done.value == _STALE:  # standing limits changed since cached: start again
                checks, assumed = _checks(call, trust_cache=False)
                continue
        except StoreUnavailable as exc:
            steps.close()
            _store_failed(call, exc)
        except BaseException as exc:  # refused, cancelled or interrupted: leave a record
            steps.close()  # out of any line of waiters first, its wait noted
            call.fail(exc)
            raise
        break
    return call


async def apreflight(
    request: LLMRequest | Reader,
    *,
    provider: str = "unknown",
    operation: str = "chat",
    model: Any = "",
    secrets: tuple[str, ...] = (),
) -> Call:
    """The async twin of :func:`preflight`: the same steps, with the store awaited."""
    call = _begin(*_read(request, provider, operation, model), secrets)
    if call.settings.rate_limits and (slots := leases.matching(call.settings.rate_limits, call.request)):
        await _atake_slots(call, slots)
    checks, assumed = _checks(call)
    store = call.settings.store
    while checks:
        steps = _enforcement(call, checks, assumed)
        try:
            step = next(steps)
            while True:
                if isinstance(step, list):
                    step = steps.send(await store.areserve(step, store_clock()))
                elif isinstance(step, float):
                    await asleep(step)
                    step = steps.send(None)
                elif isinstance(step, waiting.Pause):
                    await step.await_()
                    step = steps.send(None)
                else:
                    await store.arelease(step)
                    step = steps.send(None)
        except StopIteration as done:
            if done.value == _STALE:
                checks, assumed = _checks(call, trust_cache=False)
                continue
        except StoreUnavailable as exc:
            steps.close()
            _store_failed(call, exc)
        except BaseException as exc:  # refused, cancelled or interrupted: leave a record
            steps.close()
            call.fail(exc)
            raise
        break
    return call


def _slot_steps(
    call: Call, limits: Sequence[RateLimit]
) -> Generator[leases.Lease | float, bool | None, None]:
    """Take a slot of each concurrency limit (see tollgate.leases), waiting as configured.
    I/O-free, as :func:`_enforcement`: it yields a lease to acquire (and is sent whether it was
    taken) or seconds to wait, so the sync and async pre-flights drive the same steps."""
    for rate in limits:
        lease, tries, deadline = (
            leases.Lease(rate, call.settings.store, call),
            0,
            time.monotonic() + rate.timeout,
        )
        while not (yield lease):
            wait = leases.pause(tries)
            if not rate.wait or time.monotonic() + wait > deadline:
                _no_slot(call, rate)
            yield wait
            tries += 1
        leases.keeper.hold(lease)
        call.leases = (*call.leases, lease)


def _acquire(lease: leases.Lease) -> bool:
    assert lease.rate.concurrent is not None
    return lease.store.acquire(lease.key, lease.name, lease.rate.concurrent, lease.rate.lease, store_clock())


def _take_slots(call: Call, limits: Sequence[RateLimit]) -> None:
    steps = _slot_steps(call, limits)
    try:
        step = next(steps)
        while True:
            step = steps.send(sleep(step) if isinstance(step, float) else _acquire(step))
    except StopIteration:
        pass
    except StoreUnavailable as exc:
        _store_failed(call, exc)
    except BaseException as exc:  # refused, cancelled or interrupted: leave a record, give slots back
        call.fail(exc)
        raise


async def _atake_slots(call: Call, limits: Sequence[RateLimit]) -> None:
    """The async twin of :func:`_take_slots`."""
    steps = _slot_steps(call, limits)
    try:
        step = next(steps)
        while True:
            if isinstance(step, float):
                await asleep(step)
                step = steps.send(None)
            else:
                rate = step.rate
                assert rate.concurrent is not None
                taken = await step.store.aacquire(
                    step.key, step.name, rate.concurrent, rate.lease, store_clock()
                )
                step = steps.send(taken)
    except StopIteration:
        pass
    except StoreUnavailable as exc:
        _store_failed(call, exc)
    except BaseException as exc:
        call.fail(exc)
        raise


def _no_slot(call: Call, rate: RateLimit) -> NoReturn:
    exc = RateLimited(
        f"concurrency limit {rate.name!r}: all {rate.concurrent} slots are in use"
        + (f" (waited {rate.timeout:g} s)" if rate.wait else ""),
        retry_after=leases.FIRST_PAUSE,
    )
    call._block_record(exc, RateLimitedStep(rate.name))
    raise exc


class flight:  # lower case: used like a function, `with gate.flight(...) as call`
    """Run a call through the gate: pre-flight on entering (sync ``with`` or ``async with``);
    leaving the block behaves as leaving ``with call:`` (see :meth:`Call.__exit__`)."""

    __slots__ = ("_args", "_call")

    def __init__(
        self,
        request: LLMRequest | Reader,
        *,
        provider: str = "unknown",
        operation: str = "chat",
        model: Any = "",
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._args = (request, provider, operation, model, secrets)
        self._call: Call | None = None

    def __enter__(self) -> Call:
        request, provider, operation, model, secrets = self._args
        self._call = preflight(request, provider=provider, operation=operation, model=model, secrets=secrets)
        return self._call

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._call is not None:
            self._call.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> Call:
        request, provider, operation, model, secrets = self._args
        self._call = await apreflight(
            request, provider=provider, operation=operation, model=model, secrets=secrets
        )
        return self._call

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._call is not None:
            await self._call.__aexit__(exc_type, exc, tb)


_STALE = "stale"


def _enforcement(
    call: Call, checks: list[Check | RateCheck | Recent], assumed: int | None
) -> Generator[list[Charge] | float | tuple[Hold, ...] | waiting.Pause, Reservation | None, str | None]:
    """Reserve the call's estimate on every budget and rate limit; when a rate limit is full,
    wait (or raise RateLimited); when a budget refuses only because of other calls' holds,
    wait for them (see :mod:`tollgate.budgets.waiting`); when a budget refuses, apply its
    action or block.

    I/O-free: it yields the charges to reserve (and is sent the store's answer), a number of
    seconds to wait, a :class:`~tollgate.budgets.waiting.Pause` (wait for holds), or holds
    to release, so the sync and async pre-flights drive the same steps. Returns ``_STALE``
    when the checks were built from cached standing limits that the store says have changed:
    the caller rebuilds them and starts again.
    """
    deadline: float | None = None
    wait: _Wait | None = None  # made when the call first waits for holds (rarely)
    try:
        if waiting.lines and (queued := waiting.queued(checks)) is not None:
            # Others of this process wait for room on this counter: in line behind them.
            wait = _Wait(call)
            yield from wait.turn([queued], refused=False)
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
            waiting_for_rate = [i for i in reservation.refused if isinstance(checks[i], RateCheck)]
            if waiting_for_rate:
                rate_check = checks[waiting_for_rate[0]]
                assert isinstance(rate_check, RateCheck)
                now = store_clock()
                delay = rate_check.rate.retry_after(now)
                if deadline is None:
                    deadline = now + min(c.rate.timeout for c in checks if isinstance(c, RateCheck))
                if not rate_check.rate.wait or now + delay > deadline:
                    _rate_limited(call, rate_check, reservation.states[waiting_for_rate[0]], delay)
                yield delay
                continue
            if (wait is None or not wait.over) and (
                held := waiting.held_back(checks, reservation, call.estimate)
            ):
                wait = wait or _Wait(call)
                if (yield from wait.turn(held)):
                    continue  # ask again (once more when the wait is over: the action sees fresh states)
            waited = wait.end() if wait is not None else None
            budget = [i for i, c in enumerate(checks) if isinstance(c, Check)]
            resolution = resolve(
                call.request,
                call.estimate,
                [checks[i] for i in budget],  # type: ignore[misc]
                [reservation.states[i] for i in budget],
                [budget.index(i) for i in reservation.refused],
                estimator(call.settings),
            )
            if resolution.request is None or resolution.estimate is None:
                assert resolution.blocking is not None and resolution.blocking_state is not None
                _block(call, resolution.blocking, resolution.blocking_state, resolution.steps, waited)
            refusing = checks[reservation.refused[0]]
            if isinstance(refusing, Check):  # always: a refusing rate limit was waited for above
                call._deciding = facts(refusing, reservation.states[reservation.refused[0]])
            _apply(call, resolution.request, resolution.estimate, resolution.steps)
            reservation = yield [c.charge(call.estimate) for c in checks]
            assert reservation is not None
            if reservation.ok:
                break
            refused_budget = [i for i in reservation.refused if isinstance(checks[i], Check)]
            if refused_budget:  # another call took the room meanwhile
                blocking = checks[refused_budget[0]]
                assert isinstance(blocking, Check)
                _block(call, blocking, reservation.states[refused_budget[0]], resolution.steps, waited)
            # Only a rate limit refused the edited call: wait for it like any other.
    finally:
        if wait is not None:
            wait.end()
    call.checks, call.holds, call.states = checks, reservation.holds, reservation.states
    _touch(checks, reservation.holds)
    for check in checks:
        if type(check) is Recent:  # a budget with a burn-rate alert (a loop: ~1 µs less than any())
            alerts.after_reserve(call, store_clock())
            break
    return None


class _Wait:
    """One call's wait for other calls' holds: its place in line, how long it may wait (the
    least any refusing budget allows, counted from when it began), and the note it leaves."""

    __slots__ = ("call", "over", "started", "ticket", "tries", "until")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.ticket: waiting.Ticket | None = None
        self.started, self.until = 0.0, math.inf
        self.tries = 0
        #: The wait is over (timed out, or not allowed): the next refusal is decided at once.
        self.over = False

    def turn(self, held: Sequence[Check], refused: bool = True) -> Generator[waiting.Pause, None, bool]:
        """Wait for the holds on ``held`` as long as their budgets allow (False: not at all);
        ``refused`` False: only for the waiters ahead in line."""
        patience = waiting.patience(held, self.call.settings.hold_wait)
        if self.ticket is None:
            if patience <= 0:
                self.over = True
                return False
            self.ticket, self.started = waiting.join(held[0].key), time.monotonic()
        self.until = min(self.until, self.started + patience)
        self.tries = yield from waiting.turn(self.ticket, self.until, self.tries, polls=refused)
        self.over = time.monotonic() >= self.until
        return True

    def end(self) -> float | None:
        """Out of the line, the wait noted in the call's steps; the seconds waited (None: none)."""
        if self.ticket is None:
            return None
        waiting.leave(self.ticket)
        self.ticket = None
        waited = round(time.monotonic() - self.started, 3)
        self.call.steps = (*self.call.steps, waiting.Waited(waited))
        return waited


def _touch(checks: Sequence[Check | RateCheck | Recent], holds: Sequence[Hold]) -> None:
    """Note the slots of lifetime budgets a call reserved on: dropped from the store when their
    block ends."""
    for check, hold in zip(checks, holds, strict=True):
        if isinstance(check, Check) and not check.spec.windowed:
            check.frame.touched.add(hold.slot)


def _rate_limited(call: Call, check: RateCheck, state: CounterState, delay: float) -> NoReturn:
    exc = RateLimited(
        f"rate limit {check.rate.name!r}: {state.spent + state.reserved:g} of {check.limit:g} {check.unit} "
        f"used in the last {check.rate.per}; this call needs {check.amount(call.estimate):g}",
        retry_after=delay,
    )
    call._block_record(exc, RateLimitedStep(check.rate.name))
    raise exc


def _store_failed(call: Call, exc: StoreUnavailable) -> None:
    """Fail closed (record and raise) or open (note it and go on), as configured."""
    if call.settings.on_store_error == "open":
        call.steps = (*call.steps, StoreDown(str(exc)))
        return
    call.fail(exc)
    raise exc


def _apply(call: Call, request: LLMRequest, estimate: Estimate, steps: Steps) -> None:
    kinds = {type(s) for s in steps}
    taken = [a for a in actions(steps) if a in ("downgrade", "clamp", "truncate")]
    action: Action = taken[-1] if taken else "proceed"  # type: ignore[assignment]
    call.decision = Decision(
        action=action,
        model=request.model,
        max_output_tokens=request.max_output_tokens if Clamped in kinds else None,
        messages=request.messages if "truncate" in taken else None,
    )
    call.steps = (*call.steps, *steps)
    call.estimate = estimate
    call.price = lookup_price(call.settings, request.model, request.provider)


def _block(
    call: Call, check: Check, state: CounterState, steps: Steps, waited: float | None = None
) -> NoReturn:
    call._deciding = facts(check, state)
    reasons = [str(s.get("reason") or f"tried {s.get('action')}") for s in steps]
    if waited is not None:
        reasons.append(f"waited {waited:g} s for calls in flight to settle")
    reason = "; ".join(reasons)
    exc = call._refusal(reason)
    call.steps = (*call.steps, *steps)
    call._block_record(exc, Blocked(check.spec.name))
    raise exc


# -- calls gated by nobody ---------------------------------------------------------------------------


def observe(
    request: LLMRequest | Reader,
    *,
    note: Observation = "observe_only",
    tags: Mapping[str, str] | None = None,
    provider: str = "unknown",
    operation: str = "chat",
) -> Call:
    """A call for the record only, gated by nobody (a door no hook can gate, a call a hook
    refused but its framework ran anyway): nothing is reserved or refused; finish it like any
    other. ``note`` is the step it is recorded with; ``tags`` default to the ambient ones."""
    read, steps = _read(request, provider, operation, "")
    return Call(read, (*steps, Observed(note)), tags)


def probe(request: LLMRequest) -> None:
    """Raise :class:`~tollgate.BudgetExceeded` (with a "blocked" record) when the budgets would
    refuse ``request`` now; otherwise give back what pre-flight reserved and record nothing.
    For hooks that can only say yes or no, before the real request is known."""
    call = preflight(request)
    call.settled = True
    if call.leases:
        leases.let_go(call.leases)
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
    outcome: Outcome,
    *,
    tags: Mapping[str, str],
    started_at: float | None = None,
    ended_at: float | None = None,
) -> CallRecord | None:
    """Record usage that happened elsewhere (:func:`tollgate.record`): it is charged to every
    budget and standing limit that applies, in the window of ``started_at`` (default: now),
    refused by none (the tokens are spent already), and written to the ledger, the span and
    the hooks like any call."""
    call = Call(request, (Observed("record"),), tags)
    if started_at is not None:
        call.started_at = started_at
    call.ended_at = ended_at
    store = call.settings.store
    try:
        frames = active_budgets()
        standing = limits_cache.frames(store, call.tags)
        if frames or standing:
            checks = checks_for((*standing, *frames), call.tags)
            # No limit on the charges: a record is counted, never refused.
            charges = [
                Charge(c.key, c.window if isinstance(c, Recent) else c.frame.spec.window, None, 0.0)
                for c in checks
            ]
            # Charged to the window the usage happened in (a record of last month's batch
            # does not fill this month's budget); never to a window that has not begun.
            now = store_clock()
            reservation = store.reserve(charges, now if started_at is None else min(started_at, now))
            call.checks, call.holds, call.states = checks, reservation.holds, reservation.states
            _touch(checks, reservation.holds)
    except StoreUnavailable as exc:  # still recorded: the ledger keeps what the budgets missed
        log.warning("tollgate could not charge a usage record to the budgets: %s", exc)
        call.steps = (*call.steps, StoreDown(str(exc)))
    return call._end(outcome, None)  # never refused, even past an on_exceed="raise" cap
