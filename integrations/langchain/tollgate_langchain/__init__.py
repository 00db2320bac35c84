"""tollgate for LangChain: budgets, cost attribution and telemetry for chat models and agents.

Three entry points, all through tollgate's one gate (this package only translates):

- :class:`TollgateCallbackHandler` (and :class:`AsyncTollgateCallbackHandler`): observe,
  attribute and block any chat model or LLM, passed in ``callbacks=[...]`` or for every model
  in the process with :func:`enable`;
- :func:`guard`: a Runnable around a chat model that also applies downgrade, clamp and
  truncate;
- :class:`TollgateMiddleware`: every model call of a LangChain v1 agent (``create_agent``).

>>> from tollgate_langchain import TollgateCallbackHandler, guard
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from tollgate_langchain.callbacks import AsyncTollgateCallbackHandler, TollgateCallbackHandler
from tollgate_langchain.guard import Guard, guard

if TYPE_CHECKING:
    from tollgate_langchain.middleware import TollgateMiddleware

__all__ = [
    "AsyncTollgateCallbackHandler",
    "Guard",
    "TollgateCallbackHandler",
    "TollgateMiddleware",
    "disable",
    "enable",
    "guard",
]

# LangChain's configure hook adds the value of this variable to every run's callbacks (unless
# the run already has a TollgateCallbackHandler). Its default is read in every thread and task,
# so one handler object, switched on and off, covers the whole process.
_GLOBAL = TollgateCallbackHandler()
_hook_var: contextvars.ContextVar[TollgateCallbackHandler | None] | None = None


def enable(*, on_action: str = "block", tags: bool = True) -> TollgateCallbackHandler:
    """Put every LangChain chat model and LLM in the process under tollgate, with no call site change.

    Registers a :class:`TollgateCallbackHandler` through LangChain's configure hook
    (``register_configure_hook``); runs that already have one (``callbacks=[...]``) keep
    theirs, and calls made through :func:`guard` or :class:`TollgateMiddleware` are counted by
    those alone. Returns the handler. :func:`disable` turns it off.

    >>> import tollgate_langchain
    >>> handler = tollgate_langchain.enable()
    >>> tollgate_langchain.disable()
    """
    global _hook_var, _GLOBAL
    from langchain_core.tracers.context import register_configure_hook

    _GLOBAL = TollgateCallbackHandler(on_action=on_action, tags=tags)  # type: ignore[arg-type]
    # A fresh variable whose default is the handler: the default is seen in every thread
    # (a value set() would be seen only in this context and the ones copied from it).
    var: contextvars.ContextVar[TollgateCallbackHandler | None] = contextvars.ContextVar(
        "tollgate_langchain_handler", default=_GLOBAL
    )
    if _hook_var is not None:  # unregistered, not set to None: a set would stay in this context
        _switch_off(_hook_var)
    _hook_var = var
    register_configure_hook(var, True, TollgateCallbackHandler)
    return _GLOBAL


def disable() -> None:
    """Undo :func:`enable` (a no-op when it was not called)."""
    global _hook_var
    if _hook_var is not None:
        _switch_off(_hook_var)
        _hook_var = None


def _switch_off(var: contextvars.ContextVar[Any]) -> None:
    from langchain_core.tracers import context

    hooks = context._configure_hooks
    hooks[:] = [hook for hook in hooks if hook[0] is not var]


def __getattr__(name: str) -> Any:
    if name == "TollgateMiddleware":  # needs langchain (v1 agents): imported on first use
        from tollgate_langchain.middleware import TollgateMiddleware

        return TollgateMiddleware
    raise AttributeError(f"module 'tollgate_langchain' has no attribute {name!r}")
