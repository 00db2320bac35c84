"""Adapter for the OpenAI SDK (and OpenAI-compatible servers reached through it).

Translation only: native keyword arguments -> :class:`~tollgate.request.LLMRequest`, a gate
:class:`~tollgate.gate.Decision` -> edits of those arguments, and native responses or stream
chunks -> :class:`~tollgate.request.Usage`. Budget logic lives in the gate, never here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from tollgate import gate
from tollgate.request import LLMRequest, Usage
from tollgate.streams import AsyncGatedStream, GatedStream

# Hosts of OpenAI-compatible APIs -> provider name as the price table knows it.
_HOST_PROVIDERS = (
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure"),
    ("api.deepseek.com", "deepseek"),
    ("openrouter.ai", "openrouter"),
    ("api.groq.com", "groq"),
    ("api.together.xyz", "together_ai"),
    ("api.mistral.ai", "mistral"),
    ("api.fireworks.ai", "fireworks_ai"),
)


def provider_for(client: Any) -> str:
    """The provider behind an OpenAI SDK client, inferred from its base URL."""
    if type(client).__name__ in ("AzureOpenAI", "AsyncAzureOpenAI"):
        return "azure"
    host = (urlsplit(str(getattr(client, "base_url", "") or "")).hostname or "").lower()
    for suffix, provider in _HOST_PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return provider
    return "openai" if not host else f"openai_compatible:{host}"


def _int(value: Any) -> int:
    # The SDK's Omit / NotGiven sentinels and None all mean "not given".
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _field(obj: Any, name: str) -> Any:
    # SDK objects are read by attribute, JSON dicts by key. type() rather than an ABC
    # isinstance check: this runs several times per stream chunk.
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def usage_from(raw: Any) -> Usage | None:
    """Normalised usage from a chat/completions ``usage`` object or dict (None if there is none).

    >>> usage_from({"prompt_tokens": 1370, "completion_tokens": 22,
    ...             "prompt_tokens_details": {"cached_tokens": 1280}}).cache_read_tokens
    1280
    """
    if raw is None:
        return None
    prompt_tokens, completion_tokens = _field(raw, "prompt_tokens"), _field(raw, "completion_tokens")
    if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
        return None  # malformed (a broken proxy, a partial body): the caller estimates instead
    prompt = _field(raw, "prompt_tokens_details")
    completion = _field(raw, "completion_tokens_details")
    return Usage(
        input_tokens=prompt_tokens,
        output_tokens=completion_tokens,
        cache_read_tokens=_int(_field(prompt, "cached_tokens")),
        cache_write_tokens=_int(_field(prompt, "cache_write_tokens")),
        reasoning_tokens=_int(_field(completion, "reasoning_tokens")),
        audio_input_tokens=_int(_field(prompt, "audio_tokens")),
        audio_output_tokens=_int(_field(completion, "audio_tokens")),
    )


class ChatStreamAccountant:
    """Reads ``ChatCompletionChunk``s: usage from the chunk that carries it, text for estimates."""

    __slots__ = (
        "_hide_usage_chunk",
        "_open_choices",
        "_text",
        "done",
        "response_id",
        "response_model",
        "usage",
    )

    def __init__(self, *, hide_usage_chunk: bool) -> None:
        self._hide_usage_chunk = hide_usage_chunk
        self._text: list[str] = []
        self._open_choices: set[int] = set()
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.done = False

    def observe(self, chunk: Any) -> bool:
        try:
            if not self.response_model:  # Azure's first chunk (content filter results) has none
                self.response_model = _field(chunk, "model") or None
                self.response_id = _field(chunk, "id") or None
            choices = _field(chunk, "choices")
            if choices:
                for choice in choices:
                    delta = _field(choice, "delta")
                    content = _field(delta, "content")
                    if content:
                        self._text.append(content)
                    tool_calls = _field(delta, "tool_calls")
                    if tool_calls:
                        for tool_call in tool_calls:
                            fn = _field(tool_call, "function")
                            self._text.append((_field(fn, "name") or "") + (_field(fn, "arguments") or ""))
                    if _field(choice, "finish_reason"):
                        self._open_choices.discard(_field(choice, "index"))
                    else:
                        self._open_choices.add(_field(choice, "index"))
                self.done = not self._open_choices
            raw_usage = _field(chunk, "usage")
            if raw_usage is not None:
                self.usage = usage_from(raw_usage)
                # The usage-only chunk we asked for on the caller's behalf is not theirs to see.
                return not (self._hide_usage_chunk and not choices)
        except Exception:  # a malformed chunk must never break the caller's stream
            return True
        return True

    def streamed_text(self) -> str:
        return "".join(self._text)


def server_of(client: Any) -> tuple[str | None, int | None]:
    """The host and port a client talks to (``server.address`` / ``server.port``)."""
    url = urlsplit(str(getattr(client, "base_url", "") or ""))
    return url.hostname, url.port or (443 if url.scheme == "https" else 80 if url.scheme == "http" else None)


def chat_request(
    kwargs: Mapping[str, Any], provider: str, server: tuple[str | None, int | None]
) -> LLMRequest:
    """The provider-neutral view of ``chat.completions.create(**kwargs)``."""
    cap = _int(kwargs.get("max_completion_tokens")) or _int(kwargs.get("max_tokens")) or None
    tools = kwargs.get("tools")
    return LLMRequest(
        provider=provider,
        operation="chat",
        model=str(kwargs.get("model") or ""),
        messages=kwargs.get("messages") or (),
        max_output_tokens=cap,
        stream=kwargs.get("stream") is True,
        n=_int(kwargs.get("n")) or 1,
        tools=tools if isinstance(tools, (list, tuple)) else (),
        server_address=server[0],
        server_port=server[1],
    )


# Reasoning families take max_completion_tokens; max_tokens is rejected by them.
_COMPLETION_CAP_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def _cap_parameter(kwargs: Mapping[str, Any], model: str) -> str:
    """Which argument caps the output: the one the caller used, else the model family's."""
    if _int(kwargs.get("max_completion_tokens")):
        return "max_completion_tokens"
    if _int(kwargs.get("max_tokens")):
        return "max_tokens"
    name = model.rsplit("/", 1)[-1].lower()
    return "max_completion_tokens" if name.startswith(_COMPLETION_CAP_PREFIXES) else "max_tokens"


def _request(kwargs: dict[str, Any], provider: str, server: tuple[str | None, int | None]) -> LLMRequest:
    messages = kwargs.get("messages")
    if messages is not None and not isinstance(messages, (list, tuple)):
        kwargs["messages"] = list(messages)  # a generator can be read once: keep what we read
    return chat_request(kwargs, provider, server)


def _prepare(call: gate.Call, kwargs: dict[str, Any]) -> bool:
    """Apply the gate's decision to ``kwargs`` in place; returns whether usage was injected."""
    decision = call.decision
    if decision.model != call.request.model:
        kwargs["model"] = decision.model
    if decision.messages is not None:
        kwargs["messages"] = list(decision.messages)
    if decision.max_output_tokens is not None:
        kwargs[_cap_parameter(kwargs, decision.model)] = decision.max_output_tokens
    injected = False
    if call.request.stream:
        options = kwargs.get("stream_options")
        if not isinstance(options, Mapping):
            kwargs["stream_options"] = {"include_usage": True}
            injected = True
        elif "include_usage" not in options:
            kwargs["stream_options"] = {**options, "include_usage": True}
            injected = True
    return injected


def _outcome(call: gate.Call, response: Any) -> tuple[Usage, dict[str, Any]]:
    """Usage and settle arguments from a response; an estimate when its usage is missing or malformed."""
    try:
        usage = usage_from(_field(response, "usage"))
        found: dict[str, Any] = {
            "response_model": _field(response, "model"),
            "response_id": _field(response, "id"),
        }
    except Exception:  # malformed response: record an estimate, hand the response back untouched
        usage, found = None, {}
    if usage is None:
        return Usage(input_tokens=call.estimate.input_tokens), {**found, "estimated": True}
    return usage, found


def gate_chat_create(create: Callable[..., Any], provider: str, client: Any) -> Callable[..., Any]:
    """``chat.completions.create`` going through the gate (sync)."""
    server = server_of(client)  # once per client, not on every call

    @functools.wraps(create)
    def gated(*args: Any, **kwargs: Any) -> Any:
        call = gate.preflight(_request(kwargs, provider, server))
        injected = _prepare(call, kwargs)
        try:
            response = create(*args, **kwargs)
        except BaseException as exc:
            gate.release(call, exc)
            raise
        if call.request.stream:
            return GatedStream(response, call, ChatStreamAccountant(hide_usage_chunk=injected))
        usage, found = _outcome(call, response)
        gate.settle(call, usage, **found)
        gate.raise_if_overrun(call)
        return response

    return gated


def gate_async_chat_create(create: Callable[..., Any], provider: str, client: Any) -> Callable[..., Any]:
    """``chat.completions.create`` going through the gate (async)."""
    server = server_of(client)

    @functools.wraps(create)
    async def gated(*args: Any, **kwargs: Any) -> Any:
        call = await gate.apreflight(_request(kwargs, provider, server))
        injected = _prepare(call, kwargs)
        try:
            response = await create(*args, **kwargs)
        except BaseException as exc:
            await gate.arelease(call, exc)
            raise
        if call.request.stream:
            return AsyncGatedStream(response, call, ChatStreamAccountant(hide_usage_chunk=injected))
        usage, found = _outcome(call, response)
        await gate.asettle(call, usage, **found)
        gate.raise_if_overrun(call)
        return response

    return gated


def routes(client: Any) -> dict[tuple[str, ...], Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """Which attribute paths of ``client`` go through the gate, and how."""
    import openai

    provider = provider_for(client)
    wrap = gate_async_chat_create if isinstance(client, openai.AsyncOpenAI) else gate_chat_create
    return {("chat", "completions", "create"): lambda create: wrap(create, provider, client)}
