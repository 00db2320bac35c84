"""LangChain shapes <-> tollgate's: translation only, no budget logic.

- a chat model (object, or the ``serialized`` / ``invocation_params`` / ``metadata`` a callback
  gets) -> provider, model name, output cap, server;
- LangChain ``BaseMessage`` lists -> OpenAI chat-shaped dicts, each carrying the message it
  stands for (so a truncate maps back to the original messages);
- ``AIMessage.usage_metadata`` (or an ``LLMResult``'s ``llm_output``) -> :class:`~tollgate.Usage`;
- LangChain ``metadata`` / ``tags`` -> tollgate tags.

Token convention: LangChain's ``usage_metadata["input_tokens"]`` is the sum of all input
token types (cache reads and writes included: ``langchain-anthropic`` adds Anthropic's cache
tokens back in) and ``output_tokens`` includes reasoning, which is tollgate's convention, so
the totals are taken as they are and the details read as parts of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tollgate import gate
from tollgate.providers.base import NATIVE, as_int, server_of
from tollgate.request import LLMRequest, Usage

# LangChain's ``ls_provider`` -> the provider name tollgate's price table knows.
_PROVIDERS = {
    "google_genai": "gemini",
    "google_vertexai": "vertex_ai",
    "azure": "azure",
    "azure_openai": "azure",
    "bedrock": "bedrock",
    "amazon_bedrock": "bedrock",
}
# Chat model classes -> provider, for models that give no ``ls_provider``.
_CLASS_PROVIDERS = {
    "ChatOpenAI": "openai",
    "AzureChatOpenAI": "azure",
    "ChatAnthropic": "anthropic",
    "ChatGoogleGenerativeAI": "gemini",
    "ChatVertexAI": "vertex_ai",
    "ChatGroq": "groq",
    "ChatMistralAI": "mistral",
    "ChatDeepSeek": "deepseek",
    "ChatOllama": "ollama",
    "ChatXAI": "xai",
}
# Metadata keys LangChain, LangSmith and LangGraph set themselves: not the caller's tags.
_INTERNAL_PREFIXES = ("ls_", "langgraph_", "checkpoint_", "lc_", "__")
_INTERNAL_KEYS = frozenset({"checkpoint_ns", "langgraph_checkpoint_ns", "thread_id", "run_name"})


def provider_name(ls_provider: Any, class_name: str | None = None, base_url: Any = None) -> str:
    """The tollgate provider of a chat model, from its class, ``ls_provider`` and base URL.

    >>> provider_name("openai", "ChatOpenAI", "https://api.deepseek.com/v1")
    'deepseek'
    >>> provider_name("anthropic")
    'anthropic'
    """
    name = str(ls_provider) if ls_provider else _CLASS_PROVIDERS.get(class_name or "", "")
    name = _PROVIDERS.get(name, name)
    if name == "openai" and base_url:
        from tollgate.providers.openai import provider_for_url  # imports no SDK

        name = provider_for_url(base_url)
    return name or "unknown"


def model_base_url(model: Any) -> Any:
    """The base URL a chat model object talks to (None when it does not say)."""
    for attr in ("openai_api_base", "anthropic_api_url", "base_url"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def ls_params(model: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """LangChain's standard description of a call (``ls_provider``, ``ls_model_name``, ...)."""
    try:
        params = model._get_ls_params(**kwargs)
    except Exception:
        return {}
    return dict(params) if isinstance(params, Mapping) else {}


def model_name(model: Any, kwargs: Mapping[str, Any] = {}) -> str:
    """The model a chat model object (with bound ``kwargs``) asks for."""
    name = kwargs.get("model") or kwargs.get("model_name")
    if not name:
        name = ls_params(model, kwargs).get("ls_model_name")
    if not name:
        name = getattr(model, "model_name", None) or getattr(model, "model", None)
    return str(name or "")


def model_field(model: Any) -> str | None:
    """The field of a chat model class that holds the model name (``model_name`` for ChatOpenAI,
    ``model`` for ChatAnthropic), for a downgrade by ``model_copy``."""
    fields = getattr(type(model), "model_fields", {})
    for name in ("model_name", "model", "model_id"):
        if name in fields:
            return name
    return None


def output_cap(values: Mapping[str, Any]) -> int | None:
    """The output cap among call parameters (``max_tokens`` / ``max_completion_tokens`` / ...)."""
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens", "ls_max_tokens"):
        cap = as_int(values.get(key))
        if cap:
            return cap
    return None


def neutral_messages(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI chat-shaped dicts, each carrying its message under ``NATIVE``.

    >>> from langchain_core.messages import HumanMessage
    >>> [m["content"] for m in neutral_messages([HumanMessage("hi")])]
    ['hi']
    """
    from langchain_core.messages import convert_to_openai_messages

    out: list[dict[str, Any]] = []
    for message in messages:
        try:
            shaped: Any = convert_to_openai_messages(message)
        except Exception:  # an unknown content block: count its text, keep the message
            shaped = {
                "role": getattr(message, "type", "user"),
                "content": str(getattr(message, "content", "")),
            }
        if isinstance(shaped, list):  # one message never becomes several, but be safe
            shaped = shaped[0] if shaped else {"role": "user", "content": ""}
        entry = dict(shaped)
        entry[NATIVE] = (message,)
        out.append(entry)
    return out


def request_for(
    *,
    provider: str,
    model: str,
    messages: Sequence[Mapping[str, Any]] = (),
    prompt: Sequence[Any] = (),
    max_output_tokens: int | None = None,
    stream: bool = False,
    n: int = 1,
    tools: Sequence[Any] = (),
    base_url: Any = None,
) -> LLMRequest:
    server = server_of(base_url) if base_url else (None, None)
    return LLMRequest(
        provider=provider,
        operation="chat" if not prompt else "text_completion",
        model=model,
        messages=messages,
        prompt=prompt,
        max_output_tokens=max_output_tokens,
        stream=stream,
        n=max(1, n),
        tools=tools,
        server_address=server[0],
        server_port=server[1],
    )


def tool_schemas(tools: Any) -> list[Any]:
    """Tools as OpenAI function schemas, for counting their tokens (empty when unknown)."""
    if not isinstance(tools, (list, tuple)):
        return []
    try:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return [convert_to_openai_tool(t) for t in tools]
    except Exception:
        return [t for t in tools if isinstance(t, Mapping)]


# -- usage ------------------------------------------------------------------------------------


def usage_from_metadata(usage: Any) -> Usage | None:
    """tollgate usage from a LangChain ``usage_metadata`` dict (None when missing or malformed).

    >>> u = usage_from_metadata({"input_tokens": 2069, "output_tokens": 393, "total_tokens": 2462,
    ...     "input_token_details": {"cache_read": 1800, "cache_creation": 248},
    ...     "output_token_details": {"reasoning": 300}})
    >>> (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens)
    (2069, 1800, 248, 300)
    """
    if not isinstance(usage, Mapping):
        return None
    input_tokens, output_tokens = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(input_tokens, int) or not isinstance(output_tokens, int):
        return None
    inputs = usage.get("input_token_details") or {}
    outputs = usage.get("output_token_details") or {}
    write_5m = as_int(inputs.get("ephemeral_5m_input_tokens"))
    write_1h = as_int(inputs.get("ephemeral_1h_input_tokens"))
    # langchain-anthropic zeroes the generic cache_creation when it reports the TTL split.
    cache_write = as_int(inputs.get("cache_creation")) or write_5m + write_1h
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=as_int(inputs.get("cache_read")),
        cache_write_tokens=cache_write,
        reasoning_tokens=as_int(outputs.get("reasoning")),
        audio_input_tokens=as_int(inputs.get("audio")),
        audio_output_tokens=as_int(outputs.get("audio")),
        units={"cache_write_1h_tokens": write_1h} if write_1h else {},
    )


def response_facts(message: Any) -> tuple[str | None, str | None, tuple[str, ...]]:
    """Response model, response id and finish reasons from a message's ``response_metadata``."""
    meta = getattr(message, "response_metadata", None) or {}
    model = meta.get("model_name") or meta.get("model")
    rid = meta.get("id") or getattr(message, "id", None)
    reason = meta.get("finish_reason") or meta.get("stop_reason")
    return (
        str(model) if model else None,
        str(rid) if rid and not str(rid).startswith(("run-", "lc_run-")) else None,
        (str(reason),) if reason else (),
    )


def message_text(message: Any) -> str:
    """The generated text of a message (text parts and tool call arguments), for an estimate."""
    content = getattr(message, "content", "")
    parts: list[str] = []
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                parts.append(str(part.get("text") or part.get("thinking") or ""))
    for tool_call in getattr(message, "tool_calls", None) or ():
        parts.append(str(tool_call.get("name") or "") + str(tool_call.get("args") or ""))
    return "".join(parts)


def tool_calls(message: Any) -> int:
    """The tool calls a message asks for, as the provider doors count them: its ``tool_calls``
    and ``invalid_tool_calls`` (asked for all the same, their arguments unparsed), and the
    provider's built-in tools it ran (Anthropic's server tools, OpenAI's web search...), which
    LangChain keeps in the content (``server_tool_call`` among its ``content_blocks``). The
    chunks of a stream, added up, carry them too.

    >>> from langchain_core.messages import AIMessage
    >>> tool_calls(AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "1"}],
    ...                      invalid_tool_calls=[{"name": "g", "args": "{", "id": "2", "error": None}]))
    2
    """
    count = 0
    for name in ("tool_calls", "invalid_tool_calls"):
        with contextlib.suppress(Exception):  # a message of a shape tollgate does not know
            calls = getattr(message, name, None)
            count += len(calls) if isinstance(calls, list) else 0
    if isinstance(getattr(message, "content", None), list):  # built-in tool calls are content
        with contextlib.suppress(Exception):  # content_blocks: langchain-core 1.x
            blocks = getattr(message, "content_blocks", None) or ()
            count += sum(1 for b in blocks if isinstance(b, Mapping) and b.get("type") == "server_tool_call")
    return count


def outcome(message: Any, extra_usage: Any = None) -> gate.Outcome:
    """What a call answered by ``message`` (an AIMessage, or None) says of itself.

    ``extra_usage`` is an ``LLMResult.llm_output`` to fall back on. Without reported usage the
    gate estimates the output from the text. A reply tollgate cannot read says nothing.
    """
    try:
        usage = _provider_usage(message) or usage_from_metadata(getattr(message, "usage_metadata", None))
        if usage is None and isinstance(extra_usage, Mapping):
            usage = _usage_from_llm_output(extra_usage)
        model, rid, reasons = response_facts(message) if message is not None else (None, None, ())
        if isinstance(extra_usage, Mapping):
            model = model or extra_usage.get("model_name") or extra_usage.get("model")
        text = message_text(message) if message is not None and usage is None else None
        calls = tool_calls(message)
        return gate.Outcome(usage, model, rid, text=text, finish_reasons=tuple(reasons), tool_calls=calls)
    except Exception:  # a reply of a shape tollgate does not know: the gate estimates
        return _UNREAD


_UNREAD = gate.Outcome()


def _provider_usage(message: Any) -> Usage | None:
    """The provider's own usage, when the integration kept it in ``response_metadata``
    (langchain-anthropic's ``usage``, langchain-openai's ``token_usage``): read by tollgate's
    adapter, it bills what ``usage_metadata`` leaves out (Anthropic's compaction and advisor
    iterations, server tool requests, the service tier) and flags fields tollgate does not know."""
    meta = getattr(message, "response_metadata", None)
    if not isinstance(meta, Mapping):
        return None
    raw = meta.get("usage")
    if isinstance(raw, Mapping) and "input_tokens" in raw and "prompt_tokens" not in raw:
        from tollgate.providers.anthropic import usage_from as anthropic_usage

        return anthropic_usage(raw)
    raw = meta.get("token_usage")
    if isinstance(raw, Mapping) and "prompt_tokens" in raw:
        from tollgate.providers.openai import usage_from as openai_usage

        return openai_usage(raw, meta.get("service_tier"))
    return None


def _usage_from_llm_output(output: Mapping[str, Any]) -> Usage | None:
    raw = output.get("token_usage") or output.get("usage")
    if not isinstance(raw, Mapping):
        return None
    if "prompt_tokens" in raw:
        from tollgate.providers.openai import usage_from as openai_usage

        return openai_usage(raw)
    from tollgate.providers.anthropic import usage_from as anthropic_usage

    return anthropic_usage(raw)


# -- tags -------------------------------------------------------------------------------------


def tags_from(metadata: Mapping[str, Any] | None, tags: Sequence[str] | None) -> dict[str, str]:
    """tollgate tags from a run's LangChain ``metadata`` and ``tags``.

    Metadata entries with an identifier key and a str / int / float / bool value become tags
    (LangChain's, LangSmith's and LangGraph's own keys excepted); a LangChain tag written
    ``"name=value"`` becomes the tag ``name``; other LangChain tags are ignored.

    >>> tags_from({"tenant": "acme", "ls_provider": "openai", "n": 3}, ["feature=search", "beta"])
    {'tenant': 'acme', 'n': '3', 'feature': 'search'}
    """
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key.isidentifier() or key in _INTERNAL_KEYS:
            continue
        if key.startswith(_INTERNAL_PREFIXES) or not isinstance(value, (str, int, float, bool)):
            continue
        out[key] = value if isinstance(value, str) else str(value)
    for tag in tags or ():
        name, sep, value = str(tag).partition("=")
        if sep and name.isidentifier() and value:
            out[name] = value
    return out
