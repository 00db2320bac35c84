"""The bundled price table: what each model costs, and how a model name finds its price.

``prices.json`` is generated from litellm's cost map by ``scripts/update_prices.py`` and read
once, on the first :func:`default_table` call. Every price is USD per token unless its name
says per second, character or image (``web_search`` and ``maps_grounding`` are USD per
request); ``None`` means the source lists no such price.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["ModelPrice", "PriceTable", "PriceTier", "ServiceTierPrice", "default_table", "has_price"]


@dataclass(frozen=True, slots=True)
class PriceTier:
    """The per-token rates that replace a model's own once the prompt exceeds a size.

    Providers such as Gemini and OpenAI's GPT-5.4 bill the *whole* call at a higher rate when
    its input is long: above ``above_input_tokens`` input tokens every token of the call is
    billed at these rates. An audio rate left ``None`` is the model's own.

    >>> PriceTier(above_input_tokens=200_000, input=2.5e-06, output=1.5e-05).output
    1.5e-05
    """

    above_input_tokens: int
    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    reasoning: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None
    batch_cache_read: float | None = None
    batch_cache_write: float | None = None
    cache_write_12h: float | None = None
    audio_input: float | None = None
    batch_cache_write_12h: float | None = None
    batch_audio_input: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceTierPrice:
    """The rates of a call served at a service tier (``Usage.service_tier``), as litellm bills them.

    ``name`` is the tier (``"priority"``, ``"flex"``, ``"balanced"``, ``"ultrafast"``, or
    ``"fast"``, Anthropic's fast mode). A rate left ``None`` is the model's standard one. Long
    prompts cross ``tiers``, written out in full (lowest threshold first): above a threshold a
    rate is the tier's own above-threshold rate, else the *standard* above-threshold rate, else
    the tier's rate below it, as in litellm. When the tier lists its own ``output`` but no
    ``reasoning``, reasoning tokens bill at the tier's output rate. ``multiplier`` scales the
    whole token cost (Anthropic's fast mode); tool fees are not scaled.

    >>> ServiceTierPrice("priority", input=2.5e-06, output=2e-05).cache_read is None
    True
    """

    name: str
    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    audio_input: float | None = None
    multiplier: float = 1.0
    tiers: tuple[PriceTier, ...] = ()
    cache_write_1h: float | None = None
    cache_write_12h: float | None = None
    image_output: float | None = None


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What one model costs, as listed by one provider.

    Per-token prices: ``input``, ``output``, ``cache_read`` (a prompt-cache hit),
    ``cache_write`` (writing the prompt cache; ``cache_write_1h`` for Anthropic's one-hour
    cache, ``cache_write_12h`` for OpenAI's twelve-hour one), ``reasoning`` (only when
    thinking tokens have their own price), ``audio_input``,
    ``audio_output``, ``image_input``, ``image_output`` and ``image_cache_read`` (image tokens
    of image models such as gpt-image-1, billed apart from their text tokens) and the
    ``batch_*`` prices of batch APIs. ``tiers`` hold higher rates for long prompts, lowest
    threshold first. The ``*_per_second``, ``*_per_character`` and ``*_per_image`` prices are
    for audio and image endpoints. ``service_tiers`` hold the rates of the service tiers the
    model lists its own prices for (see :meth:`service_tier`). ``web_search`` and
    ``maps_grounding`` are USD per server-side web search (Google Search grounding) and per
    Google Maps grounding request; ``search_per_prompt`` says they are billed once per prompt
    that used them, however many queries it ran (Gemini 2.x).

    >>> p = ModelPrice("my-model", "openai", input=1e-06, output=4e-06, max_output_tokens=8192)
    >>> p.input * 1000 + p.output * 500
    0.003
    """

    model: str
    provider: str
    mode: str | None = None
    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    reasoning: float | None = None
    audio_input: float | None = None
    audio_output: float | None = None
    tiers: tuple[PriceTier, ...] = ()
    batch_input: float | None = None
    batch_output: float | None = None
    batch_cache_read: float | None = None
    batch_cache_write: float | None = None
    batch_audio_input: float | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    input_per_second: float | None = None
    output_per_second: float | None = None
    input_per_character: float | None = None
    output_per_character: float | None = None
    input_per_image: float | None = None
    output_per_image: float | None = None
    image_input: float | None = None
    image_output: float | None = None
    image_cache_read: float | None = None
    service_tiers: tuple[ServiceTierPrice, ...] = ()
    web_search: float | None = None
    maps_grounding: float | None = None
    search_per_prompt: bool = False
    cache_write_12h: float | None = None
    batch_cache_write_12h: float | None = None

    def service_tier(self, name: str | None) -> ServiceTierPrice | None:
        """The rates of a call served at service tier ``name``, or ``None`` for standard rates.

        Case-insensitive. ``"fast"`` is Anthropic's fast mode where the model lists one, else
        litellm's alias of ``"priority"``. A tier the model lists no price for (``"flex"`` on a
        model without flex prices, ``"scale"``, ``"default"``) bills the standard rates.

        >>> priority = ServiceTierPrice("priority", input=2e-06)
        >>> p = ModelPrice("m", "openai", input=1e-06, service_tiers=(priority,))
        >>> p.service_tier("Fast").input, p.service_tier("flex")
        (2e-06, None)
        """
        if not name or not self.service_tiers:
            return None
        key = name.lower()
        for tier in self.service_tiers:
            if tier.name == key:
                return tier
        return self.service_tier("priority") if key == "fast" else None


_PRICE_OVERRIDES = ("input", "output", "cache_read", "cache_write", "reasoning")
_LIMIT_OVERRIDES = ("max_input_tokens", "max_output_tokens")
OVERRIDE_KEYS = _PRICE_OVERRIDES + _LIMIT_OVERRIDES
_BATCH_FIELDS = (
    "batch_input",
    "batch_output",
    "batch_cache_read",
    "batch_cache_write",
    "batch_cache_write_12h",
    "batch_audio_input",
)

# Provider names as callers spell them (litellm's variants, OpenTelemetry's gen_ai.provider.name
# values) -> the name the table files the provider's models under.
_PROVIDER_ALIASES = {
    "bedrock_converse": "bedrock",
    "aws.bedrock": "bedrock",
    "azure_text": "azure",
    "az.ai.openai": "azure",
    "azure.ai.openai": "azure",
    "az.ai.inference": "azure_ai",
    "azure.ai.inference": "azure_ai",
    "cohere_chat": "cohere",
    "gcp.gemini": "gemini",
    "gcp.gen_ai": "gemini",
    "google": "gemini",
    "gcp.vertex_ai": "vertex_ai",
    "vertex": "vertex_ai",
    "mistral_ai": "mistral",
    "x_ai": "xai",
    "ibm.watsonx.ai": "watsonx",
}

# Snapshot suffixes, tried only when the full name has no entry: gpt-4o-2024-08-06,
# claude-3-5-sonnet-20241022, gpt-4-0613, Vertex's claude-3-5-sonnet@20240620, Gemini's
# gemini-2.0-flash-001, and -latest.
_SNAPSHOT = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-\d{4}|-\d{3}|-latest)$")
# A maker's models sold through these clouds cost the maker's list price there, so a model the
# named provider does not list is priced from them. Open-weights models differ from host to
# host, so other providers' entries are never used for a provider the table knows.
_SAME_LIST_PRICE = {
    "anthropic": frozenset({"bedrock", "vertex_ai"}),
    "bedrock": frozenset({"anthropic"}),
    "vertex_ai": frozenset({"gemini", "anthropic"}),
    "gemini": frozenset({"vertex_ai"}),
    "openai": frozenset({"azure"}),
    "azure": frozenset({"openai"}),
}
# Bedrock files Anthropic's models as anthropic.claude-sonnet-4-20250514-v1:0; the cost map has
# no direct Anthropic entry for some of them (Claude 3.x, Sonnet 4, Opus 4.x), and Bedrock's
# on-demand price is Anthropic's list price, so those names fall back to it.
_BEDROCK_ANTHROPIC = re.compile(r"^anthropic\.(claude-.+)-v\d+(?::\d+)?$")


@functools.lru_cache(maxsize=1024)
def provider_family(provider: str) -> str:
    """The table's name for a provider: ``vertex_ai-language-models`` -> ``vertex_ai``.

    >>> provider_family("vertex_ai-anthropic_models"), provider_family("aws.bedrock")
    ('vertex_ai', 'bedrock')
    """
    name = provider.strip().lower().removeprefix("text-completion-")
    name = _PROVIDER_ALIASES.get(name, name)
    return _PROVIDER_ALIASES.get(name.split("-", 1)[0], name.split("-", 1)[0])


class PriceTable:
    """Model prices, looked up by the names callers use.

    ``lookup`` is case-insensitive and resolves provider prefixes (``openai/gpt-4o``), dated
    snapshots (``gpt-4o-2024-08-06``, else ``gpt-4o``), Azure's spelling (``gpt-35-turbo``)
    and, with a ``provider`` hint, picks that provider's entry among same-named ones.
    Results, misses included, are cached: a repeated lookup is one cache hit.

    >>> table = PriceTable([ModelPrice("gpt-4o", "openai", input=2.5e-06, output=1e-05)])
    >>> table.lookup("OpenAI/GPT-4o-2024-11-20").model
    'gpt-4o'
    >>> table.lookup("gpt-4o", provider="openrouter").provider  # a provider the table lacks
    'openai'
    >>> table.lookup("no-such-model") is None
    True
    """

    __slots__ = ("_by_name", "_cached_resolve", "_families", "_overrides", "_prefixes", "_prices", "metadata")

    def __init__(
        self,
        prices: Iterable[ModelPrice],
        *,
        metadata: Mapping[str, Any] | None = None,
        overrides: Iterable[ModelPrice] = (),
    ) -> None:
        self.metadata: Mapping[str, Any] = dict(metadata or {})
        self._prices = {p.model.lower(): p for p in prices}
        self._overrides = {p.model.strip().lower(): p for p in overrides}
        entries = [(key, (provider_family(p.provider), has_price(p), p)) for key, p in self._prices.items()]
        self._families = frozenset(family for _, (family, _, _) in entries)
        self._prefixes = self._families | {p.provider.lower() for p in self._prices.values()}
        # name -> [(provider family, priced?, price)]: the entry filed under exactly that name
        # first, then those that share it once a provider prefix is dropped, in table order.
        by_name: dict[str, list[tuple[str, bool, ModelPrice]]] = {}
        for key, entry in entries:
            by_name.setdefault(key, []).append(entry)
        for key, entry in entries:
            for alias in self._aliases(key, entry[0]):
                by_name.setdefault(alias, []).append(entry)
        self._by_name = by_name
        self._cached_resolve = functools.lru_cache(maxsize=4096)(self._resolve)

    def __len__(self) -> int:
        return len(self._prices)

    def __iter__(self) -> Iterator[ModelPrice]:
        return iter(self._prices.values())

    def lookup(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``model``, or ``None`` when the table has none.

        ``provider`` (``"gemini"``, ``"vertex_ai"``, ``"azure"``, or an OpenTelemetry
        ``gen_ai.provider.name`` such as ``"gcp.gemini"``) chooses among entries that share a
        name. When that provider lists no such model, the clouds that resell its maker's
        models at list price stand in (Anthropic and Bedrock or Vertex, Gemini and Vertex,
        OpenAI and Azure), but no other host: open-weights models cost different amounts at
        different hosts. With no provider, or one the table does not know, any provider's
        priced entry will do.

        >>> t = default_table()
        >>> t.lookup("gemini-2.5-pro", provider="gemini").model
        'gemini/gemini-2.5-pro'
        >>> t.lookup("gemini-2.5-pro", provider="vertex_ai").provider
        'vertex_ai-language-models'
        """
        return self._cached_resolve(model, provider)

    def with_overrides(self, prices: Mapping[str, Mapping[str, float]]) -> PriceTable:
        """A copy of this table in which ``prices`` win; the table itself is unchanged.

        Keys per model: ``input``, ``output``, ``cache_read``, ``cache_write``, ``reasoning``
        (USD per token) and ``max_input_tokens``, ``max_output_tokens``. Fields left out keep
        the model's listed values. An overridden price holds at every prompt size (it replaces
        that rate in the model's long-prompt tiers), and batch calls of a model with any price
        overridden cost half its standard prices, not the listed batch prices. An override
        also prices the model's dated snapshots (``gpt-4o`` covers ``gpt-4o-2024-08-06``, the
        name responses report). A model named without a provider prefix is overridden for
        every provider, ``openai/gpt-4o`` only for OpenAI. Overriding a name the table does
        not know adds it, and then needs both ``input`` and ``output``.

        >>> table = default_table().with_overrides({"gpt-4o": {"input": 2e-06}})
        >>> table.lookup("gpt-4o").input, table.lookup("openai/gpt-4o-2024-08-06").input
        (2e-06, 2e-06)
        >>> table.lookup("gpt-4o").output == default_table().lookup("gpt-4o").output
        True
        >>> default_table().with_overrides({"gpt-4o": {"input": -1.0}})
        Traceback (most recent call last):
        ...
        ValueError: price override for 'gpt-4o': input=-1.0 is negative
        """
        added = dict(self._overrides)
        for model, fields in prices.items():
            if not isinstance(fields, Mapping):
                raise ValueError(f"price override for {model!r} must be a mapping such as {{'input': 1e-06}}")
            _check_override(model, fields)
            base = self.lookup(model)
            if base is None:
                missing = [k for k in ("input", "output") if k not in fields]
                if missing:
                    raise ValueError(
                        f"price override for {model!r}: the table has no such model, so "
                        f"{' and '.join(missing)} must be given"
                    )
                base = ModelPrice(model=model, provider="custom")
            added[model.strip().lower()] = _overridden(base, model.strip(), fields)
        return PriceTable(self._prices.values(), metadata=self.metadata, overrides=added.values())

    def _aliases(self, key: str, family: str) -> Iterable[str]:
        head, sep, rest = key.partition("/")
        bare = rest if sep and head in self._prefixes else key
        if bare != key:
            yield bare
        if family == "bedrock" and (m := _BEDROCK_ANTHROPIC.match(bare)):
            yield m[1]

    def _candidates(self, name: str, hint: str | None) -> list[str]:
        # Most specific first: the name as given (under the hinted provider first), without
        # its provider prefix, spelling variants, and last without a snapshot suffix.
        if self._has_prefix(name):
            forms = [name, name.partition("/")[2]]
        else:
            forms = [f"{hint}/{name}", name] if hint in self._prefixes else [name]
        if forms[-1].startswith("ft:"):
            # A fine-tune, ft:gpt-4o-mini-2024-07-18:org::id, is priced as ft:gpt-4o-mini-2024-07-18.
            forms.append(":".join(forms[-1].split(":", 2)[:2]))
        for form in list(forms):
            if "gpt-35" in form:
                forms.append(form.replace("gpt-35", "gpt-3.5"))
            elif "gpt-3.5" in form:
                forms.append(form.replace("gpt-3.5", "gpt-35"))
        forms += [_SNAPSHOT.sub("", form) for form in forms]
        return list(dict.fromkeys(forms))

    def _has_prefix(self, name: str) -> bool:
        head, sep, _ = name.partition("/")
        return bool(sep) and head in self._prefixes

    def _resolve(self, model: str, provider: str | None) -> ModelPrice | None:
        name = model.strip().lower()
        if not name:
            return None
        hint = provider_family(provider) if provider else None
        if hint is None and self._has_prefix(name):
            hint = provider_family(name.partition("/")[0])
        candidates = self._candidates(name, hint)
        for candidate in candidates:
            if (override := self._overrides.get(candidate)) is not None:
                return override
        if hint in self._families:
            found = self._first(candidates, frozenset({hint}), priced_only=False)
            if found is not None:
                return found
        # Beyond the provider's own entries, prefer names without a provider prefix: the
        # maker's entry (claude-3-5-sonnet on Vertex) over a reseller's (gateway/anthropic/...).
        elsewhere = sorted(candidates, key=self._has_prefix)
        if provider and hint in self._families:
            siblings = _SAME_LIST_PRICE.get(hint)
            return self._first(elsewhere, siblings, priced_only=True) if siblings else None
        # No provider given (a prefix like openai/ in openai/gpt-oss-120b may just be an org).
        return self._first(elsewhere, None, priced_only=True)

    def _first(
        self, candidates: Iterable[str], families: frozenset[str] | None, *, priced_only: bool
    ) -> ModelPrice | None:
        for candidate in candidates:
            for family, priced, price in self._by_name.get(candidate, ()):
                if (families is None or family in families) and (priced or not priced_only):
                    return price
        return None


def has_price(p: ModelPrice) -> bool:
    """True when the entry lists any price (some list only token limits, e.g. subscription models)."""
    if p.input is not None or p.output is not None:  # nearly every entry: decided at once
        return True
    prices = (
        p.input,
        p.output,
        p.input_per_second,
        p.output_per_second,
        p.input_per_character,
        p.output_per_character,
        p.input_per_image,
        p.output_per_image,
        p.image_input,
        p.image_output,
    )
    return bool(p.tiers) or any(v is not None for v in prices)


def _check_override(model: str, fields: Mapping[str, float]) -> None:
    for key, value in fields.items():
        if key not in OVERRIDE_KEYS:
            expected = ", ".join(OVERRIDE_KEYS)
            raise ValueError(f"price override for {model!r}: unknown key {key!r}; expected one of {expected}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"price override for {model!r}: {key}={value!r} is not a finite number")
        if value < 0:
            raise ValueError(f"price override for {model!r}: {key}={value!r} is negative")


def _overridden(base: ModelPrice, model: str, fields: Mapping[str, float]) -> ModelPrice:
    rates: dict[str, Any] = {k: float(v) for k, v in fields.items() if k in _PRICE_OVERRIDES}
    if rates:
        # Listed batch prices derive from the list prices being replaced; batch calls then
        # cost half the overridden ones instead.
        rates.update(dict.fromkeys(_BATCH_FIELDS))
    limits: dict[str, Any] = {k: int(v) for k, v in fields.items() if k in _LIMIT_OVERRIDES}
    tiers = tuple(dataclasses.replace(t, **rates) for t in base.tiers)
    # An overridden rate holds at every service tier too (at every prompt size of each).
    listed = {k: v for k, v in rates.items() if k in _PRICE_OVERRIDES}
    service_tiers = tuple(
        dataclasses.replace(s, tiers=tuple(dataclasses.replace(t, **listed) for t in s.tiers), **listed)
        for s in base.service_tiers
    )
    return dataclasses.replace(base, model=model, tiers=tiers, service_tiers=service_tiers, **rates, **limits)


def _from_json(text: str) -> PriceTable:
    data = json.loads(text)
    prices = []
    for model, fields in data["models"].items():
        tiers = tuple(PriceTier(**t) for t in fields.pop("tiers", ()))
        service_tiers = tuple(
            ServiceTierPrice(name, tiers=tuple(PriceTier(**t) for t in rates.pop("tiers", ())), **rates)
            for name, rates in fields.pop("service_tiers", {}).items()
        )
        prices.append(ModelPrice(model=model, tiers=tiers, service_tiers=service_tiers, **fields))
    return PriceTable(prices, metadata=data.get("metadata"))


@functools.cache
def default_table() -> PriceTable:
    """The table bundled with tollgate, read from ``prices.json`` on first use.

    >>> table = default_table()
    >>> table.lookup("gpt-4o-mini").provider
    'openai'
    >>> table.metadata["source"]
    'litellm/model_prices_and_context_window_backup.json'
    """
    text = resources.files("tollgate.pricing").joinpath("prices.json").read_text(encoding="utf-8")
    return _from_json(text)
