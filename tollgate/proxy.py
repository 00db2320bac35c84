"""The generic proxy: delegates everything to a target object, except the attribute paths a
route table names, which it replaces by the route's wrapper (gated functions).

``isinstance(proxy, type(target))`` stays true (``__class__`` is the target's); parents of a
routed path are proxied too, so ``client.chat.completions.create`` reaches the wrapper;
client factories (``with_options()``, ``copy()``) hand back a proxied client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Routes = dict[tuple[str, ...], Callable[[Callable[..., Any]], Callable[..., Any]]]

# Client methods that return a new client of the same kind, which must stay instrumented.
_CLIENT_FACTORIES = frozenset({"with_options", "copy"})


class Proxy:
    """Delegates to ``target``; attribute paths in ``routes`` are gated, their parents proxied."""

    __slots__ = ("_tg_children", "_tg_parents", "_tg_path", "_tg_rewrap", "_tg_routes", "_tg_target")

    def __init__(
        self,
        target: Any,
        routes: Routes,
        path: tuple[str, ...] = (),
        parents: Any = None,
        rewrap: Callable[[Any], Any] | None = None,
    ) -> None:
        object.__setattr__(self, "_tg_target", target)
        object.__setattr__(self, "_tg_rewrap", rewrap)
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
            wrapped = Proxy(value, self._tg_routes, path, self._tg_parents)
        elif not self._tg_path and name in _CLIENT_FACTORIES and callable(value) and self._tg_rewrap:
            wrapped = _client_factory(value, self._tg_rewrap)
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
    return Proxy(target, routes)


def _client_factory(factory: Callable[..., Any], rewrap: Callable[[Any], Any]) -> Callable[..., Any]:
    def make(*args: Any, **kwargs: Any) -> Any:
        return rewrap(factory(*args, **kwargs))

    return make
