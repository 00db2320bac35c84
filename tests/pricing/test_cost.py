"""cost() and estimate_cost(), checked by hand against prices read from the bundled table."""

from __future__ import annotations

import pytest

from tollgate.pricing import ModelPrice, PriceTier, cost, default_table, estimate_cost
from tollgate.request import Usage


def listed(model: str, provider: str | None = None) -> ModelPrice:
    found = default_table().lookup(model, provider)
    assert found is not None, model
    return found


def rate(value: float | None) -> float:
    assert value is not None
    return value


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-12, abs=1e-15)


def test_plain_call() -> None:
    p = listed("gpt-4o")
    assert cost(p, Usage(input_tokens=1000, output_tokens=500)) == approx(
        1000 * rate(p.input) + 500 * rate(p.output)
    )


def test_cache_reads_bill_at_the_cache_read_price() -> None:
    p = listed("gpt-4o-mini")
    usage = Usage(input_tokens=5000, output_tokens=200, cache_read_tokens=4096)
    expected = 904 * rate(p.input) + 4096 * rate(p.cache_read) + 200 * rate(p.output)
    assert cost(p, usage) == approx(expected)


def test_cache_writes_bill_at_the_cache_write_price() -> None:
    p = listed("claude-sonnet-4-5", "anthropic")
    usage = Usage(input_tokens=12000, output_tokens=900, cache_read_tokens=8000, cache_write_tokens=3000)
    expected = (
        1000 * rate(p.input) + 8000 * rate(p.cache_read) + 3000 * rate(p.cache_write) + 900 * rate(p.output)
    )
    assert cost(p, usage) == approx(expected)
    assert rate(p.cache_write) > rate(p.input) > rate(p.cache_read)


def test_missing_cache_prices_fall_back_to_the_input_price() -> None:
    p = listed("gpt-3.5-turbo")
    assert p.cache_read is None and p.cache_write is None
    usage = Usage(input_tokens=3000, output_tokens=100, cache_read_tokens=1000, cache_write_tokens=500)
    assert cost(p, usage) == approx(3000 * rate(p.input) + 100 * rate(p.output))


def test_a_listed_zero_price_is_free_not_missing() -> None:
    p = listed("deepseek/deepseek-chat", "deepseek")
    assert p.cache_write == 0.0
    usage = Usage(input_tokens=3000, output_tokens=100, cache_write_tokens=1000)
    assert cost(p, usage) == approx(2000 * rate(p.input) + 100 * rate(p.output))


def test_reasoning_is_part_of_output_and_billed_once() -> None:
    p = listed("o4-mini")
    assert p.reasoning is None
    usage = Usage(input_tokens=1000, output_tokens=3000, reasoning_tokens=2500)
    assert cost(p, usage) == approx(1000 * rate(p.input) + 3000 * rate(p.output))


def test_reasoning_with_its_own_price() -> None:
    p = listed("dashscope/qwen-plus-latest", "dashscope")
    assert rate(p.reasoning) > rate(p.output)
    usage = Usage(input_tokens=1000, output_tokens=3000, reasoning_tokens=2500)
    expected = 1000 * rate(p.input) + 500 * rate(p.output) + 2500 * rate(p.reasoning)
    assert cost(p, usage) == approx(expected)


def test_audio_tokens_bill_at_audio_prices() -> None:
    p = listed("gpt-4o-audio-preview-2024-12-17")
    usage = Usage(input_tokens=5000, output_tokens=1200, audio_input_tokens=3000, audio_output_tokens=800)
    expected = (
        2000 * rate(p.input) + 3000 * rate(p.audio_input) + 400 * rate(p.output) + 800 * rate(p.audio_output)
    )
    assert cost(p, usage) == approx(expected)


def test_a_long_prompt_bills_the_whole_call_at_the_tier() -> None:
    p = listed("gemini-2.5-pro", "gemini")
    (tier,) = p.tiers
    at, above = tier.above_input_tokens, tier.above_input_tokens + 1
    usage = Usage(input_tokens=at, output_tokens=1000, cache_read_tokens=50_000)
    flat = (at - 50_000) * rate(p.input) + 50_000 * rate(p.cache_read) + 1000 * rate(p.output)
    assert cost(p, usage) == approx(flat)
    usage = Usage(input_tokens=above, output_tokens=1000, cache_read_tokens=50_000)
    tiered = (above - 50_000) * rate(tier.input) + 50_000 * rate(tier.cache_read) + 1000 * rate(tier.output)
    assert cost(p, usage) == approx(tiered)
    assert tiered > flat


def test_the_highest_crossed_tier_wins() -> None:
    tiers = (PriceTier(10, input=2.0, output=20.0), PriceTier(100, input=3.0, output=30.0))
    p = ModelPrice("m", "x", input=1.0, output=10.0, tiers=tiers)
    assert [cost(p, Usage(input_tokens=n, output_tokens=1)) for n in (10, 11, 100, 101)] == [
        10 * 1.0 + 10.0,
        11 * 2.0 + 20.0,
        100 * 2.0 + 20.0,
        101 * 3.0 + 30.0,
    ]


def test_batch_uses_listed_batch_prices() -> None:
    p = listed("gpt-5")
    usage = Usage(input_tokens=9000, output_tokens=4000, cache_read_tokens=6000, reasoning_tokens=3000)
    expected = 3000 * rate(p.batch_input) + 6000 * rate(p.batch_cache_read) + 4000 * rate(p.batch_output)
    assert cost(p, usage, batch=True) == approx(expected)
    assert cost(p, usage, batch=True) < cost(p, usage)


def test_batch_without_listed_prices_is_half_price() -> None:
    p = ModelPrice("m", "x", input=2e-06, output=8e-06, cache_read=5e-07)
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=400)
    assert cost(p, usage, batch=True) == approx(cost(p, usage) / 2)


def test_batch_without_listed_prices_halves_the_long_prompt_rates() -> None:
    # Deliberate difference: without batch prices litellm's batch_cost_calculator halves the
    # model's flat rates whatever the prompt's size. A long prompt costs more in a batch too,
    # so tollgate halves the rates the call is billed at.
    tier = PriceTier(above_input_tokens=272_000, input=3e-05, output=1.125e-04)
    p = ModelPrice("m", "openai", input=1.5e-05, output=7.5e-05, tiers=(tier,))
    usage = Usage(input_tokens=300_000, output_tokens=1000)
    assert cost(p, usage, batch=True) == approx(cost(p, usage) / 2)
    assert cost(p, usage, batch=True) == approx((300_000 * 3e-05 + 1000 * 1.125e-04) / 2)


def test_nothing_used_costs_nothing() -> None:
    assert cost(listed("gpt-4o"), Usage()) == 0.0
    assert cost(ModelPrice("free", "x"), Usage(input_tokens=10, output_tokens=10)) == 0.0


def test_inconsistent_usage_never_goes_negative() -> None:
    p = listed("claude-sonnet-4-5", "anthropic")
    usage = Usage(input_tokens=100, output_tokens=10, cache_read_tokens=300, reasoning_tokens=50)
    expected = 300 * rate(p.cache_read) + 10 * rate(p.output)
    assert cost(p, usage) == approx(expected)


def test_estimate_assumes_no_cache() -> None:
    p = listed("gpt-4o")
    assert estimate_cost(p, 1000, 500) == approx(1000 * rate(p.input) + 500 * rate(p.output))
    assert estimate_cost(p, 1000, 500) == approx(cost(p, Usage(input_tokens=1000, output_tokens=500)))


def test_estimate_prices_output_at_the_dearer_of_output_and_reasoning() -> None:
    p = listed("dashscope/qwen-plus-latest", "dashscope")
    assert estimate_cost(p, 1000, 500) == approx(1000 * rate(p.input) + 500 * rate(p.reasoning))


def test_estimate_applies_tiers() -> None:
    p = listed("gemini-2.5-pro", "gemini")
    (tier,) = p.tiers
    n = tier.above_input_tokens + 1
    assert estimate_cost(p, n, 100) == approx(n * rate(tier.input) + 100 * rate(tier.output))
