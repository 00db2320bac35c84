"""Regenerate ``tollgate/pricing/prices.json`` from the cost map shipped inside ``litellm``.

Prices are data, never typed by hand: this script reads litellm's
``model_prices_and_context_window_backup.json``, keeps what tollgate's cost computation and
estimation need, resolves litellm's threshold keys into explicit tiers, and writes one entry
per line so a price update reads as a small diff.

    python scripts/update_prices.py                    # the installed litellm's map
    python scripts/update_prices.py --source map.json  # any copy of that file

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
from collections.abc import Mapping
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
    "reasoning": "output_cost_per_reasoning_token",
    "audio_input": "input_cost_per_audio_token",
    "audio_output": "output_cost_per_audio_token",
    "batch_input": "input_cost_per_token_batches",
    "batch_output": "output_cost_per_token_batches",
    "batch_cache_read": "cache_read_input_token_cost_batches",
    "batch_cache_write": "cache_creation_input_token_cost_batches",
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
#: The rates a prompt-size tier replaces (litellm bills audio at its flat rate at any size).
TIER_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning")
BATCH_FIELDS = ("batch_input", "batch_output", "batch_cache_read", "batch_cache_write")

#: litellm's cost-key suffix of each service tier it prices (``get_service_tier_cost_key``:
#: ``input_cost_per_token_priority``...); a call served at "fast" bills the ``_priority`` keys.
SERVICE_TIERS = ("priority", "flex", "balanced", "ultrafast")
#: tollgate field <- litellm key of the flat rates a service tier may list (with its suffix).
SERVICE_TIER_FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "reasoning": "output_cost_per_reasoning_token",
    "audio_input": "input_cost_per_audio_token",
}
#: The rates a long prompt's threshold replaces, and their litellm keys.
THRESHOLD_RATE_KEYS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
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

#: The litellm rates that thresholds tier, and their tollgate names.
RATE_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
}
_RATE_KEYS = "|".join(RATE_FIELDS)
# "..._above_200k_tokens" and the 1h cache-write variant "..._above_1hr_above_200k_tokens"; the
# same keys with a service tier's suffix (_priority, _flex, ...) tier that service tier's rates.
_THRESHOLD_KEY = re.compile(rf"^({_RATE_KEYS})_above_(?:1hr_above_)?(\d+k?)_tokens$")
_TIER_THRESHOLD_KEY = re.compile(
    rf"^({_RATE_KEYS})_above_(?:1hr_above_)?(\d+k?)_tokens_({'|'.join(SERVICE_TIERS)})$"
)
_BATCH_THRESHOLD_KEY = re.compile(rf"^({_RATE_KEYS})_above_(\d+k?)_tokens_batches$")
# litellm switches xAI to the higher tier once the prompt *reaches* the threshold (>=).
_INCLUSIVE_THRESHOLD_PROVIDERS = frozenset({"xai"})


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


def threshold_tiers(raw: Mapping[str, Any], flat: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """Tiers from ``*_above_<N>_tokens`` keys, each rate resolved the way litellm resolves it.

    litellm walks the thresholds upwards and lets each crossed one replace the rates it names,
    keeping the lower tier's rate for the rest; a separate reasoning rate stays flat. Batch
    rates cross their own ``*_above_<N>_tokens_batches`` thresholds and otherwise stay at the
    flat batch rate.
    """
    spellings: dict[int, set[str]] = {}  # 200000 -> {"200k"}: keys spell thresholds either way
    for key, value in raw.items():
        if (m := _THRESHOLD_KEY.match(key)) and value is not None:
            spellings.setdefault(_threshold(m[2]), set()).add(m[2])
    batch: dict[str, dict[int, float]] = {}
    for key, value in raw.items():
        if (m := _BATCH_THRESHOLD_KEY.match(key)) and (rate := _number(value)) is not None:
            batch.setdefault("batch_" + RATE_FIELDS[m[1]], {})[_threshold(m[2])] = rate
    thresholds = sorted(spellings.keys() | {t for rates in batch.values() for t in rates})
    shift = 1 if raw.get("litellm_provider") in _INCLUSIVE_THRESHOLD_PROVIDERS else 0

    tiers = []
    running = {f: flat.get(f) for f in TIER_FIELDS}
    for threshold in thresholds:
        for text in sorted(spellings.get(threshold, ())):
            for field in ("input", "output", "cache_read", "cache_write", "cache_write_1h"):
                key = FIELDS[field] if field != "cache_write_1h" else FIELDS["cache_write"] + "_above_1hr"
                if (rate := _number(raw.get(f"{key}_above_{text}_tokens"))) is not None:
                    running[field] = rate
        tier: dict[str, Any] = {"above_input_tokens": threshold - shift, **running}
        for field in BATCH_FIELDS:
            crossed = [t for t in batch.get(field, {}) if t <= threshold]
            tier[field] = batch[field][max(crossed)] if crossed else flat.get(field)
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
    """
    own = {
        field: rate
        for field, key in SERVICE_TIER_FIELDS.items()
        if (rate := _number(raw.get(f"{key}_{suffix}"))) is not None
    }
    own_thresholds = {
        m[2]
        for key, value in raw.items()
        if value is not None and (m := _TIER_THRESHOLD_KEY.match(key)) and m[3] == suffix
    }
    if not (own or own_thresholds or always):
        return None
    spellings: dict[int, set[str]] = {}
    standard_thresholds = {
        m[2] for key, value in raw.items() if value is not None and (m := _THRESHOLD_KEY.match(key))
    }
    for text in own_thresholds | standard_thresholds:
        spellings.setdefault(_threshold(text), set()).add(text)
    shift = 1 if raw.get("litellm_provider") in _INCLUSIVE_THRESHOLD_PROVIDERS else 0
    running = {field: own.get(field, flat.get(field)) for field in THRESHOLD_RATE_KEYS}
    running["cache_write_1h"] = flat.get("cache_write_1h")  # litellm has no tier key for it
    tiers = []
    for threshold in sorted(spellings):
        for text in sorted(spellings[threshold]):
            for field, key in THRESHOLD_RATE_KEYS.items():
                standard = f"{key}_above_{text}_tokens"
                rate = _number(raw.get(f"{standard}_{suffix}"))
                if rate is None:
                    rate = _number(raw.get(standard))
                if rate is not None:
                    running[field] = rate
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
            "cache_write_1h": None,
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
    max_output = _count(raw.get("max_output_tokens")) or _count(raw.get("max_tokens"))
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
    models: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for name, raw in source.items():
        # sample_spec documents the format; its "provider" is prose.
        if name == "sample_spec" or not isinstance(raw, dict) or not raw.get("litellm_provider"):
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
    args = parser.parse_args(argv)

    installed = find_source()
    source_path: Path | None = args.source or installed
    if source_path is None:
        raise SystemExit("litellm is not installed; pass --source PATH")
    source = json.loads(source_path.read_text(encoding="utf-8"))
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
