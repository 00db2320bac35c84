"""Blocks that change a context variable for their duration (``track``, ``budget``), with no
state of their own.

One object may be open in many threads and tasks at once (a module-level ``with TRACK:``) and
nested in itself, so it cannot keep the tokens of its changes. They go on a stack of the
blocks open in this context, itself one module-level ContextVar holding immutable values:
a block leaves the context exactly as it found it, so 10,000 blocks leave no trace in it (a
ContextVar made per object grew every long-lived thread's context by one per block).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

V = TypeVar("V")
I = TypeVar("I")  # noqa: E741 - what a block adds, e.g. a budget's frame or a track's tags

_MISSING = contextvars.Token.MISSING  # a token's old_value when the variable was unset


class Scopes(Generic[V, I]):
    """The blocks open over ``var``, innermost last: ``(owner, item, token of its change to var,
    token that restores the stack as it was before the block)``.

    ``without(value, item, items)`` is what ``var`` becomes when the block that added ``item``
    ends out of order: ``value`` is ``var``'s value, ``items`` those of the blocks still open.
    """

    __slots__ = ("_open", "_var", "_without")

    def __init__(
        self, name: str, var: contextvars.ContextVar[V], without: Callable[[V, I, Sequence[I]], V]
    ) -> None:
        self._var = var
        self._without = without
        self._open: contextvars.ContextVar[tuple[tuple[Any, I, Any, Any], ...]] = contextvars.ContextVar(
            name, default=()
        )

    def enter(self, owner: object, item: I, value: V) -> None:
        """Open ``owner``'s block: ``var`` is ``value`` until it ends."""
        opened = self._open.get()
        mark = self._open.set(opened)  # restores the stack on exit, and unsets it if it was unset
        self._open.set((*opened, (owner, item, self._var.set(value), mark)))

    def exit(self, owner: object) -> I:
        """End ``owner``'s innermost block here; the item it added."""
        opened = self._open.get()
        if opened:
            last, item, token, mark = opened[-1]
            before = mark.old_value
            # The innermost block ends and no block below it ended out of order: undo both
            # changes exactly (a variable that was unset is unset again).
            if last is owner and (0 if before is _MISSING else len(before)) == len(opened) - 1:
                try:
                    self._var.reset(token)
                except (ValueError, RuntimeError):  # begun in another context (this is a copy)
                    pass
                else:
                    self._open.reset(mark)
                    return item
        return self._leave(owner, opened)

    def _leave(self, owner: object, opened: tuple[tuple[Any, I, Any, Any], ...]) -> I:
        """End ``owner``'s block when it cannot simply be undone: blocks ending out of order
        (generators holding blocks open, closed in another order than they began), or in a copy
        of the context they began in (an async generator finalised in a task of its own). Only
        ``owner``'s item goes; the block above it takes over its tokens, which restore the
        context as it was before ``owner``'s block."""
        for i in range(len(opened) - 1, -1, -1):
            if opened[i][0] is owner:
                break
        else:
            raise RuntimeError(f"{owner!r} ends a block that was not begun in this context")
        _, item, token, mark = opened[i]
        above = opened[i + 1 : i + 2]
        rest = (*opened[:i], *((e[0], e[1], token, mark) for e in above), *opened[i + 2 :])
        self._open.set(rest)
        self._var.set(self._without(self._var.get(), item, [e[1] for e in rest]))
        return item


#: What a decorator puts in force for one run of a generator function: ``(enter, leave, done)``;
#: ``enter()`` applies it for one step and returns a token, ``leave(token)`` undoes that step's,
#: ``done()`` runs once the generator has ended.
Stepper = tuple[Callable[[], Any], Callable[[Any], None], Callable[[], None]]


def in_steps(fn: Callable[..., Generator[Any, Any, Any]], begin: Callable[[], Stepper]) -> Callable[..., Any]:
    """``fn`` (a generator function) with ``begin()``'s change in force during each of its steps.

    A generator runs in its caller's context, a step at a time: the change is made for each
    step and undone before control returns to the caller, so it never leaks out (a ``with``
    around a ``yield`` would leave it set in the caller, or reset it in the wrong context).
    """

    def run(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        enter, leave, done = begin()
        gen = fn(*args, **kwargs)
        send: Any = None
        throw: BaseException | None = None
        try:
            while True:
                token = enter()
                try:
                    value = gen.throw(throw) if throw is not None else gen.send(send)
                except StopIteration as stop:
                    return stop.value
                finally:
                    leave(token)
                send, throw = None, None
                try:
                    send = yield value
                except GeneratorExit:
                    gen.close()
                    raise
                except BaseException as exc:
                    throw = exc
        finally:
            done()

    return run


def in_async_steps(
    fn: Callable[..., AsyncGenerator[Any, Any]], begin: Callable[[], Stepper]
) -> Callable[..., Any]:
    """The async-generator twin of :func:`in_steps`."""

    async def run(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        enter, leave, done = begin()
        agen = fn(*args, **kwargs)
        send: Any = None
        throw: BaseException | None = None
        try:
            while True:
                token = enter()
                try:
                    value = await (agen.athrow(throw) if throw is not None else agen.asend(send))
                except StopAsyncIteration:
                    return
                finally:
                    leave(token)
                send, throw = None, None
                try:
                    send = yield value
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as exc:
                    throw = exc
        finally:
            done()

    return run
