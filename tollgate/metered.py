"""The door for any function: ``@tollgate.metered`` gates a function that calls an LLM through
a client tollgate does not know (a house SDK, BAML, raw httpx), on the same gate as every
other door.

What the function is given and returns is read, never changed, except where a budget's
decision must be applied (below):

- the request, for the pre-flight estimate: the ``model`` (the decorator's, or the function's
  own ``model`` argument), the ``messages`` argument when it is a chat message list, else
  every string argument counted as prompt text, and an output cap from an argument named
  ``max_tokens``, ``max_output_tokens``, ``max_completion_tokens`` or ``max_new_tokens``;
- the usage, after the call: ``extract_usage(result)`` when given (a
  :class:`~tollgate.Usage`, or a ``(model, input_tokens, output_tokens)`` tuple, or None for
  "not in this one"), else tollgate recognises OpenAI (chat, completions, embeddings,
  Responses), Anthropic and Gemini response objects and JSON dicts shaped like them. When no
  usage is found, the output is estimated from the text returned (flagged ``estimated``).

Budgets apply pre-flight when the model is known: ``block`` refuses the call before the
function runs; ``downgrade`` passes the cheaper model as the function's ``model`` argument,
``clamp`` sets its output-cap argument and ``truncate`` its ``messages``, when the function
has such a parameter (otherwise the action does not apply, and the record says so). Without
a model nothing can be estimated, so budgets apply post-flight: the call's cost is counted,
and a call that crossed a cap raises :class:`~tollgate.BudgetExceeded` (action ``"raise"``)
after it ran; once a cap is crossed, the next call is blocked.

Functions that return a stream (an iterator or async iterator, detected after the call),
generator and async-generator functions are settled when their stream ends, is closed, or is
dropped, the usage read from the chunks (``extract_usage`` is applied to each; the last usage
found wins, as providers report cumulative figures), or estimated from text chunks.

Calls that the function makes through a client instrumented with :func:`tollgate.instrument`
are counted once, by the metered door; a metered function called inside another door (a
LangChain ``guard``) is counted by that door.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar, overload

from tollgate import gate
from tollgate.config import settings
from tollgate.pricing.estimate import lookup_price
from tollgate.providers.base import Accountant, Found, Server, Surface, count_of, field, outcome
from tollgate.request import LLMRequest, Usage
from tollgate.streams import AsyncGatedStream, GatedStream

log = logging.getLogger("tollgate")

F = TypeVar("F", bound=Callable[..., Any])
Extract = Callable[[Any], Any]

#: Argument names read as the call's output cap, in order of preference.
CAP_PARAMETERS = ("max_tokens", "max_output_tokens", "max_completion_tokens", "max_new_tokens")
#: String arguments that are settings, not prompt text.
_NOT_PROMPT = frozenset({"model", "provider", "api_key", "base_url", "url", "endpoint", "user", "voice"})


@overload
def metered(func: F, /) -> F: ...


@overload
def metered(
    func: None = None,
    /,
    *,
    model: str | None = None,
    provider: str | None = None,
    extract_usage: Extract | None = None,
    operation: str = "chat",
) -> Callable[[F], F]: ...


def metered(
    func: Callable[..., Any] | None = None,
    /,
    *,
    model: str | None = None,
    provider: str | None = None,
    extract_usage: Extract | None = None,
    operation: str = "chat",
) -> Any:
    """Gate every call of the decorated function (see the module doc).

    Works on sync and async functions, generator and async-generator functions, and
    functions that return a stream; ``@metered`` and ``@metered(...)`` both work.

    >>> import tollgate
    >>> @tollgate.metered(model="gpt-4o-mini", provider="openai",
    ...                   extract_usage=lambda r: (r["model"], r["in"], r["out"]))
    ... def ask(prompt):
    ...     return {"model": "gpt-4o-mini", "in": 1000, "out": 200, "text": "..."}
    >>> _ = ask("hello")
    >>> row = tollgate.report().total
    >>> (row["calls"], row["input_tokens"], row["output_tokens"], round(row["usd"], 6))
    (1, 1000, 200, 0.00027)
    >>> tollgate.metered(model=42)
    Traceback (most recent call last):
    ...
    ValueError: metered(model=42): a model name (str) or None
    >>> _ = tollgate.reset()
    """
    for name, value in (("model", model), ("provider", provider)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"metered({name}={value!r}): a {name} name (str) or None")
    if extract_usage is not None and not callable(extract_usage):
        raise ValueError(f"metered(extract_usage={extract_usage!r}): a callable(result) or None")
    if not isinstance(operation, str) or not operation:
        raise ValueError(f"metered(operation={operation!r}): an operation name (str)")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise ValueError(f"metered: {fn!r} is not a function")
        door = _Door(fn, model, provider, extract_usage, operation)
        wrapper: Callable[..., Any]
        # Plain functions of the same kind as fn (inspect.iscoroutinefunction(wrapper) and the
        # like stay true for frameworks that look), each handing over to the door.
        if inspect.isasyncgenfunction(fn):

            async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                stream = door.async_generator(*args, **kwargs)
                try:
                    async for item in stream:
                        yield item
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]

        elif inspect.isgeneratorfunction(fn):

            def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                return (yield from door.generator(*args, **kwargs))

        elif inspect.iscoroutinefunction(fn):

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await door.coroutine(*args, **kwargs)

        else:

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return door.function(*args, **kwargs)

        wrapped = functools.wraps(fn)(wrapper)
        wrapped.__tollgate_door__ = door  # type: ignore[attr-defined]
        return wrapped

    return decorate if func is None else decorate(func)


class _Door:
    """One metered function: how its arguments become a request, and its results usage."""

    def __init__(
        self,
        fn: Callable[..., Any],
        model: str | None,
        provider: str | None,
        extract: Extract | None,
        operation: str,
    ) -> None:
        self.fn, self.model, self.provider, self.extract, self.operation = (
            fn,
            model,
            provider,
            extract,
            operation,
        )
        self.name = getattr(fn, "__qualname__", repr(fn))
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin or an extension function: nothing to read
            self.signature = None
        params = self.signature.parameters if self.signature is not None else {}
        self.model_parameter = "model" in params
        self.cap_parameter = next((p for p in CAP_PARAMETERS if p in params), None)
        self.messages_parameter = "messages" in params
        self.warned = False

    # -- the request --------------------------------------------------------------------------

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments | None:
        if self.signature is None:
            return None
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError:  # the function will say what is wrong with its arguments when called
            return None

    def request(self, bound: inspect.BoundArguments | None) -> LLMRequest:
        arguments: Mapping[str, Any] = bound.arguments if bound is not None else {}
        model = self.model
        if self.model_parameter and bound is not None:
            given = arguments.get("model", self._default("model"))
            if isinstance(given, str) and given:
                model = given
        provider = self.provider
        if model is None:  # nothing to estimate: the budgets are checked after the call
            return LLMRequest(
                provider=provider or "unknown",
                operation=self.operation,
                model="",
                max_output_tokens=0,
                fixed=frozenset({"downgrade", "clamp", "truncate"}),
            )
        if provider is None:
            provider = _maker(model)
        messages = arguments.get("messages") if self.messages_parameter else None
        if not _is_messages(messages):
            messages = None
        cap = (
            arguments.get(self.cap_parameter, self._default(self.cap_parameter))
            if self.cap_parameter
            else None
        )
        fixed = set()
        if not self.model_parameter:
            fixed.add("downgrade")
        if self.cap_parameter is None:
            fixed.add("clamp")
        if messages is None:
            fixed.add("truncate")
        return LLMRequest(
            provider=provider,
            operation=self.operation,
            model=model,
            messages=messages or (),
            prompt=() if messages else _prompt_texts(arguments),
            max_output_tokens=count_of(cap) or None,
            fixed=frozenset(fixed),
        )

    def _default(self, name: str | None) -> Any:
        if name is None or self.signature is None:
            return None
        default = self.signature.parameters[name].default
        return None if default is inspect.Parameter.empty else default

    def arguments(
        self,
        call: gate.Call,
        bound: inspect.BoundArguments | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The function's arguments with the call's decision applied (downgrade, clamp, truncate)."""
        decision = call.decision
        if bound is None or decision.action == "proceed":
            return args, kwargs
        if decision.model != call.request.model and self.model_parameter:
            bound.arguments["model"] = decision.model
        if decision.max_output_tokens is not None and self.cap_parameter is not None:
            bound.arguments[self.cap_parameter] = decision.max_output_tokens
        if decision.messages is not None and self.messages_parameter:
            bound.arguments["messages"] = list(decision.messages)
        return bound.args, bound.kwargs

    # -- the four kinds of function -------------------------------------------------------------

    def _flight(self, bound: inspect.BoundArguments | None) -> gate.flight:
        return gate.flight(
            lambda: self.request(bound), provider=self.provider or "unknown", operation=self.operation
        )

    def function(self, *args: Any, **kwargs: Any) -> Any:
        if gate.covered():
            return self.fn(*args, **kwargs)
        bound = self.bind(args, kwargs)
        with self._flight(bound) as call:
            args, kwargs = call.edit(self.arguments, call, bound, args, kwargs)
            with call.sending():
                result = self.fn(*args, **kwargs)
            call.hand_over()
        if inspect.isawaitable(result):  # a sync function handing back an SDK coroutine
            return self._awaited(call, result)
        stream = self.streamed(call, result)
        if stream is not None:
            return stream
        call.finish(self.outcome(call, result))
        return result

    async def _awaited(self, call: gate.Call, awaitable: Any) -> Any:
        try:
            with call.sending():
                result = await awaitable
        except Exception as exc:
            await call.afail(exc)
            raise
        except BaseException as exc:  # cancelled: no awaiting while being cancelled
            call.fail(exc)
            raise
        return await self._returned(call, result)

    async def _returned(self, call: gate.Call, result: Any) -> Any:
        stream = self.streamed(call, result)
        if stream is not None:
            return stream
        await call.afinish(self.outcome(call, result))
        return result

    async def coroutine(self, *args: Any, **kwargs: Any) -> Any:
        if gate.covered():
            return await self.fn(*args, **kwargs)
        bound = self.bind(args, kwargs)
        async with self._flight(bound) as call:
            args, kwargs = call.edit(self.arguments, call, bound, args, kwargs)
            with call.sending():
                result = await self.fn(*args, **kwargs)
            call.hand_over()
        return await self._returned(call, result)

    def generator(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        if gate.covered():
            yield from self.fn(*args, **kwargs)
            return
        bound = self.bind(args, kwargs)
        with self._flight(bound) as call:
            args, kwargs = call.edit(self.arguments, call, bound, args, kwargs)
            with call.sending():  # the generator's body runs from its first next()
                inner = self.fn(*args, **kwargs)
            call.hand_over()
        stream = self.stream(call, inner)
        try:
            yield from stream
        finally:
            stream.close()  # closed early or dropped: abandoned, charged by tollgate.abandoned

    async def async_generator(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if gate.covered():
            async for item in self.fn(*args, **kwargs):
                yield item
            return
        bound = self.bind(args, kwargs)
        async with self._flight(bound) as call:
            args, kwargs = call.edit(self.arguments, call, bound, args, kwargs)
            inner = self.fn(*args, **kwargs)
            call.hand_over()
        stream = self.stream(call, inner, asynchronous=True)
        try:
            async for item in stream:
                yield item
        finally:
            await stream.close()

    def streamed(self, call: gate.Call, result: Any) -> Any | None:
        """``result`` read through the gate when it is a stream (None when it is not)."""
        if isinstance(result, AsyncIterator):
            return self.stream(call, result, asynchronous=True)
        if isinstance(result, Iterator) and not isinstance(result, (str, bytes, Mapping)):
            return self.stream(call, result)
        return None

    def stream(self, call: gate.Call, stream: Any, *, asynchronous: bool = False) -> Any:
        """``stream`` read through the gate: settled when it ends, is closed or is dropped."""
        call.streaming()
        wrapper = AsyncGatedStream if asynchronous else GatedStream
        return wrapper(_Covering(stream, call), call, _Reader(self, call))

    # -- usage --------------------------------------------------------------------------------

    def extracted(self, value: Any) -> Found | None:
        """What ``extract_usage`` says of ``value`` (None: nothing; raises when it is malformed)."""
        assert self.extract is not None
        got = self.extract(value)
        if got is None:
            return None
        if isinstance(got, Usage):
            return Found(got)
        if isinstance(got, tuple) and len(got) == 3:
            model, input_tokens, output_tokens = got
            counts = count_of(input_tokens), count_of(output_tokens)
            if counts[0] is None or counts[1] is None or not (model is None or isinstance(model, str)):
                raise ValueError(f"extract_usage returned {got!r}")
            return Found(Usage(input_tokens=counts[0], output_tokens=counts[1]), model or None)
        raise ValueError(f"extract_usage returned {got!r}: a Usage, a (model, input, output) tuple or None")

    def found(self, result: Any) -> tuple[Found, str | None]:
        """What ``result`` says of itself, and the provider it came from when tollgate knows."""
        recognised, provider = recognise(result)
        if self.extract is not None:
            try:
                mine = self.extracted(result)
            except Exception as exc:
                self._warn(f"its extract_usage failed ({type(exc).__name__})")
                mine = None
            if mine is not None:
                model = mine.model or recognised.model
                said = mine._replace(
                    model=model, id=recognised.id, text=recognised.text, tool_calls=recognised.tool_calls
                )
                return said, provider
        return recognised, provider

    def _warn(self, why: str) -> None:
        if not self.warned:
            self.warned = True
            log.warning("tollgate: metered function %s: %s; its usage is estimated", self.name, why)

    def outcome(self, call: gate.Call, result: Any) -> gate.Outcome:
        """What a function's (non-stream) result says of the call."""
        found, provider = self.found(result)
        call.learn(found.model, provider if self.provider is None else None)
        if found.text is None and isinstance(result, str):
            found = found._replace(text=result)
        if found.usage is None and found.text is None and self.extract is None and not call.request.model:
            self._warn("no usage tollgate recognises in what it returned (pass extract_usage=)")
        return outcome(call, _RESULTS, result, read=lambda _: found)


_MAKERS = ("openai", "anthropic", "gemini")


def _maker(model: str) -> str:
    """The provider a model name most likely means: its maker when the table lists it there
    (``claude-*`` is Anthropic's, not Bedrock's), else any provider that prices it."""
    s = settings()
    for provider in _MAKERS:
        price = lookup_price(s, model, provider)
        if price is not None and price.provider == provider:
            return provider
    price = lookup_price(s, model, None)
    return price.provider if price is not None else "unknown"


# -- recognising responses and chunks -----------------------------------------------------------


def _is_messages(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(m, Mapping) for m in value)


def _prompt_texts(arguments: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []
    for name, value in arguments.items():
        if name in _NOT_PROMPT:
            continue
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, (list, tuple)):
            texts.extend(v for v in value if isinstance(v, str))
    return texts


def recognise(value: Any) -> tuple[Found, str | None]:
    """Usage, model, id and text of an OpenAI, Anthropic or Gemini response (object or JSON
    dict), and which provider's it is; ``Found(None)`` and None for anything else.

    >>> found, provider = recognise({"model": "gpt-4o", "choices": [{"message": {"content": "hi"}}],
    ...                              "usage": {"prompt_tokens": 12, "completion_tokens": 1}})
    >>> (provider, found.usage.input_tokens, found.model, found.text)
    ('openai', 12, 'gpt-4o', 'hi')
    >>> recognise("just text")[1] is None
    True
    """
    from tollgate.providers import anthropic, gemini, openai

    if value is None or isinstance(value, (str, bytes, int, float, list, tuple)):
        return Found(None), None
    try:
        usage = field(value, "usage")
        parse: Callable[[Any], Usage | None] | None = None
        calls = 0
        if usage is not None and field(usage, "prompt_tokens") is not None:  # chat, completions, embeddings
            parse, text, provider = openai.usage_from, _choices_text(value), "openai"
            calls = openai.chat_tool_calls(value)
        elif field(value, "type") == "message":
            parse, text, provider = anthropic.usage_from, _blocks_text(field(value, "content")), "anthropic"
            calls = anthropic.content_tool_calls(field(value, "content"))
        elif field(value, "object") == "response":
            parse, text, provider = openai.responses_usage, _output_text(value), "openai"
            calls = openai.responses_tool_calls(field(value, "output"))
        elif (
            usage is not None and field(usage, "input_tokens") is not None
        ):  # shaped like them: whose, unknown
            text = _blocks_text(field(value, "content")) or _output_text(value)
            parse, provider = openai.responses_usage, None
        if parse is not None:
            return Found(
                parse(usage),
                _str(field(value, "model")),
                _str(field(value, "id")),
                text=text,
                tool_calls=calls,
            ), provider
        if any(field(value, name) is not None for name in ("usage_metadata", "usageMetadata", "candidates")):
            found = gemini.response_found(value)
            return found._replace(text=gemini.response_text(value) or None), "gemini"
    except Exception:  # a malformed response: nothing recognised, the usage is estimated
        log.debug("tollgate could not read a metered function's result", exc_info=True)
    return Found(None), None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _choices_text(value: Any) -> str | None:
    pieces = []
    for choice in field(value, "choices") or ():
        message = field(choice, "message")
        content = field(message, "content") if message is not None else field(choice, "text")
        if isinstance(content, str):
            pieces.append(content)
    return "".join(pieces) or None


def _blocks_text(content: Any) -> str | None:
    pieces = [t for block in content or () if isinstance(t := field(block, "text"), str)]
    return "".join(pieces) or None


def _output_text(value: Any) -> str | None:
    pieces = []
    for item in field(value, "output") or ():
        for part in field(item, "content") or ():
            text = field(part, "text")
            if isinstance(text, str):
                pieces.append(text)
    return "".join(pieces) or None


class _Results(Surface):
    """A metered function's results, as :func:`~tollgate.providers.base.outcome` reads a
    surface's responses (a function has no request shape of its own: :class:`_Door` reads it)."""

    def __init__(self) -> None:
        no_server: Server = (None, None)
        super().__init__("unknown", no_server)

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        raise TypeError("a metered function's request is read by its door, not by a surface")

    def found(self, response: Any) -> Found:
        return recognise(response)[0]

    def content(self, response: Any) -> str | None:
        return response if isinstance(response, str) else recognise(response)[0].text


_RESULTS = _Results()


class _Reader(Accountant):
    """A stream accountant for chunks of any shape: ``extract_usage`` on each chunk, and the
    provider's own accountant once a chunk shows whose stream it is (text chunks are counted)."""

    __slots__ = ("_call", "_door", "_inner")

    def __init__(self, door: _Door, call: gate.Call) -> None:
        super().__init__()
        self._door, self._call = door, call
        self._inner: Accountant | None = None

    def observe(self, chunk: Any) -> bool:
        if isinstance(chunk, str):
            self.text.append(chunk)
        else:
            inner = self._inner or self._sniff(chunk)
            if inner is not None:
                inner.observe(chunk)
                self.usage, self.usd, self.done = inner.usage, inner.usd, inner.done
                self.tool_calls = inner.tool_calls
                self.response_model = inner.response_model or self.response_model
                self.response_id = inner.response_id or self.response_id
        if self._door.extract is not None:
            try:
                mine = self._door.extracted(chunk)
            except Exception:  # most chunks carry no usage: not having it is not an error
                mine = None
            if mine is not None and mine.usage is not None:
                self.usage = mine.usage
                self.response_model = mine.model or self.response_model
        self._call.learn(self.response_model)
        return True

    def _sniff(self, chunk: Any) -> Accountant | None:
        from tollgate.providers import anthropic, gemini, openai

        kind = field(chunk, "type")
        inner: Accountant | None = None
        provider = None
        if field(chunk, "choices") is not None:
            inner, provider = openai.ChatStreamAccountant(hide_usage_chunk=False), "openai"
        elif isinstance(kind, str) and kind.startswith("response."):
            inner, provider = openai.ResponseStreamAccountant(), "openai"
        elif kind in ("message_start", "content_block_start", "content_block_delta", "message_delta"):
            inner, provider = anthropic.MessageStreamAccountant(), "anthropic"
        elif field(chunk, "candidates") is not None or field(chunk, "usage_metadata") is not None:
            inner, provider = gemini.GenerateStreamAccountant(), "gemini"
        if inner is not None:
            self._inner = inner
            self.text, self.finish_reasons = inner.text, inner.finish_reasons
            self._call.learn(None, provider if self._door.provider is None else None)
        return inner


class _Covering:
    """An iterator run as the metered call's own sending: instrumented clients inside it are
    not gated a second time, and its spans nest under the call's."""

    __slots__ = ("_call", "_inner")

    def __init__(self, inner: Any, call: gate.Call) -> None:
        self._inner, self._call = inner, call

    def __next__(self) -> Any:
        with self._call.sending():
            return next(self._inner)

    async def __anext__(self) -> Any:
        with self._call.sending():
            return await self._inner.__anext__()

    def close(self) -> Any:
        close = getattr(self._inner, "close", None) or getattr(self._inner, "aclose", None)
        return close() if close is not None else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
