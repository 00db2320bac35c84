"""Ambient budgets: ``tollgate.budget(...)`` as a context manager or decorator.

Active budgets live in a contextvar as a tuple, outermost first, so they nest, follow
``await``, and never leak between tasks. A budget without ``per`` counts only what runs
inside its own block (or one call of the decorated function): every entry gets a fresh
counter. A windowed budget is one persistent counter in the store, named after the budget
(and the values of its ``key`` tags), shared by every block and process using that store.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

from tollgate.budgets.spec import CLAMP_FLOOR, Action, BudgetSpec, check_downgrade_models
from tollgate.scopes import Scopes, Stepper, in_async_steps, in_steps

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Frame:
    """One active budget: its spec, and the scope that owns a lifetime counter."""

    spec: BudgetSpec
    scope: str
    #: The store slots this scope's lifetime counters were written to, dropped when it ends.
    touched: set[str] = field(default_factory=set, compare=False, hash=False)
    #: The checks of this budget already built, by the values of its ``key`` tags (see
    #: tollgate.budgets.enforce.checks_for): a budget's checks are the same for every call
    #: that shares a counter, so they are made once, not on every call.
    checks: dict[tuple[str, ...], list[Any]] = field(default_factory=dict, compare=False, hash=False)
    #: A standing limit's tag match (empty for a budget).
    match: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def counter(self, tags: Mapping[str, str]) -> str:
        """The store key of this budget's counter for a call with ``tags``."""
        spec = self.spec
        base = f"budget:{spec.name}" if spec.windowed else f"budget:{spec.name}:{self.scope}"
        if not spec.key:
            return base
        # A call missing a key tag shares the counter of every other call missing it.
        return base + ":" + "|".join(f"{k}={tags.get(k, '')}" for k in spec.key)


_active: contextvars.ContextVar[tuple[Frame, ...]] = contextvars.ContextVar("tollgate_budgets", default=())


def _without(value: tuple[Frame, ...], frame: Frame, frames: Sequence[Frame]) -> tuple[Frame, ...]:
    return tuple(f for f in value if f is not frame)  # generators' own frames stay


# The `budget` blocks open in this context (see tollgate.scopes: nothing is kept per object).
_scopes: Scopes[tuple[Frame, ...], Frame] = Scopes("tollgate_budget_open", _active, _without)
log = logging.getLogger("tollgate")


def _end(frame: Frame) -> None:
    """A block or call ended: its lifetime counters are done with (windowed ones persist)."""
    if frame.touched:
        from tollgate.config import settings

        try:
            settings().store.forget(tuple(frame.touched))
        except Exception:  # the counters then expire with their TTL; never fail the caller's block
            log.warning("tollgate could not drop the counters of budget %r", frame.spec.name, exc_info=True)


#: Windowed budgets made in this process, by name, so tollgate.usage(name) can find them.
known: dict[str, BudgetSpec] = {}
_KNOWN_KEPT = 10_000  # budget names made per request must not grow it forever


class BudgetHandle:
    """What ``with tollgate.budget(...) as b`` gives: where the budget stands, read from the store
    when asked (``b.spent``, ``b.remaining``, ...; :meth:`state` reads all at once). A keyed
    budget reads the counter of the calls' key tags as they are where it is read."""

    __slots__ = ("frame",)

    def __init__(self, frame: Frame) -> None:
        self.frame = frame

    @property
    def spec(self) -> BudgetSpec:
        return self.frame.spec

    def state(self, unit: str | None = None) -> Any:
        """A :class:`tollgate.control.BudgetState` of the budget (its first limit, or ``unit``)."""
        from tollgate.control import frame_state

        return frame_state(self.frame, None, unit)

    @property
    def spent(self) -> float:
        return float(self.state().spent)

    @property
    def reserved(self) -> float:
        return float(self.state().reserved)

    @property
    def remaining(self) -> float:
        return float(self.state().remaining)

    @property
    def limit(self) -> float:
        return float(self.state().limit)

    def __repr__(self) -> str:
        return f"<tollgate budget {self.spec.name!r}>"


def active_budgets() -> tuple[Frame, ...]:
    """The budgets in force here, outermost first."""
    return _active.get()


class budget:  # lower case: used like a function, `with tollgate.budget(...)`
    """Limit what the calls inside a block or function may spend.

    >>> import tollgate
    >>> with tollgate.budget(usd=0.50, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}):
    ...     pass
    >>> @tollgate.budget(tokens=20_000, on_exceed="clamp")
    ... def answer(question): ...

    ``per`` makes it a persistent windowed counter: ``"minute"``, ``"hour"``, ``"day"``,
    ``"week"``, ``"month"`` (UTC calendar windows) or a ``timedelta`` (rolling). ``key``
    names the tag(s) whose values select separate counters, e.g. ``key="tenant"``.
    ``on_exceed``: ``"block"`` (raise :class:`~tollgate.BudgetExceeded` before the call),
    ``"downgrade"`` (use ``downgrade[model]``, chains allowed), ``"clamp"`` (lower the output
    cap to what the budget affords), ``"truncate"`` (drop the oldest turns), ``"raise"``
    (let the call run, raise once the cap is crossed), or a callable that receives the
    decision context and returns one of those. ``hold_wait``: seconds a call that does not fit
    only because of other calls in flight waits for them to settle before ``on_exceed``
    applies (default: ``configure(hold_wait=...)``, 5 s; 0: decide at once); see
    :mod:`tollgate.budgets.waiting`.
    """

    __slots__ = ("spec",)

    def __init__(
        self,
        usd: float | None = None,
        tokens: int | None = None,
        *,
        calls: int | None = None,
        tool_calls: int | None = None,
        per: str | timedelta | None = None,
        key: str | tuple[str, ...] = (),
        on_exceed: Action | Callable[[Any], str] = "block",
        downgrade: Mapping[str, str] | None = None,
        name: str = "",
        clamp_floor: int = CLAMP_FLOOR,
        warn_at: float | Sequence[float] = (),
        burn_rate: timedelta | bool | None = None,
        tz: str | None = None,
        hold_wait: float | None = None,
    ) -> None:
        self.spec = BudgetSpec(
            usd=usd,
            tokens=tokens,
            calls=calls,
            tool_calls=tool_calls,
            warn_at=warn_at,  # type: ignore[arg-type]  # normalised to a sorted tuple by BudgetSpec
            burn_rate=burn_rate,
            tz=tz,
            per=per,
            key=key,  # type: ignore[arg-type]  # normalised to a tuple by BudgetSpec
            on_exceed=on_exceed,
            downgrade=dict(downgrade or {}),
            name=name,
            clamp_floor=clamp_floor,
            hold_wait=hold_wait,
        )
        if self.spec.downgrade:
            from tollgate.config import settings

            check_downgrade_models(self.spec.downgrade, settings().prices)
        if self.spec.windowed and (len(known) < _KNOWN_KEPT or self.spec.name in known):
            known[self.spec.name] = self.spec

    def __repr__(self) -> str:
        return f"tollgate.budget({self.spec.name!r}, on_exceed={self.spec.on_exceed!r})"

    def _frame(self) -> Frame:
        return Frame(self.spec, os.urandom(8).hex())

    def __enter__(self) -> BudgetHandle:
        frame = self._frame()
        _scopes.enter(self, frame, (*_active.get(), frame))
        return BudgetHandle(frame)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _end(_scopes.exit(self))

    async def __aenter__(self) -> BudgetHandle:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        if inspect.isasyncgenfunction(fn):
            return functools.wraps(fn)(in_async_steps(fn, self._stepper))  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):
            return functools.wraps(fn)(in_steps(fn, self._stepper))  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:  # a fresh frame per call: the context manager is reentrant per context
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    def _stepper(self) -> Stepper:
        """A fresh frame for one run of a decorated generator, pushed for each of its steps."""
        frame = self._frame()
        return (lambda: _active.set((*_active.get(), frame)), _active.reset, lambda: _end(frame))
