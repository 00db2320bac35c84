"""Ambient tags: who and what a call is for (tenant, feature, user), carried by contextvars.

Tags set by :func:`track` apply to every call made inside the block, across ``await``, and
nest: an inner ``track`` adds to (and may override) the outer tags, and the outer tags come
back when the block ends. Threads do not inherit context by default; wrap the function with
:func:`propagate` (or submit ``contextvars.copy_context().run``) to carry the tags along.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_tags: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("tollgate_tags", default=_EMPTY)

# The `track` blocks open in this context, innermost last: (the track object, the token of its
# change to _tags, the token that restores this stack as it was before the block). Two
# module-level variables holding immutable values, and nothing per object: one track object
# may be open in many threads and tasks at once (each has its own copy of the stack) and
# nested in itself, and a block leaves the context as it found it, so 10,000 blocks leave no
# trace in it (issue 16: a ContextVar per object grew every long-lived thread's context).
_Open = tuple["track", contextvars.Token[Mapping[str, str]], contextvars.Token[tuple["_Open", ...]]]
_open: contextvars.ContextVar[tuple[_Open, ...]] = contextvars.ContextVar("tollgate_track_open", default=())
_MISSING = contextvars.Token.MISSING  # a token's old_value when the variable was unset


def current_tags() -> Mapping[str, str]:
    """The tags in force here (read-only).

    >>> with track(tenant="acme"):
    ...     dict(current_tags())
    {'tenant': 'acme'}
    """
    return _tags.get()


def _tag_value(name: str, value: object) -> str:
    if not name.isidentifier():
        raise ValueError(f"tag name {name!r} is not an identifier")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise ValueError(f"tag {name}={value!r}: tag values must be str, int, float or bool")


class track:  # lower case: used like a function: `with tollgate.track(...)`
    """Attach tags to every call made inside the block (context manager or decorator).

    >>> with track(tenant="acme", feature="search"):
    ...     with track(user_id="alice"):
    ...         sorted(current_tags().items())
    [('feature', 'search'), ('tenant', 'acme'), ('user_id', 'alice')]

    As a decorator it works on sync and async functions::

        @tollgate.track(feature="summarise")
        async def summarise(doc): ...
    """

    __slots__ = ("_tags",)

    def __init__(self, **tags: object) -> None:
        self._tags = {k: _tag_value(k, v) for k, v in tags.items()}

    def __repr__(self) -> str:
        return f"tollgate.track({', '.join(f'{k}={v!r}' for k, v in self._tags.items())})"

    def __enter__(self) -> Mapping[str, str]:
        merged = MappingProxyType({**_tags.get(), **self._tags})
        opened = _open.get()
        mark = _open.set(opened)  # restores the stack on exit, and unsets it if it was unset
        _open.set((*opened, (self, _tags.set(merged), mark)))
        return merged

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        opened = _open.get()
        if opened:
            owner, token, mark = opened[-1]
            before = mark.old_value
            # The innermost block ends and no block below it ended out of order: undo both
            # changes exactly (a variable that was unset is unset again).
            if owner is self and (0 if before is _MISSING else len(before)) == len(opened) - 1:
                try:
                    _tags.reset(token)
                except (ValueError, RuntimeError):  # begun in another context (this is a copy)
                    pass
                else:
                    _open.reset(mark)
                    return
        _leave(self, opened)

    async def __aenter__(self) -> Mapping[str, str]:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with self:  # the object is reentrant: concurrent and recursive calls share it
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return fn(*args, **kwargs)

        return run


def _leave(owner: track, opened: tuple[_Open, ...]) -> None:
    """End ``owner``'s innermost block here, when it cannot simply be undone.

    That is when blocks end out of order (generators holding blocks open, closed in another
    order than they began), or in a copy of the context they began in (an async generator
    finalised in a task of its own). Only ``owner``'s tags go: those in force become the
    tags of the blocks still open, in order. The block above ``owner``'s takes over its
    tokens, which restore the context as it was before ``owner``'s block.
    """
    for i in range(len(opened) - 1, -1, -1):
        if opened[i][0] is owner:
            break
    else:
        raise RuntimeError(f"{owner!r} ends a block that was not begun in this context")
    _, token, mark = opened[i]
    above = opened[i + 1 : i + 2]
    rest = (*opened[:i], *((entry[0], token, mark) for entry in above), *opened[i + 2 :])
    merged: dict[str, str] = {}
    for entry in rest:
        merged.update(entry[0]._tags)
    _open.set(rest)
    _tags.set(MappingProxyType(merged) if merged else _EMPTY)


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` to run in a copy of the caller's context (tags, budgets) from any thread.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with track(tenant="acme"), ThreadPoolExecutor() as pool:
    ...     pool.submit(propagate(lambda: current_tags()["tenant"])).result()
    'acme'
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        # A Context can be entered by one thread at a time: copy it per call so the wrapper
        # can be submitted many times concurrently.
        return ctx.copy().run(fn, *args, **kwargs)

    return run
