"""``guard(model)``: a Runnable around a chat model that applies every pre-flight action.

A callback can only observe and refuse; the guard runs the gate itself before the model and
turns the decision into LangChain edits:

- downgrade: the model named by the budget's map, as a ``model_copy`` of the wrapped model
  with its model field swapped (``model_name`` for ``ChatOpenAI``, ``model`` for
  ``ChatAnthropic``), or the model object given for that name in ``models=``;
- clamp: ``bind(max_tokens=N)`` (``ChatOpenAI`` sends it as ``max_completion_tokens``,
  ``ChatAnthropic`` as ``max_tokens``), or ``max_completion_tokens`` when that is the one bound;
- truncate: the message list the gate kept (system prompt, last user turn and tool call /
  result pairs kept);
- block: ``BudgetExceeded`` before any traffic.

Tools bound with ``guard(model).bind_tools(tools)`` are bound again to whichever model runs,
so they survive a downgrade. The call is settled from the reply's ``usage_metadata``; a
stream asks ``ChatOpenAI`` for its usage chunk (``stream_usage=True``), and without usage the
output is estimated and the record flagged. A callback handler on the wrapped model (or
``enable()``) leaves the guarded call alone: one record and one span per model call.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.runnables import Runnable, RunnableConfig

from tollgate import gate
from tollgate.failures import secrets_of
from tollgate.providers.base import as_int, native_items
from tollgate.request import LLMRequest, Status
from tollgate.tags import track
from tollgate_langchain import _translate as tr

_CAP_KEYS = ("max_completion_tokens", "max_tokens")


@dataclasses.dataclass(frozen=True)
class _Bindings:
    """What the caller bound on the guard: keyword arguments, and tools (bound per model)."""

    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tools: Sequence[Any] | None = None
    tool_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Guard(Runnable[LanguageModelInput, BaseMessage]):
    """A chat model run through tollgate's gate, with its actions applied (see :func:`guard`)."""

    def __init__(
        self,
        model: BaseChatModel,
        *,
        models: Mapping[str, BaseChatModel] | None = None,
        provider: str | None = None,
        tags: bool = True,
        _bindings: _Bindings | None = None,
    ) -> None:
        self.model = model
        self.models = dict(models or {})
        self.provider = provider
        self.tags = tags
        self._bindings = _bindings or _Bindings()

    # -- the wrapped model's interface ---------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def __repr__(self) -> str:
        return f"guard({self.model!r})"

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return name or f"Guard[{self.model.get_name()}]" + (suffix or "")

    def _with(self, bindings: _Bindings) -> Guard:
        return Guard(
            self.model, models=self.models, provider=self.provider, tags=self.tags, _bindings=bindings
        )

    def bind(self, **kwargs: Any) -> Guard:
        """Bind call arguments (as ``model.bind``); they are applied to whichever model runs."""
        b = self._bindings
        return self._with(dataclasses.replace(b, kwargs={**b.kwargs, **kwargs}))

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Guard:
        """Bind tools (as ``model.bind_tools``), bound again to a downgraded model."""
        return self._with(dataclasses.replace(self._bindings, tools=list(tools), tool_kwargs=kwargs))

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        """The wrapped model's ``with_structured_output``, its model call guarded.

        LangChain builds it as the model bound to tools or a response format, piped to a
        parser; the bound model is replaced by this guard bound the same way.
        """
        structured = self.model.with_structured_output(schema, **kwargs)
        swapped = self._swap(structured)
        if swapped is None:
            raise NotImplementedError(
                f"tollgate cannot guard {type(self.model).__name__}.with_structured_output(); "
                "guard the model and parse its replies"
            )
        result: Runnable[LanguageModelInput, Any] = swapped
        return result

    def _swap(self, runnable: Any) -> Any:
        """``runnable`` with the wrapped model's binding replaced by this guard (None: not found)."""
        from langchain_core.runnables import RunnableBinding, RunnableParallel, RunnableSequence

        if isinstance(runnable, RunnableBinding) and runnable.bound is self.model:
            return self.bind(**runnable.kwargs)
        if runnable is self.model:
            return self
        if isinstance(runnable, RunnableSequence):
            first = self._swap(runnable.first)
            if first is None:
                return None
            return RunnableSequence(first, *runnable.middle, runnable.last)
        if isinstance(runnable, RunnableParallel):
            steps = dict(runnable.steps__)
            for key, step in steps.items():
                swapped = self._swap(step)
                if swapped is not None:
                    steps[key] = swapped
                    return RunnableParallel(steps)
        return None

    # -- translation ---------------------------------------------------------------------------

    def _bound(self, model: BaseChatModel) -> Runnable[LanguageModelInput, BaseMessage]:
        """``model`` with the tools bound the way its class formats them."""
        b = self._bindings
        if b.tools is None:
            return model
        return model.bind_tools(b.tools, **b.tool_kwargs)

    def _tool_kwargs(self) -> Mapping[str, Any]:
        bound = self._bound(self.model)
        return dict(getattr(bound, "kwargs", {}) or {})

    def _request(self, messages: Sequence[BaseMessage], stream: bool) -> LLMRequest:
        kwargs = {**self._tool_kwargs(), **self._bindings.kwargs}
        model = self.model
        ls = tr.ls_params(model, kwargs)
        cap = tr.output_cap(kwargs) or tr.output_cap(
            {k: getattr(model, k, None) for k in (*_CAP_KEYS, "max_output_tokens")}
        )
        return tr.request_for(
            provider=self.provider
            or tr.provider_name(ls.get("ls_provider"), type(model).__name__, tr.model_base_url(model)),
            model=tr.model_name(model, kwargs),
            messages=tr.neutral_messages(messages),
            max_output_tokens=cap or tr.output_cap(ls),
            stream=stream,
            n=as_int(kwargs.get("n")) or as_int(getattr(model, "n", None)) or 1,
            tools=tr.tool_schemas(
                self._bindings.tools if self._bindings.tools is not None else kwargs.get("tools")
            ),
            base_url=tr.model_base_url(model),
        )

    def model_for(self, name: str) -> BaseChatModel:
        """The chat model to run for the model name ``name`` (the gate's decision)."""
        if name == tr.model_name(self.model, self._bindings.kwargs):
            return self.model
        if name in self.models:
            return self.models[name]
        field = tr.model_field(self.model)
        if field is None:
            raise TypeError(
                f"tollgate cannot downgrade {type(self.model).__name__} to {name!r}: no model field; "
                f"pass guard(model, models={{{name!r}: <model>}})"
            )
        return self.model.model_copy(update={field: name})

    def _target(self, call: gate.Call, stream: bool) -> Runnable[LanguageModelInput, BaseMessage]:
        decision = call.decision
        model = self.model_for(decision.model)
        kwargs = dict(self._bindings.kwargs)
        if decision.max_output_tokens is not None:
            key = "max_completion_tokens" if "max_completion_tokens" in kwargs else "max_tokens"
            for other in _CAP_KEYS:
                kwargs.pop(other, None)
            kwargs[key] = decision.max_output_tokens
        if stream and "stream_usage" in type(model).model_fields and not _responses_api(model, kwargs):
            kwargs.setdefault("stream_usage", True)  # a ChatOpenAI with a custom base_url sends none
        bound = self._bound(model)
        return bound.bind(**kwargs) if kwargs else bound

    def _reading(
        self, input: LanguageModelInput, config: RunnableConfig | None, stream: bool
    ) -> tuple[Callable[[], LLMRequest], list[list[BaseMessage]], track, Mapping[str, Any]]:
        """How pre-flight reads a call with ``input`` (and where it keeps the messages read), the
        run's tags, and the gate's fallback facts. Should LangChain fail to read ``input``, the
        model is sent ``input`` as given and answers it its own way."""
        read: list[list[BaseMessage]] = []

        def request() -> LLMRequest:
            messages = self.model._convert_input(input).to_messages()
            read.append(messages)
            return self._request(messages, stream)

        cfg = config or {}
        scope = track(**(tr.tags_from(cfg.get("metadata"), cfg.get("tags")) if self.tags else {}))
        return (
            request,
            read,
            scope,
            {"provider": self.provider or "unknown", "secrets": secrets_of(self.model)},
        )

    def _begin(
        self, input: LanguageModelInput, config: RunnableConfig | None, stream: bool
    ) -> tuple[gate.Call, list[BaseMessage] | None]:
        request, read, scope, facts = self._reading(input, config, stream)
        with scope:
            call = gate.preflight(request, **facts)
        return call, read[0] if read else None

    async def _abegin(
        self, input: LanguageModelInput, config: RunnableConfig | None, stream: bool
    ) -> tuple[gate.Call, list[BaseMessage] | None]:
        request, read, scope, facts = self._reading(input, config, stream)
        with scope:
            call = await gate.apreflight(request, **facts)
        return call, read[0] if read else None

    def _input(self, call: gate.Call, messages: list[BaseMessage] | None, input: LanguageModelInput) -> Any:
        if messages is None:
            return input
        if call.decision.messages is None:
            return messages
        return list(native_items(call.decision.messages))

    # -- invoke ---------------------------------------------------------------------------------

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        call, messages = self._begin(input, config, stream=False)
        with call:
            target = call.edit(self._target, call, False)
            with call.sending():
                result = target.invoke(self._input(call, messages, input), config, **kwargs)
            call.finish(tr.outcome(result))
        return result

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        call, messages = await self._abegin(input, config, stream=False)
        async with call:
            target = call.edit(self._target, call, False)
            with call.sending():
                result = await target.ainvoke(self._input(call, messages, input), config, **kwargs)
            await call.afinish(tr.outcome(result))
        return result

    # -- stream ---------------------------------------------------------------------------------

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessageChunk]:
        call, messages = self._begin(input, config, stream=True)
        streamed = _Chunks()
        with call:
            target = call.edit(self._target, call, True)
            try:
                with call.sending():  # the model's run starts on the first next()
                    chunks = iter(target.stream(self._input(call, messages, input), config, **kwargs))
                    first = next(chunks, None)
                if first is not None:
                    streamed.add(first)
                    yield first  # type: ignore[misc]
                    for chunk in chunks:
                        streamed.add(chunk)
                        yield chunk  # type: ignore[misc]
            except GeneratorExit:
                call.finish(streamed.outcome("abandoned"), raise_overrun=False)
                raise
            except BaseException as exc:
                call.fail(exc, streamed.outcome("error") if streamed else None)
                raise
            call.finish(streamed.outcome())

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessageChunk]:
        call, messages = await self._abegin(input, config, stream=True)
        streamed = _Chunks()
        async with call:
            target = call.edit(self._target, call, True)
            try:
                with call.sending():  # the model's run starts on the first anext()
                    chunks = aiter(target.astream(self._input(call, messages, input), config, **kwargs))
                    first = await anext(chunks, None)
                if first is not None:
                    streamed.add(first)
                    yield first  # type: ignore[misc]
                    async for chunk in chunks:
                        streamed.add(chunk)
                        yield chunk  # type: ignore[misc]
            except GeneratorExit:
                await call.afinish(streamed.outcome("abandoned"), raise_overrun=False)
                raise
            except Exception as exc:
                await call.afail(exc, streamed.outcome("error") if streamed else None)
                raise
            except BaseException as exc:  # cancelled: no awaiting while being cancelled
                call.fail(exc, streamed.outcome("error") if streamed else None)
                raise
            await call.afinish(streamed.outcome())


class _Chunks:
    """The chunks a stream yielded, added up as LangChain adds them. A chunk LangChain cannot
    add (a malformed ``usage_metadata``) is the caller's all the same: from then on only the
    text is kept, and the call is estimated from it."""

    __slots__ = ("_broken", "_merged", "_texts")

    def __init__(self) -> None:
        self._merged: Any = None
        self._texts: list[str] = []
        self._broken = False

    def __bool__(self) -> bool:
        return self._merged is not None

    def add(self, chunk: Any) -> None:
        if self._merged is None:
            self._merged = chunk
        elif not self._broken:
            try:
                self._merged = self._merged + chunk
                return
            except Exception:
                self._broken = True
        if self._broken:
            with contextlib.suppress(Exception):
                self._texts.append(tr.message_text(chunk))

    def outcome(self, status: Status | None = None) -> gate.Outcome:
        """What the stream said; ``status``: it ended early (estimated)."""
        said = tr.outcome(self._merged)
        if self._broken:
            text = (said.text or tr.message_text(self._merged)) + "".join(self._texts)
            said = said._replace(usage=None, text=text)
        return said if status is None else said._replace(status=status, estimated=True)


def guard(
    model: BaseChatModel,
    *,
    models: Mapping[str, BaseChatModel] | None = None,
    provider: str | None = None,
    tags: bool = True,
) -> Guard:
    """Wrap ``model`` so every call goes through tollgate with its budget actions applied.

    ``models`` maps a model name a downgrade may pick to the chat model object to run for it
    (otherwise a copy of ``model`` with its model name swapped); ``provider`` overrides the
    provider inferred from the model class and base URL; ``tags`` maps the run's LangChain
    ``metadata`` (and ``"name=value"`` tags) to tollgate tags.

    >>> from langchain_core.language_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> import tollgate
    >>> _ = tollgate.reset(), tollgate.configure(on_unpriced="ignore")
    >>> safe = guard(GenericFakeChatModel(messages=iter([AIMessage("hi")])))
    >>> safe.invoke("hello").content
    'hi'
    >>> with tollgate.budget(tokens=1, on_exceed="block"):
    ...     safe.invoke("hello")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tollgate.errors.BudgetExceeded: budget ... exceeded: ...
    """
    return Guard(model, models=models, provider=provider, tags=tags)


def _responses_api(model: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether ``model`` (a ChatOpenAI) sends this call to the Responses API, which streams its
    usage anyway and whose SDK method refuses ``stream_usage`` (langchain-openai passes it on).
    Asked of langchain-openai itself, as it decides per call; False when it cannot say."""
    decide = getattr(model, "_use_responses_api", None)
    try:
        return bool(decide(dict(kwargs))) if callable(decide) else False
    except Exception:  # another version's signature: the chat API's default
        return False
