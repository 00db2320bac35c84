"""``completion`` / ``acompletion``: LiteLLM's calls run through tollgate's gate by tollgate itself.

LiteLLM gives a sync ``completion`` no hook that can edit or stop it. These thin wrappers run the
gate's pre-flight (block, downgrade, clamp, truncate), apply the decision to the arguments, and
send the call with :func:`tollgate.gate.sending` current (a client given with ``client=`` that
is instrumented with :func:`tollgate.instrument` then does not count it again). A response is
settled before it is returned; a stream is settled by :class:`TollgateLogger` when it ends (one
is passed to the call when ``litellm.callbacks`` has none). ``router=`` sends through a
``litellm.Router`` (its model groups) instead of the SDK.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

import litellm

from tollgate import gate
from tollgate.tags import track
from tollgate_litellm import _translate as tr
from tollgate_litellm.logger import TollgateLogger, _Pending, api_keys, outcome_of, registry

_default: TollgateLogger | None = None


def _with_logger(kwargs: dict[str, Any]) -> None:
    """Make sure a TollgateLogger sees the call's events (it settles streams)."""
    global _default
    callbacks = [*(litellm.callbacks or ()), *(kwargs.get("callbacks") or ())]
    if any(isinstance(cb, TollgateLogger) for cb in callbacks):
        return
    if _default is None:
        _default = TollgateLogger()
    kwargs["callbacks"] = [*(kwargs.get("callbacks") or ()), _default]


def _prepare(
    args: tuple[Any, ...], kwargs: dict[str, Any], router: Any
) -> tuple[dict[str, Any], tr.View, str]:
    names = ("model", "messages")
    for name, value in zip(names, args, strict=False):
        kwargs[name] = value
    if len(args) > len(names):
        raise TypeError(
            "tollgate_litellm.completion takes model and messages positionally, the rest by keyword"
        )
    if router is None:
        _with_logger(kwargs)
        model = str(kwargs.get("model") or "")
    else:
        from tollgate_litellm.logger import _router_model

        model = _router_model(router, str(kwargs.get("model") or ""))
    call_id = kwargs.setdefault("litellm_call_id", str(uuid.uuid4()))
    view = tr.view_of(kwargs, "completion", model=model)
    assert view is not None
    return kwargs, view, str(call_id)


def _edits(call: gate.Call, view: tr.View, kwargs: dict[str, Any], router: Any) -> dict[str, Any]:
    if router is None:
        out = tr.apply(call, view, kwargs)
        tr.check_routable(call, out)
        return _usage_hidden(kwargs, out)
    from tollgate_litellm.logger import _router_group_for

    out = tr.apply(call, view, {**kwargs, "model": call.decision.model})
    out["model"] = kwargs["model"]
    if call.decision.model != call.request.model:
        group = _router_group_for(router, call.decision.model)
        if group is not None:
            out["model"] = group
    return _usage_hidden(kwargs, out)


def _usage_hidden(given: Mapping[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """``sent``, telling LiteLLM that tollgate asked the stream for its usage: LiteLLM 1.110+
    then keeps the chunks the caller reads as they would be without it (no usage-only chunk),
    as its own server does for the usage it injects. Older releases have no such flag."""
    options = given.get("stream_options")
    asked = isinstance(options, Mapping) and "include_usage" in options
    if asked or "stream_options" not in sent or _INJECTED is None:
        return sent
    return {**sent, _INJECTED: True}


def _injected_flag() -> str | None:
    try:
        from litellm.types.litellm_params import STREAM_USAGE_INJECTED_FIELD
    except ImportError:  # LiteLLM before 1.110
        return None
    return str(STREAM_USAGE_INJECTED_FIELD)


#: LiteLLM's name for "the stream's usage was asked for by someone other than the caller".
_INJECTED = _injected_flag()


def completion(*args: Any, router: Any = None, **kwargs: Any) -> Any:
    """``litellm.completion`` (or ``router.completion``) through tollgate's gate, every action applied.

    Raises :class:`tollgate.BudgetExceeded` before any traffic when a budget blocks the call.
    """
    kwargs, view, call_id = _prepare(args, kwargs, router)
    with track(**tr.tags_from(kwargs.get("metadata"))):
        call = gate.preflight(view.request, secrets=api_keys(kwargs))
    with call:
        sent = call.edit(_edits, call, view, kwargs, router)
        registry.add(call_id, _Pending(call, view, applied=True))
        with call.sending():
            result = (router.completion if router is not None else litellm.completion)(**sent)
        if view.request.stream:  # settled by the logger's event at its end, or as abandoned
            call.hand_over()
            return _Watched(result, call_id)
        if registry.take(call_id) is None:  # the logger's success event settled it already
            call.hand_over()
        else:
            call.finish(outcome_of(call, view, {}, result))
    return result


async def acompletion(*args: Any, router: Any = None, **kwargs: Any) -> Any:
    """The async twin of :func:`completion` (``litellm.acompletion`` / ``router.acompletion``)."""
    kwargs, view, call_id = _prepare(args, kwargs, router)
    with track(**tr.tags_from(kwargs.get("metadata"))):
        call = await gate.apreflight(view.request, secrets=api_keys(kwargs))
    async with call:
        sent = call.edit(_edits, call, view, kwargs, router)
        registry.add(call_id, _Pending(call, view, applied=True))
        with call.sending():
            result = await (router.acompletion if router is not None else litellm.acompletion)(**sent)
        if view.request.stream:  # settled by the logger's event at its end, or as abandoned
            call.hand_over()
            return _Watched(result, call_id)
        if registry.take(call_id) is None:  # the logger's success event settled it already
            call.hand_over()
        else:
            await call.afinish(outcome_of(call, view, {}, result))
    return result


class _Watched:
    """LiteLLM's stream, read through: a stream its reader closes or drops before the end sends
    LiteLLM no event, so it is settled here as abandoned (a stream read to its end is settled
    by the logger's success event)."""

    __slots__ = ("_tg_call_id", "_tg_ended", "_tg_inner")

    def __init__(self, inner: Any, call_id: str) -> None:
        self._tg_inner, self._tg_call_id, self._tg_ended = inner, call_id, False

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._tg_inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tg_inner, name)

    def __iter__(self) -> _Watched:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._tg_inner)
        except StopIteration:
            self._tg_ended = True
            raise

    def __aiter__(self) -> _Watched:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._tg_inner.__anext__()
        except StopAsyncIteration:
            self._tg_ended = True
            raise

    def _left(self) -> None:
        if not self._tg_ended:
            self._tg_ended = True
            registry.abandon(self._tg_call_id)

    def close(self) -> Any:
        self._left()
        close = getattr(self._tg_inner, "close", None)
        return close() if close is not None else None

    async def aclose(self) -> None:
        self._left()
        close = getattr(self._tg_inner, "aclose", None)
        if close is not None:
            await close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # nothing may escape a finaliser
            self._left()
