"""Token estimation for pre-flight checks, with no network access.

OpenAI models are counted exactly with tiktoken, from the ``cl100k_base`` and ``o200k_base``
BPE files that ship inside tollgate (``tollgate/pricing/encodings/``; tiktoken itself would
download them on first use). Chat messages add OpenAI's documented framing: 3 tokens per
message, 1 per ``name``, 3 to prime the reply.

Other providers' tokenizers are not public (Anthropic) or not offline (Gemini); their
counts are an approximation: the ``o200k_base`` count times a per-provider factor
(:data:`PROVIDER_FACTORS`), chosen to over- rather than under-estimate, since a pre-flight
estimate that is too low lets a budget be overspent.

If the BPE files cannot be loaded, tollgate warns once and falls back to
``ceil(len(text) / 4)``, the common rule of thumb for English text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, Protocol

# From tiktoken_ext/openai_public.py: the encodings' split patterns, special tokens and hashes.
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_ENCODINGS: dict[str, tuple[str, dict[str, int], str]] = {
    "cl100k_base": (
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

# Model-name prefixes (after any "provider/" prefix) that use cl100k_base; every other OpenAI
# model of the 4o generation and later (gpt-4o, gpt-4.1, gpt-5, o1, o3, o4, gpt-oss) uses o200k.
_CL100K_PREFIXES = ("gpt-4-", "gpt-4", "gpt-3.5", "gpt-35", "text-embedding-", "davinci-002", "babbage-002")
_O200K_PREFIXES = (
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "chatgpt-4o",
    "gpt-5",
    "o1",
    "o3",
    "o4",
    "gpt-oss",
    "ft:gpt-4o",
)

#: Multipliers applied to the o200k count for providers whose tokenizer tollgate lacks.
#: Anthropic's tokenizer yields roughly 10-20 % more tokens than o200k on English text and code.
PROVIDER_FACTORS: Mapping[str, float] = {"anthropic": 1.2, "gemini": 1.1, "vertex_ai": 1.1}
DEFAULT_FACTOR = 1.15

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# Images: OpenAI bills 85 tokens for detail="low" and 85 + 170 per 512 px tile otherwise; without
# the pixel size, assume a 1024x1024 image (4 tiles) as the worst common case.
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_DEFAULT = 765


# Tool use, fitted on OpenAI's recorded prompt_tokens: each tool call an assistant made is
# framed by about 12 tokens (recipient, channel, end marker), each tool result by about 3.
TOOL_CALL_TOKENS = 12
TOOL_RESULT_TOKENS = 3
# Tool definitions, after OpenAI's cookbook ("How to count tokens with tiktoken"): the schema is
# rendered as "name:description" and one "key:type:description" line per parameter.
_TOOL_FRAMING = {"o200k_base": (7, 3, 3, -3, 3, 12), "cl100k_base": (10, 3, 3, -3, 3, 12)}


class _Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


class ApproximationWarning(UserWarning):
    """tollgate's BPE files could not be loaded; token counts are approximate (chars / 4)."""


_lock = threading.Lock()
_encoders: dict[str, _Encoder | None] = {}


def encoding_for(model: str, provider: str | None = None) -> str:
    """Name of the tiktoken encoding used to count ``model``'s tokens.

    >>> encoding_for("gpt-4o-2024-08-06"), encoding_for("openai/gpt-4-0613")
    ('o200k_base', 'cl100k_base')
    """
    name = model.rsplit("/", 1)[-1].lower()
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


def is_exact(model: str, provider: str | None = None) -> bool:
    """True when tollgate counts this model's tokens with its real tokenizer."""
    name = model.rsplit("/", 1)[-1].lower()
    openai_family = name.startswith(_O200K_PREFIXES + _CL100K_PREFIXES)
    return openai_family and provider in (None, "openai", "azure", "azure_openai")


@functools.lru_cache(maxsize=256)
def _counting(model: str, provider: str | None) -> tuple[bool, str]:
    """Whether ``model``'s count is exact, and its encoding (asked once per model and provider)."""
    return is_exact(model, provider), encoding_for(model, provider)


def _load(name: str) -> _Encoder | None:
    pat, special, sha256 = _ENCODINGS[name]
    try:
        import tiktoken

        data = (resources.files("tollgate.pricing") / "encodings" / f"{name}.tiktoken").read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"{name}.tiktoken does not match its published sha256")
        ranks = {
            base64.b64decode(tok): int(rank) for tok, rank in (ln.split() for ln in data.splitlines() if ln)
        }
        return tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens=special)
    except Exception as exc:  # any failure degrades to the documented approximation
        warnings.warn(
            f"tollgate could not load the {name} tokenizer ({exc}); token counts are approximated "
            f"as len(text)/4",
            ApproximationWarning,
            stacklevel=3,
        )
        return None


def encoder(name: str) -> _Encoder | None:
    """The tiktoken ``Encoding`` called ``name``, loaded once from package data (or None)."""
    try:
        return _encoders[name]
    except KeyError:
        with _lock:
            if name not in _encoders:
                _encoders[name] = _load(name)
        return _encoders[name]


def _count_tools(tools: Sequence[Any], encoding: str, count: Any) -> int:
    """Tokens of function-tool definitions, per OpenAI's documented rendering."""
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = _TOOL_FRAMING[encoding]
    total = func_end
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping):  # a built-in or custom tool: count its JSON
            total += count(json.dumps(tool, separators=(",", ":"), default=str))
            continue
        total += func_init + count(f"{fn.get('name', '')}:{str(fn.get('description') or '').rstrip('.')}")
        properties = (fn.get("parameters") or {}).get("properties") or {}
        if properties:
            total += prop_init
        for key, prop in properties.items():
            total += prop_key
            if not isinstance(prop, Mapping):
                continue
            if "enum" in prop:
                total += enum_init + sum(enum_item + count(str(item)) for item in prop["enum"])
            description = str(prop.get("description") or "").rstrip(".")
            total += count(f"{key}:{prop.get('type', '')}:{description}")
            # Nested schemas (objects, arrays of objects) are rendered too; their JSON is a fair proxy.
            nested = {k: v for k, v in prop.items() if k in ("properties", "items", "anyOf", "oneOf")}
            if nested:
                total += count(json.dumps(nested, separators=(",", ":"), default=str))
    return total


@functools.lru_cache(maxsize=8192)
def _count_cached(name: str, text: str) -> int:
    # Agent loops resend the same history every turn: caching per text makes re-counting it free.
    enc = encoder(name)
    return len(enc.encode_ordinary(text)) if enc is not None else math.ceil(len(text) / 4)


def count_text(text: str, model: str = "gpt-4o", provider: str | None = None) -> int:
    """Tokens in ``text`` for ``model`` (exact for OpenAI models, approximate otherwise).

    >>> count_text("hello world", "gpt-4o")
    2
    """
    if not text:
        return 0
    exact, name = _counting(model, provider)
    n = _count_cached(name, text)
    if exact:
        return n
    return math.ceil(n * PROVIDER_FACTORS.get(provider or "", DEFAULT_FACTOR))


def _content_text(content: Any) -> tuple[str, int]:
    """Text of a message's content and the tokens of its non-text parts (images)."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    texts: list[str] = []
    extra = 0
    for part in content if isinstance(content, Iterable) else ():
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping):
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text") or "text" in part:
                texts.append(str(part.get("text") or ""))
            elif kind in ("image_url", "input_image", "image"):
                detail = part.get("detail") or (part.get("image_url") or {}).get("detail")
                extra += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_DEFAULT
            else:
                texts.append(json.dumps(part, default=str))
    return "\n".join(texts), extra


def count_messages(
    messages: Sequence[Mapping[str, Any]],
    model: str = "gpt-4o",
    provider: str | None = None,
    tools: Sequence[Any] = (),
) -> int:
    """Prompt tokens of a chat request: message texts plus OpenAI's per-message framing.

    >>> count_messages([{"role": "user", "content": "hello world"}], "gpt-4o")
    9
    """
    exact, name = _counting(model, provider)

    def count(text: str) -> int:
        return _count_cached(name, text) if text else 0

    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE + count(str(message.get("role") or ""))
        text, extra = _content_text(message.get("content"))
        total += extra + count(text)
        if message.get("name"):
            total += TOKENS_PER_NAME + count(str(message["name"]))
        if message.get("role") == "tool":
            total += TOOL_RESULT_TOKENS
        for call in message.get("tool_calls") or ():
            fn = (call.get("function") or {}) if isinstance(call, Mapping) else {}
            total += TOOL_CALL_TOKENS
            total += count(str(fn.get("name") or "")) + count(str(fn.get("arguments") or ""))
    if tools:
        total += _count_tools(tools, name, count)
    return total if exact else math.ceil(total * PROVIDER_FACTORS.get(provider or "", DEFAULT_FACTOR))


def count_prompt(prompt: Sequence[Any], model: str = "gpt-4o", provider: str | None = None) -> int:
    """Tokens of raw inputs with no chat framing: strings, or token arrays (lists of ints).

    >>> count_prompt(["hello world", [1, 2, 3]], "text-embedding-3-small")
    5
    """
    total = 0
    for item in prompt:
        if isinstance(item, str):
            total += count_text(item, model, provider)
        elif isinstance(item, Sequence):
            total += len(item)
    return total


class RunningCount:
    """Tokens of text that arrives in pieces (a stream), counted piece by piece.

    Each piece is tokenized on its own and the provider factor applied once to the sum, so a
    stream's running count costs one cached lookup per piece, never a recount of the whole.

    >>> c = RunningCount("gpt-4o")
    >>> c.add(["Hello", " world"])
    2
    """

    __slots__ = ("_encoding", "_factor", "_raw")

    def __init__(self, model: str, provider: str | None = None) -> None:
        exact, self._encoding = _counting(model, provider)
        self._factor = 1.0 if exact else PROVIDER_FACTORS.get(provider or "", DEFAULT_FACTOR)
        self._raw = 0

    @property
    def raw(self) -> int:
        """The count before the provider factor: the tokenizer's own tokens (exact for OpenAI)."""
        return self._raw

    def add(self, pieces: Iterable[str]) -> int:
        """Count ``pieces`` in; returns the running total (a piece at a time counts a little
        high: a word split across pieces may be one token when whole)."""
        for piece in pieces:
            if piece:
                self._raw += _count_cached(self._encoding, piece)
        return math.ceil(self._raw * self._factor)

    def recount(self, text: str) -> int:
        """Count all of ``text`` at once (exact for OpenAI models) and go on from there.

        >>> c = RunningCount("gpt-4o")
        >>> c.add(["Hel", "lo"]), c.recount("Hello")
        (2, 1)
        """
        enc = encoder(self._encoding)
        self._raw = len(enc.encode_ordinary(text)) if enc is not None else math.ceil(len(text) / 4)
        return math.ceil(self._raw * self._factor)
