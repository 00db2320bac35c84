"""tollgate's cost() agrees with litellm's own cost_per_token() on the same usage.

Each case prices one usage with both: tollgate from its bundled table, litellm from the cost
map that table was generated from. The usage goes to litellm the way litellm's own provider
transformations build it: OpenAI-style ``prompt_tokens_details.cached_tokens`` and
``completion_tokens_details.reasoning_tokens``; for Anthropic models (direct, Bedrock and
Vertex) ``cache_read_input_tokens`` / ``cache_creation_input_tokens``. In both, litellm's
``prompt_tokens`` includes the cache tokens (its Anthropic transformation adds them to
Anthropic's ``input_tokens``), which is tollgate's convention too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tollgate.pricing import cost, default_table
from tollgate.request import Usage

pytestmark = pytest.mark.litellm

# Read the cost map bundled in the package instead of fetching it (litellm_core_utils/
# get_model_cost_map.py reads this at import).
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
litellm = pytest.importorskip("litellm")

TOLERANCE = 1e-12  # USD

PLAIN = Usage(input_tokens=1200, output_tokens=300)
CACHED = Usage(input_tokens=6000, output_tokens=800, cache_read_tokens=4096)
REASONING = Usage(input_tokens=3000, output_tokens=2500, reasoning_tokens=1800)
REASONING_CACHED = Usage(input_tokens=9000, output_tokens=4000, cache_read_tokens=6144, reasoning_tokens=3000)
ANTHROPIC = Usage(input_tokens=12000, output_tokens=900, cache_read_tokens=8000, cache_write_tokens=3000)
ANTHROPIC_THINKING = Usage(
    input_tokens=20000,
    output_tokens=5000,
    cache_read_tokens=15000,
    cache_write_tokens=2000,
    reasoning_tokens=3500,
)
LONG = Usage(input_tokens=250_000, output_tokens=4000, cache_read_tokens=100_000, reasoning_tokens=2000)
LONG_ANTHROPIC = Usage(
    input_tokens=250_000, output_tokens=3000, cache_read_tokens=120_000, cache_write_tokens=30_000
)
VERY_LONG = Usage(input_tokens=300_000, output_tokens=5000, cache_read_tokens=200_000, reasoning_tokens=1000)
AT_200K = Usage(input_tokens=200_000, output_tokens=1000, cache_read_tokens=50_000)
JUST_200K = Usage(input_tokens=200_000, output_tokens=1000, cache_read_tokens=50_000, reasoning_tokens=400)
AUDIO = Usage(input_tokens=5000, output_tokens=1200, audio_input_tokens=3000, audio_output_tokens=800)
AUDIO_THINKING = Usage(input_tokens=8000, output_tokens=2000, audio_input_tokens=5000, reasoning_tokens=1500)
EMBEDDING = Usage(input_tokens=8000)
TIER_2 = Usage(input_tokens=50_000, output_tokens=2000, cache_read_tokens=10_000)
TIER_3 = Usage(input_tokens=150_000, output_tokens=2000)
TIER_2_THINKING = Usage(input_tokens=260_000, output_tokens=6000, reasoning_tokens=5000)

# (model, provider, usage); the model name is passed as is to both tollgate and litellm. litellm
# retires models from its map (1.110 dropped Claude 3 Opus on Vertex and Groq's Llama Guard 3):
# replace a retired one with a current model of the same provider and pricing shape.
CASES: list[tuple[str, str, Usage]] = [
    # OpenAI
    ("gpt-4o", "openai", PLAIN),
    ("gpt-4o", "openai", CACHED),
    ("gpt-4o-2024-08-06", "openai", CACHED),
    ("gpt-4o-2024-11-20", "openai", CACHED),
    ("gpt-4o-2024-05-13", "openai", CACHED),
    ("gpt-4o-mini", "openai", PLAIN),
    ("gpt-4o-mini", "openai", CACHED),
    ("gpt-4o-mini-2024-07-18", "openai", CACHED),
    ("gpt-4.1", "openai", CACHED),
    ("gpt-4.1-2025-04-14", "openai", PLAIN),
    ("gpt-4.1-mini", "openai", CACHED),
    ("gpt-4.1-nano", "openai", CACHED),
    ("o1", "openai", REASONING_CACHED),
    ("o1-2024-12-17", "openai", REASONING),
    ("o3", "openai", REASONING_CACHED),
    ("o3-mini", "openai", REASONING),
    ("o3-mini-2025-01-31", "openai", REASONING_CACHED),
    ("o4-mini", "openai", REASONING_CACHED),
    ("o4-mini-2025-04-16", "openai", REASONING),
    ("gpt-5", "openai", REASONING_CACHED),
    ("gpt-5-2025-08-07", "openai", REASONING),
    ("gpt-5-mini", "openai", REASONING_CACHED),
    ("gpt-5-nano", "openai", REASONING),
    ("gpt-5.4", "openai", REASONING_CACHED),
    ("gpt-5.4", "openai", VERY_LONG),
    ("gpt-5.5", "openai", VERY_LONG),
    ("text-embedding-3-small", "openai", EMBEDDING),
    ("text-embedding-3-large", "openai", EMBEDDING),
    ("text-embedding-ada-002", "openai", EMBEDDING),
    ("gpt-4o-audio-preview-2024-12-17", "openai", AUDIO),
    ("gpt-4o-mini-audio-preview-2024-12-17", "openai", AUDIO),
    ("gpt-3.5-turbo", "openai", PLAIN),
    ("gpt-4-0613", "openai", PLAIN),
    ("azure/gpt-4o-2024-08-06", "azure", CACHED),
    ("azure/o3-mini", "azure", REASONING_CACHED),
    ("azure/gpt-35-turbo", "azure", PLAIN),
    # Anthropic: 4.x direct; 3.x and Sonnet 4 / Opus 4.x, which the cost map lists only on
    # Bedrock and Vertex, there.
    ("claude-sonnet-4-5", "anthropic", ANTHROPIC),
    ("claude-sonnet-4-5-20250929", "anthropic", ANTHROPIC_THINKING),
    ("claude-sonnet-4-6", "anthropic", ANTHROPIC),
    ("claude-opus-4-5", "anthropic", ANTHROPIC_THINKING),
    ("claude-opus-4-5-20251101", "anthropic", ANTHROPIC),
    ("claude-opus-4-6", "anthropic", ANTHROPIC),
    ("claude-opus-4-7", "anthropic", ANTHROPIC_THINKING),
    ("claude-haiku-4-5", "anthropic", ANTHROPIC),
    ("claude-haiku-4-5-20251001", "anthropic", ANTHROPIC_THINKING),
    ("claude-haiku-5-5", "anthropic", ANTHROPIC),
    ("claude-haiku-5-5", "anthropic", LONG_ANTHROPIC),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock", ANTHROPIC),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "bedrock", ANTHROPIC),
    ("anthropic.claude-3-opus-20240229-v1:0", "bedrock", ANTHROPIC),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", "bedrock", ANTHROPIC_THINKING),
    ("anthropic.claude-sonnet-4-20250514-v1:0", "bedrock", ANTHROPIC_THINKING),
    ("anthropic.claude-sonnet-4-20250514-v1:0", "bedrock", LONG_ANTHROPIC),
    ("anthropic.claude-opus-4-1-20250805-v1:0", "bedrock", ANTHROPIC),
    ("vertex_ai/claude-3-5-sonnet", "vertex_ai", ANTHROPIC),
    ("vertex_ai/claude-3-haiku@20240307", "vertex_ai", ANTHROPIC),
    ("vertex_ai/claude-3-sonnet", "vertex_ai", PLAIN),  # input and output prices only
    # Gemini (thoughts are reasoning tokens; above 200k prompt tokens the whole call costs more)
    ("gemini/gemini-2.5-pro", "gemini", REASONING_CACHED),
    ("gemini/gemini-2.5-pro", "gemini", LONG),
    ("gemini/gemini-2.5-pro", "gemini", AT_200K),
    ("gemini-2.5-pro", "gemini", LONG),
    ("gemini-2.5-pro", "vertex_ai", LONG),
    ("gemini/gemini-2.5-flash", "gemini", REASONING_CACHED),
    ("gemini/gemini-2.5-flash", "gemini", AUDIO_THINKING),
    ("gemini-2.5-flash", "vertex_ai", REASONING),
    ("gemini/gemini-2.5-flash-lite", "gemini", REASONING_CACHED),
    ("gemini/gemini-3-flash-preview", "gemini", AUDIO_THINKING),
    ("gemini/gemini-3.1-pro-preview", "gemini", LONG),
    ("gemini/gemini-flash-latest", "gemini", REASONING),
    ("vertex_ai/gemini-2.0-flash", "vertex_ai", CACHED),
    ("vertex_ai/gemini-2.0-flash", "vertex_ai", AUDIO),
    ("vertex_ai/gemini-2.0-flash-lite", "vertex_ai", PLAIN),
    ("gemini/gemini-embedding-001", "gemini", EMBEDDING),
    # DeepSeek
    ("deepseek-chat", "deepseek", CACHED),
    ("deepseek/deepseek-chat", "deepseek", CACHED),
    ("deepseek-reasoner", "deepseek", REASONING_CACHED),
    ("deepseek/deepseek-v3.2", "deepseek", CACHED),
    ("deepseek/deepseek-r1", "deepseek", REASONING),
    # Mistral
    ("mistral/mistral-large-latest", "mistral", CACHED),
    ("mistral/mistral-small-latest", "mistral", PLAIN),
    ("mistral/mistral-medium-3", "mistral", CACHED),
    ("mistral/codestral-latest", "mistral", PLAIN),
    ("mistral/magistral-medium-latest", "mistral", REASONING),
    ("mistral/mistral-embed", "mistral", EMBEDDING),
    # Groq
    ("groq/openai/gpt-oss-120b", "groq", REASONING_CACHED),
    ("groq/openai/gpt-oss-20b", "groq", REASONING),
    ("groq/qwen/qwen3.8-27b", "groq", CACHED),
    ("groq/meta-llama/llama-prompt-guard-2-86m", "groq", PLAIN),
    # Tiers with other shapes: xAI switches at >= 200k; Alibaba and Volcengine list ranges.
    ("xai/grok-4.20-0309-reasoning", "xai", JUST_200K),
    ("xai/grok-4.20-0309-reasoning", "xai", CACHED),
    ("dashscope/qwen3-max", "dashscope", TIER_2),
    ("dashscope/qwen3-max", "dashscope", TIER_3),
    ("dashscope/qwen-plus-latest", "dashscope", REASONING),
    ("dashscope/qwen-plus-2025-07-28", "dashscope", TIER_2_THINKING),
    ("volcengine/doubao-seed-2-0-pro-260215", "volcengine", TIER_2),
]

# Batch API calls, priced by litellm's batch_cost_calculator (call_type="retrieve_batch"):
# listed batch prices, tiered ones, and half the standard price where none is listed.
BATCH_CASES: list[tuple[str, str, Usage]] = [
    ("gpt-4o", "openai", CACHED),
    ("gpt-4o-mini", "openai", PLAIN),
    ("gpt-5", "openai", REASONING_CACHED),
    ("gpt-5.4", "openai", VERY_LONG),
    ("claude-sonnet-4-5", "anthropic", ANTHROPIC),
    ("claude-haiku-5-5", "anthropic", LONG_ANTHROPIC),
    ("gemini/gemini-2.5-pro", "gemini", LONG),
    ("gemini/gemini-2.5-flash", "gemini", AUDIO_THINKING),
    ("xai/grok-4.20-0309-reasoning", "xai", JUST_200K),
    ("deepseek-chat", "deepseek", CACHED),
    ("mistral/mistral-large-latest", "mistral", CACHED),
    # A listed batch input price and no batch cache prices: reads bill at the standard
    # cache-read rate, writes as batch input (litellm 1.110; 1.106 billed reads as batch input).
    ("anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock", ANTHROPIC),
    ("amazon.nova-pro-v1:0", "bedrock", CACHED),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock", LONG_ANTHROPIC),
]

_ANTHROPIC_STYLE = ("anthropic", "bedrock", "vertex_ai")


def _litellm_usage(model: str, provider: str, usage: Usage) -> Any:
    prompt_details: dict[str, int] = {}
    extra: dict[str, int] = {}
    if provider in _ANTHROPIC_STYLE and "claude" in model:
        extra = {
            "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
        }
    else:
        prompt_details["cached_tokens"] = usage.cache_read_tokens
    if usage.audio_input_tokens:
        prompt_details["audio_tokens"] = usage.audio_input_tokens
    completion_details = {
        "reasoning_tokens": usage.reasoning_tokens,
        "audio_tokens": usage.audio_output_tokens,
    }
    return litellm.Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=prompt_details or None,
        completion_tokens_details=completion_details,
        **extra,
    )


def litellm_cost(model: str, provider: str, usage: Usage, *, batch: bool = False) -> float:
    prompt, completion = litellm.cost_per_token(
        model=model,
        custom_llm_provider=provider,
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        usage_object=_litellm_usage(model, provider, usage),
        call_type="retrieve_batch" if batch else "completion",
    )
    return float(prompt + completion)


def test_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({(m, p, repr(u)) for m, p, u in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("model", "provider", "usage"), CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)]
)
def test_cost_agrees_with_litellm(model: str, provider: str, usage: Usage) -> None:
    price = default_table().lookup(model, provider)
    assert price is not None, f"{model} is not in the table: retired from litellm's cost map?"
    expected = litellm_cost(model, provider, usage)
    assert expected > 0
    assert cost(price, usage) == pytest.approx(expected, rel=0, abs=TOLERANCE)


@pytest.mark.parametrize(
    ("model", "provider", "usage"), BATCH_CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BATCH_CASES)]
)
def test_batch_cost_agrees_with_litellm(model: str, provider: str, usage: Usage) -> None:
    price = default_table().lookup(model, provider)
    assert price is not None, model
    expected = litellm_cost(model, provider, usage, batch=True)
    assert 0 < expected < litellm_cost(model, provider, usage)
    assert cost(price, usage, batch=True) == pytest.approx(expected, rel=0, abs=TOLERANCE)


def _aliases() -> list[tuple[str, str]]:
    # litellm 1.110's map names some models by alias rows, {"alias_of": "<entry>"} (litellm serves
    # the alias as that entry); read from the file, as litellm.model_cost has them expanded.
    raw = json.loads(
        (Path(litellm.__file__).parent / "model_prices_and_context_window_backup.json").read_text()
    )
    # Entries with off-peak discounts are left out: litellm bills them by the clock, tollgate
    # at the standard rates (update_prices.IGNORED_PRICES["off_peak_pricing"]).
    return sorted(
        (name, raw[row["alias_of"]]["litellm_provider"])
        for name, row in raw.items()
        if isinstance(row, dict)
        and isinstance(row.get("alias_of"), str)
        and row["alias_of"] in raw
        and "off_peak_pricing" not in raw[row["alias_of"]]
    )


def test_alias_rows_cost_what_their_entries_cost() -> None:
    aliases = _aliases()
    assert len(aliases) > 50 and ("claude-sonnet-latest", "anthropic") in aliases
    wrong: list[tuple[object, ...]] = []
    for model, provider in aliases:
        price = default_table().lookup(model, provider)
        if price is None or price.model != model:
            wrong.append((model, price and price.model))
            continue
        if price.input is None and price.output is None:
            continue
        expected = litellm_cost(model, provider, CACHED)
        if abs(cost(price, CACHED) - expected) > TOLERANCE:
            wrong.append((model, cost(price, CACHED), expected))
    assert wrong == []
