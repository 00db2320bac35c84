"""Adapter for the Anthropic SDK (``anthropic.Anthropic`` / ``anthropic.AsyncAnthropic``).

Translation only, one :class:`~tollgate.providers.base.Surface` per API shape:

- ``messages.create`` / ``.parse`` (a ``Message``, or with ``stream=True`` a stream of raw
  events) and ``messages.stream()`` (a stream manager: pre-flight runs when it is entered);
- the same under ``beta.messages``;
- ``completions.create`` (legacy Text Completions, ``/v1/complete``), for SDK versions that
  still have it: its responses carry no usage, so tollgate estimates and flags ``estimated``;

``create`` and ``parse`` also under ``with_raw_response`` / ``with_streaming_response``, at
the resource (``client.messages.with_raw_response.create``) and at the client
(``client.with_raw_response.messages.create``). ``messages.count_tokens`` is free and is not
gated; neither are message batches (billed later, per result) nor the SDK's own loops
(``beta.messages.tool_runner``, message threads), which call the API from inside the SDK.

Requests. The top-level ``system`` prompt becomes a neutral system message (kept by a
truncate, and never moved into ``messages``); each native message becomes one chat-shaped
message carrying it under :data:`~tollgate.providers.base.NATIVE`. An assistant message's
``tool_use`` blocks become ``tool_calls`` and a user message of ``tool_result`` blocks
becomes a ``tool`` message, so a truncate drops a tool call together with its results.

Edits. A clamp sets ``max_tokens``. Anthropic requires ``thinking.budget_tokens`` to be at
least 1024 and below ``max_tokens``: when a clamp leaves the budget at or above the new cap,
it is lowered to ``max_tokens - 1``, or, when that would be under 1024, thinking is turned
off (``{"type": "disabled"}``) rather than sending a request the API rejects. A truncate
rewrites ``messages``; when the caller's conversation opened with a user turn, leading
assistant turns (and the tool results answering them) left at the front are dropped too,
since Bedrock and Vertex reject a conversation that opens with an assistant turn (this only
removes tokens, so the call still fits the budget).

Usage. Anthropic's ``input_tokens`` excludes the cache: tollgate's ``input_tokens`` is
``input_tokens + cache_read_input_tokens + cache_creation_input_tokens`` (see
:mod:`tollgate.request`). One-hour cache writes are counted in
``units["cache_write_1h_tokens"]`` and priced at their own rate; thinking tokens are
``usage.output_tokens_details.thinking_tokens`` when the response has it. A stream starts
from ``message_start.message.usage``; each ``message_delta.usage`` then replaces every
field it carries (its counts are cumulative).

OpenTelemetry. The Anthropic SDK emits its own CLIENT span per call
(``anthropic.messages.create``). tollgate's span is the current span while the SDK call
runs, so the SDK's span nests under tollgate's, as its child: tollgate's span is the one
that carries the cost, budget and tag attributes, the SDK's the HTTP details. For one span
per call, create the client with ``open_telemetry=False``.

Tool calls (``CallRecord.tool_calls``): ``tool_use``, ``server_tool_use`` and ``mcp_tool_use``
content blocks, in a stream as their ``content_block_start`` arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tollgate import gate
from tollgate.providers.base import (
    NATIVE,
    Accountant,
    Found,
    Surface,
    as_int,
    count_of,
    field,
    listed,
    native_items,
    routes_for,
    server_of,
)
from tollgate.providers.fields import Known, items_of, unknown_fields
from tollgate.request import LLMRequest, Usage, UsagePart

#: Anthropic's smallest ``thinking.budget_tokens``.
MIN_THINKING_BUDGET = 1024

# Client classes of the SDK that bill through another provider's price list.
_CLOUD_PROVIDERS = (("Bedrock", "bedrock"), ("Vertex", "vertex_ai"))


def provider_for(client: Any) -> str:
    """The provider behind an Anthropic SDK client: ``"anthropic"``, or the cloud reselling it.

    >>> import anthropic
    >>> provider_for(anthropic.Anthropic(api_key="x"))
    'anthropic'
    """
    name = type(client).__name__
    for marker, provider in _CLOUD_PROVIDERS:
        if marker in name:
            return provider
    return "anthropic"


# -- usage ------------------------------------------------------------------------------------


def usage_from(raw: Any) -> Usage | None:
    """Normalised usage from a Messages ``usage`` object or dict (None when missing or malformed).

    >>> u = usage_from({"input_tokens": 21, "output_tokens": 393, "cache_read_input_tokens": 1800,
    ...                 "cache_creation_input_tokens": 248})
    >>> (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens)
    (2069, 1800, 248)

    A call with ``usage.iterations`` (compaction, an advisor on another model, a server-side
    fallback) is billed as the sum of its iterations, each a part priced at its own model's
    rates: the top-level counts leave the compaction step and the advisor out.

    >>> u = usage_from({"input_tokens": 23000, "output_tokens": 1000, "iterations": [
    ...     {"type": "compaction", "input_tokens": 180000, "output_tokens": 3500},
    ...     {"type": "message", "input_tokens": 23000, "output_tokens": 1000}]})
    >>> (u.input_tokens, u.output_tokens, [p.kind for p in u.parts])
    (203000, 4500, ['compaction', 'message'])
    """
    if raw is None:
        return None
    counts = _counts(raw)
    if counts is None:
        return None  # malformed (a broken proxy, a partial body): the caller estimates instead
    tools = field(raw, "server_tool_use")
    units = dict(counts.units)
    for name in ("web_search_requests", "web_fetch_requests"):
        if requests := as_int(field(tools, name)):
            units[name] = requests
    tier = "fast" if field(raw, "speed") == "fast" else field(raw, "service_tier")
    unknown = unknown_fields(raw, _KNOWN)
    iterations = field(raw, "iterations")
    parts = _parts_of(iterations, counts) if iterations else ()
    if parts:
        counts = _summed(parts)
        units.update(counts.units)  # the 1h cache writes of every part, for the record
        unknown.update(_unknown_iterations(iterations))
    return Usage(
        input_tokens=counts.input_tokens,
        output_tokens=counts.output_tokens,
        cache_read_tokens=counts.cache_read_tokens,
        cache_write_tokens=counts.cache_write_tokens,
        reasoning_tokens=counts.reasoning_tokens,
        units=units,
        service_tier=tier if tier in ("priority", "batch", "fast") else None,
        parts=parts,
        unknown=unknown,
    )


def _counts(raw: Any) -> Usage | None:
    """The token counts of one usage object or iteration entry (None when malformed)."""
    input_tokens, output_tokens = count_of(field(raw, "input_tokens")), count_of(field(raw, "output_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    cache_read = as_int(field(raw, "cache_read_input_tokens"))
    cache_write = as_int(field(raw, "cache_creation_input_tokens"))
    write_1h = as_int(field(field(raw, "cache_creation"), "ephemeral_1h_input_tokens"))
    return Usage(
        input_tokens=input_tokens + cache_read + cache_write,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=as_int(field(field(raw, "output_tokens_details"), "thinking_tokens")),
        units={"cache_write_1h_tokens": write_1h} if write_1h else {},
    )


# Iterations the top-level counts leave out (Anthropic: "A compaction entry's tokens are not
# included in the top-level usage fields"; an advisor runs on another model, billed apart).
_APART = frozenset({"compaction", "advisor_message"})


def _parts_of(iterations: Any, top: Usage) -> tuple[UsagePart, ...]:
    """One part per iteration; an entry that cannot be read leaves the top-level counts as the
    bill for what the top level covers. The parts the top level covers never bill less than it:
    a shortfall (an iteration list the provider cut short) is a part of its own."""
    if not isinstance(iterations, list | tuple):
        return ()
    parts: list[UsagePart] = []
    for entry in iterations:
        counts = _counts(entry)
        if counts is None:
            return ()
        model = field(entry, "model")
        kind = field(entry, "type")
        parts.append(UsagePart(model if isinstance(model, str) and model else None, counts, str(kind or "")))
    covered = [p.usage for p in parts if p.kind not in _APART]
    listed_in = sum(u.input_tokens for u in covered)
    listed_out = sum(u.output_tokens for u in covered)
    if top.input_tokens > listed_in or top.output_tokens > listed_out:
        short = Usage(max(top.input_tokens - listed_in, 0), max(top.output_tokens - listed_out, 0))
        parts.append(UsagePart(None, short, "unlisted"))
    return tuple(parts)


def _summed(parts: tuple[UsagePart, ...]) -> Usage:
    total = Usage()
    for part in parts:
        total = total + part.usage
    return total


_KNOWN_ITERATION: Known = {
    "type": frozenset({"message", "compaction", "advisor_message", "fallback_message"}),
    "model": None,
    "input_tokens": None,
    "output_tokens": None,
    "cache_read_input_tokens": None,
    "cache_creation_input_tokens": None,
    "cache_creation": {"ephemeral_5m_input_tokens": None, "ephemeral_1h_input_tokens": None},
    "output_tokens_details": {"thinking_tokens": None},
}


def _unknown_iterations(iterations: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for entry in iterations:
        found.update(unknown_fields(entry, _KNOWN_ITERATION, "iterations[]."))
    return found


#: The usage fields read above, and those known to carry no charge of their own.
_KNOWN: Known = {
    "input_tokens": None,
    "output_tokens": None,
    "cache_read_input_tokens": None,
    "cache_creation_input_tokens": None,
    "cache_creation": {"ephemeral_5m_input_tokens": None, "ephemeral_1h_input_tokens": None},
    "output_tokens_details": {"thinking_tokens": None},
    "server_tool_use": {"web_search_requests": None, "web_fetch_requests": None},
    "service_tier": frozenset({"standard", "priority", "batch"}),
    "iterations": None,  # read above, entry by entry
    # Where the call ran: "global" costs the list price; US-only inference ("us") costs more,
    # which tollgate does not price, so it is reported as unknown.
    "inference_geo": frozenset({"global", "not_available"}),
    "speed": frozenset({"standard", "fast"}),  # fast mode: billed as the "fast" tier
}


#: Content blocks that are tool calls: the caller's tools, Anthropic's server tools (web search
#: and fetch, code execution, tool search) and the MCP connector's.
TOOL_CALL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def content_tool_calls(content: Any) -> int:
    """The tool calls among a message's ``content`` blocks (see :data:`TOOL_CALL_BLOCKS`).

    >>> content_tool_calls([{"type": "text"}, {"type": "tool_use"}, {"type": "server_tool_use"}])
    2
    """
    try:
        return sum(1 for block in listed(content) if str(field(block, "type")) in TOOL_CALL_BLOCKS)
    except Exception:  # a block that cannot even be read: nothing countable
        return 0


# Which field of a content_block_delta holds the generated text, by delta type.
_DELTA_TEXT = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}


class MessageStreamAccountant(Accountant):
    """Reads Messages stream events: SDK event objects (``create(stream=True)``, the events of
    ``messages.stream()``) or their JSON dicts (``with_streaming_response.iter_lines()``).

    ``usage`` is the running count: ``message_start`` gives the input (and a provisional
    output), each ``message_delta`` the cumulative figures. The message is complete once a
    ``message_delta`` carries its ``stop_reason`` (only ``message_stop`` follows); a stream
    left before that is recorded as abandoned, its output the larger of the running count and
    the text that streamed.
    """

    __slots__ = ("_usage",)

    def __init__(self) -> None:
        super().__init__()
        self._usage: dict[str, Any] = {}

    def _merge(self, raw: Any) -> None:
        # A later event's fields replace the earlier ones (message_delta counts are cumulative).
        for name, value in items_of(raw):
            if value is not None:
                self._usage[name] = value

    def observe(self, event: Any) -> bool:
        try:
            kind = field(event, "type")
            if kind == "content_block_delta":
                delta = field(event, "delta")
                piece = field(delta, _DELTA_TEXT.get(field(delta, "type"), ""))
                if piece:
                    self.text.append(piece)
            elif kind == "content_block_start":
                self.tool_calls += content_tool_calls((field(event, "content_block"),))
            elif kind == "message_start":
                message = field(event, "message")
                self.response_model = field(message, "model") or self.response_model
                self.response_id = field(message, "id") or self.response_id
                self._merge(field(message, "usage"))
                self.usage = usage_from(self._usage) or self.usage
            elif kind == "message_delta":
                self._merge(field(event, "usage"))
                # A malformed count drops the running usage: the record is then estimated.
                self.usage = usage_from(self._usage)
                reason = field(field(event, "delta"), "stop_reason")
                if reason:
                    self.finish_reasons[:] = (str(reason),)
                    self.done = True
            elif kind == "message_stop":
                self.done = True
        except Exception:  # a malformed event must never break the caller's stream
            pass
        return True

    def text_of(self, event: Any) -> str | None:
        if field(event, "type") != "content_block_delta":
            return None
        delta = field(event, "delta")
        text = field(delta, "text") if field(delta, "type") == "text_delta" else None
        return text if isinstance(text, str) else None


class CompletionStreamAccountant(Accountant):
    """Reads legacy Text Completions stream events (``completion``): text only, no usage."""

    __slots__ = ()

    def observe(self, event: Any) -> bool:
        try:
            if field(event, "type") == "completion":
                self.response_model = self.response_model or field(event, "model")
                self.response_id = self.response_id or field(event, "id") or field(event, "log_id")
                piece = field(event, "completion")
                if piece:
                    self.text.append(piece)
                if field(event, "stop_reason"):
                    self.done = True
        except Exception:
            pass
        return True

    def text_of(self, event: Any) -> str | None:
        piece = field(event, "completion") if field(event, "type") == "completion" else None
        return piece if isinstance(piece, str) else None


# -- requests ---------------------------------------------------------------------------------


def _json(value: Any) -> str:
    if hasattr(value, "model_dump"):  # an SDK object (a content block copied from a response)
        value = value.model_dump(exclude_none=True)
    return json.dumps(value, default=str)


def _text_of_blocks(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        return ""
    return "\n".join(str(field(b, "text") or "") for b in content)


def _part(block: Any) -> Any:
    """A content block as a part the token counter understands (text or image)."""
    if isinstance(block, str):
        return block
    kind = field(block, "type")
    if kind == "text":
        return {"type": "text", "text": str(field(block, "text") or "")}
    if kind == "thinking":
        return {"type": "text", "text": str(field(block, "thinking") or "")}
    if kind == "redacted_thinking":
        return {"type": "text", "text": ""}  # encrypted; its size says nothing of its tokens
    if kind == "image":
        return {"type": "image"}  # counted as an image of the common worst-case size
    if kind == "document":
        source = field(block, "source")
        source_type = field(source, "type")
        if source_type == "text":
            return {"type": "text", "text": str(field(source, "data") or "")}
        if source_type == "content":
            return {"type": "text", "text": _text_of_blocks(field(source, "content"))}
        return {"type": "image"}  # a PDF or file: counted like one page image, not its base64
    if kind == "search_result":
        title = str(field(block, "title") or "")
        return {"type": "text", "text": f"{title}\n{_text_of_blocks(field(block, 'content'))}"}
    return {"type": "text", "text": _json(block)}  # server tool calls and results, and the rest


def _parts(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, (list, tuple)):
        return [_part(b) for b in content]
    return []


def _neutral(message: Any) -> dict[str, Any]:
    """One native message as a chat-shaped message that carries it."""
    role = field(message, "role")
    content = field(message, "content")
    if isinstance(content, str):
        return {"role": role, "content": content, NATIVE: (message,)}
    parts: list[Any] = []
    calls: list[dict[str, Any]] = []
    results = False
    for block in content if isinstance(content, (list, tuple)) else ():
        kind = field(block, "type")
        if kind == "tool_use":
            name = str(field(block, "name") or "")
            calls.append({"function": {"name": name, "arguments": _json(field(block, "input"))}})
        elif kind == "tool_result":
            results = True
            parts.extend(_parts(field(block, "content")))
        else:
            parts.append(_part(block))
    neutral: dict[str, Any] = {
        "role": "tool" if results and role == "user" else role,
        "content": parts,
        NATIVE: (message,),
    }
    if calls:
        neutral["tool_calls"] = calls
    return neutral


def _neutral_messages(kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``system`` + ``messages`` as chat-shaped messages (the system prompt carries no native item)."""
    out: list[dict[str, Any]] = []
    system = kwargs.get("system")
    if isinstance(system, str):
        if system:
            out.append({"role": "system", "content": system, NATIVE: ()})
    elif isinstance(system, (list, tuple)) and system:
        out.append({"role": "system", "content": _parts(system), NATIVE: ()})
    messages = kwargs.get("messages")
    out.extend(_neutral(m) for m in (messages if isinstance(messages, (list, tuple)) else ()))
    return out


def _neutral_tools(tools: Any) -> list[Any]:
    """Custom tools in OpenAI's function shape (counted by their schema); server tools as they are."""
    out: list[Any] = []
    for tool in tools if isinstance(tools, (list, tuple)) else ():
        schema = field(tool, "input_schema")
        if isinstance(schema, Mapping):
            function = {
                "name": str(field(tool, "name") or ""),
                "description": str(field(tool, "description") or ""),
                "parameters": schema,
            }
            out.append({"type": "function", "function": function})
        else:
            out.append(tool if isinstance(tool, Mapping) else {"tool": _json(tool)})
    return out


def _listed(kwargs: dict[str, Any], name: str) -> None:
    """Read an iterable argument (a generator can be read once) into a list, in ``kwargs``."""
    value = kwargs.get(name)
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping, list, tuple)):
        kwargs[name] = list(value)


def _opens(item: Any) -> bool:
    """Whether a native message may open a conversation: a user turn that answers no tool call."""
    if field(item, "role") != "user":
        return False
    content = field(item, "content")
    blocks = content if isinstance(content, (list, tuple)) else ()
    return not any(field(b, "type") == "tool_result" for b in blocks)


def _user_first(items: list[Any]) -> list[Any]:
    """``items`` without the assistant turns (and their tool results) a truncate left in front."""
    start = 0
    while start < len(items) - 1 and not _opens(items[start]):
        start += 1
    return items[start:]


def _fit_thinking(kwargs: dict[str, Any], max_tokens: int) -> None:
    """Keep ``thinking.budget_tokens`` below a clamped ``max_tokens`` (see the module doc)."""
    thinking = kwargs.get("thinking")
    if field(thinking, "type") != "enabled" or as_int(field(thinking, "budget_tokens")) < max_tokens:
        return
    if max_tokens - 1 >= MIN_THINKING_BUDGET:
        base = dict(thinking) if isinstance(thinking, Mapping) else {"type": "enabled"}
        kwargs["thinking"] = {**base, "budget_tokens": max_tokens - 1}
    else:
        kwargs["thinking"] = {"type": "disabled"}


class MessagesSurface(Surface):
    """``messages.create`` and ``.parse`` (and their ``beta`` twins): capped by ``max_tokens``."""

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        for name in ("messages", "system", "tools"):
            _listed(kwargs, name)
        return self.new_request(
            str(kwargs.get("model") or ""),
            messages=_neutral_messages(kwargs),
            max_output_tokens=count_of(kwargs.get("max_tokens")),  # 0 is a real cap (pre-warms a cache)
            stream=kwargs.get("stream") is True,
            tools=_neutral_tools(kwargs.get("tools")),
            service_tier="fast" if kwargs.get("speed") == "fast" else None,  # fast mode's own price
        )

    def apply(self, call: gate.Call, kwargs: dict[str, Any]) -> bool:
        super().apply(call, kwargs)
        decision = call.decision
        if decision.max_output_tokens is not None:
            kwargs["max_tokens"] = decision.max_output_tokens
            _fit_thinking(kwargs, decision.max_output_tokens)
        if decision.messages is not None:
            original = kwargs.get("messages") or ()
            kept = native_items(decision.messages)
            kwargs["messages"] = _user_first(kept) if original and _opens(original[0]) else kept
        return False

    def found(self, response: Any) -> Found:
        reason = field(response, "stop_reason")
        usage = usage_from(field(response, "usage"))
        return Found(
            usage,
            field(response, "model"),
            field(response, "id"),
            text=self.content(response) if usage is None else None,  # to estimate the output from
            finish_reasons=(str(reason),) if reason else (),
            tool_calls=content_tool_calls(field(response, "content")),
        )

    def content(self, response: Any) -> str | None:
        texts = [field(b, "text") for b in field(response, "content") or () if field(b, "type") == "text"]
        return "".join(t for t in texts if isinstance(t, str))

    def accountant(self, injected: bool) -> MessageStreamAccountant:
        return MessageStreamAccountant()


class MessagesHelperSurface(MessagesSurface):
    """``messages.stream()``: a stream manager (``MessageStream``: events, ``text_stream``,
    ``get_final_message()``), sent when entered."""

    manager = True

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        return super().request(kwargs)._replace(stream=True)


class CompletionsSurface(Surface):
    """``completions.create`` (legacy Text Completions): a ``prompt``, capped by
    ``max_tokens_to_sample``; the API reports no usage."""

    operation = "text_completion"

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        prompt = kwargs.get("prompt")
        return self.new_request(
            str(kwargs.get("model") or ""),
            prompt=[prompt] if isinstance(prompt, str) else [],
            max_output_tokens=count_of(kwargs.get("max_tokens_to_sample")),
            stream=kwargs.get("stream") is True,
        )

    def apply(self, call: gate.Call, kwargs: dict[str, Any]) -> bool:
        super().apply(call, kwargs)
        if call.decision.max_output_tokens is not None:
            kwargs["max_tokens_to_sample"] = call.decision.max_output_tokens
        return False

    def found(self, response: Any) -> Found:
        completion = field(response, "completion")  # no usage in this API: the output is estimated
        text = completion if isinstance(completion, str) else None
        reason = field(response, "stop_reason")
        rid = field(response, "id") or field(response, "log_id")
        finish = (str(reason),) if reason else ()
        return Found(None, field(response, "model"), rid, text=text, finish_reasons=finish)

    def content(self, response: Any) -> str | None:
        completion = field(response, "completion")
        return completion if isinstance(completion, str) else None

    def accountant(self, injected: bool) -> CompletionStreamAccountant:
        return CompletionStreamAccountant()


_RAW_MODES = ("with_raw_response", "with_streaming_response")


def routes(client: Any) -> dict[tuple[str, ...], Any]:
    """Which attribute paths of ``client`` go through the gate, and how."""
    import anthropic

    provider = provider_for(client)
    server = server_of(getattr(client, "base_url", None))
    messages = MessagesSurface(provider, server)
    helper = MessagesHelperSurface(provider, server)
    surfaces: dict[tuple[str, ...], Surface] = {
        ("messages", "create"): messages,
        ("messages", "parse"): messages,
        ("messages", "stream"): helper,
        ("beta", "messages", "create"): messages,
        ("beta", "messages", "parse"): messages,
        ("beta", "messages", "stream"): helper,
        ("completions", "create"): CompletionsSurface(provider, server),
    }
    raw = [p for p in surfaces if p[-1] in ("create", "parse")]
    # AnthropicBedrock, AnthropicVertex, ...: not subclasses of AsyncAnthropic, named alike.
    is_async = isinstance(client, anthropic.AsyncAnthropic) or type(client).__name__.startswith("Async")
    table = routes_for(surfaces, is_async=is_async, raw=raw)
    # client.with_raw_response.messages.create is client.messages.with_raw_response.create.
    for path, hook in list(table.items()):
        if len(path) > 2 and path[-2] in _RAW_MODES:
            table[(path[-2], *path[:-2], path[-1])] = hook
    return table
