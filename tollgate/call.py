"""The invocation object: a call in flight, from pre-flight to its one record.

A door reads :attr:`Call.request`, :attr:`Call.decision` and :attr:`Call.estimate`, turns the
decision into native edits with :meth:`Call.edit`, sends inside :meth:`Call.sending`, and ends the
call with :meth:`Call.finish` (an :class:`Outcome`), :meth:`Call.fail` or :meth:`Call.refuse`;
``with call:`` fails it when the block is left by an exception. Ending a call is written here
once: price the outcome (a value it cannot use is dropped, a usage it cannot price is noted),
settle or give back the holds, write the one record, end the span, run the hooks, raise an
``on_exceed="raise"`` overrun. The way in (reading, estimating, budgeting) is
:mod:`tollgate.preflight`; :mod:`tollgate.gate` is the interface doors use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from tollgate import alerts, telemetry
from tollgate.abandoned import charge
from tollgate.budgets.enforce import Check, Recent
from tollgate.budgets.rates import RateCheck
from tollgate.budgets.room import BudgetFacts, Room, actual, facts, output_room, overrun, tightest
from tollgate.config import Settings, settings, watchers
from tollgate.decisions import (
    Action,
    Blocked,
    Implausible,
    PricingFailed,
    Step,
    Steps,
    Unreadable,
    actions,
)
from tollgate.errors import (
    BudgetExceeded,
    StoreUnavailable,
    TollgateError,
    UnknownUsageWarning,
    UnpricedModelWarning,
)
from tollgate.failures import failure_of, mask
from tollgate.ids import random_hex
from tollgate.leases import Lease, alet_go, let_go
from tollgate.plausible import amount, billed_units, readable
from tollgate.plausible import implausible as _implausible
from tollgate.pricing import ModelPrice, cost
from tollgate.pricing.estimate import estimate_request, lookup_price
from tollgate.pricing.tokens import count_text
from tollgate.request import CallRecord, Estimate, LLMRequest, Status, Usage
from tollgate.stores.base import CounterState, Hold
from tollgate.tags import current_tags

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("tollgate")
T = TypeVar("T")


class Outcome(NamedTuple):  # immutable, and ~5x cheaper to make than a frozen dataclass
    """What a door read of a call's end, for :meth:`Call.finish`.

    ``usage`` None: the provider reported none (or nothing readable), and the gate estimates
    it: the prompt from pre-flight, the output from ``text``. ``model``, ``id``: the response's
    (anything but a non-empty string is ignored). ``usd``: a cost the provider reported itself
    (OpenRouter's ``usage.cost``), recorded instead of the price table's. ``output_messages``:
    the completions, OpenAI chat-shaped, for the span when content capture is on. ``steps``:
    notes of the door's own (a framework's cache hit, its cost figure).
    """

    usage: Usage | None = None
    model: str | None = None
    id: str | None = None
    usd: float | None = None
    text: str | None = None
    finish_reasons: tuple[str, ...] = ()
    status: Status = "ok"
    estimated: bool = False
    #: The call turned out to stream (a callback saw tokens arrive).
    stream: bool = False
    output_messages: tuple[Mapping[str, Any], ...] = ()
    steps: Steps = ()
    #: Tool (function) calls the response asked for, counted by the door (agent-run limits).
    tool_calls: int = 0


class Decision(NamedTuple):
    """What pre-flight decided; the door turns it into edits of the native request.

    ``model`` is the model to call (another one after a downgrade), ``max_output_tokens`` a
    cap to set (after a clamp), ``messages`` replacement messages (after a truncate).
    """

    action: Action
    model: str
    max_output_tokens: int | None = None
    messages: Sequence[Mapping[str, Any]] | None = None


#: The call an outer door (a LangChain guard, a metered function) is sending right now, in this
#: context. A client instrumented with instrument() used inside it passes the request straight
#: through: the outer door already gates and records it, and a call is counted once.
_sending: ContextVar[Call | None] = ContextVar("tollgate_sending", default=None)


def covered() -> bool:
    """A call is being sent through another of tollgate's doors in this context."""
    return _sending.get() is not None


class Call:
    """A call in flight, from pre-flight to its one record.

    Doors read :attr:`request`, :attr:`decision` and :attr:`estimate`, and end the call with
    :meth:`finish` (or :meth:`fail`, or :meth:`refuse`); everything else is the gate's.
    """

    __slots__ = (
        "__weakref__",  # a concurrency lease follows its call weakly (tollgate.leases)
        "_deciding",
        "_finish_reasons",
        "_handed",
        "_output_messages",
        "_sent",
        "checks",
        "decision",
        "ended_at",
        "estimate",
        "holds",
        "id",
        "leases",
        "output_room",
        "overrun",
        "post_flight",
        "price",
        "request",
        "secrets",
        "settings",
        "settled",
        "span",
        "started_at",
        "states",
        "steps",
        "tags",
        "totals",
    )

    def __init__(
        self,
        request: LLMRequest,
        steps: Steps = (),
        tags: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        s = settings()
        #: The client's own credentials: masked in a captured error message.
        self.secrets = secrets
        self.id = random_hex(128)  # as unique as a uuid4, without its syscall
        self.settings: Settings = s
        self.tags: Mapping[str, str] = current_tags() if tags is None else tags
        self.steps: Steps = steps
        self.price: ModelPrice | None = None
        try:
            self.price = lookup_price(s, request.model, request.provider)
            estimate = estimate_request(request, self.price, s.expected_output_tokens)
        except Exception as exc:  # a request it cannot read: budget what it can, send as given
            self.steps = (*self.steps, Unreadable("messages", type(exc).__name__))
            request = request._replace(messages=(), tools=(), prompt=())
            try:
                estimate = estimate_request(request, self.price, s.expected_output_tokens)
            except Exception:  # not the messages: an output cap, n or units it cannot read either
                request = request._replace(max_output_tokens=None, n=1, units={})
                estimate = estimate_request(request, self.price, s.expected_output_tokens)
        self.request: LLMRequest = request
        self.estimate: Estimate = estimate
        self.decision = _proceed(request.model)
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.span: Span = telemetry.start_span(request, self.tags)
        self.settled = False
        self.checks: Sequence[Check | RateCheck | Recent] = ()
        self.holds: Sequence[Hold] = ()
        self.states: Sequence[CounterState] = ()
        #: Concurrency slots the call holds (see tollgate.leases), given back when it ends.
        self.leases: tuple[Lease, ...] = ()
        self.overrun: BudgetExceeded | None = None
        #: What each counter the call was charged to had spent once it settled (None: unknown),
        #: and what the call added to each (kept as the store returned them: read by crossed()).
        self.totals: tuple[Sequence[float | None], Sequence[float]] = ((), ())
        #: How far a stream may run before a budget would be crossed (see streams' cut-off).
        self.output_room: Room | None = None
        self._deciding: BudgetFacts | None = None
        #: Nothing was known to estimate before the call (a metered function without a model):
        #: every budget is checked after it, like an ``on_exceed="raise"`` budget.
        self.post_flight = not request.model
        self._finish_reasons: tuple[str, ...] = ()
        self._output_messages: tuple[Mapping[str, Any], ...] = ()
        self._handed = False
        self._sent = False

    def __repr__(self) -> str:
        return f"<tollgate call {self.request.operation} {self.decision.model} {self.id[:8]}>"

    # -- what a door does with its call ------------------------------------------------------------

    def __enter__(self) -> Call:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Leaving ``with call:`` by an exception before the call ended closes it as failed (its
        holds released, its record written); the exception goes on unchanged. Leaving it
        normally leaves the call to whoever it was handed to (:meth:`hand_over`); a call nobody
        took is closed as failed, so no hold outlives a door's mistake."""
        if self.settled:
            return
        if exc is not None:
            self.fail(exc)
        elif not self._handed:
            self.fail(RuntimeError("the door ended without an outcome"))

    async def __aenter__(self) -> Call:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.settled:
            return
        if isinstance(exc, Exception):
            await self.afail(exc)
        elif exc is not None:  # cancelled: no awaiting while being cancelled
            self.fail(exc)
        elif not self._handed:
            await self.afail(RuntimeError("the door ended without an outcome"))

    def hand_over(self) -> None:
        """The call now belongs to a stream or response that finishes it later."""
        self._handed = True

    def sending(self) -> _Sending:
        """Wrap the sending of the request: the call's span is current (so spans the SDK emits
        nest under it), calls that reach an instrumented client inside are not gated, or
        counted, a second time, and the call knows its request may have reached the provider."""
        self._sent = True
        return _Sending(self)

    def edit(self, apply: Callable[..., T], *args: Any) -> T:
        """``apply(*args)``: the door turning :attr:`decision` into native edits. When that fails,
        a decision that edits the call cannot be honoured and the call is refused
        (:class:`~tollgate.BudgetExceeded`, recorded as blocked); for an unedited call the
        error is the door's own and goes to the caller, with the call recorded as failed."""
        try:
            return apply(*args)
        except Exception as exc:
            if self.decision.action == "proceed":
                self.fail(exc)
                raise
            raise self.refuse(
                f"tollgate could not {self.decision.action} this call ({type(exc).__name__})"
            ) from exc

    def learn(self, model: str | None = None, provider: str | None = None) -> None:
        """What a response says of a call made without knowing it (a metered function): the
        provider that answered, and the model when none was given (the call is re-priced and
        its span renamed)."""
        request = self.request
        if provider and provider != request.provider:
            request = request._replace(provider=provider)
            if request.model:
                self.price = lookup_price(self.settings, request.model, provider) or self.price
        if isinstance(model, str) and model and not request.model:
            request = request._replace(model=model)
            self.decision = self.decision._replace(model=model)
            self.price = lookup_price(self.settings, model, request.provider)
            try:
                self.span.update_name(f"{request.operation} {model}")  # named before the model was known
            except Exception:
                log.debug("tollgate could not rename a span", exc_info=True)
        self.request = request

    def streaming(self) -> None:
        """The call turned out to stream (LangChain learns it as tokens arrive)."""
        if not self.request.stream:
            self.request = self.request._replace(stream=True)

    def crossed(self, unit: str) -> BudgetExceeded | None:
        """The budget counting ``unit`` that this call, once settled, took past its limit (None:
        none). For a door that can still stop what the response asks for: a run past its
        ``tool_calls`` limit should not run the tools of the response that crossed it."""
        for check, total, added in zip(self.checks, *self.totals, strict=False):
            if type(check) is Check and check.unit == unit and total is not None and total > check.limit:
                return BudgetExceeded(
                    check.spec.name,
                    limit=check.limit,
                    spent=total - added,
                    requested=added,
                    action="block",
                    unit=unit,
                    detail=f"this call's answer took the {unit.replace('_', ' ')} past the limit",
                )
        return None

    def room(self) -> Room | None:
        """How far a stream of this call may run before a budget would be crossed."""
        if self.output_room is None and self.checks:
            self.output_room = output_room(self.checks, self.states, self.estimate, self.price)
        return self.output_room

    def finish(self, outcome: Outcome, *, raise_overrun: bool = True) -> CallRecord | None:
        """End the call with what the door read of it: price it, settle its holds, write its one
        record, end its span, run the hooks. Raises the :class:`~tollgate.BudgetExceeded` of an
        ``on_exceed="raise"`` budget it crossed (unless ``raise_overrun`` is false: a stream
        closed by its reader). A second finish is ignored (returns None). An ``"abandoned"``
        outcome is charged at least what the provider may have generated (:mod:`tollgate.abandoned`)."""
        if outcome.status == "abandoned":
            outcome = charge(self, outcome)
        record = self._end(outcome, None)
        if raise_overrun and record is not None and self.overrun is not None:
            raise self.overrun
        return record

    async def afinish(self, outcome: Outcome, *, raise_overrun: bool = True) -> CallRecord | None:
        """The async twin of :meth:`finish`: the store is awaited (one round trip for Redis)."""
        if outcome.status == "abandoned":
            outcome = charge(self, outcome)
        record = await self._aend(outcome, None)
        if raise_overrun and record is not None and self.overrun is not None:
            raise self.overrun
        return record

    def fail(self, exc: BaseException, outcome: Outcome | None = None) -> None:
        """End the call as failed or cancelled by ``exc``: a record with the error, billed what
        ``outcome`` says the provider used before the failure (nothing, by default). Never raises.
        A ``GeneratorExit`` is no failure: the caller closed the generator reading the call, which
        is abandoned (charged as :meth:`finish` charges an abandoned outcome). A call cancelled
        once its request was on its way (``asyncio.CancelledError``: a task cancelled, a
        ``wait_for`` timing out) is abandoned too, the error kept: the provider answers, and
        bills, a request whose caller stopped waiting. So is a call whose client gave up
        reading the response (a read timeout): its record says ``error``, charged as abandoned."""
        if isinstance(exc, GeneratorExit):
            self._end(charge(self, (outcome or _ABANDONED)._replace(status="abandoned")), None)
            return
        if self._sent and _stopped_waiting(exc):
            self._end(self._let_go(exc, outcome), exc)
            return
        self._end(outcome or _NOTHING, exc)

    async def afail(self, exc: BaseException, outcome: Outcome | None = None) -> None:
        """The async twin of :meth:`fail`."""
        if isinstance(exc, GeneratorExit):
            await self._aend(charge(self, (outcome or _ABANDONED)._replace(status="abandoned")), None)
            return
        if self._sent and _stopped_waiting(exc):
            await self._aend(self._let_go(exc, outcome), exc)
            return
        await self._aend(outcome or _NOTHING, exc)

    def _let_go(self, exc: BaseException, outcome: Outcome | None) -> Outcome:
        """The outcome of a sent call its caller stopped waiting for: charged as abandoned; a
        cancelled call is ``abandoned``, a timed-out one an ``error`` (the caller got one)."""
        charged = charge(self, (outcome or _ABANDONED)._replace(status="abandoned"))
        return charged if isinstance(exc, asyncio.CancelledError) else charged._replace(status="ok")

    def abandon(self) -> None:
        """End a call whose door lost track of it (its framework never said how it ended):
        status ``abandoned``, charged what pre-flight reserved (the provider may have generated
        up to its output cap; see :mod:`tollgate.abandoned`). Never raises."""
        self._end(charge(self, _ABANDONED), None)

    def refuse(self, reason: str) -> BudgetExceeded:
        """Refuse the call (recorded as blocked, its holds released) because the door cannot
        apply the decision; the door raises the error returned."""
        exc = self._refusal(reason)
        self._block_record(exc, Blocked(exc.budget, reason))
        return exc

    async def arefuse(self, reason: str) -> BudgetExceeded:
        """The async twin of :meth:`refuse`."""
        exc = self._refusal(reason)
        self.steps = (*self.steps, Blocked(exc.budget, reason))
        await self.afail(exc, _BLOCKED)
        return exc

    # -- the gate's own ----------------------------------------------------------------------------

    def _end(self, outcome: Outcome, exc: BaseException | None) -> CallRecord | None:
        closing = self._close(outcome, exc)
        if closing is None:
            return None
        record, amounts = closing
        if self.leases:
            let_go(self.leases)
        if self.holds:
            self._settle_store(amounts)
        self._publish(record)
        return record

    async def _aend(self, outcome: Outcome, exc: BaseException | None) -> CallRecord | None:
        closing = self._close(outcome, exc)
        if closing is None:
            return None
        record, amounts = closing
        if self.leases:
            await alet_go(self.leases)
        if self.holds:
            await self._asettle_store(amounts)
        self._publish(record)
        return record

    def _error_line(self, exc: BaseException) -> str:
        """``CallRecord.error``: tollgate's own errors in full; any other error by its type, HTTP
        status and provider code, with its message only under content capture, masked."""
        if isinstance(exc, TollgateError):  # its own words, but a store's error may quote a URL
            return f"{type(exc).__name__}: {mask(str(exc), self.secrets)}"
        return failure_of(exc, capture_content=self.settings.capture_content, secrets=self.secrets).describe()

    def _refusal(self, detail: str) -> BudgetExceeded:
        """The BudgetExceeded (action "block") naming the budget that decided the call."""
        d = self._deciding
        if d is None:
            return BudgetExceeded("unknown", limit=0, spent=0, requested=0, action="block", detail=detail)
        requested = {
            "usd": self.estimate.usd,
            "tokens": float(self.estimate.input_tokens + self.estimate.output_tokens),
            "calls": 1.0,
        }.get(d.unit, 0.0)
        return BudgetExceeded(
            d.name,
            limit=d.limit,
            spent=d.spent,
            reserved=d.reserved,
            requested=requested,
            action="block",
            unit=d.unit,
            detail=detail,
        )

    def _block_record(self, exc: BaseException, step: Step) -> None:
        self.steps = (*self.steps, step)
        self.fail(exc, _BLOCKED)

    def _close(self, outcome: Outcome, exc: BaseException | None) -> tuple[CallRecord, list[float]] | None:
        """The call's record and what each hold becomes (None when the call ended already).
        Never raises: a value it cannot use is dropped, a usage it cannot price is noted."""
        if self.settled:
            return None
        self.settled = True
        try:
            return self._closing(outcome, exc)
        except Exception:  # a bug of tollgate's own: the call still leaves a record
            log.exception("tollgate could not settle call %s", self.id)
            return self._closing(_NOTHING, exc, degraded=True)

    def _closing(
        self, outcome: Outcome, exc: BaseException | None, degraded: bool = False
    ) -> tuple[CallRecord, list[float]]:
        usage = outcome.usage if readable(outcome.usage) else None
        untrusted = _implausible(usage, self.price, self.request) if usage is not None else None
        if untrusted is not None:
            usage = None
        estimated = outcome.estimated or usage is None
        status: Status = outcome.status
        error = None
        if exc is not None:
            error = self._error_line(exc)
            if status == "ok":
                status = "error"
        if degraded:
            usage, estimated = Usage(), False
        elif usage is None:
            usage = self._estimated(outcome.text)
        elif usage.unknown:
            self._warn_unknown(usage.unknown)
        model = outcome.model if type(outcome.model) is str and outcome.model else None
        steps = (*self.steps, *outcome.steps) if outcome.steps else self.steps
        if untrusted is not None:
            steps = (*steps, Implausible(untrusted))
        usd, priced, pricing_failed, usage = self._priced(usage, model, outcome.usd)
        if pricing_failed is not None:
            steps = (*steps, PricingFailed(pricing_failed))
        self._finish_reasons = outcome.finish_reasons  # checked when a span reads them
        self._output_messages = outcome.output_messages
        self.steps = steps
        record = CallRecord(
            id=self.id,
            started_at=self.started_at,
            ended_at=self.ended_at or time.time(),
            provider=self.request.provider,
            operation=self.request.operation,
            request_model=self.request.model,
            response_model=model,
            usage=usage,
            usd=usd,
            priced=priced,
            estimated=estimated,
            stream=self.request.stream or outcome.stream,
            status=status,
            error=error,
            response_id=outcome.id if type(outcome.id) is str and outcome.id else None,
            tags=self.tags,
            decisions=steps,
            tool_calls=outcome.tool_calls
            if type(outcome.tool_calls) is int and outcome.tool_calls > 0
            else 0,
        )
        if not self.holds:
            return record, []
        tokens = usage.input_tokens + usage.output_tokens
        tool_calls = record.tool_calls
        amounts = [actual(check.unit, usd, tokens, tool_calls) for check in self.checks]
        if status == "blocked":  # refused after reserving: it made no call
            amounts = [0.0 if c.unit == "calls" else a for c, a in zip(self.checks, amounts, strict=True)]
        if pricing_failed is not None:  # USD counters keep what was reserved
            amounts = [
                h.amount if c.unit == "usd" else a
                for c, h, a in zip(self.checks, self.holds, amounts, strict=True)
            ]
        self.overrun = overrun(self.checks, self.states, amounts, self.post_flight)
        return record, amounts

    def _estimated(self, text: str | None) -> Usage:
        """The usage of a call whose provider reported none: the prompt as estimated, the output
        counted from the text that came back, and the units an audio or image request bills
        whatever came back (the audio sent, the characters spoken, the images asked for)."""
        output = 0
        if isinstance(text, str) and text:
            output = count_text(text, self.decision.model, self.request.provider)
        return Usage(self.estimate.input_tokens, output, units=billed_units(self.request))

    def _priced(self, usage: Usage, model: str | None, usd: Any) -> tuple[float, bool, str | None, Usage]:
        """USD, whether priced, the error type when pricing failed, and the usage with the
        price of each of its parts (a part run by another model is billed at that model's
        rates; the call's units, e.g. web searches, at the call's model's)."""
        reported = None if usd is None else usd if amount(usd) else None
        try:
            price = self._price_for(model)
            if price is None and reported is None and (usage.total_tokens or usage.units):
                # Warned here, not pre-flight: an Azure deployment name is unpriced until the
                # response names the model behind it.
                self._warn_unpriced(model or self.request.model)
            if usage.parts:
                usd_parts, priced, usage = self._priced_parts(usage, price)
                return (float(reported) if reported is not None else usd_parts), priced, None, usage
            if reported is not None:
                return float(reported), True, None, usage
            return (cost(price, usage) if price is not None else 0.0), price is not None, None, usage
        except Exception as exc:
            log.warning(
                "tollgate could not price call %s (%s): billed as reserved", self.id, type(exc).__name__
            )
            return 0.0, False, type(exc).__name__, usage

    def _priced_parts(self, usage: Usage, price: ModelPrice | None) -> tuple[float, bool, Usage]:
        parts = []
        total, priced = 0.0, price is not None
        for part in usage.parts:
            at = price
            if part.model is not None and part.model not in (self.request.model, self.decision.model):
                at = lookup_price(self.settings, part.model, self.request.provider)
                if at is None and part.usage.total_tokens:
                    self._warn_unpriced(part.model)
            part_usage = part.usage
            if usage.service_tier and not part_usage.service_tier:
                part_usage = dataclasses.replace(part_usage, service_tier=usage.service_tier)
            usd = cost(at, part_usage) if at is not None else 0.0
            priced = priced and at is not None
            total += usd
            parts.append(part._replace(usd=usd))
        if usage.units and price is not None:  # per-request units (web searches): once, at the call's model
            total += cost(price, Usage(units=usage.units, service_tier=usage.service_tier))
        return total, priced, dataclasses.replace(usage, parts=tuple(parts))

    def _price_for(self, model: str | None) -> ModelPrice | None:
        # The model that answered is the one billed (a dated snapshot may cost more than its alias).
        if model and model != self.request.model:
            price = lookup_price(self.settings, model, self.request.provider)
            if price is not None:
                return price
        return self.price

    def implausible(self, usage: Usage) -> str | None:
        """Why ``usage`` (a running count, a final one) cannot be this call's, or None."""
        return _implausible(usage, self.price, self.request) if readable(usage) else "unreadable"

    def _warn_unknown(self, unknown: Mapping[str, Any]) -> None:
        """Warn once per (provider, field) of a usage field tollgate does not know."""
        s = self.settings
        provider = self.request.provider
        for name in unknown:
            if (provider, name) in s.warned_unknown:
                continue
            s.warned_unknown.add((provider, name))
            warnings.warn(
                f"tollgate: {provider} reported a usage field it does not know, {name!r}; it may be "
                f"a new billing dimension, so the cost recorded may be short. The record keeps it "
                f"(usage.unknown) and tollgate.report() counts it. Please report it to tollgate.",
                UnknownUsageWarning,
                stacklevel=4,
            )

    def _warn_unpriced(self, model: str) -> None:
        s = self.settings
        if s.on_unpriced != "warn" or model in s.warned_unpriced:
            return
        s.warned_unpriced.add(model)
        warnings.warn(
            f"tollgate has no price for model {model!r} (provider {self.request.provider}); its calls are "
            f"recorded with their tokens and $0. Add a price with tollgate.configure(prices=...).",
            UnpricedModelWarning,
            stacklevel=4,
        )

    def _settle_store(self, amounts: list[float]) -> None:
        store = self.settings.store
        try:
            if spent := store.settle(self.holds, amounts):
                self.totals = (spent, amounts)
                alerts.after_settle(self, spent, amounts)
        except Exception as exc:
            if self._give_back(exc):
                try:
                    store.release(self.holds)
                except Exception:
                    log.exception("tollgate could not release the holds of call %s", self.id)

    async def _asettle_store(self, amounts: list[float]) -> None:
        store = self.settings.store
        try:
            if spent := await store.asettle(self.holds, amounts):
                self.totals = (spent, amounts)
                alerts.after_settle(self, spent, amounts)
        except Exception as exc:
            if self._give_back(exc):
                try:
                    await store.arelease(self.holds)
                except Exception:
                    log.exception("tollgate could not release the holds of call %s", self.id)

    def _give_back(self, exc: Exception) -> bool:
        """A settle failed with ``exc``: whether to give the holds back by a release rather than
        pin the budget (not when the store keeps the settle and replays it, as Redis does)."""
        if isinstance(exc, StoreUnavailable) and self.settings.store.replays:
            log.warning("tollgate could not settle call %s yet: the store replays it", self.id)
            return False
        log.exception("tollgate could not settle call %s in the store; releasing its holds", self.id)
        return True

    def _publish(self, record: CallRecord) -> None:
        """Ledger, span, hooks: each guarded, so one failing cannot stop the others."""
        s = self.settings
        try:
            s.ledger.write(record)
        except Exception:
            log.exception("tollgate could not record call %s in the ledger", self.id)
        try:
            telemetry.end_span(self.span, record, self._facts)
        except Exception:
            log.exception("tollgate could not end the span of call %s", self.id)
        for hooks in (s.on_record, watchers):
            for hook in hooks:
                try:
                    hook(record)
                except Exception:
                    log.exception("tollgate on_record hook %r failed", hook)

    def _facts(self) -> telemetry.Facts:
        """What the span and metrics say beyond the record."""
        taken = actions(self.steps)
        budget: BudgetFacts | None = None
        if self.overrun is not None and "cutoff" not in taken:  # a cut-off stream raises that
            taken.append("raise")
            e = self.overrun
            budget = BudgetFacts(e.budget, e.unit, e.limit, e.spent, e.reserved)
        elif not taken and any(isinstance(c, Check) for c in self.checks):
            taken.append("proceed")
        if budget is None and taken:
            room = self.output_room if "cutoff" in taken else None  # a cut-off is decided by its room
            budget = self._deciding or (facts(room.check, room.state) if room else None)
            budget = budget or tightest(self.checks, self.states)
        capture = telemetry.capture_content(self.span, self.settings)
        d = self.decision
        return telemetry.Facts(
            model=d.model,
            max_output_tokens=d.max_output_tokens,
            finish_reasons=tuple(r for r in self._finish_reasons if type(r) is str),
            input_messages=(d.messages if d.messages is not None else self.request.messages)
            if capture
            else None,
            prompt=self.request.prompt if capture else (),
            output_messages=self._output_messages if capture else (),
            server_address=self.request.server_address,
            server_port=self.request.server_port,
            metric_tags=self.settings.metric_tags,
            actions=tuple(taken),
            budget=budget,
        )


_PROCEED: dict[str, Decision] = {}


def _stopped_waiting(exc: BaseException) -> bool:
    """``exc`` says the caller stopped waiting for a request the provider had in full: a task
    cancelled, or a read timeout (httpx's and httpx2's ``ReadTimeout``, as the SDKs raise it
    or wrap it), not a connect or write timeout, after which the provider has no request."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 8:
        if type(cause).__name__ == "ReadTimeout":
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


class _Sending:
    """:meth:`Call.sending`: a plain class, not a generator (it runs on every call)."""

    __slots__ = ("_call", "_current", "_token")

    def __init__(self, call: Call) -> None:
        self._call = call

    def __enter__(self) -> None:
        self._token = _sending.set(self._call)
        self._current = telemetry.current(self._call.span)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            telemetry.restore(self._current)
        finally:
            _sending.reset(self._token)


def _proceed(model: str) -> Decision:
    """The decision to send a call to ``model`` unchanged (one per model: made on every call)."""
    decision = _PROCEED.get(model)
    if decision is None:
        if len(_PROCEED) > 1024:  # model names come from callers: keep the cache bounded
            _PROCEED.clear()
        decision = _PROCEED[model] = Decision("proceed", model)
    return decision


_NOTHING = Outcome(Usage())
_BLOCKED = Outcome(Usage(), status="blocked")
_ABANDONED = Outcome(status="abandoned", estimated=True)
