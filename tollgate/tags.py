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
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, ParamSpec, TypeVar

from tollgate.scopes import Scopes, Stepper, in_async_steps, in_steps

P = ParamSpec("P")
R = TypeVar("R")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_tags: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("tollgate_tags", default=_EMPTY)


def _merged(
    value: Mapping[str, str], item: Mapping[str, str], items: Sequence[Mapping[str, str]]
) -> Mapping[str, str]:
    merged: dict[str, str] = {}
    for tags in items:
        merged.update(tags)
    return MappingProxyType(merged) if merged else _EMPTY


# The `track` blocks open in this context (see tollgate.scopes: nothing is kept per object).
_scopes: Scopes[Mapping[str, str], Mapping[str, str]] = Scopes("tollgate_track_open", _tags, _merged)


def _nothing() -> None:
    pass


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
        _scopes.enter(self, self._tags, merged)
        return merged

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _scopes.exit(self)

    def _stepper(self) -> Stepper:
        """The tags, merged over the caller's, for each step of a decorated generator."""
        return (lambda: _tags.set(MappingProxyType({**_tags.get(), **self._tags})), _tags.reset, _nothing)

    async def __aenter__(self) -> Mapping[str, str]:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.isasyncgenfunction(fn):
            return functools.wraps(fn)(in_async_steps(fn, self._stepper))
        if inspect.isgeneratorfunction(fn):
            return functools.wraps(fn)(in_steps(fn, self._stepper))
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
