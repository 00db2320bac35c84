"""scripts/update_prices.py: every key of litellm's cost map is read or deliberately left out,
and alias rows are priced as the entries they name."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_prices", ROOT / "scripts" / "update_prices.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _source(tmp_path: Path, models: dict[str, Any]) -> Path:
    path = tmp_path / "map.json"
    path.write_text(json.dumps(models), encoding="utf-8")
    return path


PRICED = {
    "litellm_provider": "openai",
    "mode": "chat",
    "input_cost_per_token": 1e-06,
    "output_cost_per_token": 4e-06,
}


@pytest.mark.litellm
@pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="litellm is not installed")
def test_every_key_of_the_installed_map_is_accounted_for(script: ModuleType) -> None:
    # A key litellm adds (a new billing dimension) fails here before it can drift a price:
    # read it in the script, or list it in DESCRIPTIVE_KEYS or IGNORED_PRICES with the reason.
    source = json.loads(script.find_source().read_text(encoding="utf-8"))
    assert script.unknown_keys(source) == {}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("input_cost_per_token", "read"),
        ("cache_creation_input_token_cost_above_12hr_above_272k_tokens_priority", "read"),
        ("cache_creation_input_token_cost_above_12hr_above_272k_tokens_batches", "read"),
        ("input_cost_per_audio_token_above_200k_tokens_flex", "read"),
        ("output_cost_per_image_token_priority", "read"),
        ("alias_of", "read"),
        ("tiered_pricing[].cache_creation_input_token_cost", "read"),
        ("supports_vision", "descriptive"),
        ("successor_model", "descriptive"),
        # Read for no batch: no such rate in the map, so litellm's rule for it is undecided here.
        ("cache_creation_input_token_cost_above_1hr_above_200k_tokens_batches", None),
        ("input_cost_per_hologram", None),
        ("supports_free_search_fee", None),  # a price word: never descriptive by its prefix
        ("provider_specific_entry.turbo", None),
    ],
)
def test_account_for(script: ModuleType, key: str, expected: str | None) -> None:
    assert script.account_for(key) == expected


def test_ignored_prices_say_why(script: ModuleType) -> None:
    assert script.account_for("explicit_cache_read_input_token_cost").startswith("a hit in an explicitly")
    assert script.account_for("provider_specific_entry.us").startswith("an uplift")
    assert all(reason and reason not in ("read", "descriptive") for reason in script.IGNORED_PRICES.values())


def test_an_unknown_key_stops_the_script(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _source(tmp_path, {"m": {**PRICED, "input_cost_per_hologram": 1e-03}})
    out = tmp_path / "prices.json"
    assert script.main(["--source", str(source), "--output", str(out)]) == 1
    assert not out.exists()
    assert "unknown cost-map key 'input_cost_per_hologram' in m" in capsys.readouterr().err
    assert script.main(["--source", str(source), "--output", str(out), "--allow-unknown-keys"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["models"]["m"]["input"] == 1e-06


def test_alias_rows_are_priced_as_the_entry_they_name(script: ModuleType) -> None:
    # As litellm 1.110 serves them (get_model_cost_map._expand_model_aliases): an alias of a
    # missing entry or of another alias is dropped.
    models = script.build(
        {
            "m-1": PRICED,
            "m-latest": {"alias_of": "m-1"},
            "gone-latest": {"alias_of": "gone-1"},
            "chained-latest": {"alias_of": "m-latest"},
            "fallback_generalizations": {"rules": []},
        }
    )
    assert sorted(models) == ["m-1", "m-latest"]
    assert models["m-latest"] == models["m-1"]


def test_twelve_hour_writes_and_audio_thresholds_are_tiered(script: ModuleType) -> None:
    raw = {
        **PRICED,
        "cache_creation_input_token_cost": 1.25e-06,
        "cache_creation_input_token_cost_above_12hr": 2.5e-06,
        "cache_creation_input_token_cost_above_12hr_above_272k_tokens": 5e-06,
        "cache_creation_input_token_cost_above_12hr_priority": 4e-06,
        "input_cost_per_token_priority": 2e-06,
        "input_cost_per_audio_token": 3e-06,
        "input_cost_per_audio_token_above_200k_tokens": 6e-06,
        "input_cost_per_audio_token_batches": 1.5e-06,
        "input_cost_per_audio_token_above_200k_tokens_batches": 3e-06,
    }
    entry = script.convert(raw, "m")
    assert (entry["cache_write_12h"], entry["audio_input"]) == (2.5e-06, 3e-06)
    at_200k, at_272k = entry["tiers"]
    assert (at_200k["above_input_tokens"], at_200k["audio_input"], at_200k["batch_audio_input"]) == (
        200_000,
        6e-06,
        3e-06,
    )
    assert (at_200k["cache_write_12h"], at_272k["cache_write_12h"]) == (2.5e-06, 5e-06)
    priority = entry["service_tiers"]["priority"]
    assert priority["cache_write_12h"] == 4e-06
    # Above 272k the tier lists no twelve-hour rate of its own: the standard long-prompt one
    # (litellm 1.110 would keep the tier's flat 4e-06; see _service_tier in the script).
    assert priority["tiers"][-1]["cache_write_12h"] == 5e-06
