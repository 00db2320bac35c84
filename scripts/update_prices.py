"""Regenerate ``tollgate/pricing/prices.json`` from the cost map shipped inside ``litellm``.

Prices are data, never typed by hand: this script reads litellm's
``model_prices_and_context_window_backup.json``, keeps what tollgate's cost computation and
estimation need, resolves litellm's threshold keys into explicit tiers, and writes one entry
per line so a price update reads as a small diff.

    python scripts/update_prices.py                    # the installed litellm's map
    python scripts/update_prices.py --source map.json  # any copy of that file

Every key of the map is accounted for: read into the table, descriptive (a capability, a
limit, provenance: :data:`DESCRIPTIVE_KEYS`), or a price tollgate leaves out on purpose, each
with its reason (:data:`IGNORED_PRICES`). A key the map gains that is none of these stops the
script before it writes anything (``--allow-unknown-keys`` writes anyway), so a new billing
dimension cannot slip in as a silent price drift: decide how it bills, then list it here.

litellm itself is never imported: its import is slow and fetches the map over the network.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

SOURCE_NAME = "model_prices_and_context_window_backup.json"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "tollgate" / "pricing" / "prices.json"

#: tollgate field <- litellm key; every value is USD per token unless the name says otherwise.
FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
    "cache_write_12h": "cache_creation_input_token_cost_above_12hr",
    "reasoning": "output_cost_per_reasoning_token",
    "audio_input": "input_cost_per_audio_token",
    "audio_output": "output_cost_per_audio_token",
    "batch_input": "input_cost_per_token_batches",
    "batch_output": "output_cost_per_token_batches",
    "batch_cache_read": "cache_read_input_token_cost_batches",
    "batch_cache_write": "cache_creation_input_token_cost_batches",
    "batch_cache_write_12h": "cache_creation_input_token_cost_above_12hr_batches",
    "batch_audio_input": "input_cost_per_audio_token_batches",
    "input_per_second": "input_cost_per_second",
    "output_per_second": "output_cost_per_second",
    "input_per_character": "input_cost_per_character",
    "output_per_character": "output_cost_per_character",
    "input_per_image": "input_cost_per_image",
    "output_per_image": "output_cost_per_image",
    "image_input": "input_cost_per_image_token",
    "image_output": "output_cost_per_image_token",
    "image_cache_read": "cache_read_input_image_token_cost",
}
#: The rates a long prompt's threshold replaces (``<key>_above_<N>_tokens``), and their keys.
#: litellm tiers the text rates and the cache-write lifetimes together and audio by its own
#: thresholds; as each rate changes only at a threshold that lists it, one walk over all of
#: them resolves every rate as litellm does.
THRESHOLD_RATE_KEYS = {
    name: FIELDS[name]
    for name in (
        "input",
        "output",
        "cache_read",
        "cache_write",
        "cache_write_1h",
        "cache_write_12h",
        "audio_input",
    )
}
#: The rates a prompt-size tier replaces; a separate reasoning rate stays flat in litellm.
TIER_FIELDS = (*THRESHOLD_RATE_KEYS, "reasoning")
#: The batch rates, each tiered by its own ``<key>_above_<N>_tokens_batches`` thresholds.
BATCH_RATE_KEYS = {
    "batch_input": "input_cost_per_token",
    "batch_output": "output_cost_per_token",
    "batch_cache_read": "cache_read_input_token_cost",
    "batch_cache_write": "cache_creation_input_token_cost",
    "batch_cache_write_12h": "cache_creation_input_token_cost_above_12hr",
    "batch_audio_input": "input_cost_per_audio_token",
}
BATCH_FIELDS = tuple(BATCH_RATE_KEYS)

#: litellm's cost-key suffix of each service tier it prices (``get_service_tier_cost_key``:
#: ``input_cost_per_token_priority``...); a call served at "fast" bills the ``_priority`` keys.
SERVICE_TIERS = ("priority", "flex", "balanced", "ultrafast")
#: tollgate field <- litellm key of the flat rates a service tier may list (with its suffix).
SERVICE_TIER_FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
    "cache_write_12h": "cache_creation_input_token_cost_above_12hr",
    "reasoning": "output_cost_per_reasoning_token",
    "audio_input": "input_cost_per_audio_token",
    "image_output": "output_cost_per_image_token",
}

#: Server-side tool fees. litellm prices a web search at ``search_context_size_medium`` unless an
#: OpenAI request names another context size; every provider tollgate serves lists one price for
#: all three sizes. Gemini models (``llms/gemini/cost_calculator.py``) bill Google Search and
#: Google Maps grounding once per grounded prompt unless ``web_search_billing_unit`` is
#: ``per_query``, and fall back to these list prices when the map has none.
GOOGLE_MODELS = "vertex_ai-language-models"  # Google's own models on Vertex AI
GEMINI_WEB_SEARCH_DEFAULT = 35e-3  # cost_per_web_search_request's _DEFAULT_COST
GEMINI_MAPS_DEFAULT_PER_QUERY = 14e-3  # GOOGLE_MAPS_GROUNDING_DEFAULT_COST_PER_QUERY
GEMINI_MAPS_DEFAULT_PER_PROMPT = 25e-3  # GOOGLE_MAPS_GROUNDING_DEFAULT_COST_PER_PROMPT


def _alternatives(keys: Iterable[str]) -> str:
    # Longest first, so cache_creation_input_token_cost_above_1hr wins over its prefix.
    return "|".join(sorted(set(keys), key=len, reverse=True))


# "<rate>_above_200k_tokens", and the same with a service tier's suffix (_priority, _flex...)
# or _batches: cache_creation_input_token_cost_above_1hr_above_200k_tokens_priority.
_THRESHOLD_KEY = re.compile(
    rf"^(?P<key>{_alternatives(THRESHOLD_RATE_KEYS.values())})_above_(?P<n>\d+k?)_tokens"
    rf"(?:_(?P<suffix>{'|'.join((*SERVICE_TIERS, 'batches'))}))?$"
)
_BATCH_FIELD = {key: field for field, key in BATCH_RATE_KEYS.items()}
# litellm switches xAI to the higher tier once the prompt *reaches* the threshold (>=).
_INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})

# -- accounting for every key of the map ---------------------------------------------------------

#: Top-level entries that are not models: the format's documentation and litellm's rules for
#: names it does not list (capabilities and limits, no prices).
NOT_MODELS = frozenset({"sample_spec", "fallback_generalizations"})
#: Keys read into the table besides the per-token fields above.
READ_KEYS = frozenset(
    {
        "litellm_provider",
        "mode",
        "max_input_tokens",
        "max_output_tokens",
        "alias_of",
        "tiered_pricing",
        "provider_specific_entry",
        "search_context_cost_per_query",
        "search_queries_cost_per_query",
        "google_maps_grounding_cost_per_query",
        "web_search_billing_unit",
        *FIELDS.values(),
        *(f"{key}_{suffix}" for key in SERVICE_TIER_FIELDS.values() for suffix in SERVICE_TIERS),
        "tiered_pricing[].range",
        "tiered_pricing[].input_cost_per_token",
        "tiered_pricing[].output_cost_per_token",
        "tiered_pricing[].cache_read_input_token_cost",
        "tiered_pricing[].cache_creation_input_token_cost",
        "tiered_pricing[].output_cost_per_reasoning_token",
        "provider_specific_entry.fast",
        "search_context_cost_per_query.search_context_size_low",
        "search_context_cost_per_query.search_context_size_medium",
        "search_context_cost_per_query.search_context_size_high",
    }
)
#: Keys that price nothing: what a model supports, its limits, where its data came from, how
#: litellm routes or tokenizes it.
DESCRIPTIVE_KEYS = frozenset(
    {
        "audio_transcription_config",
        "bedrock_converse_supports_strict_tools",
        "bedrock_output_config_effort_ceiling",
        "comment",
        "default_reasoning_effort",
        "deprecation_date",
        "deprecation_source",
        "gemini_audio_only_live",
        "gemini_native_audio",
        "max_tokens",  # legacy: the output or the input limit depending on the entry (gone in 1.110)
        "metadata",
        "output_vector_size",
        "prompt_cache_min_tokens",
        "reasoning_contexts",
        "reasoning_effort_levels",
        "reasoning_modes",
        "rpm",
        "source",
        "successor_model",
        "thinking_always_on",
        "thinking_on_by_default",
        "tpm",
        "use_openai_responses_path",
        "uses_embed_content",
        "vertex_ai_audio_api",
        "provider_specific_entry.bedrock_invocation_schema",
        "provider_specific_entry.realtime_ga_only",
        "provider_specific_entry.transcription_json_or_text_only",
        "provider_specific_entry.transcription_usage_duration",
    }
)
#: Families of descriptive keys; a key that names a cost, price or multiplier is never one.
DESCRIPTIVE_PREFIXES = ("supports_", "supported_", "token_count_")
_PRICE_WORDS = re.compile(r"cost|price|pricing|multiplier|uplift|fee")

_NOT_METERED = "a kind of call tollgate does not meter"
_PER_RESOLUTION = "priced by output size or resolution; tollgate bills the model's flat price"
_CACHED_AUDIO = "Usage has no cached-audio count: cached audio bills at the cache-read rate"
_UPLIFT = "an uplift for the endpoint, region or geography a call used, which Usage does not carry"
_VIDEO = "video input and generated video: Usage has no video count"
_GEMINI_1 = "rates of Vertex AI's character-priced Gemini 1.x models; tollgate bills them per token"

#: Prices tollgate leaves out on purpose, and why: a call is then billed without that price
#: (at the price named in the reason, where there is one).
IGNORED_PRICES: Mapping[str, str] = {
    "annotation_cost_per_page": _NOT_METERED,
    "annotation_cost_per_page_batches": _NOT_METERED,
    "cache_creation_input_audio_token_cost": (
        "Usage does not split cache writes by modality: audio writes bill at the cache-write rate"
    ),
    "cache_read_input_audio_token_cost": _CACHED_AUDIO,
    "cache_read_input_audio_token_cost_batches": _CACHED_AUDIO,
    "cache_read_input_audio_token_cost_flex": _CACHED_AUDIO,
    "cache_read_input_audio_token_cost_priority": _CACHED_AUDIO,
    "citation_cost_per_token": "Perplexity's citation tokens: no adapter reports them",
    "code_interpreter_cost_per_session": _NOT_METERED,
    "cost_per_second": "Bedrock provisioned throughput, billed by the hour of commitment",
    "explicit_cache_read_input_token_cost": (
        "a hit in an explicitly created cache (prompt_tokens_details.cache_type 'ephemeral'): "
        "Usage does not say which cache served a read, so reads bill at the higher implicit rate"
    ),
    "fedramp_uplift_multiplier": _UPLIFT,
    "file_search_cost_per_1k_calls": _NOT_METERED,
    "file_search_cost_per_gb_per_day": _NOT_METERED,
    "guardrail_cost_per_unit": _NOT_METERED,
    "input_cost_per_audio_per_second": "adapters report audio tokens, billed per audio token",
    "input_cost_per_audio_per_second_above_128k_tokens": _GEMINI_1,
    "input_cost_per_character_above_128k_tokens": _GEMINI_1,
    "input_cost_per_image_above_128k_tokens": _GEMINI_1,
    "input_cost_per_image_token_batches": "batch image tokens bill at the batch text rates",
    "input_cost_per_pixel": _PER_RESOLUTION,
    "input_cost_per_query": _NOT_METERED,  # search and rerank endpoints
    "input_cost_per_request": "a per-request fee of Perplexity's retired pplx-*-online models",
    "input_cost_per_text_message": _NOT_METERED,  # xAI voice sessions
    "input_cost_per_token_cache_hit": "a copy of cache_read_input_token_cost; litellm ignores it too",
    "input_cost_per_video_per_second": _VIDEO,
    "input_cost_per_video_per_second_above_128k_tokens": _VIDEO,
    "input_cost_per_video_per_second_above_8s_interval": _VIDEO,
    "input_cost_per_video_per_second_above_15s_interval": _VIDEO,
    "input_cost_per_video_token": _VIDEO,
    "input_cost_per_video_token_batches": _VIDEO,
    "input_dbu_cost_per_token": "the USD price in Databricks units; the USD price is read",
    "ocr_cost_per_credit": _NOT_METERED,
    "ocr_cost_per_page": _NOT_METERED,
    "ocr_cost_per_page_batches": _NOT_METERED,
    "off_peak_pricing": "time-of-day discounts: tollgate bills the standard, higher rates at every hour",
    "output_cost_per_character_above_128k_tokens": _GEMINI_1,
    "output_cost_per_image_token_batches": "batch image tokens bill at the batch text rates",
    "output_cost_per_pixel": _PER_RESOLUTION,
    "output_cost_per_video_per_second": _VIDEO,
    "output_cost_per_video_token": _VIDEO,
    "output_dbu_cost_per_token": "the USD price in Databricks units; the USD price is read",
    "regional_endpoint_uplift_multiplier": _UPLIFT,
    "regional_processing_uplift_multiplier_eu": _UPLIFT,
    "regional_processing_uplift_multiplier_us": _UPLIFT,
    "search_free_requests": "a free daily or monthly grounding quota per account; every request is billed",
    "vector_store_cost_per_gb_per_day": _NOT_METERED,
    "provider_specific_entry.dashscope_video_reference_input": _VIDEO,
    "provider_specific_entry.minimax_free_input_images": _NOT_METERED,  # image generation inputs
    "provider_specific_entry.volcengine_video_frames": _VIDEO,
    "tiered_pricing[].input_cost_per_query": _NOT_METERED,  # search endpoints, by results
    "tiered_pricing[].max_results_range": _NOT_METERED,
}
#: Families of ignored prices, by pattern.
IGNORED_PRICE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^output_cost_per_image_\d+(?:\.\d+)?K?$"), _PER_RESOLUTION),
    (re.compile(r"^output_cost_per_second_\d+[kp]$"), _PER_RESOLUTION),
    (re.compile(r"_decisions$"), _NOT_METERED),  # OpenAI's decisions endpoint
    (re.compile(r"^provider_specific_entry\.[a-z]{2}$"), _UPLIFT),  # Anthropic's usage.inference_geo
)


def account_for(key: str) -> str | None:
    """How the script treats map key ``key``: ``"read"``, ``"descriptive"``, the reason it is
    ignored, or ``None`` for a key nobody has decided about yet.

    Keys inside an entry's values are spelled ``tiered_pricing[].<key>``,
    ``provider_specific_entry.<key>`` and ``search_context_cost_per_query.<key>``.

    >>> account_for("input_cost_per_token_above_200k_tokens_priority")
    'read'
    >>> account_for("supports_vision"), account_for("off_peak_pricing")[:16]
    ('descriptive', 'time-of-day disc')
    >>> account_for("input_cost_per_hologram") is None
    True
    """
    if key in READ_KEYS:
        return "read"
    m = _THRESHOLD_KEY.match(key)
    if m is not None and (m["suffix"] != "batches" or m["key"] in _BATCH_FIELD):
        return "read"
    if key in DESCRIPTIVE_KEYS or (key.startswith(DESCRIPTIVE_PREFIXES) and not _PRICE_WORDS.search(key)):
        return "descriptive"
    if key in IGNORED_PRICES:
        return IGNORED_PRICES[key]
    return next((reason for pattern, reason in IGNORED_PRICE_PATTERNS if pattern.search(key)), None)


# The values whose keys price something, opened by _keys_of; off_peak_pricing is ignored whole.
_OPENED = ("provider_specific_entry", "search_context_cost_per_query")


def _keys_of(raw: Mapping[str, Any]) -> Iterator[str]:
    for key, value in raw.items():
        yield key
        if key == "tiered_pricing" and isinstance(value, list):
            for item in value:
                yield from (f"tiered_pricing[].{k}" for k in item) if isinstance(item, Mapping) else ()
        elif key in _OPENED and isinstance(value, Mapping):
            yield from (f"{key}.{k}" for k in value)


def unknown_keys(source: Mapping[str, Any]) -> dict[str, list[str]]:
    """The map's keys that :func:`account_for` does not know -> the models that list them."""
    unknown: dict[str, list[str]] = {}
    for name, raw in source.items():
        if name in NOT_MODELS or not isinstance(raw, Mapping):
            continue
        for key in _keys_of(raw):
            if account_for(key) is None:
                unknown.setdefault(key, []).append(name)
    return unknown


def find_source() -> Path | None:
    """The cost map inside the installed litellm, located without importing it."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / SOURCE_NAME


def litellm_version() -> str | None:
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return None


def _number(value: Any) -> float | None:
    # The map holds a few prices as strings ("3e-7"); litellm parses them, so do we.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number > 0 else None


def _threshold(text: str) -> int:
    return int(text[:-1]) * 1000 if text.endswith("k") else int(text)


def _thresholds(raw: Mapping[str, Any], suffix: str | None) -> dict[int, set[str]]:
    """The thresholds of ``raw``'s listed ``*_above_<N>_tokens`` keys with ``suffix`` (``None``:
    the standard ones), each with its spellings (keys spell 200k and 200000 either way)."""
    spellings: dict[int, set[str]] = {}
    for key, value in raw.items():
        if (m := _THRESHOLD_KEY.match(key)) and m["suffix"] == suffix and value is not None:
            spellings.setdefault(_threshold(m["n"]), set()).add(m["n"])
    return spellings


def _cross(
    raw: Mapping[str, Any], spellings: Iterable[str], running: dict[str, Any], suffix: str | None = None
) -> None:
    # One threshold crossed: each rate it lists replaces the running one. With a service tier's
    # suffix, the tier's above-threshold rate is preferred to the standard one.
    for text in sorted(spellings):
        for field, key in THRESHOLD_RATE_KEYS.items():
            standard = f"{key}_above_{text}_tokens"
            rate = _number(raw.get(f"{standard}_{suffix}")) if suffix else None
            if rate is None:
                rate = _number(raw.get(standard))
            if rate is not None:
                running[field] = rate


def threshold_tiers(raw: Mapping[str, Any], flat: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """Tiers from ``*_above_<N>_tokens`` keys, each rate resolved the way litellm resolves it.

    litellm walks the thresholds upwards and lets each crossed one replace the rates it names,
    keeping the lower tier's rate for the rest; a separate reasoning rate stays flat. Batch
    rates cross their own ``*_above_<N>_tokens_batches`` thresholds and otherwise stay at the
    flat batch rate; batch audio crosses the audio thresholds, batch or not (the batch rate at
    the highest one crossed, else the flat batch audio rate: ``_batch_rate`` in litellm's
    ``cost_calculator.py``).
    """
    spellings = _thresholds(raw, None)
    batch: dict[str, dict[int, float]] = {}
    for key, value in raw.items():
        m = _THRESHOLD_KEY.match(key)
        rate = _number(value)
        if m and m["suffix"] == "batches" and m["key"] in _BATCH_FIELD and rate is not None:
            batch.setdefault(_BATCH_FIELD[m["key"]], {})[_threshold(m["n"])] = rate
    crossable = {field: set(rates) for field, rates in batch.items()}
    audio = THRESHOLD_RATE_KEYS["audio_input"]
    listed_audio = (
        t for t, texts in spellings.items() for x in texts if raw.get(f"{audio}_above_{x}_tokens") is not None
    )
    crossable.setdefault("batch_audio_input", set()).update(listed_audio)
    thresholds = sorted(spellings.keys() | {t for rates in batch.values() for t in rates})
    shift = 1 if raw.get("litellm_provider") in _INCLUSIVE_THRESHOLD_PROVIDERS else 0

    tiers = []
    running: dict[str, Any] = {f: flat.get(f) for f in TIER_FIELDS}
    for threshold in thresholds:
        _cross(raw, spellings.get(threshold, ()), running)
        tier: dict[str, Any] = {"above_input_tokens": threshold - shift, **running}
        for field in BATCH_FIELDS:
            crossed = [t for t in crossable.get(field, ()) if t <= threshold]
            listed = batch.get(field, {}).get(max(crossed)) if crossed else None
            tier[field] = flat.get(field) if listed is None else listed
        tiers.append(tier)
    return tiers


def _service_tier(
    raw: Mapping[str, Any], flat: Mapping[str, float | None], suffix: str, *, always: bool = False
) -> dict[str, Any] | None:
    """The rates of one service tier, resolved the way litellm's ``_get_token_base_cost`` does.

    A rate the tier does not list is the standard one (``get_cost_per_unit`` drops the suffix),
    so only the tier's own flat rates are kept; ``None`` when it lists none (standard pricing),
    unless ``always``. Long prompts cross the standard thresholds and the tier's own
    (``input_cost_per_token_above_272k_tokens_flex``); at each crossed threshold a rate is the
    tier's above-threshold key, else the standard above-threshold key, else the rate below it,
    so a tier's thresholds are written out in full.

    Cache-write lifetimes (1h, 12h) resolve the same way. litellm 1.110 differs for a tier that
    lists no above-threshold rate for a lifetime: it skips the standard above-threshold rate and
    bills the flat one (``_first_present_key`` tests the tier's key only), so a Claude call served
    at "priority" would pay less for its long-prompt one-hour writes than at standard rates.
    tollgate keeps the standard above-threshold rate, as litellm does for every other rate.
    """
    own = {
        field: rate
        for field, key in SERVICE_TIER_FIELDS.items()
        if (rate := _number(raw.get(f"{key}_{suffix}"))) is not None
    }
    own_thresholds = _thresholds(raw, suffix)
    if not (own or own_thresholds or always):
        return None
    spellings = _thresholds(raw, None)
    for threshold, texts in own_thresholds.items():
        spellings.setdefault(threshold, set()).update(texts)
    shift = 1 if raw.get("litellm_provider") in _INCLUSIVE_THRESHOLD_PROVIDERS else 0
    running: dict[str, Any] = {field: own.get(field, flat.get(field)) for field in THRESHOLD_RATE_KEYS}
    tiers = []
    for threshold in sorted(spellings):
        _cross(raw, spellings[threshold], running, suffix)
        tiers.append({"above_input_tokens": threshold - shift, **running})
    entry: dict[str, Any] = dict(own)
    if tiers:
        entry["tiers"] = [{k: v for k, v in tier.items() if v is not None} for tier in tiers]
    return entry


def service_tiers(raw: Mapping[str, Any], flat: Mapping[str, float | None]) -> dict[str, dict[str, Any]]:
    """The service tiers a model lists its own rates for: ``{"priority": {...}, "flex": {...}}``.

    Anthropic's fast mode (``usage.speed == "fast"``) bills every token at a multiple of the
    rates the call would otherwise cost (``provider_specific_entry.fast``, applied by litellm's
    Anthropic ``cost_per_token``); it is kept as the ``"fast"`` tier, which otherwise bills the
    ``priority`` rates. Models priced by a ``tiered_pricing`` list ignore service tiers in
    litellm, so they list none here.
    """
    if raw.get("tiered_pricing"):
        return {}
    tiers = {
        suffix: entry for suffix in SERVICE_TIERS if (entry := _service_tier(raw, flat, suffix)) is not None
    }
    specific = raw.get("provider_specific_entry")
    fast = _number(specific.get("fast")) if isinstance(specific, Mapping) else None
    if raw.get("litellm_provider") == "anthropic" and fast is not None and fast != 1.0:
        priority = _service_tier(raw, flat, "priority", always=True) or {}
        tiers["fast"] = {**priority, "multiplier": fast}
    return tiers


def tool_fees(name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """USD per server-side tool request: ``web_search`` and ``maps_grounding``.

    The price litellm bills each request at: ``search_context_size_medium`` (Perplexity bills
    ``search_context_size_low``, in its own ``cost_per_token``). litellm prices every model on
    Gemini and Vertex AI but Claude with its Gemini calculator: once per grounded prompt
    (``search_per_prompt``) unless the model is billed ``per_query``, and at Google's list prices
    when the map lists none. Those defaults are written out for the models that can ground a
    prompt: Google's own (Gemini, Vertex AI's language models) and any that declare web search;
    partner models on Vertex AI (Llama, Mistral...) and media models get none.
    """
    provider = str(raw.get("litellm_provider") or "")
    search = raw.get("search_context_cost_per_query")
    search = search if isinstance(search, Mapping) else {}
    if provider == "perplexity":
        legacy = raw.get("search_queries_cost_per_query")
        size_low = (
            legacy
            if legacy is not None and not isinstance(legacy, Mapping)
            else search.get("search_context_size_low")
        )
        fee = _number(size_low)
        return {} if fee is None else {"web_search": fee}
    gemini_calculator = (
        provider == "gemini" or provider.startswith("vertex_ai")
    ) and "claude" not in name.lower()
    if not gemini_calculator:
        fee = _number(search.get("search_context_size_medium"))
        return {} if fee is None else {"web_search": fee}
    model = name.lower().rsplit("/", 1)[-1]
    if not (search or "gemini" in model or provider == GOOGLE_MODELS or raw.get("supports_web_search")):
        return {}  # a partner model on Vertex (Llama, Mistral...), or one that cannot search
    per_query = raw.get("web_search_billing_unit") == "per_query"
    maps = _number(raw.get("google_maps_grounding_cost_per_query"))
    if maps is None:
        maps = GEMINI_MAPS_DEFAULT_PER_QUERY if per_query else GEMINI_MAPS_DEFAULT_PER_PROMPT
    fees: dict[str, Any] = {
        "web_search": _number(search.get("search_context_size_medium", GEMINI_WEB_SEARCH_DEFAULT)),
        "maps_grounding": maps,
    }
    if not per_query:
        fees["search_per_prompt"] = True
    return fees


def listed_tiers(raw: Mapping[str, Any], flat: dict[str, float | None]) -> list[dict[str, Any]]:
    """Tiers from a ``tiered_pricing`` list (Alibaba, Volcengine): one tier bills the whole call.

    The first range becomes the entry's own rates (``flat`` is updated in place); each later
    range is a tier above its start. A rate a tier leaves out falls back as in litellm: cache
    rates to the tier's input rate (left ``None``), output to the model's flat output rate, and
    reasoning to the tier's output rate when the tier names one.
    """
    listed = [
        t for t in raw.get("tiered_pricing") or () if isinstance(t, dict) and len(t.get("range") or ()) == 2
    ]
    ranges = sorted(listed, key=lambda t: _number(t["range"][0]) or 0.0)
    model_output, model_reasoning = flat.get("output"), flat.get("reasoning")
    tiers = []
    for item in ranges:
        declares_output = item.get("output_cost_per_token") is not None
        rates: dict[str, Any] = {
            "input": _number(item.get("input_cost_per_token")) or 0.0,
            "output": _number(item.get("output_cost_per_token")) if declares_output else model_output,
            "cache_read": _number(item.get("cache_read_input_token_cost")),
            "cache_write": _number(item.get("cache_creation_input_token_cost")),
            # litellm bills the cache-write lifetimes at a range's own lifetime rates (no range
            # lists one), else at the range's write rate, never at the model's flat ones.
            "cache_write_1h": None,
            "cache_write_12h": None,
            "reasoning": (
                _number(item.get("output_cost_per_reasoning_token"))
                if item.get("output_cost_per_reasoning_token") is not None
                else None
                if declares_output
                else model_reasoning
            ),
        }
        start = int(_number(item["range"][0]) or 0)
        if start <= 0:
            flat.update(rates)
        else:
            tiers.append({"above_input_tokens": start, **rates, **{f: flat.get(f) for f in BATCH_FIELDS}})
    return tiers


def convert(raw: Mapping[str, Any], name: str = "") -> dict[str, Any] | None:
    """One tollgate entry from one litellm entry, or ``None`` when it has nothing usable."""
    flat: dict[str, float | None] = {field: _number(raw.get(key)) for field, key in FIELDS.items()}
    tiers = listed_tiers(raw, flat) if raw.get("tiered_pricing") else threshold_tiers(raw, flat)
    max_input = _count(raw.get("max_input_tokens"))
    max_output = _count(raw.get("max_output_tokens"))
    if not tiers and all(v is None for v in flat.values()) and max_input is None and max_output is None:
        return None
    by_service_tier = service_tiers(raw, flat)
    entry: dict[str, Any] = {
        "provider": raw.get("litellm_provider"),
        "mode": raw.get("mode"),
        "max_input_tokens": max_input,
        "max_output_tokens": max_output,
        **flat,
    }
    if tiers:
        entry["tiers"] = [{k: v for k, v in tier.items() if v is not None} for tier in tiers]
    if by_service_tier:
        entry["service_tiers"] = by_service_tier
    entry.update(tool_fees(name, raw))
    return {k: v for k, v in entry.items() if v is not None}


def build(source: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every entry of the map, by name; a row that is ``{"alias_of": <name>}`` is the entry it
    names, filed under its own name (``claude-sonnet-latest``), as litellm serves it. An alias
    of a missing entry or of another alias is dropped, as litellm drops it."""
    models: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for name, row in source.items():
        if name in NOT_MODELS or not isinstance(row, dict):
            continue
        target = row.get("alias_of")
        raw = source.get(target) if isinstance(target, str) else row
        if not isinstance(raw, dict) or isinstance(raw.get("alias_of"), str):
            continue
        if not raw.get("litellm_provider"):
            continue
        # Lookups are case-insensitive, so the first of two names differing only in case wins.
        if name.lower() in seen:
            continue
        entry = convert(raw, name)
        if entry is not None:
            models[name] = entry
            seen.add(name.lower())
    return models


def render(models: Mapping[str, Mapping[str, Any]], metadata: Mapping[str, Any]) -> str:
    def dumps(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    lines = [f"{dumps(name)}:{dumps(models[name])}" for name in sorted(models)]
    return '{"metadata":' + dumps(metadata) + ',\n"models":{\n' + ",\n".join(lines) + "\n}}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, help=f"litellm's {SOURCE_NAME} (default: the installed one)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: %(default)s")
    parser.add_argument(
        "--allow-unknown-keys",
        action="store_true",
        help="write the table even when the map has keys this script does not account for",
    )
    args = parser.parse_args(argv)

    installed = find_source()
    source_path: Path | None = args.source or installed
    if source_path is None:
        raise SystemExit("litellm is not installed; pass --source PATH")
    source = json.loads(source_path.read_text(encoding="utf-8"))
    unknown = unknown_keys(source)
    for key, names in sorted(unknown.items()):
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        print(f"unknown cost-map key {key!r} in {', '.join(names[:3])}{more}", file=sys.stderr)
    if unknown and not args.allow_unknown_keys:
        print(
            f"{len(unknown)} key(s) of {source_path} are neither read nor listed as ignored in "
            f"{Path(__file__).name}: decide how each bills, then read it or list it "
            "(--allow-unknown-keys writes the table anyway); nothing written",
            file=sys.stderr,
        )
        return 1
    models = build(source)
    metadata = {
        "source": f"litellm/{SOURCE_NAME}",
        # A --source file's version is unknown unless it is the installed package's own.
        "litellm_version": litellm_version()
        if installed and source_path.resolve() == installed.resolve()
        else None,
        "generated": dt.date.today().isoformat(),
        "entries": len(models),
        "units": "USD per token, unless the field name says per second, character or image; "
        "web_search and maps_grounding are USD per request",
    }
    args.output.write_text(render(models, metadata), encoding="utf-8")
    size = args.output.stat().st_size // 1024
    print(f"wrote {len(models)} of {len(source)} entries to {args.output} ({size} KiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
