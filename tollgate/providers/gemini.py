"""Adapter for the Google Gen AI SDK (``google-genai``): the Gemini Developer API and Vertex AI.

Translation only, one :class:`~tollgate.providers.base.Surface` per method, sync under
``client.models`` and async under ``client.aio.models``:

- ``generate_content``;
- ``generate_content_stream`` (a generator of ``GenerateContentResponse`` chunks; the async
  method returns an async generator once awaited). The SDK sends the request when the first
  chunk is read, so an HTTP error surfaces while iterating;
- ``embed_content``;

and ``client.chats`` / ``client.aio.chats``, whose sessions call the gated methods.
``count_tokens`` and ``compute_tokens`` are free and pass through ungated. Budget logic lives
in the gate, never here.

The provider is ``"vertex_ai"`` for a client made with ``vertexai=True`` (``enterprise=True``),
else ``"gemini"``. Gemini's usage is normalised to tollgate's convention
(:mod:`tollgate.request`): ``promptTokenCount`` already includes cached content, and
``toolUsePromptTokenCount`` (tool results fed back to the model) is billed as input, so both
count as input; ``candidatesTokenCount`` excludes thinking, so ``thoughtsTokenCount`` is added
to the output and recorded as its reasoning part.

Known limit: with automatic function calling (Python functions as ``tools``), one
``models.generate_content`` call sends several requests inside the SDK and returns only the
last response's usage, which is what gets recorded (and its tool calls: none, the SDK ran
them). Chat sessions' streaming (``send_message_stream``) runs that loop through the gated
method, one record per request.

Tool calls (``CallRecord.tool_calls``): ``function_call``, ``executable_code`` (code execution)
and ``tool_call`` (a server-side tool) parts, over every candidate and, in a stream, every chunk
(see :func:`part_tool_calls`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tollgate import gate
from tollgate.providers.base import (
    NATIVE,
    Accountant,
    Found,
    Server,
    Surface,
    as_int,
    listed,
    native_items,
    routes_for,
    server_of,
)
from tollgate.providers.fields import Known, items_of, unknown_fields
from tollgate.request import LLMRequest, Usage

# -- reading SDK objects and JSON dicts -------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _get(obj: Any, name: str) -> Any:
    """``obj.name`` for SDK objects; ``obj[name]``, else the wire's ``obj[nameInCamelCase]``,
    for dicts (the SDK takes dicts spelled either way). None when absent."""
    if isinstance(obj, dict):
        value = obj.get(name)
        return obj.get(_camel(name)) if value is None else value
    return getattr(obj, name, None)


def _count(value: Any) -> int | None:
    """A token count from the wire (a non-negative number), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return int(value)


def _json(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump(mode="json", exclude_none=True)
    return json.dumps(value, default=str, separators=(",", ":"))


# -- usage ------------------------------------------------------------------------------------


def _modality_tokens(details: Any, modality: str) -> int:
    """Tokens of one modality in a ``*_tokens_details`` list (``[{modality, tokenCount}]``)."""
    total = 0
    for item in details or ():
        kind = _get(item, "modality")
        if kind == modality or (modality == "AUDIO" and kind == 4):  # 4: AUDIO in int-encoded enums
            total += _count(_get(item, "token_count")) or 0
    return total


def usage_from(raw: Any) -> Usage | None:
    """Normalised usage from ``usage_metadata`` (an SDK object, or the wire's ``usageMetadata``).

    None when there is none or it is malformed (no prompt count, a count that is not one).

    >>> u = usage_from({"promptTokenCount": 32, "candidatesTokenCount": 341,
    ...                 "thoughtsTokenCount": 103, "toolUsePromptTokenCount": 720})
    >>> (u.input_tokens, u.output_tokens, u.reasoning_tokens)
    (752, 444, 103)
    >>> usage_from({"trafficType": "ON_DEMAND"}) is None
    True
    """
    if raw is None:
        return None
    prompt = _count(_get(raw, "prompt_token_count"))
    if prompt is None:
        return None
    parts: list[int] = []
    for name in (
        "candidates_token_count",
        "thoughts_token_count",
        "cached_content_token_count",
        "tool_use_prompt_token_count",
    ):
        value = _get(raw, name)
        count = _count(value)
        if value is not None and count is None:
            return None  # a count that is not a count: estimate rather than trust the rest
        parts.append(count or 0)
    candidates, thoughts, cached, tool_use = parts
    audio_in = _modality_tokens(_get(raw, "prompt_tokens_details"), "AUDIO")
    audio_cached = _modality_tokens(_get(raw, "cache_tokens_details"), "AUDIO")
    unknown = unknown_fields(raw, _KNOWN)
    return Usage(
        input_tokens=prompt + tool_use,
        output_tokens=candidates + thoughts,
        cache_read_tokens=min(cached, prompt),
        reasoning_tokens=thoughts,
        audio_input_tokens=max(0, audio_in - audio_cached),
        audio_output_tokens=_modality_tokens(_get(raw, "candidates_tokens_details"), "AUDIO"),
        service_tier=_tier(raw, unknown),
        unknown=unknown,
    )


# The Gemini API reports the tier it served (serviceTier), Vertex AI the traffic type.
_TIERS = {
    "priority": "priority",
    "flex": "flex",
    "on_demand_priority": "priority",
    "on_demand_flex": "flex",
    "batch": "flex",  # as LiteLLM bills Vertex batch traffic
}
# Some JSON encoders send the proto enum's number: 0 unspecified, 1 on demand.
_STANDARD_TIERS = frozenset({"standard", "unspecified", "on_demand", "traffic_type_unspecified", "0", "1"})


def _tier(raw: Any, unknown: dict[str, Any]) -> str | None:
    """The billed tier a usage names; a tier tollgate does not price (provisioned throughput,
    off-peak) is reported as unknown."""
    for name in ("service_tier", "traffic_type"):
        value = _get(raw, name)
        if value is None:
            continue
        text = str(getattr(value, "value", value)).lower()
        if text in _TIERS:
            return _TIERS[text]
        if text not in _STANDARD_TIERS:
            unknown[name] = text
    return None


def _camel_too(known: Known) -> Known:
    """``known`` under both spellings: the SDK's snake_case and the wire's camelCase."""
    both: dict[str, Any] = {}
    for name, spec in known.items():
        inner = _camel_too(spec) if isinstance(spec, Mapping) else spec
        both[name] = both[_camel(name)] = inner
    return both


_KNOWN: Known = _camel_too(
    {
        "prompt_token_count": None,
        "candidates_token_count": None,
        "thoughts_token_count": None,
        "cached_content_token_count": None,
        "tool_use_prompt_token_count": None,
        "total_token_count": None,
        # Breakdowns by modality of the counts above (read for audio; text and images bill alike).
        "prompt_tokens_details": None,
        "cache_tokens_details": None,
        "candidates_tokens_details": None,
        "tool_use_prompt_tokens_details": None,
        "service_tier": None,  # read by _tier
        "traffic_type": None,
    }
)


def _grounding(response: Any) -> dict[str, int]:
    """The grounding requests a response bills, as LiteLLM counts them: each distinct, non-empty
    ``webSearchQueries`` entry once, across candidates; the queries of a Maps-only item (Maps
    chunks and no web ones) as Maps grounding, at least one when any item grounded on Maps. The
    price entry says whether Google bills per query or once per grounded prompt."""
    try:
        web: set[str] = set()
        maps: set[str] = set()
        on_maps = False
        for candidate in _get(response, "candidates") or ():
            item = _get(candidate, "grounding_metadata")
            if item is None:
                continue
            kinds = {k for chunk in _get(item, "grounding_chunks") or () for k, v in items_of(chunk) if v}
            is_maps = "maps" in kinds or bool(_get(item, "google_maps_widget_context_token"))
            on_maps = on_maps or is_maps
            queries = {q for q in _get(item, "web_search_queries") or () if isinstance(q, str) and q}
            (maps if is_maps and "web" not in kinds else web).update(queries)
        units = {"web_search_requests": len(web)} if web else {}
        if on_maps:
            units["maps_grounding_requests"] = max(len(maps), 1)
        return units
    except Exception:
        return {}


def _reason(candidate: Any) -> str | None:
    reason = _get(candidate, "finish_reason")
    if reason is None:
        return None
    return str(getattr(reason, "value", reason))  # the SDK's FinishReason enum, or the JSON string


def response_found(response: Any) -> Found:
    """Usage, model, id and finish reasons of a ``GenerateContentResponse`` (or its JSON)."""
    reasons = tuple(r for c in _get(response, "candidates") or () if (r := _reason(c)))
    usage = usage_from(_get(response, "usage_metadata"))
    if usage is not None and (grounded := _grounding(response)):
        usage = dataclasses.replace(usage, units={**usage.units, **grounded})
    return Found(
        usage,
        _get(response, "model_version") or None,
        _get(response, "response_id") or None,
        text=response_text(response) or None if usage is None else None,  # to estimate the output from
        finish_reasons=reasons,
        tool_calls=response_tool_calls(response),
    )


def response_tool_calls(response: Any) -> int:
    """The tool calls a response asks for, over its candidates (see :func:`part_tool_calls`).

    >>> response_tool_calls({"candidates": [{"content": {"parts": [
    ...     {"text": "Let me check."}, {"functionCall": {"name": "weather", "args": {}}},
    ...     {"executableCode": {"language": "PYTHON", "code": "print(1)"}}]}}]})
    2
    """
    count = 0
    with contextlib.suppress(Exception):  # a malformed response: what was read so far
        for candidate in listed(_get(response, "candidates")):
            count += part_tool_calls(_get(_get(candidate, "content"), "parts"))[0]
    return count


def part_tool_calls(parts: Any, continued: bool = False) -> tuple[int, bool]:
    """The tool calls among a candidate's ``parts``, and whether the last one is to be continued.

    A tool call is a ``function_call`` part (the caller's function), an ``executable_code`` part
    (the code execution tool: the model writes code the server runs) or a ``tool_call`` part (a
    built-in tool the server runs). Google Search grounding is not a part, and not counted.
    Vertex AI can stream one function call's arguments over several parts (``will_continue``):
    the parts after the first continue it (``continued``: the previous chunk's last part said so).
    """
    count = 0
    for part in listed(parts):
        call = _get(part, "function_call")
        if call is not None:
            count += not continued
            continued = _get(call, "will_continue") is True
        elif _get(part, "executable_code") is not None or _get(part, "tool_call") is not None:
            count += 1
    return count, continued


def response_text(response: Any) -> str:
    """The answer text of a response's first candidate (thought parts left out, like ``.text``)."""
    texts = []
    for candidate in (_get(response, "candidates") or [])[:1]:
        for part in _get(_get(candidate, "content"), "parts") or ():
            text = _get(part, "text")
            if isinstance(text, str) and not _get(part, "thought"):
                texts.append(text)
    return "".join(texts)


def embed_usage(response: Any) -> Usage | None:
    """Input tokens of an ``EmbedContentResponse``: its ``usage_metadata`` when sent, else the
    sum of Vertex's per-embedding ``statistics.token_count``; None when neither is there (the
    Gemini API reports no usage for embeddings: tollgate estimates).

    >>> embed_usage({"embeddings": [{"statistics": {"token_count": 6.0}},
    ...                             {"statistics": {"token_count": 4.0}}]}).input_tokens
    10
    """
    usage = usage_from(_get(response, "usage_metadata"))
    if usage is not None:
        return usage
    embeddings = _get(response, "embeddings") or ()
    counts = [_count(_get(_get(e, "statistics"), "token_count")) for e in embeddings]
    if not counts or any(c is None for c in counts):
        return None
    return Usage(input_tokens=sum(c or 0 for c in counts))


# -- requests ---------------------------------------------------------------------------------


def model_id(model: Any) -> str:
    """The model's id, without the resource path the SDK also accepts.

    >>> model_id("models/gemini-2.5-flash"), model_id("google/gemini-2.5-pro")
    ('gemini-2.5-flash', 'gemini-2.5-pro')
    >>> model_id("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro")
    'gemini-2.5-pro'
    """
    name = str(model or "")
    head, sep, tail = name.rpartition("models/")
    if sep and tail and (not head or head.endswith("/")):
        return tail
    return name.removeprefix("google/")


def _swap_model(original: Any, new: str) -> str:
    """``new`` spelled like ``original`` (``models/...``, a Vertex resource path)."""
    name = str(original or "")
    current = model_id(name)
    if "/" in new or not name.endswith(current):
        return new
    return name[: len(name) - len(current)] + new


def _part_pieces(part: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """A part as chat content pieces, tool calls, and whether it is a function response."""
    if isinstance(part, str):
        return [{"type": "text", "text": part}], [], False
    pieces: list[dict[str, Any]] = []
    text = _get(part, "text")
    if text:
        pieces.append({"type": "text", "text": str(text)})
    call = _get(part, "function_call")
    if call is not None:
        function = {"name": _get(call, "name"), "arguments": _json(_get(call, "args"))}
        return pieces, [{"type": "function", "function": function}], False
    response = _get(part, "function_response")
    if response is not None:
        body = {"name": _get(response, "name"), "response": _get(response, "response")}
        pieces.append({"type": "text", "text": _json(body)})
        return pieces, [], True
    if _is_media(part):
        pieces.append({"type": "image"})  # media: counted at the default image size
    for name in ("executable_code", "code_execution_result", "tool_call", "tool_response"):
        value = _get(part, name)
        if value is not None:
            pieces.append({"type": "text", "text": _json(value)})
    return pieces, [], False


def _is_media(part: Any) -> bool:
    """Inline or uploaded media: a Part with ``inline_data`` / ``file_data``, an uploaded
    ``File`` (``uri`` and ``mime_type``), or a PIL image (which the SDK also takes as a part)."""
    if _get(part, "inline_data") is not None or _get(part, "file_data") is not None:
        return True
    if _get(part, "uri") is not None and _get(part, "mime_type") is not None:
        return True
    return not isinstance(part, dict) and "image" in type(part).__name__.lower()


def _message(role: Any, parts: Iterable[Any], native: tuple[Any, ...]) -> dict[str, Any]:
    """One Gemini content as a chat-shaped message: ``model`` -> assistant (with its function
    calls as tool calls), function responses -> tool, anything else -> user."""
    content: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    responds = False
    for part in parts:
        pieces, calls, is_response = _part_pieces(part)
        content.extend(pieces)
        tool_calls.extend(calls)
        responds = responds or is_response
    if role == "model" or tool_calls:
        message: dict[str, Any] = {"role": "assistant", "content": content or None, NATIVE: native}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return message
    return {"role": "tool" if responds else "user", "content": content, NATIVE: native}


def _is_content(item: Any) -> bool:
    if isinstance(item, dict):  # the SDK reads a dict as a Content unless it is a Part
        return not item or "parts" in item or "role" in item
    return hasattr(item, "parts") and hasattr(item, "role")


def _is_call_part(item: Any) -> bool:
    return not isinstance(item, str) and _get(item, "function_call") is not None


def neutral_contents(contents: Any) -> list[dict[str, Any]]:
    """``contents`` (a string, a Content or its dict, a Part, or a list of these) as chat-shaped
    messages, each carrying the caller's items under :data:`NATIVE`.

    Grouped as the SDK groups them: consecutive parts (strings, Parts, part dicts) make one
    content, a user one, or a model one for function calls; a nested list is one user content.
    """
    if contents is None:
        return []
    if not isinstance(contents, list):
        if _is_content(contents):
            return [_message(_get(contents, "role"), _get(contents, "parts") or (), (contents,))]
        return [_message("model" if _is_call_part(contents) else "user", (contents,), (contents,))]
    out: list[dict[str, Any]] = []
    group: list[Any] = []

    def flush() -> None:
        if group:
            out.append(_message("model" if _is_call_part(group[0]) else "user", group, tuple(group)))
            group.clear()

    for item in contents:
        if isinstance(item, list):
            flush()
            out.append(_message("user", item, (item,)))
        elif _is_content(item):
            flush()
            out.append(_message(_get(item, "role"), _get(item, "parts") or (), (item,)))
        else:
            if group and _is_call_part(item) != _is_call_part(group[0]):
                flush()
            group.append(item)
    flush()
    return out


def _texts(value: Any) -> list[str]:
    """The texts in a system instruction: a string, a Part, a Content, or a list of these."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _texts(item)]
    parts = _get(value, "parts")
    if parts is not None:
        return _texts(parts)
    text = _get(value, "text")
    return [str(text)] if text else []


def _tool_json(tool: Any) -> Any:
    """A tool as JSON-ready data for counting (a Python function: its name and docstring)."""
    if isinstance(tool, Mapping):
        return tool
    dump = getattr(tool, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    if callable(tool):
        return {"name": getattr(tool, "__name__", ""), "description": getattr(tool, "__doc__", "") or ""}
    return str(tool)


def generate_request(kwargs: Mapping[str, Any], provider: str, server: Server, *, stream: bool) -> LLMRequest:
    """The provider-neutral view of ``generate_content(**kwargs)`` (or its stream)."""
    config = kwargs.get("config")
    messages: list[dict[str, Any]] = []
    system = "\n".join(_texts(_get(config, "system_instruction")))
    if system:
        messages.append({"role": "system", "content": system, NATIVE: ()})
    messages.extend(neutral_contents(kwargs.get("contents")))
    tools = _get(config, "tools")
    return LLMRequest(
        provider=provider,
        operation="generate_content",
        model=model_id(kwargs.get("model")),
        messages=messages,
        max_output_tokens=as_int(_get(config, "max_output_tokens")) or None,
        stream=stream,
        n=as_int(_get(config, "candidate_count")) or 1,
        tools=[_tool_json(t) for t in tools] if isinstance(tools, (list, tuple)) else (),
        server_address=server[0],
        server_port=server[1],
        service_tier=_asked_tier(_get(config, "service_tier")),
    )


def _asked_tier(value: Any) -> str | None:
    """The priced tier ``config.service_tier`` asks for (the SDK's ``ServiceTier`` or a string)."""
    return _TIERS.get(str(getattr(value, "value", value)).lower()) if value is not None else None


def with_max_output_tokens(config: Any, cap: int) -> Any:
    """A copy of ``config`` (None, a dict, or a ``GenerateContentConfig``) capped at ``cap``."""
    if config is None:
        return {"max_output_tokens": cap}
    if isinstance(config, Mapping):
        return {**{k: v for k, v in config.items() if k != "maxOutputTokens"}, "max_output_tokens": cap}
    return config.model_copy(update={"max_output_tokens": cap})


# -- generate_content -------------------------------------------------------------------------


class GenerateStreamAccountant(Accountant):
    """Reads ``GenerateContentResponse`` chunks (or their JSON).

    Each chunk's ``usage_metadata`` is the running total of the response so far, so the last
    one wins; the stream is complete once every candidate has a finish reason (a stream the
    caller closes before that is recorded as abandoned, its output the larger of the running
    count and the text that streamed).
    """

    __slots__ = ("_continued", "_grounded", "_open")

    def __init__(self) -> None:
        super().__init__()
        self._grounded: dict[str, int] = {}
        self._open: set[int] = set()
        self._continued: dict[int, bool] = {}  # candidate -> its function call goes on

    def observe(self, chunk: Any) -> bool:
        try:
            if self.response_model is None:
                self.response_model = _get(chunk, "model_version") or None
            if self.response_id is None:
                self.response_id = _get(chunk, "response_id") or None
            candidates = _get(chunk, "candidates")
            if candidates:
                for candidate in candidates:
                    index = as_int(_get(candidate, "index"))
                    parts = _get(_get(candidate, "content"), "parts")
                    calls, self._continued[index] = part_tool_calls(parts, self._continued.get(index, False))
                    self.tool_calls += calls
                    for part in parts or ():
                        text = _get(part, "text")
                        if text:
                            self.text.append(text)
                        call = _get(part, "function_call")
                        if call is not None:
                            self.text.append((_get(call, "name") or "") + _json(_get(call, "args")))
                    reason = _reason(candidate)
                    if reason:
                        self.finish_reasons.append(reason)
                        self._open.discard(index)
                        self.done = True
                    else:
                        self._open.add(index)
                self.done = self.done and not self._open
            self.usage = usage_from(_get(chunk, "usage_metadata")) or self.usage
            self._grounded = _grounding(chunk) or self._grounded
            if self._grounded and self.usage is not None:
                self.usage = dataclasses.replace(self.usage, units={**self.usage.units, **self._grounded})
        except Exception:  # a malformed chunk must never break the caller's stream
            pass
        return True

    def text_of(self, chunk: Any) -> str | None:
        """The answer text a chunk adds (thoughts left out, like ``chunk.text``)."""
        pieces: list[str] = []
        for candidate in (_get(chunk, "candidates") or [])[:1]:
            for part in _get(_get(candidate, "content"), "parts") or ():
                text = _get(part, "text")
                if text and not _get(part, "thought"):
                    pieces.append(text)
        return "".join(pieces) or None


class GenerateSurface(Surface):
    """``models.generate_content``: ``contents`` and a ``config`` capped by ``max_output_tokens``."""

    operation = "generate_content"
    stream = False

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        return generate_request(kwargs, self.provider, self.server, stream=self.stream)

    def apply(self, call: gate.Call, kwargs: dict[str, Any]) -> bool:
        decision = call.decision
        if decision.model != call.request.model:
            kwargs["model"] = _swap_model(kwargs.get("model"), decision.model)
        if decision.max_output_tokens is not None:
            kwargs["config"] = with_max_output_tokens(kwargs.get("config"), decision.max_output_tokens)
        if decision.messages is not None and isinstance(kwargs.get("contents"), list):
            kwargs["contents"] = native_items(decision.messages)
        return False

    def found(self, response: Any) -> Found:
        return response_found(response)

    def content(self, response: Any) -> str | None:
        return response_text(response)

    def accountant(self, injected: bool) -> GenerateStreamAccountant:
        return GenerateStreamAccountant()


class GenerateStreamSurface(GenerateSurface):
    """``models.generate_content_stream``: the same request; a stream of responses comes back."""

    stream = True

    def streams(self, call: gate.Call) -> bool:
        return True


# -- embeddings -------------------------------------------------------------------------------


class EmbedSurface(Surface):
    """``models.embed_content``: contents in, no output."""

    operation = "embeddings"

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        value = kwargs.get("contents")
        items = value if isinstance(value, list) else [value] if value is not None else []
        prompt = ["\n".join(_texts(item)) for item in items]
        return self.new_request(
            model_id(kwargs.get("model")),
            prompt=[p for p in prompt if p],
        )

    def found(self, response: Any) -> Found:
        return Found(embed_usage(response))


# -- routes -----------------------------------------------------------------------------------


def _gated_chats(surfaces: Mapping[tuple[str, ...], Surface], *, is_async: bool) -> Callable[[Any], Any]:
    """``chats`` whose sessions call the gated ``generate_content`` / ``generate_content_stream``
    (the SDK builds them on the client's own, ungated ``models``)."""
    from tollgate.proxy import proxy

    table = routes_for(surfaces, is_async=is_async)

    def hook(chats: Any) -> Any:
        return type(chats)(modules=proxy(chats._modules, table))

    return hook


def routes(client: Any) -> dict[tuple[str, ...], Any]:
    """Which attribute paths of ``client`` (a ``google.genai.Client``, or its ``.aio``) go
    through the gate, and how."""
    from google.genai.client import AsyncClient

    api_client = getattr(client, "_api_client", None)
    provider = "vertex_ai" if getattr(api_client, "vertexai", False) else "gemini"
    server = server_of(_get(getattr(api_client, "_http_options", None), "base_url"))
    models: dict[tuple[str, ...], Surface] = {
        ("generate_content",): GenerateSurface(provider, server),
        ("generate_content_stream",): GenerateStreamSurface(provider, server),
    }
    surfaces = {("models", *path): s for path, s in models.items()}
    surfaces[("models", "embed_content")] = EmbedSurface(provider, server)
    if isinstance(client, AsyncClient):
        table = routes_for(surfaces, is_async=True)
        table[("chats",)] = _gated_chats(models, is_async=True)
        return table
    table = routes_for(surfaces, is_async=False)
    table[("chats",)] = _gated_chats(models, is_async=False)
    table.update(routes_for({("aio", *path): s for path, s in surfaces.items()}, is_async=True))
    table[("aio", "chats")] = _gated_chats(models, is_async=True)
    return table
