"""Adapter for the OpenAI SDK (and OpenAI-compatible servers reached through it).

Translation only, one :class:`~tollgate.providers.base.Surface` per API shape:

- ``chat.completions.create`` / ``.parse`` (and ``.stream``, a stream manager);
- ``responses.create`` / ``.parse`` (and ``.stream``);
- ``completions.create`` (legacy text completions);
- ``embeddings.create``;
- the audio and image endpoints (:mod:`tollgate.providers.openai_media`);

each also under ``with_raw_response`` and ``with_streaming_response``. Budget logic lives in
the gate, never here.

OpenAI-compatible providers are told apart by the client's base URL (:func:`provider_for`)
and their usage dialects read here: DeepSeek's ``prompt_cache_hit_tokens``, Groq's
``x_groq.usage`` on stream chunks, OpenRouter's ``usage.cost`` (the provider's own charge,
recorded instead of the price table's).

Tool calls (``CallRecord.tool_calls``): a chat answer's ``tool_calls`` entries (a legacy
``function_call`` is one), over its choices, and in a stream each (choice, call index) once; a
Responses answer's output items whose type ends in ``_call``, the built-in tools the model ran
included (:func:`responses_tool_calls`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from tollgate import gate
from tollgate.providers.base import (
    NATIVE,
    Accountant,
    Found,
    Server,
    Surface,
    as_int,
    count_of,
    extra_field,
    field,
    listed,
    native_items,
    routes_for,
    server_of,
)
from tollgate.providers.fields import Known, unknown_fields
from tollgate.providers.openai_media import media_routes
from tollgate.request import LLMRequest, Usage

# Hosts of OpenAI-compatible APIs -> provider name as the price table knows it.
_HOST_PROVIDERS = (
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure"),
    ("api.deepseek.com", "deepseek"),
    ("openrouter.ai", "openrouter"),
    ("api.groq.com", "groq"),
    ("api.together.xyz", "together_ai"),
    ("api.together.ai", "together_ai"),
    ("api.mistral.ai", "mistral"),
    ("api.fireworks.ai", "fireworks_ai"),
    ("api.x.ai", "xai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cerebras.ai", "cerebras"),
    ("generativelanguage.googleapis.com", "gemini"),
    ("api.anthropic.com", "anthropic"),
)
# Local servers, told apart by their default ports.
_LOCAL_PORTS = {11434: "ollama", 8000: "vllm", 1234: "lm_studio"}
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal"})


def provider_for(client: Any) -> str:
    """The provider behind an OpenAI SDK client, inferred from its base URL.

    >>> import openai
    >>> provider_for(openai.OpenAI(api_key="x", base_url="https://api.deepseek.com/v1"))
    'deepseek'
    >>> provider_for(openai.OpenAI(api_key="x", base_url="http://localhost:11434/v1"))
    'ollama'
    """
    if type(client).__name__ in ("AzureOpenAI", "AsyncAzureOpenAI"):
        return "azure"
    return provider_for_url(getattr(client, "base_url", ""))


def provider_for_url(base_url: Any) -> str:
    """The provider behind an OpenAI-compatible base URL (see :func:`provider_for`)."""
    url = urlsplit(str(base_url or ""))
    host = (url.hostname or "").lower()
    for suffix, provider in _HOST_PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return provider
    if host in _LOCAL_HOSTS and url.port in _LOCAL_PORTS:
        return _LOCAL_PORTS[url.port]
    return "openai" if not host else f"openai_compatible:{host}"


# -- usage ------------------------------------------------------------------------------------


def usage_from(raw: Any, tier: Any = None) -> Usage | None:
    """Normalised usage from a chat/completions ``usage`` object or dict (None if there is none);
    ``tier`` is the response's ``service_tier``.

    >>> usage_from({"prompt_tokens": 1370, "completion_tokens": 22,
    ...             "prompt_tokens_details": {"cached_tokens": 1280}}).cache_read_tokens
    1280
    >>> deepseek = {"prompt_tokens": 10, "completion_tokens": 2, "prompt_cache_hit_tokens": 8}
    >>> usage_from(deepseek).cache_read_tokens
    8
    >>> together = {"prompt_tokens": 10, "completion_tokens": 2, "cached_tokens": 6}
    >>> usage_from(together).cache_read_tokens
    6
    """
    if raw is None:
        return None
    prompt_tokens = count_of(field(raw, "prompt_tokens"))
    completion_tokens = count_of(field(raw, "completion_tokens"))
    if prompt_tokens is None or completion_tokens is None:
        return None  # malformed (a broken proxy, a partial body): the caller estimates instead
    prompt = field(raw, "prompt_tokens_details")
    completion = field(raw, "completion_tokens_details")
    cache_read = as_int(field(prompt, "cached_tokens")) if prompt is not None else 0
    searches = 0
    extras = raw if type(raw) is dict else getattr(raw, "__pydantic_extra__", None)
    if extras:  # fields beyond OpenAI's schema, read only when a provider sent some
        # DeepSeek reports its cache hits beside prompt_tokens in its own field, Together in another.
        cache_read = (
            cache_read or as_int(extras.get("prompt_cache_hit_tokens")) or as_int(extras.get("cached_tokens"))
        )
        searches = as_int(field(extras.get("server_tool_use"), "web_search_requests"))
    unknown = unknown_fields(raw, _KNOWN_CHAT)
    service_tier = _tier(tier, unknown)
    if prompt is None and completion is None and not (cache_read or unknown or service_tier or searches):
        return Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens)
    return Usage(
        input_tokens=prompt_tokens,
        output_tokens=completion_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=as_int(field(prompt, "cache_write_tokens")),
        reasoning_tokens=as_int(field(completion, "reasoning_tokens")),
        audio_input_tokens=as_int(field(prompt, "audio_tokens")),
        audio_output_tokens=as_int(field(completion, "audio_tokens")),
        units=_units(prompt, searches),
        service_tier=service_tier,
        unknown=unknown,
    )


def _units(details: Any, searches: int) -> dict[str, int]:
    """The usage beyond tokens: web searches, and the cache writes kept twelve hours
    (``cache_write_tokens_details.ttl_12h_tokens``, billed at their own rate)."""
    units = {"web_search_requests": searches} if searches else {}
    long_writes = as_int(field(field(details, "cache_write_tokens_details"), "ttl_12h_tokens"))
    if long_writes:
        units["cache_write_12h_tokens"] = long_writes
    return units


def responses_usage(raw: Any, response: Any = None) -> Usage | None:
    """Normalised usage from a Responses API ``usage`` (``input_tokens`` / ``output_tokens``);
    ``response`` gives the service tier and the web searches its output items ran."""
    if raw is None:
        return None
    input_tokens, output_tokens = count_of(field(raw, "input_tokens")), count_of(field(raw, "output_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    details = field(raw, "input_tokens_details")
    unknown = unknown_fields(raw, _KNOWN_RESPONSES)
    searches = _web_searches(response) if response is not None else 0
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=as_int(field(details, "cached_tokens")),
        cache_write_tokens=as_int(field(details, "cache_write_tokens")),
        reasoning_tokens=as_int(field(field(raw, "output_tokens_details"), "reasoning_tokens")),
        units=_units(details, searches),
        service_tier=_tier(field(response, "service_tier") if response is not None else None, unknown),
        unknown=unknown,
    )


def _web_searches(response: Any) -> int:
    """The web searches a response ran: ``tool_usage.web_search.num_requests`` when it says, else
    its ``web_search_call`` output items (billed per call)."""
    try:
        said = count_of(field(field(extra_field(response, "tool_usage"), "web_search"), "num_requests"))
        if said is not None:
            return said
        return sum(1 for item in field(response, "output") or () if field(item, "type") == "web_search_call")
    except Exception:
        return 0


_TIERS = frozenset({"priority", "flex"})  # priced apart; "default" and "auto" bill the list price
_STANDARD_TIERS = frozenset({"default", "auto", "standard"})


def _tier(value: Any, unknown: dict[str, Any]) -> str | None:
    """The billed service tier named by a response; a tier tollgate does not price is unknown."""
    if value is None or not isinstance(value, str):
        return None
    tier = value.lower()
    if tier in _TIERS:
        return tier
    if tier not in _STANDARD_TIERS and tier:
        unknown["service_tier"] = value
    return None


_DETAILS: Known = {
    "cached_tokens": None,
    "cache_write_tokens": None,
    "audio_tokens": None,
    "text_tokens": None,
    "image_tokens": None,
    "video_tokens": None,
    "cache_creation_tokens": None,  # LiteLLM's copy of cache_write_tokens
    # cache_write_tokens split by how long the cache is kept: 12 hours bills at its own rate.
    "cache_write_tokens_details": {"ttl_30m_tokens": None, "ttl_12h_tokens": None},
}
# What OpenRouter adds: the charge itself (read), whether the key was the caller's, and how the
# charge splits upstream (informational: the charge is usage.cost).
_OPENROUTER: Known = {"cost": None, "is_byok": None, "cost_details": None}
_KNOWN_CHAT: Known = {
    "prompt_tokens": None,
    "completion_tokens": None,
    "total_tokens": None,
    "prompt_tokens_details": _DETAILS,
    "completion_tokens_details": {
        "reasoning_tokens": None,
        "audio_tokens": None,
        "text_tokens": None,
        "image_tokens": None,
        "accepted_prediction_tokens": None,  # parts of completion_tokens, billed with them
        "rejected_prediction_tokens": None,
    },
    "prompt_cache_hit_tokens": None,  # DeepSeek
    "prompt_cache_miss_tokens": None,
    "cached_tokens": None,  # Together
    # LiteLLM's responses carry Anthropic's names beside OpenAI's (copies of the details above),
    # and a provider's server tool requests.
    "cache_creation_input_tokens": None,
    "cache_read_input_tokens": None,
    "server_tool_use": {"web_search_requests": None, "web_fetch_requests": None},
    # Groq's timings
    "queue_time": None,
    "prompt_time": None,
    "completion_time": None,
    "total_time": None,
    **_OPENROUTER,
}
_KNOWN_RESPONSES: Known = {
    "input_tokens": None,
    "output_tokens": None,
    "total_tokens": None,
    "input_tokens_details": _DETAILS,
    "output_tokens_details": {"reasoning_tokens": None, "text_tokens": None},
    **_OPENROUTER,
}


def _choices_text(response: Any) -> str | None:
    """The generated text of a chat or legacy completion (for an estimate when usage is missing)."""
    try:
        texts = []
        for choice in field(response, "choices") or ():
            message = field(choice, "message")
            text = field(message, "content") if message is not None else field(choice, "text")
            texts.append(text if isinstance(text, str) else "")
        return "".join(texts)
    except Exception:
        return None


def _read_choices(response: Any) -> tuple[tuple[str, ...], int, bool]:
    """One pass over a chat answer's choices: their finish reasons, the tool calls they ask for
    (as :func:`chat_tool_calls` counts them) and whether one cites the web (``url_citation``
    annotations: a search model's one search). A malformed choice ends the pass: no reasons,
    the calls and citations read so far."""
    reasons: list[str] = []
    calls, searched = 0, False
    try:
        for choice in listed(field(response, "choices")):  # a loop: no generator made per call
            reason = field(choice, "finish_reason")
            if reason:
                reasons.append(str(reason))
            message = field(choice, "message")
            if message is None:
                continue
            tool_calls = field(message, "tool_calls")
            if listed(tool_calls):
                calls += sum(1 for c in tool_calls if c is not None)
            elif field(message, "function_call") is not None:
                calls += 1
            if not searched:
                for note in field(message, "annotations") or ():
                    if field(note, "type") == "url_citation":
                        searched = True
                        break
    except Exception:
        return (), calls, searched
    return tuple(reasons), calls, searched


def chat_tool_calls(response: Any) -> int:
    """The tool calls a chat completion asks for, over its choices: each ``message.tool_calls``
    entry, or the legacy ``message.function_call`` as one. What cannot be read counts 0.

    >>> chat_tool_calls({"choices": [{"message": {"tool_calls": [{"id": "a"}, {"id": "b"}]}},
    ...                              {"message": {"function_call": {"name": "f"}}}]})
    3
    """
    count = 0
    try:
        for choice in listed(field(response, "choices")):
            message = field(choice, "message")
            calls = field(message, "tool_calls")
            if listed(calls):
                count += sum(1 for c in calls if c is not None)
            elif field(message, "function_call") is not None:
                count += 1
    except Exception:  # a malformed response: what was read so far
        pass
    return count


def responses_tool_calls(output: Any) -> int:
    """The tool calls among a Responses ``output``: every item whose type ends in ``_call``:
    ``function_call`` and ``custom_tool_call`` (the caller's tools), and the built-in tools the
    model calls (``web_search_call``, ``file_search_call``, ``code_interpreter_call``,
    ``computer_call``, ``mcp_call``, ``shell_call``, ``image_generation_call``, ...). Their
    results (``*_call_output``) and MCP approval requests are not calls.

    >>> responses_tool_calls([{"type": "reasoning"}, {"type": "function_call"},
    ...                       {"type": "web_search_call"}, {"type": "message"}])
    2
    """
    count = 0
    with contextlib.suppress(Exception):
        for item in listed(output):
            count += _is_tool_call(item)
    return count


def _is_tool_call(item: Any) -> bool:
    kind = field(item, "type")
    return isinstance(kind, str) and kind.endswith("_call")


def _reported_cost(raw: Any) -> float | None:
    # OpenRouter puts what it charged in usage.cost: that, not a price table, is the truth.
    value = extra_field(raw, "cost")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- chat completions -------------------------------------------------------------------------

# Reasoning families take max_completion_tokens; max_tokens is rejected by them.
_COMPLETION_CAP_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def _cap_parameter(kwargs: Mapping[str, Any], model: str) -> str:
    """Which argument caps the output: the one the caller used, else the model family's."""
    if as_int(kwargs.get("max_completion_tokens")):
        return "max_completion_tokens"
    if as_int(kwargs.get("max_tokens")):
        return "max_tokens"
    name = model.rsplit("/", 1)[-1].lower()
    return "max_completion_tokens" if name.startswith(_COMPLETION_CAP_PREFIXES) else "max_tokens"


def _inject_usage_option(kwargs: dict[str, Any]) -> bool:
    """Ask a stream for its usage chunk (``stream_options.include_usage``) unless the caller chose."""
    options = kwargs.get("stream_options")
    if not isinstance(options, Mapping):
        kwargs["stream_options"] = {"include_usage": True}
        return True
    if "include_usage" not in options:
        kwargs["stream_options"] = {**options, "include_usage": True}
        return True
    return False


def chat_request(kwargs: Mapping[str, Any], provider: str, server: Server) -> LLMRequest:
    """The provider-neutral view of ``chat.completions.create(**kwargs)``."""
    cap = as_int(kwargs.get("max_completion_tokens")) or as_int(kwargs.get("max_tokens")) or None
    tools = kwargs.get("tools")
    return LLMRequest(
        provider=provider,
        operation="chat",
        model=str(kwargs.get("model") or ""),
        messages=kwargs.get("messages") or (),
        max_output_tokens=cap,
        stream=kwargs.get("stream") is True,
        n=as_int(kwargs.get("n")) or 1,
        tools=tools if isinstance(tools, (list, tuple)) else (),
        server_address=server[0],
        server_port=server[1],
        service_tier=_asked_tier(kwargs),
    )


def _asked_tier(kwargs: Mapping[str, Any]) -> str | None:
    """The priced tier a request asks for (``service_tier="priority"`` or ``"flex"``); "auto"
    and "default" are served, and reserved, at the list price."""
    tier = kwargs.get("service_tier")
    return tier.lower() if isinstance(tier, str) and tier.lower() in _TIERS else None


class ChatStreamAccountant(Accountant):
    """Reads ``ChatCompletionChunk``s (and legacy ``Completion`` chunks): usage from the chunk
    that carries it, text for estimates and cut-offs."""

    __slots__ = ("_calls", "_hide_usage_chunk", "_open_choices")

    def __init__(self, *, hide_usage_chunk: bool) -> None:
        super().__init__()
        self._hide_usage_chunk = hide_usage_chunk
        self._open_choices: set[int] = set()
        self._calls: set[tuple[Any, Any]] = set()  # (choice index, tool call index) seen

    def observe(self, chunk: Any) -> bool:
        try:
            if not self.response_model:  # Azure's first chunk (content filter results) has none
                self.response_model = field(chunk, "model") or None
                self.response_id = field(chunk, "id") or None
            choices = field(chunk, "choices")
            if choices:
                for choice in choices:
                    delta = field(choice, "delta")
                    content = field(delta, "content") if delta is not None else field(choice, "text")
                    if content:
                        self.text.append(content)
                    tool_calls = field(delta, "tool_calls")
                    if tool_calls:
                        self._count_calls(field(choice, "index"), tool_calls)
                        for tool_call in tool_calls:
                            fn = field(tool_call, "function")
                            self.text.append((field(fn, "name") or "") + (field(fn, "arguments") or ""))
                    elif field(delta, "function_call") is not None:  # legacy: one call per choice
                        self._calls.add((field(choice, "index"), "function_call"))
                        self.tool_calls = len(self._calls)
                    reason = field(choice, "finish_reason")
                    if reason:
                        self.finish_reasons.append(str(reason))
                        self._open_choices.discard(field(choice, "index"))
                    else:
                        self._open_choices.add(field(choice, "index"))
                self.done = not self._open_choices
            raw_usage = field(chunk, "usage")
            if raw_usage is None:  # Groq puts a stream's usage under x_groq
                raw_usage = field(extra_field(chunk, "x_groq"), "usage")
            if raw_usage is not None:
                self.usage = usage_from(raw_usage, field(chunk, "service_tier")) or self.usage
                self.usd = _reported_cost(raw_usage)
                # The usage-only chunk we asked for on the caller's behalf is not theirs to see.
                return not (self._hide_usage_chunk and not choices)
        except Exception:  # a malformed chunk must never break the caller's stream
            return True
        return True

    def _count_calls(self, choice: Any, deltas: Any) -> None:
        """A call's deltas share its ``index`` (the first also carries its id and name): count
        each (choice, index) once; a server that sends no index is told apart by the call's id."""
        for delta in listed(deltas):
            index = field(delta, "index")
            key = index if type(index) is int else field(delta, "id")
            if key is not None:
                self._calls.add((choice, key))
        self.tool_calls = len(self._calls)


class ChatHelperAccountant(ChatStreamAccountant):
    """Reads the events of ``chat.completions.stream()``: each ``chunk`` event holds a chunk."""

    __slots__ = ()

    def observe(self, chunk: Any) -> bool:
        if field(chunk, "type") != "chunk":
            return True
        return super().observe(field(chunk, "chunk"))


class _ChoicesSurface(Surface):
    """What chat and legacy completions share: ``choices`` and an OpenAI ``usage`` in the
    response, chunks of the same shape in a stream."""

    def found(self, response: Any) -> Found:
        raw = field(response, "usage")
        usage = usage_from(raw, field(response, "service_tier"))
        reasons, calls, searched = _read_choices(response)
        if usage is not None and not usage.units and searched:
            usage = dataclasses.replace(usage, units={"web_search_requests": 1})
        text = _choices_text(response) if usage is None else None
        model, rid = field(response, "model"), field(response, "id")
        return Found(usage, model, rid, _reported_cost(raw), text, reasons, tool_calls=calls)

    def content(self, response: Any) -> str | None:
        return _choices_text(response)

    def accountant(self, injected: bool) -> ChatStreamAccountant:
        return ChatStreamAccountant(hide_usage_chunk=injected)


class ChatSurface(_ChoicesSurface):
    """``chat.completions.create`` and ``.parse``."""

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        messages = kwargs.get("messages")
        if messages is not None and not isinstance(messages, (list, tuple)):
            kwargs["messages"] = list(messages)  # a generator can be read once: keep what we read
        return chat_request(kwargs, self.provider, self.server)

    def apply(self, call: gate.Call, kwargs: dict[str, Any]) -> bool:
        super().apply(call, kwargs)
        decision = call.decision
        if decision.messages is not None:
            kwargs["messages"] = list(decision.messages)
        if decision.max_output_tokens is not None:
            kwargs[_cap_parameter(kwargs, decision.model)] = decision.max_output_tokens
        return _inject_usage_option(kwargs) if self.streams(call) else False


class ChatHelperSurface(ChatSurface):
    """``chat.completions.stream()``: a stream manager yielding events."""

    manager = True

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        return super().request(kwargs)._replace(stream=True)

    def accountant(self, injected: bool) -> ChatStreamAccountant:
        return ChatHelperAccountant(hide_usage_chunk=injected)


# -- legacy completions -----------------------------------------------------------------------


def _inputs(value: Any) -> list[Any]:
    """A prompt or embedding input as a list of texts or token arrays (one string, one token
    array, or a list of either)."""
    inputs: list[Any] = [value] if isinstance(value, str) else list(value or ())
    if inputs and all(isinstance(i, int) for i in inputs):
        return [inputs]  # one token array
    return inputs


class CompletionsSurface(_ChoicesSurface):
    """``completions.create`` (legacy text completions): a ``prompt``, capped by ``max_tokens``."""

    operation = "text_completion"

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        prompts = _inputs(kwargs.get("prompt"))
        return self.new_request(
            str(kwargs.get("model") or ""),
            prompt=prompts,
            max_output_tokens=as_int(kwargs.get("max_tokens")) or None,
            stream=kwargs.get("stream") is True,
            n=(as_int(kwargs.get("n")) or 1) * max(1, len(prompts)),
        )

    def apply(self, call: gate.Call, kwargs: dict[str, Any]) -> bool:
        super().apply(call, kwargs)
        if call.decision.max_output_tokens is not None:
            kwargs["max_tokens"] = call.decision.max_output_tokens
        return _inject_usage_option(kwargs) if self.streams(call) else False


# -- embeddings -------------------------------------------------------------------------------


class EmbeddingsSurface(Surface):
    """``embeddings.create``: inputs in, no output; usage is ``prompt_tokens``."""

    operation = "embeddings"

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        inputs = _inputs(kwargs.get("input"))
        return self.new_request(
            str(kwargs.get("model") or ""),
            prompt=inputs,
        )

    def found(self, response: Any) -> Found:
        raw = field(response, "usage")
        tokens = field(raw, "prompt_tokens")
        usage = Usage(input_tokens=tokens) if count_of(tokens) is not None else None
        return Found(usage, field(response, "model"), None, _reported_cost(raw))


# -- responses --------------------------------------------------------------------------------


def _neutral_items(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Responses ``instructions`` + ``input`` as chat-shaped messages, each carrying its items.

    Consecutive function calls become one assistant message with several tool calls, so a
    truncate drops (or keeps) a batch of parallel calls together with their outputs.
    """
    out: list[dict[str, Any]] = []
    instructions = kwargs.get("instructions")
    if isinstance(instructions, str) and instructions:
        out.append({"role": "system", "content": instructions, NATIVE: ()})
    value = kwargs.get("input")
    if isinstance(value, str):
        out.append({"role": "user", "content": value, NATIVE: (value,)})
        return out
    for item in value or ():
        kind = field(item, "type")
        if kind == "function_call":
            call = {"function": {"name": field(item, "name"), "arguments": field(item, "arguments")}}
            previous = out[-1] if out else None
            if previous is not None and previous.get("tool_calls") and previous.get("content") is None:
                previous["tool_calls"].append(call)
                previous[NATIVE] = (*previous[NATIVE], item)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call], NATIVE: (item,)})
        elif kind == "function_call_output":
            out.append({"role": "tool", "content": str(field(item, "output") or ""), NATIVE: (item,)})
        elif field(item, "role"):
            out.append({"role": field(item, "role"), "content": field(item, "content"), NATIVE: (item,)})
        else:  # reasoning, built-in tool calls, item references: counted as their JSON
            text = json.dumps(item, default=str) if isinstance(item, Mapping) else str(item)
            out.append({"role": "assistant", "content": text, NATIVE: (item,)})
    return out


def _status(response: Any) -> tuple[str, ...]:
    """A Responses API response's finish reason: its status, or why it is incomplete."""
    reason = field(field(response, "incomplete_details"), "reason")
    status = reason or field(response, "status")
    return (str(status),) if status else ()


class ResponseStreamAccountant(Accountant):
    """Reads Responses stream events: text deltas, tool calls as their output items arrive, and
    the final response with its usage (``response.completed``, or ``response.incomplete`` /
    ``response.failed``)."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        super().__init__()
        self._calls: set[Any] = set()  # output indexes of the tool call items seen

    def observe(self, event: Any) -> bool:
        try:
            kind = field(event, "type")
            if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
                delta = field(event, "delta")
                if delta:
                    self.text.append(delta)
            elif kind in ("response.output_item.added", "response.output_item.done"):
                if _is_tool_call(field(event, "item")):
                    self._calls.add(field(event, "output_index"))
                    self.tool_calls = len(self._calls)
            elif kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
                response = field(event, "response")
                self.response_model = field(response, "model") or self.response_model
                self.response_id = field(response, "id") or self.response_id
                if kind != "response.created":
                    raw = field(response, "usage")
                    self.usage = responses_usage(raw, response) or self.usage
                    self.usd = _reported_cost(raw)
                    self.finish_reasons[:] = _status(response)
                    # The final output lists every item; a stream cut short has only the events.
                    self.tool_calls = max(self.tool_calls, responses_tool_calls(field(response, "output")))
                    self.done = True
        except Exception:  # a malformed event must never break the caller's stream
            pass
        return True


class ResponsesSurface(Surface):
    """``responses.create`` and ``.parse``: ``input`` items, capped by ``max_output_tokens``."""

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        value = kwargs.get("input")
        if value is not None and not isinstance(value, (str, list, tuple)):
            kwargs["input"] = list(value)
        tools = kwargs.get("tools")
        return self.new_request(
            str(kwargs.get("model") or ""),
            messages=_neutral_items(kwargs),
            max_output_tokens=as_int(kwargs.get("max_output_tokens")) or None,
            stream=kwargs.get("stream") is True,
            tools=tools if isinstance(tools, (list, tuple)) else (),
            service_tier=_asked_tier(kwargs),
        )

    def apply(self, call: gate.Call, kwargs: dict[str, Any]) -> bool:
        super().apply(call, kwargs)
        decision = call.decision
        if decision.max_output_tokens is not None:
            kwargs["max_output_tokens"] = decision.max_output_tokens
        if decision.messages is not None and not isinstance(kwargs.get("input"), str):
            kwargs["input"] = native_items(decision.messages)
        return False

    def found(self, response: Any) -> Found:
        raw = field(response, "usage")
        usage = responses_usage(raw, response)
        rid = field(response, "id")
        return Found(
            usage,
            field(response, "model"),
            rid,
            _reported_cost(raw),
            finish_reasons=_status(response),
            tool_calls=responses_tool_calls(field(response, "output")),
        )

    def content(self, response: Any) -> str | None:
        text = getattr(response, "output_text", None)  # the SDK's property: every output_text part
        return text if isinstance(text, str) else None

    def accountant(self, injected: bool) -> ResponseStreamAccountant:
        return ResponseStreamAccountant()


class ResponsesHelperSurface(ResponsesSurface):
    """``responses.stream()``: a stream manager yielding the same events."""

    manager = True

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        return super().request(kwargs)._replace(stream=True)


def routes(client: Any) -> dict[tuple[str, ...], Any]:
    """Which attribute paths of ``client`` go through the gate, and how."""
    import openai

    provider = provider_for(client)
    server = server_of(getattr(client, "base_url", None))
    chat = ChatSurface(provider, server)
    responses = ResponsesSurface(provider, server)
    surfaces: dict[tuple[str, ...], Surface] = {
        ("chat", "completions", "create"): chat,
        ("chat", "completions", "parse"): chat,
        ("chat", "completions", "stream"): ChatHelperSurface(provider, server),
        ("responses", "create"): responses,
        ("responses", "parse"): responses,
        ("responses", "stream"): ResponsesHelperSurface(provider, server),
        ("completions", "create"): CompletionsSurface(provider, server),
        ("embeddings", "create"): EmbeddingsSurface(provider, server),
    }
    raw = [p for p in surfaces if p[-1] in ("create", "parse")]
    is_async = isinstance(client, openai.AsyncOpenAI)
    return {
        **routes_for(surfaces, is_async=is_async, raw=raw),
        **media_routes(provider, server, is_async=is_async),
    }
