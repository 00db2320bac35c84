"""cost() and the pre-flight estimate for audio, speech and image units."""

from __future__ import annotations

import json
import pathlib

import pytest

from tollgate.pricing import ModelPrice, PriceTable, cost, default_table, has_price
from tollgate.pricing.cost import estimate_media
from tollgate.request import LLMRequest, Usage

ROOT = pathlib.Path(__file__).resolve().parents[2]

IMAGE = ModelPrice(
    "img",
    "openai",
    input=5e-06,
    output=1e-05,
    cache_read=1.25e-06,
    image_input=1e-05,
    image_output=4e-05,
    image_cache_read=2.5e-06,
)


def test_plain_tokens_take_the_fast_path_unchanged() -> None:
    p = ModelPrice("m", "openai", input=2e-06, output=8e-06, image_output=1.0, input_per_second=1.0)
    assert cost(p, Usage(input_tokens=1000, output_tokens=100)) == 1000 * 2e-06 + 100 * 8e-06


def test_image_tokens_at_their_own_rates() -> None:
    usage = Usage(
        input_tokens=373,
        output_tokens=4160,
        units={"image_input_tokens": 323, "image_output_tokens": 4160},
    )
    assert cost(IMAGE, usage) == pytest.approx(50 * 5e-06 + 323 * 1e-05 + 4160 * 4e-05)


def test_text_output_of_an_image_model_stays_at_the_text_rate() -> None:
    usage = Usage(input_tokens=50, output_tokens=1000, units={"image_output_tokens": 900})
    assert cost(IMAGE, usage) == pytest.approx(50 * 5e-06 + 100 * 1e-05 + 900 * 4e-05)


def test_cached_image_tokens() -> None:
    usage = Usage(
        input_tokens=1000,
        output_tokens=0,
        cache_read_tokens=600,
        units={"image_input_tokens": 800, "image_cache_read_tokens": 500},
    )
    # text: 200 tokens, 100 of them cached; image: 800 tokens, 500 of them cached.
    expected = 100 * 5e-06 + 100 * 1.25e-06 + 300 * 1e-05 + 500 * 2.5e-06
    assert cost(IMAGE, usage) == pytest.approx(expected)


def test_image_rates_fall_back_to_the_text_rates() -> None:
    p = ModelPrice("m", "openai", input=2e-06, output=8e-06)
    usage = Usage(
        input_tokens=100, output_tokens=50, units={"image_input_tokens": 60, "image_output_tokens": 50}
    )
    assert cost(p, usage) == pytest.approx(100 * 2e-06 + 50 * 8e-06)


def test_malformed_image_units_never_bill_more_tokens_than_used() -> None:
    usage = Usage(
        input_tokens=10, output_tokens=10, units={"image_input_tokens": 10**9, "image_output_tokens": -5}
    )
    assert cost(IMAGE, usage) == pytest.approx(10 * 1e-05 + 10 * 1e-05)


def test_audio_seconds_characters_and_images() -> None:
    whisper = default_table().lookup("whisper-1")
    assert whisper is not None
    assert cost(whisper, Usage(units={"audio_seconds": 12.5})) == pytest.approx(12.5 * 0.0001)
    tts = default_table().lookup("tts-1")
    assert tts is not None
    assert cost(tts, Usage(units={"characters": 340})) == pytest.approx(340 * 1.5e-05)
    mini_tts = default_table().lookup("gpt-4o-mini-tts")
    assert mini_tts is not None
    usage = Usage(input_tokens=14, units={"characters": 20, "audio_output_seconds": 2.0})
    assert cost(mini_tts, usage) == pytest.approx(14 * 6e-07 + 2.0 * 0.00025)
    per_image = ModelPrice("dall", "aiml", output_per_image=0.052)
    assert cost(per_image, Usage(units={"images": 2})) == pytest.approx(0.104)
    listed_as_input = ModelPrice("q", "openai", input_per_image=0.167)
    assert cost(listed_as_input, Usage(units={"images": 3})) == pytest.approx(0.501)


def test_a_unit_the_model_does_not_price_costs_nothing() -> None:
    p = ModelPrice("m", "openai", input=1e-06, output=2e-06)
    assert cost(
        p, Usage(input_tokens=10, units={"audio_seconds": 60, "characters": 5, "images": 1})
    ) == pytest.approx(1e-05)


def test_anthropic_one_hour_cache_unit_still_works() -> None:
    p = ModelPrice("c", "anthropic", input=3e-06, output=1.5e-05, cache_write=3.75e-06, cache_write_1h=6e-06)
    usage = Usage(input_tokens=1000, cache_write_tokens=1000, units={"cache_write_1h_tokens": 400})
    assert cost(p, usage) == pytest.approx(600 * 3.75e-06 + 400 * 6e-06)


def test_the_table_has_image_token_rates() -> None:
    p = default_table().lookup("gpt-image-1")
    assert p is not None
    assert (p.image_input, p.image_output, p.image_cache_read) == (1e-05, 4e-05, 2.5e-06)
    assert has_price(ModelPrice("x", "openai", image_output=1e-05))


def test_the_script_maps_the_image_token_fields() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_prices", ROOT / "scripts" / "update_prices.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = {
        "litellm_provider": "openai",
        "mode": "image_generation",
        "input_cost_per_token": 5e-06,
        "input_cost_per_image_token": 1e-05,
        "output_cost_per_image_token": 4e-05,
        "cache_read_input_image_token_cost": 2.5e-06,
    }
    entry = module.convert(raw)
    assert (entry["image_input"], entry["image_output"], entry["image_cache_read"]) == (1e-05, 4e-05, 2.5e-06)
    bundled = json.loads((ROOT / "tollgate" / "pricing" / "prices.json").read_text())["models"]
    assert bundled["gpt-image-1"]["image_output"] == 4e-05


# -- pre-flight ---------------------------------------------------------------------------------


def _request(model: str, units: dict[str, float], **kw: object) -> LLMRequest:
    return LLMRequest(provider="openai", operation="x", model=model, units=units, **kw)  # type: ignore[arg-type]


def test_estimate_audio_seconds_and_output_cap() -> None:
    table = default_table()
    p = table.lookup("gpt-4o-transcribe")
    assert p is not None and p.max_output_tokens
    est = estimate_media(_request("gpt-4o-transcribe", {"audio_seconds": 60.0}), p, 12, table)
    assert (est.input_tokens, est.output_tokens) == (12, p.max_output_tokens)
    assert est.usd == pytest.approx(60 * p.input_per_second + 12 * p.input + p.max_output_tokens * p.output)


def test_estimate_per_image_entry_replaces_the_image_tokens() -> None:
    table = default_table()
    p = table.lookup("gpt-image-1")
    units = {"images": 2, "image_output_tokens": 8320, "images@high/1024-x-1024": 2}
    est = estimate_media(_request("gpt-image-1", units, n=1), p, 7, table)
    assert est.output_tokens == 8320  # still counted, for token budgets
    assert est.usd == pytest.approx(2 * 0.167 + 7 * 5e-06)


def test_estimate_image_tokens_without_a_per_image_entry() -> None:
    table = default_table()
    p = table.lookup("gpt-image-1-mini")
    units = {"images": 1, "image_output_tokens": 6240, "images@high/1024-x-1536": 1}
    est = estimate_media(_request("gpt-image-1-mini", units), p, 7, table)
    assert p is not None and p.image_output is not None
    assert est.usd == pytest.approx(6240 * p.image_output + 7 * p.input)


def test_estimate_unpriced() -> None:
    est = estimate_media(_request("dall-e-3", {"images": 1}), None, 5, PriceTable([]))
    assert (est.usd, est.priced) == (0.0, False)


def test_gate_prices_units_and_leaves_chat_alone() -> None:
    from tollgate.pricing.estimate import estimate_request

    p = default_table().lookup("tts-1")
    speech = LLMRequest(provider="openai", operation="speech", model="tts-1", units={"characters": 1000})
    assert estimate_request(speech, p).usd == pytest.approx(1000 * 1.5e-05)
    chat_price = default_table().lookup("gpt-4o-mini")
    chat = LLMRequest(
        provider="openai", operation="chat", model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    est = estimate_request(chat, chat_price, 100)
    assert chat_price is not None and chat_price.input is not None and chat_price.output is not None
    assert est.usd == pytest.approx(est.input_tokens * chat_price.input + 100 * chat_price.output)
