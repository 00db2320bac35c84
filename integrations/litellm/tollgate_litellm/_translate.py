"""LiteLLM shapes <-> tollgate's: translation only, no budget logic.

LiteLLM's keyword arguments are OpenAI-shaped (``model``, ``messages``, ``max_tokens``,
``stream_options``; ``input`` for embeddings and the Responses API) and so are its responses
(``ModelResponse.usage`` has ``prompt_tokens`` / ``completion_tokens`` and their details), so
the OpenAI adapter's surfaces do the translating. What is LiteLLM's own:

- ``model`` may carry a provider prefix (``"openai/gpt-4o"``, ``"anthropic/claude-..."``): the
  gate sees the bare model and the provider; a downgrade keeps the prefix;
- ``model`` / ``messages`` passed positionally are absent from a hook's kwargs: they are read
  from the logging object, and a decision that would edit them cannot be applied;
- usage: LiteLLM adds Anthropic's cache tokens into ``prompt_tokens`` (tollgate's convention)
  and reports the cache write as ``cache_creation_input_tokens``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tollgate import gate
from tollgate.providers.base import Found, Surface, as_int, field, server_of
from tollgate.providers.openai import (
    ChatSurface,
    EmbeddingsSurface,
    ResponsesSurface,
    responses_usage,
    usage_from,
)
from tollgate.request import LLMRequest

# LiteLLM provider names -> the ones tollgate's price table knows.
_PROVIDERS = {
    "text-completion-openai": "openai",
    "azure_ai": "azure",
    "azure_text": "azure",
    "vertex_ai_beta": "vertex_ai",
}
_CHAT = frozenset({"completion", "acompletion"})
_EMBEDDING = frozenset({"embedding", "aembedding"})
_RESPONSES = frozenset({"responses", "aresponses"})


def call_type_name(call_type: Any) -> str:
    """``"acompletion"`` from a ``CallTypes`` member or its value."""
    return str(getattr(call_type, "value", call_type) or "")


def split_model(model: str, kwargs: Mapping[str, Any] | None = None) -> tuple[str, str, str]:
    """``(prefix, bare model, tollgate provider)`` of a LiteLLM model string.

    >>> split_model("openai/gpt-4o-mini")
    ('openai/', 'gpt-4o-mini', 'openai')
    >>> split_model("gpt-4o")
    ('', 'gpt-4o', 'openai')
    """
    kwargs = kwargs or {}
    provider = str(kwargs.get("custom_llm_provider") or "")
    prefix = ""
    bare = model
    if "/" in model:
        head, rest = model.split("/", 1)
        if not provider or head == provider:
            try:
                import litellm

                if head in litellm.provider_list:
                    prefix, bare, provider = head + "/", rest, provider or head
            except Exception:  # pragma: no cover - litellm always importable here
                pass
    if not provider:
        try:
            import litellm

            _, found, _, _ = litellm.get_llm_provider(model=bare)
            provider = str(found or "")
        except Exception:
            provider = ""
    return prefix, bare, _PROVIDERS.get(provider, provider or "unknown")


@dataclasses.dataclass(slots=True)
class View:
    """A LiteLLM call as the gate sees it, and what is needed to edit it back."""

    surface: Surface
    request: LLMRequest
    prefix: str
    #: Argument names absent from the kwargs (passed positionally): they cannot be edited.
    positional: frozenset[str] = frozenset()


def surface_for(call_type: str, provider: str, base_url: Any) -> Surface | None:
    server = server_of(base_url) if base_url else (None, None)
    if call_type in _CHAT:
        return ChatSurface(provider, server)
    if call_type in _EMBEDDING:
        return EmbeddingsSurface(provider, server)
    if call_type in _RESPONSES:
        return ResponsesSurface(provider, server)
    return None


def view_of(kwargs: Mapping[str, Any], call_type: str, model: str | None = None) -> View | None:
    """The gate's view of a call from its LiteLLM kwargs (None: a call type tollgate leaves alone).

    ``model`` overrides the model named in the kwargs (a Router deployment's model).
    """
    logging_obj = kwargs.get("litellm_logging_obj")
    positional: set[str] = set()
    native = dict(kwargs)
    if model is None:
        model = native.get("model")
        if model is None:
            positional.add("model")
            model = getattr(logging_obj, "model", None)
    if call_type in _CHAT and native.get("messages") is None:
        messages = getattr(logging_obj, "messages", None)
        if messages is not None:
            positional.add("messages")
            native["messages"] = messages
    prefix, bare, provider = split_model(str(model or ""), native)
    surface = surface_for(call_type, provider, native.get("api_base") or native.get("base_url"))
    if surface is None:
        return None
    native["model"] = bare
    request = surface.request(native)
    return View(surface, request, prefix, frozenset(positional))


def blocked_edits(call: gate.Call, view: View) -> str | None:
    """Why the call's decision cannot be applied (it edits an argument passed positionally)."""
    decision = call.decision
    if "model" in view.positional and decision.model != call.request.model:
        return "downgrade"
    if "messages" in view.positional and decision.messages is not None:
        return "truncate"
    return None


def apply(call: gate.Call, view: View, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the call's decision applied (a new dict); the model prefix is kept.

    A downgrade rewrites ``model`` unless the deployment already chosen runs the cheaper model
    (a Router that routed there after :meth:`TollgateLogger.async_filter_deployments`).
    """
    out = dict(kwargs)
    edited = dict(kwargs)
    edited["model"] = call.request.model
    view.surface.apply(call, edited)  # clamp / truncate / stream usage; model -> decision.model
    for key in ("messages", "max_tokens", "max_completion_tokens", "max_output_tokens", "input"):
        if key in edited and edited[key] is not kwargs.get(key):
            out[key] = edited[key]
    if "stream_options" in edited:
        out["stream_options"] = edited["stream_options"]
    current = out.get("model")
    if call.decision.model != call.request.model and current is not None:
        prefix, bare, _ = split_model(str(current), out)
        if bare != call.decision.model:
            out["model"] = prefix + call.decision.model
    return out


def check_routable(call: gate.Call, kwargs: Mapping[str, Any]) -> None:
    """Raise ValueError when a downgrade sent the call to a model LiteLLM cannot route (no
    provider it knows): the decision cannot be applied, and the gate refuses the call."""
    if call.decision.model == call.request.model:
        return
    import litellm

    try:
        litellm.get_llm_provider(str(kwargs.get("model")), api_base=kwargs.get("api_base"))
    except Exception as exc:
        raise ValueError(f"LiteLLM cannot route the downgraded model {call.decision.model!r}") from exc


# -- post-flight ------------------------------------------------------------------------------


def found(surface: Surface, response: Any) -> Found:
    """What a LiteLLM response says of itself (usage with LiteLLM's cache-write field added)."""
    result = surface.found(response)
    usage = result.usage
    raw = field(response, "usage")
    if usage is None and raw is not None:
        # LiteLLM hands its loggers a Responses API response with chat-shaped usage
        # (prompt_tokens / completion_tokens), and may do the reverse.
        usage = usage_from(raw) or responses_usage(raw)
        if usage is not None:
            result = result._replace(usage=usage)
    if usage is not None and raw is not None and not usage.cache_write_tokens:
        write = as_int(field(raw, "cache_creation_input_tokens")) or as_int(
            field(field(raw, "prompt_tokens_details"), "cache_creation_tokens")
        )
        if write:
            result = result._replace(usage=dataclasses.replace(usage, cache_write_tokens=write))
    return result


def reported_cost(kwargs: Mapping[str, Any]) -> float | None:
    """LiteLLM's own cost of the call (``kwargs["response_cost"]``), when it computed one."""
    value = kwargs.get("response_cost")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def tags_from(metadata: Any) -> dict[str, str]:
    """tollgate tags from a call's ``metadata={"tollgate": {...}}`` (LiteLLM's own keys ignored).

    >>> tags_from({"tollgate": {"tenant": "acme", "n": 3}, "model_group": "gpt-4o"})
    {'tenant': 'acme', 'n': '3'}
    """
    if not isinstance(metadata, Mapping):
        return {}
    tags = metadata.get("tollgate")
    if not isinstance(tags, Mapping):
        return {}
    return {
        str(k): str(v)
        for k, v in tags.items()
        if isinstance(k, str) and k.isidentifier() and isinstance(v, (str, int, float, bool))
    }
