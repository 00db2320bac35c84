"""What every provider adapter shares: one :class:`Surface` per API method, and the wrappers
that run a call of any surface through the gate.

A surface is translation only (native keyword arguments -> :class:`~tollgate.request.LLMRequest`,
a gate decision -> edits of those arguments, a native response or stream chunk -> usage).
The wrappers here do the rest, the same way for every provider:

    with begin(surface, kwargs) as call:            # pre-flight; may raise before any traffic
        call.edit(surface.apply, call, kwargs)      # downgrade / clamp / truncate, on the wire
        response = method(**kwargs)                 # the span is current: SDK spans nest under it
        call.finish(surface.outcome(call, response))  # or hand the call to a stream or raw response

Shapes of what a method returns, each handled once here:

- a response, or a stream when the request streams (``create``, ``parse``, Gemini's
  ``generate_content_stream``);
- a stream manager (``.stream(...)`` helpers): :class:`GatedManager`, which sends the request
  when entered;
- a raw response (``with_raw_response``): the body is parsed at once (the SDK caches it), so the
  call is settled, or its stream gated, before the caller sees it;
- a streamed raw response (``with_streaming_response``): a manager whose response is read
  through :class:`ResponseProxy` (``parse()``, ``json()``, ``text()``, ``iter_lines()``).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from tollgate import gate, telemetry
from tollgate.request import LLMRequest, Usage
from tollgate.streams import AsyncGatedStream, GatedStream, StreamAccountant, accounted

Mode = Literal["plain", "raw", "streaming"]
Server = tuple[str | None, int | None]


def field(obj: Any, name: str) -> Any:
    """``obj.name`` for SDK objects, ``obj[name]`` for JSON dicts (None when absent).

    type() rather than an ABC isinstance check: this runs several times per stream chunk.
    """
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def extra_field(obj: Any, name: str) -> Any:
    """A field outside the SDK's schema (a provider's own addition, e.g. OpenRouter's
    ``usage.cost``): read from a pydantic model's extras without the cost of a failed
    attribute lookup, which most responses would pay."""
    if type(obj) is dict:
        return obj.get(name)
    extras: Any = getattr(obj, "__pydantic_extra__", None)
    if isinstance(extras, dict):
        return extras.get(name)
    return getattr(obj, name, None)


def count_of(value: Any) -> int | None:
    """``value`` if it is a token count a provider may report (an int, not a bool, not negative),
    else None: the usage is malformed and the caller estimates instead of trusting it."""
    return value if type(value) is int and value >= 0 else None


def listed(value: Any) -> list[Any] | tuple[Any, ...]:
    """``value`` if it is a list or tuple, else ``()``: a malformed response's field is read as
    empty rather than iterated (a string, a number) or raised on."""
    return value if isinstance(value, (list, tuple)) else ()


def as_int(value: Any) -> int:
    """:func:`count_of`, with 0 for None, SDK "not given" sentinels and anything else."""
    return count_of(value) or 0


def server_of(base_url: Any) -> Server:
    """The host and port a client talks to (``server.address`` / ``server.port``)."""
    url = urlsplit(str(base_url or ""))
    return url.hostname, url.port or (443 if url.scheme == "https" else 80 if url.scheme == "http" else None)


#: What a response says of itself (usage, model, id, reported cost, text, finish reasons): the
#: gate's :class:`~tollgate.gate.Outcome`, read by a surface.
Found = gate.Outcome


class Accountant:
    """What every stream accountant keeps (see :class:`~tollgate.streams.StreamAccountant`).

    A provider's accountant subclasses it and reads its chunks in ``observe``.
    """

    __slots__ = (
        "done",
        "finish_reasons",
        "response_id",
        "response_model",
        "text",
        "tool_calls",
        "usage",
        "usd",
    )

    def __init__(self) -> None:
        self.finish_reasons: list[str] = []
        self.tool_calls = 0
        self.text: list[str] = []
        self.usage: Usage | None = None
        self.usd: float | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.done = False

    def observe(self, chunk: Any) -> bool:
        raise NotImplementedError

    def text_of(self, chunk: Any) -> str | None:
        return None


class Surface(abc.ABC):
    """How one API method translates to and from the gate's terms. One instance per client."""

    #: ``gen_ai.operation.name`` of the calls: chat, text_completion, embeddings, generate_content.
    operation = "chat"
    #: The method returns a stream manager (``with client.messages.stream(...) as s``).
    manager = False
    #: The client's credentials, masked in a captured error message (set by instrument()).
    secrets: tuple[str, ...] = ()

    def __init__(self, provider: str, server: Server) -> None:
        self.provider = provider
        self.server = server

    def new_request(self, model: str, **fields: Any) -> LLMRequest:
        """An LLMRequest of this surface's provider, operation and server for ``model``."""
        return LLMRequest(
            provider=self.provider,
            operation=self.operation,
            model=model,
            server_address=self.server[0],
            server_port=self.server[1],
            **fields,
        )

    @abc.abstractmethod
    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        """The provider-neutral view of a call (may normalise ``kwargs`` in place, e.g. a
        generator of messages read into a list)."""

    def apply(self, call: gate.Call, kwargs: dict[str, Any]) -> bool:
        """Apply ``call.decision`` to ``kwargs`` in place; return whether tollgate added a stream
        option the caller did not ask for (its extra chunk is then hidden from them)."""
        if call.decision.model != call.request.model:
            kwargs["model"] = call.decision.model
        return False

    @abc.abstractmethod
    def found(self, response: Any) -> Found:
        """Usage, model and id of a (non-streamed) response object or its JSON dict."""

    def content(self, response: Any) -> str | None:
        """The generated text of a response, put on the span when content capture is on."""
        return None

    def outcome(self, call: gate.Call, response: Any) -> gate.Outcome:
        """What a (non-streamed) response says of the call: :func:`outcome` by default; a
        surface billed in more than tokens (audio, images) overrides it."""
        return outcome(call, self, response)

    def accountant(self, injected: bool) -> StreamAccountant:
        """A fresh accountant for one stream of this surface."""
        raise TypeError(f"{type(self).__name__} does not stream")

    def streams(self, call: gate.Call) -> bool:
        """Whether the method returns a stream for this call."""
        return call.request.stream


#: Key of a neutral (OpenAI chat shaped) message that holds the native items it stands for,
#: when an API's messages are not chat messages (Anthropic content blocks, Gemini contents,
#: Responses input items). The token counter ignores it; :func:`native_items` reads it back.
NATIVE = "_native"


def native_items(messages: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The native items behind the neutral messages a truncate kept, in order.

    A neutral message made from a native one carries it under :data:`NATIVE` (several for one
    neutral message, e.g. parallel function calls; none for a top-level system prompt); a
    message without the key is its own native item (OpenAI chat).
    """
    out: list[Any] = []
    for m in messages:
        out.extend(m.get(NATIVE, (m,)))
    return out


def outcome(
    call: gate.Call, surface: Surface, response: Any, read: Callable[[Any], gate.Outcome] | None = None
) -> gate.Outcome:
    """What a response says of the call (``read``: how to read it, when not ``surface.found``);
    a response it cannot read says nothing, and the gate estimates the call."""
    try:
        found = (read or surface.found)(response)
    except Exception:  # malformed response: record an estimate, hand the response back untouched
        found = _UNREAD
    if telemetry.capture_content(call.span, call.settings):
        with contextlib.suppress(Exception):  # content is optional: never let it fail the settle
            message = {"role": "assistant", "content": surface.content(response) or ""}
            return found._replace(output_messages=(message,))
    return found


_UNREAD = gate.Outcome()


def _said(call: gate.Call, surface: Surface, response: Any) -> gate.Outcome:
    """``surface.outcome``, or nothing (the gate estimates) should the surface fail to read it."""
    try:
        return surface.outcome(call, response)
    except Exception:
        return _UNREAD


def _finish_sync(call: gate.Call, surface: Surface, injected: bool, result: Any, mode: Mode) -> Any:
    """What the caller gets back from a sync method once it returned ``result``."""
    if mode == "raw":
        proxy = ResponseProxy(result, call, surface, injected)
        if surface.streams(call):
            proxy._tg_take(result.parse())  # constructs the SDK stream; reads nothing yet
        else:
            call.finish(_said(call, surface, result.parse()))  # the SDK caches what parse() returns
        return proxy
    if surface.streams(call):
        return GatedStream(result, call, surface.accountant(injected))
    call.finish(_said(call, surface, result))
    return result


async def _finish_async(call: gate.Call, surface: Surface, injected: bool, result: Any, mode: Mode) -> Any:
    if mode == "raw":
        proxy = ResponseProxy(result, call, surface, injected, is_async=True)
        parsed = result.parse()  # synchronous for OpenAI's legacy raw response, a coroutine for Anthropic's
        if hasattr(parsed, "__await__"):
            parsed = await parsed  # the SDK caches it: the caller's own parse() gets the same object
        if surface.streams(call):
            proxy._tg_take(parsed)
        else:
            await call.afinish(_said(call, surface, parsed))
        return proxy
    if surface.streams(call):
        return AsyncGatedStream(result, call, surface.accountant(injected))
    await call.afinish(_said(call, surface, result))
    return result


def begin(surface: Surface, kwargs: dict[str, Any]) -> gate.Call:
    """Pre-flight of one call of ``surface`` with native ``kwargs`` (see :func:`tollgate.gate.preflight`)."""
    return gate.preflight(
        lambda: surface.request(kwargs),
        provider=surface.provider,
        operation=surface.operation,
        model=kwargs.get("model"),
        secrets=surface.secrets,
    )


async def abegin(surface: Surface, kwargs: dict[str, Any]) -> gate.Call:
    """The async twin of :func:`begin`."""
    return await gate.apreflight(
        lambda: surface.request(kwargs),
        provider=surface.provider,
        operation=surface.operation,
        model=kwargs.get("model"),
        secrets=surface.secrets,
    )


def gated(
    method: Callable[..., Any], surface: Surface, *, is_async: bool, mode: Mode = "plain"
) -> Callable[..., Any]:
    """``method`` going through the gate, for any surface and return shape."""
    if surface.manager or mode == "streaming":

        @functools.wraps(method)
        def manager(*args: Any, **kwargs: Any) -> Any:
            if gate.covered():  # an outer door (LangChain) gates and records this call
                return method(*args, **kwargs)
            return GatedManager(method, args, kwargs, surface, wrap_response=mode == "streaming")

        return manager

    if is_async:

        @functools.wraps(method)
        async def agated(*args: Any, **kwargs: Any) -> Any:
            if gate.covered():  # an outer door (LangChain) gates and records this call
                return await method(*args, **kwargs)
            async with await abegin(surface, kwargs) as call:
                injected = call.edit(surface.apply, call, kwargs)
                with call.sending():
                    result = await method(*args, **kwargs)
                call.hand_over()
                return await _finish_async(call, surface, injected, result, mode)

        return agated

    @functools.wraps(method)
    def sgated(*args: Any, **kwargs: Any) -> Any:
        if gate.covered():  # an outer door (LangChain) gates and records this call
            return method(*args, **kwargs)
        with begin(surface, kwargs) as call:
            injected = call.edit(surface.apply, call, kwargs)
            with call.sending():
                result = method(*args, **kwargs)
            call.hand_over()
            return _finish_sync(call, surface, injected, result, mode)

    return sgated


class GatedManager:
    """A stream manager (``.stream(...)``) or a streamed raw response (``with_streaming_response``).

    The SDK sends nothing until its manager is entered, so neither does tollgate: pre-flight
    runs on enter (``with`` or ``async with``), the SDK's manager is built from the edited
    arguments, and what it yields is gated: a stream that settles as it is read, or a
    :class:`ResponseProxy`. Leaving the block closes it and settles whatever was not.
    """

    __slots__ = (
        "_tg_args",
        "_tg_entered",
        "_tg_kwargs",
        "_tg_manager",
        "_tg_method",
        "_tg_surface",
        "_tg_wrap",
    )

    def __init__(
        self,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        surface: Surface,
        *,
        wrap_response: bool,
    ) -> None:
        self._tg_method, self._tg_args, self._tg_kwargs = method, args, kwargs
        self._tg_surface = surface
        self._tg_wrap = wrap_response
        self._tg_manager: Any = None
        self._tg_entered: Any = None

    def __repr__(self) -> str:
        return f"<tollgate manager of {self._tg_method!r}>"

    def __enter__(self) -> Any:
        surface = self._tg_surface
        with begin(surface, self._tg_kwargs) as call:
            injected = call.edit(surface.apply, call, self._tg_kwargs)
            with call.sending():
                self._tg_manager = self._tg_method(*self._tg_args, **self._tg_kwargs)
                entered = self._tg_manager.__enter__()
            call.hand_over()
        if self._tg_wrap:
            self._tg_entered = ResponseProxy(entered, call, surface, injected)
        else:
            self._tg_entered = GatedStream(entered, call, surface.accountant(injected))
        return self._tg_entered

    def __exit__(self, *exc: Any) -> Any:
        try:
            if self._tg_entered is not None:
                self._tg_entered.close()
        finally:
            result = self._tg_manager.__exit__(*exc) if self._tg_manager is not None else None
        return result

    async def __aenter__(self) -> Any:
        surface = self._tg_surface
        async with await abegin(surface, self._tg_kwargs) as call:
            injected = call.edit(surface.apply, call, self._tg_kwargs)
            with call.sending():
                self._tg_manager = self._tg_method(*self._tg_args, **self._tg_kwargs)
                entered = await self._tg_manager.__aenter__()
            call.hand_over()
        if self._tg_wrap:
            self._tg_entered = ResponseProxy(entered, call, surface, injected, is_async=True)
        else:
            self._tg_entered = AsyncGatedStream(entered, call, surface.accountant(injected))
        return self._tg_entered

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            if self._tg_entered is not None:
                await self._tg_entered.close()
        finally:
            result = await self._tg_manager.__aexit__(*exc) if self._tg_manager is not None else None
        return result


def sse_data(line: str) -> Any:
    """The JSON of a server-sent-events ``data:`` line (None for other lines and ``[DONE]``)."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == "[DONE]":
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return None


class ResponseProxy:
    """A raw HTTP response of the SDK (``with_raw_response`` / ``with_streaming_response``),
    read through tollgate: ``parse()`` returns a gated stream or settles the parsed response,
    ``json()`` / ``text()`` / ``read()`` settle from the body, ``iter_lines()`` accounts for the
    server-sent events it yields. ``close()`` settles what was not read (as abandoned)."""

    __slots__ = (
        "_tg_acc",
        "_tg_async",
        "_tg_call",
        "_tg_injected",
        "_tg_read",
        "_tg_response",
        "_tg_stream",
        "_tg_surface",
    )

    def __init__(
        self, response: Any, call: gate.Call, surface: Surface, injected: bool, *, is_async: bool = False
    ) -> None:
        self._tg_response = response
        self._tg_call = call
        self._tg_surface = surface
        self._tg_injected = injected
        self._tg_async = is_async
        self._tg_stream: Any = None
        self._tg_acc: StreamAccountant | None = None
        self._tg_read = 0  # server-sent events the caller read through iter_lines()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._tg_response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tg_response, name)

    def __repr__(self) -> str:
        return f"<tollgate response of {self._tg_response!r}>"

    @property
    def _tg_streams(self) -> bool:
        return self._tg_surface.streams(self._tg_call)

    def _tg_take(self, parsed: Any) -> Any:
        """What ``parse()`` hands the caller: the parsed stream, gated (once), or the response."""
        if not self._tg_streams:
            return parsed
        if self._tg_stream is None:
            stream_type = AsyncGatedStream if self._tg_async else GatedStream
            accountant = self._tg_surface.accountant(self._tg_injected)
            self._tg_stream = stream_type(parsed, self._tg_call, accountant)
        return self._tg_stream

    def _tg_settle_body(self, body: Any) -> None:
        if self._tg_streams or self._tg_call.settled:
            return
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except ValueError:
                body = None
        self._tg_call.finish(_said(self._tg_call, self._tg_surface, body), raise_overrun=False)

    def _tg_observe_line(self, line: str) -> bool:
        """Account for one line of a server-sent-events body; False: the caller must not see it
        (the data line of a usage chunk tollgate asked for on their behalf)."""
        if self._tg_acc is None:
            self._tg_acc = self._tg_surface.accountant(self._tg_injected)
        data = sse_data(line)
        if data is None:
            return True
        self._tg_read += 1
        return self._tg_acc.observe(data)

    def _tg_end_lines(self, abandoned: bool) -> None:
        acc, call = self._tg_acc, self._tg_call
        if acc is None or call.settled:
            return
        call.finish(accounted(call, acc, abandoned=abandoned, read=self._tg_read), raise_overrun=False)

    def parse(self, **kwargs: Any) -> Any:
        parsed = self._tg_response.parse(**kwargs)
        if hasattr(parsed, "__await__"):  # an async client's streamed response parses asynchronously
            return self._tg_aparse(parsed)
        if not self._tg_streams and not self._tg_call.settled:
            self._tg_call.finish(_said(self._tg_call, self._tg_surface, parsed))
        return self._tg_take(parsed)

    async def _tg_aparse(self, pending: Any) -> Any:
        parsed = await pending
        if not self._tg_streams and not self._tg_call.settled:
            await self._tg_call.afinish(_said(self._tg_call, self._tg_surface, parsed))
        return self._tg_take(parsed)

    def _tg_body(self, name: str) -> Any:
        result = getattr(self._tg_response, name)()
        if hasattr(result, "__await__"):
            return self._tg_abody(result)
        self._tg_settle_body(result)
        return result

    async def _tg_abody(self, pending: Any) -> Any:
        result = await pending
        self._tg_settle_body(result)
        return result

    def json(self) -> Any:
        return self._tg_body("json")

    def text(self) -> Any:
        return self._tg_body("text")

    def read(self) -> Any:
        return self._tg_body("read")

    def iter_lines(self) -> Any:
        lines = self._tg_response.iter_lines()
        if hasattr(lines, "__aiter__"):
            return self._tg_aiter_lines(lines)
        return self._tg_iter_lines(lines)

    def _tg_iter_lines(self, lines: Iterator[str]) -> Iterator[str]:
        ended = False
        try:
            for line in lines:
                if self._tg_observe_line(line):
                    yield line
            ended = True
        finally:
            self._tg_end_lines(abandoned=not ended)

    async def _tg_aiter_lines(self, lines: AsyncIterator[str]) -> AsyncIterator[str]:
        ended = False
        try:
            async for line in lines:
                if self._tg_observe_line(line):
                    yield line
            ended = True
        finally:
            self._tg_end_lines(abandoned=not ended)

    def _tg_close_unread(self) -> None:
        """Settle a call whose body the caller never read through tollgate (abandoned, estimated)."""
        if self._tg_call.settled:
            return
        if self._tg_acc is not None:
            self._tg_end_lines(abandoned=True)
            return
        # What the surface makes of no body: the prompt's tokens (and an audio or image
        # request's units: the audio sent is billed even when the answer goes unread).
        said = _said(self._tg_call, self._tg_surface, None)
        self._tg_call.finish(said._replace(estimated=True, status="abandoned"), raise_overrun=False)

    def close(self) -> Any:
        if self._tg_stream is not None:
            return self._tg_stream.close()  # a gated stream settles itself (async: a coroutine)
        result = self._tg_response.close()
        self._tg_close_unread()
        return result

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._tg_stream is None:
                self._tg_close_unread()


def routes_for(
    surfaces: Mapping[tuple[str, ...], Surface],
    *,
    is_async: bool,
    raw: Sequence[tuple[str, ...]] = (),
) -> dict[tuple[str, ...], Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """The proxy's route table: each surface at its path, and, for the paths in ``raw``, at
    ``<resource>.with_raw_response.<method>`` and ``<resource>.with_streaming_response.<method>``."""
    table: dict[tuple[str, ...], Callable[[Callable[..., Any]], Callable[..., Any]]] = {}
    for path, surface in surfaces.items():
        table[path] = functools.partial(_wrap, surface=surface, is_async=is_async, mode="plain")
        if path in raw:
            *resource, name = path
            table[(*resource, "with_raw_response", name)] = functools.partial(
                _wrap, surface=surface, is_async=is_async, mode="raw"
            )
            table[(*resource, "with_streaming_response", name)] = functools.partial(
                _wrap, surface=surface, is_async=is_async, mode="streaming"
            )
    return table


def _wrap(method: Callable[..., Any], *, surface: Surface, is_async: bool, mode: Mode) -> Callable[..., Any]:
    return gated(method, surface, is_async=is_async, mode=mode)
