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

    __slots__ = ("_tags", "_tokens")

    def __init__(self, **tags: object) -> None:
        self._tags = {k: _tag_value(k, v) for k, v in tags.items()}
        # Per-context stack of tokens: one track object may be entered by many threads or
        # tasks at once (a module-level `with TRACK:`), each restoring only its own change.
        self._tokens: contextvars.ContextVar[tuple[contextvars.Token[Mapping[str, str]], ...]] = (
            contextvars.ContextVar("tollgate_track_tokens", default=())
        )

    def __enter__(self) -> Mapping[str, str]:
        merged = MappingProxyType({**_tags.get(), **self._tags})
        token = _tags.set(merged)
        self._tokens.set((*self._tokens.get(), token))
        return merged

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        *rest, token = self._tokens.get()
        self._tokens.set(tuple(rest))
        _tags.reset(token)

    async def __aenter__(self) -> Mapping[str, str]:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        tags = self._tags
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with track(**tags):
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with track(**tags):
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
