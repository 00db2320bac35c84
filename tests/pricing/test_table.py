"""PriceTable: name resolution, provider hints, overrides, and the bundled prices.json."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tollgate.pricing import ModelPrice, PriceTable, PriceTier, default_table

ROOT = Path(__file__).resolve().parents[2]


def price(model: str, provider: str, **fields: Any) -> ModelPrice:
    return ModelPrice(model, provider, **{"input": 1e-06, "output": 2e-06, **fields})


@pytest.fixture
def table() -> PriceTable:
    return PriceTable(
        [
            price("gpt-4o", "openai"),
            price("gpt-4o-2024-05-13", "openai", input=5e-06),
            price("gpt-4-0613", "openai"),
            price("gpt-3.5-turbo", "openai"),
            price("azure/gpt-35-turbo", "azure"),
            price("azure/gpt-4o", "azure", input=3e-06),
            price("claude-sonnet-4-5", "anthropic"),
            price("vertex_ai/claude-3-5-sonnet@20240620", "vertex_ai-anthropic_models"),
            price("vertex_ai/claude-3-5-sonnet", "vertex_ai-anthropic_models"),
            price("anthropic.claude-opus-4-1-20250805-v1:0", "bedrock_converse"),
            price("gemini-2.5-pro", "vertex_ai-language-models"),
            price("gemini/gemini-2.5-pro", "gemini", output=3e-06),
            price("vertex_ai/gemini-2.0-flash", "vertex_ai"),
            price("deepseek-chat", "deepseek"),
            price("together_ai/llama-3.3-70b", "together_ai"),
            price("groq/openai/gpt-oss-120b", "groq"),
            price("ft:gpt-4o-mini-2024-07-18", "openai"),
            ModelPrice("copilot/gpt-4o", "copilot", max_output_tokens=4096),  # listed, not priced
        ]
    )


# -- name resolution --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("  gpt-4o ", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # a snapshot with its own entry keeps it
        ("gpt-4o-2024-08-06", "gpt-4o"),  # -YYYY-MM-DD
        ("gpt-4-0613", "gpt-4-0613"),
        ("gpt-4o-0806", "gpt-4o"),  # -MMDD
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),  # -YYYYMMDD
        ("claude-sonnet-4-5-latest", "claude-sonnet-4-5"),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("vertex_ai/claude-3-5-sonnet@20240620", "vertex_ai/claude-3-5-sonnet@20240620"),
        ("vertex_ai/claude-3-5-sonnet@20241022", "vertex_ai/claude-3-5-sonnet"),  # @YYYYMMDD
        ("gemini/gemini-2.5-pro", "gemini/gemini-2.5-pro"),
        ("gemini-2.5-pro", "gemini-2.5-pro"),
        ("azure/gpt-35-turbo", "azure/gpt-35-turbo"),
        ("gpt-35-turbo", "azure/gpt-35-turbo"),
        ("azure/gpt-4o-2024-08-06", "azure/gpt-4o"),
        ("ft:gpt-4o-mini-2024-07-18:acme:exp:abc123", "ft:gpt-4o-mini-2024-07-18"),
        ("claude-opus-4-1-20250805", "anthropic.claude-opus-4-1-20250805-v1:0"),  # Bedrock's name
    ],
)
def test_lookup_resolves_aliases(table: PriceTable, name: str, expected: str) -> None:
    found = table.lookup(name)
    assert found is not None
    assert found.model == expected


@pytest.mark.parametrize(
    ("name", "provider", "expected"),
    [
        ("gemini-2.5-pro", "gemini", "gemini/gemini-2.5-pro"),
        ("gemini-2.5-pro", "gcp.gemini", "gemini/gemini-2.5-pro"),  # OpenTelemetry's name
        ("gemini-2.5-pro", "vertex_ai", "gemini-2.5-pro"),
        ("gemini-2.5-pro", None, "gemini-2.5-pro"),
        ("gpt-4o", "azure", "azure/gpt-4o"),
        ("gpt-4o", "openai", "gpt-4o"),
        ("gpt-3.5-turbo", "azure", "azure/gpt-35-turbo"),
        ("deepseek-chat", "deepseek", "deepseek-chat"),
        ("openai/gpt-oss-120b", "groq", "groq/openai/gpt-oss-120b"),
        # The provider does not list it; a cloud selling the maker's model at list price does.
        ("gemini-2.0-flash", "gemini", "vertex_ai/gemini-2.0-flash"),
        ("gemini-2.0-flash-001", "gemini", "vertex_ai/gemini-2.0-flash"),
        ("claude-3-5-sonnet-20241022", "anthropic", "vertex_ai/claude-3-5-sonnet"),
        ("claude-opus-4-1-20250805", "anthropic", "anthropic.claude-opus-4-1-20250805-v1:0"),
        # A provider the table does not know (an OpenAI-compatible server) takes any entry.
        ("gpt-4o", "openai_compatible:localhost", "gpt-4o"),
        # An unpriced entry is used only for its own provider.
        ("gpt-4o", "copilot", "copilot/gpt-4o"),
    ],
)
def test_provider_hint_chooses_the_entry(
    table: PriceTable, name: str, provider: str | None, expected: str
) -> None:
    found = table.lookup(name, provider)
    assert found is not None
    assert found.model == expected


def test_other_hosts_do_not_price_a_known_providers_model(table: PriceTable) -> None:
    # Open-weights models cost different amounts at different hosts.
    assert table.lookup("llama-3.3-70b", provider="groq") is None
    assert table.lookup("llama-3.3-70b", provider="together_ai") is not None
    assert table.lookup("llama-3.3-70b") is not None  # no provider: any host's price


@pytest.mark.parametrize("name", ["", "no-such-model", "azure/my-deployment", "gpt-5o", "copilot-only"])
def test_unknown_model_is_none(table: PriceTable, name: str) -> None:
    assert table.lookup(name) is None


def test_unpriced_entries_are_not_a_fallback(table: PriceTable) -> None:
    unpriced = PriceTable([ModelPrice("gw/model-x", "gw", max_output_tokens=100)])
    assert unpriced.lookup("model-x") is None
    assert unpriced.lookup("model-x", provider="gw") is not None


def test_lookup_is_cached(table: PriceTable) -> None:
    first = table.lookup("openai/gpt-4o-2024-08-06", "openai")
    assert table.lookup("openai/gpt-4o-2024-08-06", "openai") is first


# -- the bundled table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "provider", "expected_provider"),
    [
        ("gpt-4o", None, "openai"),
        ("openai/gpt-4o-mini", None, "openai"),
        ("gpt-4o-2024-08-06", "openai", "openai"),
        ("claude-sonnet-4-5-20250929", "anthropic", "anthropic"),
        ("claude-3-5-sonnet-20241022", "anthropic", "bedrock"),
        ("gemini-2.5-pro", "gemini", "gemini"),
        ("gemini-2.5-flash", "vertex_ai", "vertex_ai-language-models"),
        ("deepseek-chat", "deepseek", "deepseek"),
        ("mistral-large-latest", "mistral", "mistral"),
        ("gpt-35-turbo", "azure", "azure"),
        ("text-embedding-3-small", "openai", "openai"),
    ],
)
def test_default_table_prices_common_models(name: str, provider: str | None, expected_provider: str) -> None:
    found = default_table().lookup(name, provider)
    assert found is not None
    assert found.provider == expected_provider
    assert found.input is not None and found.input > 0


def test_default_table_is_loaded_once() -> None:
    assert default_table() is default_table()
    meta = default_table().metadata
    assert meta["source"] == "litellm/model_prices_and_context_window_backup.json"
    assert meta["entries"] == len(default_table()) > 3000


def test_bundled_prices_are_well_formed() -> None:
    prices = list(default_table())
    rate_fields = ("input", "output", "cache_read", "cache_write", "reasoning", "batch_input", "batch_output")
    for p in prices:
        for field in rate_fields:
            value = getattr(p, field)
            assert value is None or (math.isfinite(value) and value >= 0), (p.model, field)
        thresholds = [t.above_input_tokens for t in p.tiers]
        assert thresholds == sorted(set(thresholds)), p.model
    gemini = default_table().lookup("gemini/gemini-2.5-pro")
    assert gemini is not None and gemini.tiers[0].above_input_tokens == 200_000
    assert gemini.tiers[0].input is not None and gemini.input is not None
    assert gemini.tiers[0].input > gemini.input


@pytest.mark.litellm
@pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")
def test_prices_json_is_generated_from_the_installed_litellm(tmp_path: Path) -> None:
    # Prices are data: prices.json must be exactly what scripts/update_prices.py produces.
    out = tmp_path / "prices.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_prices.py"), "--output", str(out)], check=True
    )
    bundled = json.loads((ROOT / "tollgate" / "pricing" / "prices.json").read_text(encoding="utf-8"))
    fresh = json.loads(out.read_text(encoding="utf-8"))
    assert bundled["models"] == fresh["models"]
    assert bundled["metadata"]["litellm_version"] == fresh["metadata"]["litellm_version"]


def test_importing_pricing_reads_nothing_and_imports_no_litellm() -> None:
    code = (
        "import sys, tollgate.pricing as p; "
        "assert 'litellm' not in sys.modules, 'litellm imported'; "
        "assert p.default_table.cache_info().currsize == 0, 'prices.json read at import'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# -- overrides --------------------------------------------------------------------------------


def test_overrides_win_and_leave_the_table_alone(table: PriceTable) -> None:
    custom = table.with_overrides({"gpt-4o": {"input": 4e-06, "max_output_tokens": 1000}})
    overridden = custom.lookup("gpt-4o")
    assert overridden is not None
    assert (overridden.input, overridden.output, overridden.max_output_tokens) == (4e-06, 2e-06, 1000)
    assert custom.lookup("openai/gpt-4o-2024-08-06") is overridden  # the snapshot a response names
    assert custom.lookup("gpt-4o", provider="azure") is overridden  # no prefix: every provider
    original = table.lookup("gpt-4o")
    assert original is not None and original.input == 1e-06


def test_prefixed_override_applies_to_that_provider_only(table: PriceTable) -> None:
    custom = table.with_overrides({"azure/gpt-4o": {"output": 9e-06}})
    azure = custom.lookup("gpt-4o", provider="azure")
    openai = custom.lookup("gpt-4o", provider="openai")
    assert azure is not None and azure.output == 9e-06 and azure.input == 3e-06
    assert openai is not None and openai.output == 2e-06


def test_override_adds_an_unknown_model(table: PriceTable) -> None:
    custom = table.with_overrides({"my-finetune": {"input": 1e-06, "output": 3e-06}})
    added = custom.lookup("My-Finetune")
    assert added is not None and (added.input, added.output, added.provider) == (1e-06, 3e-06, "custom")
    assert custom.with_overrides({"other": {"input": 0.0, "output": 0.0}}).lookup("my-finetune") == added


def test_override_replaces_the_rate_in_every_tier_and_drops_batch_prices() -> None:
    tier = PriceTier(above_input_tokens=200_000, input=2.5e-06, output=1.5e-05, batch_output=7e-06)
    listed = ModelPrice("g", "gemini", input=1.25e-06, output=1e-05, batch_output=5e-06, tiers=(tier,))
    custom = PriceTable([listed]).with_overrides({"g": {"input": 1e-06}}).lookup("g")
    assert custom is not None
    assert (custom.input, custom.output, custom.batch_output) == (1e-06, 1e-05, None)
    (custom_tier,) = custom.tiers
    assert (custom_tier.input, custom_tier.output, custom_tier.batch_output) == (1e-06, 1.5e-05, None)
    limits_only = PriceTable([listed]).with_overrides({"g": {"max_output_tokens": 10}}).lookup("g")
    assert limits_only is not None and limits_only.batch_output == 5e-06


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"gpt-4o": {"inptu": 1e-06}},
            "price override for 'gpt-4o': unknown key 'inptu'; expected one of input",
        ),
        ({"gpt-4o": {"cache_write": -1e-06}}, "price override for 'gpt-4o': cache_write=-1e-06 is negative"),
        (
            {"gpt-4o": {"output": float("nan")}},
            "price override for 'gpt-4o': output=nan is not a finite number",
        ),
        ({"gpt-4o": {"output": "1e-6"}}, "price override for 'gpt-4o': output='1e-6' is not a finite number"),
        (
            {"gpt-4o": {"max_output_tokens": -5}},
            "price override for 'gpt-4o': max_output_tokens=-5 is negative",
        ),
        ({"gpt-4o": 2e-06}, "price override for 'gpt-4o' must be a mapping"),
        (
            {"brand-new": {"input": 1e-06}},
            "price override for 'brand-new': the table has no such model, so output",
        ),
    ],
)
def test_bad_overrides_are_refused(table: PriceTable, overrides: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        table.with_overrides(overrides)
