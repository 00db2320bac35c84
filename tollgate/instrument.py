"""``instrument(client)``: a thin proxy that sends a client's LLM calls through the gate.

Nothing global is patched. The proxy delegates every attribute to the real client; only the
attribute paths an adapter names (e.g. ``chat.completions.create``) are replaced by gated
functions. ``isinstance(proxy, openai.OpenAI)`` stays true, and ``with_options()`` /
``copy()`` return instrumented clients too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Routes = dict[tuple[str, ...], Callable[[Callable[..., Any]], Callable[..., Any]]]

# Client methods that return a new client of the same kind, which must stay instrumented.
_CLIENT_FACTORIES = frozenset({"with_options", "copy"})


def _routes_for(client: Any) -> Routes:
    module = type(client).__module__
    if module.split(".", 1)[0] == "openai":
        from tollgate.providers import openai

        return openai.routes(client)
    if module.split(".", 1)[0] == "anthropic":
        from tollgate.providers import anthropic

        return anthropic.routes(client)
    if module.startswith("google.genai"):
        from tollgate.providers import gemini

        return gemini.routes(client)
    raise TypeError(
        f"tollgate.instrument() does not know {module}.{type(client).__qualname__}; supported: "
        f"openai.OpenAI, openai.AsyncOpenAI, openai.AzureOpenAI, openai.AsyncAzureOpenAI and "
        f"OpenAI-compatible clients (base_url=...), anthropic.Anthropic, anthropic.AsyncAnthropic, "
        f"google.genai.Client"
    )


class _Proxy:
    """Delegates to ``target``; attribute paths in ``routes`` are gated, their parents proxied."""

    __slots__ = ("_tg_children", "_tg_parents", "_tg_path", "_tg_routes", "_tg_target")

    def __init__(self, target: Any, routes: Routes, path: tuple[str, ...] = (), parents: Any = None) -> None:
        object.__setattr__(self, "_tg_target", target)
        object.__setattr__(self, "_tg_routes", routes)
        object.__setattr__(self, "_tg_path", path)
        object.__setattr__(
            self,
            "_tg_parents",
            parents if parents is not None else {p[:i] for p in routes for i in range(1, len(p))},
        )
        object.__setattr__(self, "_tg_children", {})

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._tg_target)

    def __getattr__(self, name: str) -> Any:
        children: dict[str, Any] = self._tg_children
        if name in children:
            return children[name]
        value = getattr(self._tg_target, name)
        path = (*self._tg_path, name)
        hook = self._tg_routes.get(path)
        if hook is not None:
            wrapped = hook(value)
        elif path in self._tg_parents:
            wrapped = _Proxy(value, self._tg_routes, path, self._tg_parents)
        elif not self._tg_path and name in _CLIENT_FACTORIES and callable(value):
            wrapped = _client_factory(value)
        else:
            return value  # not ours: plain pass-through, looked up afresh every time
        children[name] = wrapped
        return wrapped

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._tg_target, name, value)
        self._tg_children.pop(name, None)

    def __delattr__(self, name: str) -> None:
        delattr(self._tg_target, name)
        self._tg_children.pop(name, None)

    def __dir__(self) -> list[str]:
        return dir(self._tg_target)

    def __repr__(self) -> str:
        return f"<tollgate instrumented {self._tg_target!r}>"

    # Context-manager use (`with instrument(OpenAI()) as client:`) must yield the proxy.
    def __enter__(self) -> Any:
        self._tg_target.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._tg_target.__exit__(*exc)

    async def __aenter__(self) -> Any:
        await self._tg_target.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._tg_target.__aexit__(*exc)


def proxy(target: Any, routes: Routes) -> Any:
    """A proxy of ``target`` with ``routes`` gated: for adapters whose SDK objects build other
    objects on an ungated part of the client (google-genai's chat sessions)."""
    return _Proxy(target, routes)


def _client_factory(factory: Callable[..., Any]) -> Callable[..., Any]:
    def make(*args: Any, **kwargs: Any) -> Any:
        return instrument(factory(*args, **kwargs))

    return make


def instrument(client: T) -> T:
    """Return ``client`` with its LLM calls going through tollgate (budgets, ledger, spans).

    >>> import openai, tollgate
    >>> client = tollgate.instrument(openai.OpenAI(api_key="sk-test"))
    >>> isinstance(client, openai.OpenAI)
    True
    >>> tollgate.uninstrument(client).__class__ is openai.OpenAI
    True

    Instrumenting an already instrumented client returns it unchanged.
    """
    if type(client) is _Proxy:
        return client
    routes = _routes_for(client)
    _keep_secrets(routes, client)
    return _Proxy(client, routes)  # type: ignore[return-value]


def _keep_secrets(routes: Routes, client: Any) -> None:
    """Tell the client's surfaces its credentials, so an error message that quotes them is masked."""
    from tollgate.failures import secrets_of

    secrets = secrets_of(client)
    if not secrets:
        return
    for route in routes.values():
        surface = getattr(route, "keywords", {}).get("surface")
        if surface is not None:
            surface.secrets = secrets


def uninstrument(client: T) -> T:
    """The original client behind an instrumented one (``client`` itself if it is not)."""
    if type(client) is _Proxy:
        return client._tg_target  # type: ignore[attr-defined,no-any-return]
    return client
