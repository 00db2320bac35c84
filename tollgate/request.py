"""Provider-neutral data: what a call asks for, what it used, and what is recorded of it.

These are plain dataclasses; adapters translate each SDK's native shapes to and from them,
and the gate, the pricing and the ledger only ever see these.

Token convention (one for every provider)
-----------------------------------------
``Usage.input_tokens`` counts every prompt token the provider processed, cache reads and
cache writes included; ``cache_read_tokens`` and ``cache_write_tokens`` are parts of it.
``Usage.output_tokens`` counts every generated token, reasoning ("thinking") included;
``reasoning_tokens`` is a part of it. This is OpenAI's convention. Anthropic reports
``input_tokens`` without the cache tokens and Gemini reports ``candidatesTokenCount``
without the thoughts, so their adapters add them in. The cost is then

    (input - cache_read - cache_write) x input price + cache_read x cache-read price
    + cache_write x cache-write price + output x output price
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from tollgate.decisions import Step, step_from_dict, stored

Status = Literal["ok", "error", "blocked", "abandoned"]


_NO_UNITS: Mapping[str, float] = MappingProxyType({})
_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens (and other billable units) one call used; see the module doc for the convention.

    >>> u = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024)
    >>> u.uncached_input_tokens
    176
    >>> (u + Usage(input_tokens=10)).input_tokens
    1210
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    #: Non-token units, e.g. ``{"audio_seconds": 12.5, "images": 2, "characters": 340}``, and
    #: server-side tool requests billed per request (``web_search_requests``,
    #: ``web_fetch_requests``, ``maps_grounding_requests``).
    units: Mapping[str, float] = field(default_factory=dict)
    #: The service tier the provider says it served the call at, when that tier has its own
    #: price: ``"priority"``, ``"flex"`` or ``"batch"``; ``None`` for the standard tier.
    service_tier: str | None = None
    #: The call's usage by sampling step, when the provider reports several that bill apart
    #: (Anthropic's ``usage.iterations``: a compaction step, an advisor sub-inference on another
    #: model). Each part is priced at its own model's rates; the counts above are their sum.
    parts: tuple[UsagePart, ...] = ()
    #: Usage fields the provider sent that tollgate does not know, as sent (the drift alarm:
    #: a new billing dimension shows up here, in the report and on the span).
    unknown: Mapping[str, Any] = field(default_factory=lambda: _NO_FIELDS)

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the plain input rate (neither read from nor written to a cache)."""
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        units = dict(self.units)
        for k, v in other.units.items():
            units[k] = units.get(k, 0) + v
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            audio_input_tokens=self.audio_input_tokens + other.audio_input_tokens,
            audio_output_tokens=self.audio_output_tokens + other.audio_output_tokens,
            units=units,
            service_tier=self.service_tier or other.service_tier,
            parts=self.parts + other.parts,
            unknown={**self.unknown, **other.unknown} if other.unknown else self.unknown,
        )


class UsagePart(NamedTuple):
    """One sampling step of a call that bills apart (see ``Usage.parts``).

    ``model`` is the model that ran it (``None``: the call's own model); ``kind`` is what the
    provider calls the step (``"message"``, ``"compaction"``, ``"advisor_message"``, ...);
    ``usd`` is filled in when the call is priced.
    """

    model: str | None
    usage: Usage
    kind: str = ""
    usd: float | None = None


class LLMRequest(NamedTuple):  # immutable, and ~5x cheaper to make than a frozen dataclass
    """What a call asks for, in provider-neutral terms.

    ``messages`` keeps the OpenAI chat shape (``{"role": ..., "content": ...}``); adapters
    for other APIs convert to it for estimation. ``prompt`` holds raw inputs counted with no
    chat framing (a legacy completion's prompt, an embedding's inputs): strings, or token
    arrays (lists of ints). ``max_output_tokens`` is the caller's own output cap (``None``
    when unset).

    >>> LLMRequest(provider="openai", operation="chat", model="gpt-4o",
    ...            messages=[{"role": "user", "content": "hi"}]).model
    'gpt-4o'
    """

    provider: str
    operation: str
    model: str
    messages: Sequence[Mapping[str, Any]] = ()
    max_output_tokens: int | None = None
    stream: bool = False
    n: int = 1
    tools: Sequence[Any] = ()
    prompt: Sequence[Any] = ()
    server_address: str | None = None
    server_port: int | None = None
    #: Budget actions this request cannot take, because its door cannot apply them (an image
    #: has no output cap to clamp; a metered function without a ``model`` argument cannot be
    #: downgraded). A budget asking for one of them skips it, and the record says why.
    fixed: frozenset[str] = frozenset()
    #: Expected billable units of an audio, speech or image call, estimated by its adapter from
    #: the request (keys as in ``Usage.units``: ``audio_seconds``, ``audio_output_seconds``,
    #: ``characters``, ``images``, ``image_input_tokens``, ``image_output_tokens``). Pre-flight
    #: prices them with the prompt; the image token units add to the estimate's input and
    #: output tokens. A key ``"images@<quality>/<size>"`` (e.g. ``"images@high/1024-x-1024"``)
    #: counts images whose list price the table files per image under
    #: ``<quality>/<size>/<model>``: when that entry exists it prices them instead of
    #: ``image_output_tokens``. Empty for token-only calls (chat, embeddings).
    units: Mapping[str, float] = _NO_UNITS  # shared: no dict per call
    #: The service tier the caller asked for when it has its own price (``"priority"``,
    #: ``"flex"``, Anthropic's ``"fast"`` mode): pre-flight reserves at that tier's rates.
    service_tier: str | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """A pre-flight estimate of one call: tokens and USD (``usd`` is 0.0 when unpriced).

    ``output_tokens`` is the worst case: the caller's cap, or the model's maximum output.
    """

    input_tokens: int
    output_tokens: int
    usd: float
    priced: bool = True


@dataclass(slots=True)
class CallRecord:
    """One ledger line: everything known about one call once it has ended.

    ``status`` is ``"ok"``, ``"error"`` (the provider or the network failed; zero cost unless
    usage was reported or output had streamed, which is charged as estimated), ``"blocked"``
    (a budget stopped it before any traffic) or ``"abandoned"`` (a stream the caller stopped
    reading; see :mod:`tollgate.streams`). ``estimated`` is true when the usage was not
    reported by the provider but estimated by tollgate. ``usage.parts``, ``usage.service_tier``
    and ``unknown_usage`` say what beyond tokens the call was billed for, and what tollgate
    could not read. Times are Unix epoch seconds.
    """

    id: str
    started_at: float
    ended_at: float
    provider: str
    operation: str
    request_model: str
    response_model: str | None = None
    usage: Usage = field(default_factory=Usage)
    usd: float = 0.0
    priced: bool = True
    estimated: bool = False
    stream: bool = False
    status: Status = "ok"
    error: str | None = None
    response_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    #: What tollgate did to the call (:mod:`tollgate.decisions`), in order; each also reads as
    #: the dict it is stored as (``record.decisions[0]["action"]``).
    decisions: Sequence[Step] = ()
    #: Tool (function) calls the response asked for (what ``budget(tool_calls=...)`` counts).
    tool_calls: int = 0

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at

    @property
    def unknown_usage(self) -> Mapping[str, Any]:
        """The usage fields the provider sent that tollgate does not know (``usage.unknown``)."""
        return self.usage.unknown

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (usage flattened into ``usage``; tags and decisions as plain data)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["usage"] = usage_dict(self.usage)
        d["tags"] = dict(self.tags)
        d["decisions"] = [stored(x) for x in self.decisions]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CallRecord:
        data = dict(d)
        data["usage"] = usage_of(data.get("usage") or {})
        data["decisions"] = tuple(
            x if isinstance(x, Step) else step_from_dict(x) for x in data.get("decisions") or ()
        )
        return cls(**data)


def usage_dict(usage: Usage) -> dict[str, Any]:
    """``usage`` as JSON-ready data (parts as a list of dicts, each with its own usage)."""
    d = {f.name: getattr(usage, f.name) for f in dataclasses.fields(Usage)}
    d["units"] = dict(usage.units)
    d["unknown"] = dict(usage.unknown)
    d["parts"] = [
        {"model": p.model, "kind": p.kind, "usd": p.usd, "usage": usage_dict(p.usage)} for p in usage.parts
    ]
    return d


def usage_of(data: Mapping[str, Any]) -> Usage:
    """The Usage :func:`usage_dict` wrote."""
    d = dict(data)
    d["parts"] = parts_of(d.pop("parts", None) or ())
    if "unknown" in d:
        d["unknown"] = dict(d["unknown"] or {})
    return Usage(**d)


def parts_of(data: Sequence[Mapping[str, Any]]) -> tuple[UsagePart, ...]:
    """The parts :func:`usage_dict` wrote (``usage["parts"]``)."""
    return tuple(
        UsagePart(p.get("model"), usage_of(p.get("usage") or {}), p.get("kind") or "", p.get("usd"))
        for p in data
    )
