"""``instrument(client)``: picks the provider adapter for a client and wraps the client in a
:class:`~tollgate.proxy.Proxy` whose LLM methods go through the gate.

Nothing global is patched. ``isinstance(client, openai.OpenAI)`` stays true, and
``with_options()`` / ``copy()`` return instrumented clients too.
"""

from __future__ import annotations

from typing import Any, TypeVar

from tollgate.proxy import Proxy, Routes

T = TypeVar("T")


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
    if type(client) is Proxy:
        return client
    routes = _routes_for(client)
    _keep_secrets(routes, client)
    return Proxy(client, routes, rewrap=instrument)  # type: ignore[return-value]


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
    if type(client) is Proxy:
        return client._tg_target  # type: ignore[attr-defined,no-any-return]
    return client
