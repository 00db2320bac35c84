"""Service tiers and server-side tool fees, priced as litellm prices them.

litellm is the oracle, with no mocks: token costs against ``litellm.cost_per_token(...,
service_tier=...)`` (its ``generic_cost_per_token`` for the sweeps over the whole table), tool
fees against ``StandardBuiltInToolCostTracking.get_cost_for_built_in_tools``, which is what
litellm's ``completion_cost`` adds on top of ``cost_per_token``. Each is fed the usage and
response shapes litellm's own provider transformations build: Anthropic's
``usage.server_tool_use.web_search_requests``, Gemini's ``prompt_tokens_details.
web_search_requests`` / ``google_maps_grounding_requests``, OpenAI's ``web_search_call``
output items and ``url_citation`` annotations. Where tollgate deliberately differs from
litellm, the test says why and asserts tollgate's documented behaviour.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from tollgate.pricing import ModelPrice, cost, default_table
from tollgate.request import Usage

pytestmark = pytest.mark.litellm

# Read the cost map bundled in the package instead of fetching it.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
litellm = pytest.importorskip("litellm")
cost_utils = pytest.importorskip("litellm.litellm_core_utils.llm_cost_calc.utils")
tool_tracking = pytest.importorskip("litellm.litellm_core_utils.llm_cost_calc.tool_call_cost_tracking")
openai_types = pytest.importorskip("litellm.types.llms.openai")
litellm_types = pytest.importorskip("litellm.types.utils")

TOLERANCE = 1e-12  # USD

PLAIN = Usage(input_tokens=1200, output_tokens=300)
CACHED = Usage(input_tokens=9000, output_tokens=4000, cache_read_tokens=6144, reasoning_tokens=3000)
WRITES = Usage(input_tokens=12000, output_tokens=900, cache_read_tokens=8000, cache_write_tokens=3000)
LONG = Usage(
    input_tokens=300_000,
    output_tokens=5000,
    cache_read_tokens=200_000,
    cache_write_tokens=20_000,
    reasoning_tokens=1000,
)
ONE_HOUR = Usage(
    input_tokens=20000,
    output_tokens=5000,
    cache_read_tokens=12000,
    cache_write_tokens=4000,
    reasoning_tokens=3500,
    units={"cache_write_1h_tokens": 1500},
)
# Above Claude Haiku 5.5's 100k threshold, one-hour writes bill at the one-hour rate above the
# threshold (cache_creation_input_token_cost_above_1hr_above_100k_tokens), 5x the flat one.
LONG_ONE_HOUR = Usage(
    input_tokens=250_000,
    output_tokens=3000,
    cache_read_tokens=120_000,
    cache_write_tokens=30_000,
    units={"cache_write_1h_tokens": 10_000},
)
AUDIO = Usage(input_tokens=8000, output_tokens=2000, audio_input_tokens=5000, reasoning_tokens=1500)

# (model, provider, tiers beyond standard / priority / flex). A tier the model lists no price
# for bills the standard rates: gpt-4o has no flex prices, Claude neither priority nor flex.
MODELS: list[tuple[str, str, tuple[str, ...]]] = [
    ("gpt-5", "openai", ("fast",)),  # litellm bills "fast" at the _priority keys
    ("gpt-5-mini", "openai", ()),
    ("gpt-4o", "openai", ()),
    ("o3", "openai", ()),
    # Above 272k: the flex tier lists its own long-prompt rates, priority falls back to the
    # *standard* long-prompt rates (litellm's get_cost_per_unit drops the suffix).
    ("gpt-5.4", "openai", ()),
    ("gpt-6-astra", "openai", ("ultrafast",)),
    ("azure/gpt-5.4", "azure", ()),
    ("claude-sonnet-4-5", "anthropic", ()),
    ("claude-opus-4-8", "anthropic", ("fast",)),  # fast mode: 2x the token cost
    ("claude-haiku-5-5", "anthropic", ()),
    ("gemini/gemini-2.5-pro", "gemini", ()),  # priority has its own above-200k rates
    ("gemini-2.5-pro", "vertex_ai", ()),
    # A reasoning price of its own, and priority/flex output prices: reasoning tokens then
    # bill at the tier's output price.
    ("gemini/gemini-2.5-flash", "gemini", ()),
    ("gemini/gemini-3-flash-preview", "gemini", ()),
    ("sail/zai-org/GLM-5.3", "sail", ("balanced",)),
    ("amazon.nova-pro-v1:0", "bedrock", ()),
]


def _litellm_differs(model: str, usage: Usage, tier: str | None) -> bool:
    # One-hour writes above Claude Haiku 5.5's threshold at a tier it lists no price for: see
    # test_long_prompt_one_hour_writes_at_an_unpriced_tier_bill_the_listed_rate.
    return model == "claude-haiku-5-5" and usage is LONG_ONE_HOUR and tier in ("priority", "flex")


def _cases() -> list[tuple[str, str, Usage, str | None]]:
    cases = []
    for model, provider, extra in MODELS:
        usages = [PLAIN, CACHED, WRITES, LONG]
        if "claude" in model:
            usages += [ONE_HOUR, LONG_ONE_HOUR]
        for usage in usages:
            for tier in (None, "priority", "flex", *extra):
                if not _litellm_differs(model, usage, tier):
                    cases.append((model, provider, usage, tier))
    return cases


CASES = _cases()


def litellm_usage(model: str, usage: Usage, *, speed: str | None = None) -> Any:
    """``usage`` as litellm's provider transformations build it (see test_cost_litellm.py)."""
    details: dict[str, int] = {}
    extra: dict[str, int] = {}
    if "claude" in model:
        extra = {
            "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
        }
    else:
        details = {"cached_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens}
    if usage.audio_input_tokens:
        details["audio_tokens"] = usage.audio_input_tokens
    built = litellm.Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=details or None,
        completion_tokens_details={
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": usage.audio_output_tokens,
        },
        **extra,
    )
    one_hour = int(usage.units.get("cache_write_1h_tokens", 0))
    twelve_hours = int(usage.units.get("cache_write_12h_tokens", 0))
    if one_hour:  # Anthropic's usage.cache_creation.ephemeral_{5m,1h}_input_tokens
        built.prompt_tokens_details.cache_creation_token_details = litellm_types.CacheCreationTokenDetails(
            ephemeral_5m_input_tokens=usage.cache_write_tokens - one_hour,
            ephemeral_1h_input_tokens=one_hour,
        )
    elif twelve_hours:  # OpenAI's input_tokens_details.cache_write_tokens_details.ttl_{30m,12h}_tokens
        built.prompt_tokens_details.cache_creation_token_details = litellm_types.CacheCreationTokenDetails(
            ephemeral_30m_input_tokens=usage.cache_write_tokens - twelve_hours,
            ephemeral_12h_input_tokens=twelve_hours,
        )
    if speed is not None:  # Anthropic's usage.speed
        built.speed = speed
    return built


def litellm_token_cost(model: str, provider: str, usage: Usage, tier: str | None) -> float:
    # Anthropic's fast mode reaches litellm as usage.speed == "fast"; tollgate's adapters
    # report it as service_tier "fast".
    speed = "fast" if tier == "fast" and provider == "anthropic" else None
    prompt, completion = litellm.cost_per_token(
        model=model,
        custom_llm_provider=provider,
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        usage_object=litellm_usage(model, usage, speed=speed),
        service_tier=tier,
    )
    return float(prompt + completion)


def litellm_batch_cost(model: str, provider: str, usage: Usage) -> float:
    """What litellm's batch cost calculator bills (call_type="retrieve_batch")."""
    prompt, completion = litellm.cost_per_token(
        model=model,
        custom_llm_provider=provider,
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        usage_object=litellm_usage(model, usage),
        call_type="retrieve_batch",
    )
    return float(prompt + completion)


def listed(model: str, provider: str | None = None) -> ModelPrice:
    price = default_table().lookup(model, provider)
    assert price is not None, model
    return price


def served(usage: Usage, tier: str | None) -> Usage:
    return dataclasses.replace(usage, service_tier=tier)


# -- service tiers ------------------------------------------------------------------------------


def test_enough_cases() -> None:
    assert len(CASES) >= 200
    assert {tier for *_, tier in CASES} >= {None, "priority", "flex", "fast", "ultrafast", "balanced"}


@pytest.mark.parametrize(
    ("model", "provider", "usage", "tier"),
    CASES,
    ids=[f"{m}-{tier}-{i}" for i, (m, _, _, tier) in enumerate(CASES)],
)
def test_tier_cost_agrees_with_litellm(model: str, provider: str, usage: Usage, tier: str | None) -> None:
    expected = litellm_token_cost(model, provider, usage, tier)
    assert expected > 0
    assert cost(listed(model, provider), served(usage, tier)) == pytest.approx(expected, rel=0, abs=TOLERANCE)


def test_long_prompt_one_hour_writes_at_an_unpriced_tier_bill_the_listed_rate() -> None:
    # Deliberate difference. Claude Haiku 5.5 lists no priority or flex prices, so a call
    # served at either costs what it costs at standard rates: above its 100k threshold,
    # one-hour writes bill at cache_creation_input_token_cost_above_1hr_above_100k_tokens,
    # $1.00/MTok, 5x the flat one-hour rate, as Anthropic's long-context pricing lists it
    # (https://platform.claude.com/docs/en/models/haiku-5-5/overview, the entry's source).
    # litellm 1.110 bills them at the flat $0.20/MTok at any tier: for the one- and twelve-hour
    # write rates its _get_token_base_cost looks only for the tier's own above-threshold key
    # (_first_present_key), where every other rate falls back to the standard above-threshold
    # key, so the call would cost less served at priority than at standard rates.
    price = listed("claude-haiku-5-5", "anthropic")
    usage = LONG_ONE_HOUR  # 250k prompt: 120k read, 30k written (10k for one hour), 100k fresh
    documented = (
        100_000 * 5e-07  # input above 100k
        + 120_000 * 5e-08  # cache reads
        + 20_000 * 6.25e-07  # five-minute writes
        + 10_000 * 1e-06  # one-hour writes
        + 3000 * 2.5e-06  # output
    )
    assert cost(price, usage) == pytest.approx(documented, rel=1e-12)
    assert litellm_token_cost("claude-haiku-5-5", "anthropic", usage, None) == pytest.approx(
        documented, abs=TOLERANCE
    )
    for tier in ("priority", "flex"):
        assert cost(price, served(usage, tier)) == cost(price, usage)
        litellm_at_tier = litellm_token_cost("claude-haiku-5-5", "anthropic", usage, tier)
        assert litellm_at_tier == pytest.approx(documented - 10_000 * (1e-06 - 2e-07), abs=TOLERANCE)


def test_listed_tiers_change_the_price() -> None:
    # Guards the cases above against agreeing only because both sides ignore the tier.
    gpt5 = listed("gpt-5", "openai")
    standard = cost(gpt5, CACHED)
    assert cost(gpt5, served(CACHED, "priority")) == pytest.approx(2 * standard, rel=1e-12)
    assert cost(gpt5, served(CACHED, "flex")) == pytest.approx(standard / 2, rel=1e-12)
    opus = listed("claude-opus-4-8", "anthropic")
    assert cost(opus, served(WRITES, "fast")) == pytest.approx(2 * cost(opus, WRITES), rel=1e-12)
    gemini = listed("gemini/gemini-2.5-pro", "gemini")
    assert cost(gemini, served(LONG, "priority")) > 1.5 * cost(gemini, LONG)  # its own long rates


def test_every_listed_service_tier_agrees_with_litellm() -> None:
    # Every model the table lists tier prices for, at each of its tiers and at standard
    # rates, short and long prompts: litellm's generic_cost_per_token reads the same map entry.
    def usage_of(usage: Usage) -> Any:
        return litellm.Usage(
            prompt_tokens=usage.input_tokens,
            completion_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
            prompt_tokens_details={
                "cached_tokens": usage.cache_read_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
            },
            completion_tokens_details={"reasoning_tokens": usage.reasoning_tokens},
        )

    checked, wrong = 0, []
    for price in default_table():
        tiers = [t.name for t in price.service_tiers if t.name != "fast"]  # fast: usage.speed, below
        if not tiers:
            continue
        provider = litellm.model_cost[price.model]["litellm_provider"]
        for usage in (WRITES, LONG):
            for tier in (None, *tiers):
                prompt, completion = cost_utils.generic_cost_per_token(
                    model=price.model, usage=usage_of(usage), custom_llm_provider=provider, service_tier=tier
                )
                got = cost(price, served(usage, tier))
                expected = prompt + completion
                checked += 1
                if abs(got - expected) > TOLERANCE:
                    wrong.append((price.model, tier, usage.input_tokens, got, expected))
    assert checked > 1000
    assert wrong == []


@pytest.mark.parametrize("tier", ["scale", "default", "standard", "auto", "on_demand", "no-such-tier"])
@pytest.mark.parametrize(("model", "provider"), [("gpt-5", "openai"), ("gemini/gemini-2.5-pro", "gemini")])
def test_a_tier_without_prices_bills_standard_rates(model: str, provider: str, tier: str) -> None:
    price = listed(model, provider)
    for usage in (CACHED, LONG):
        expected = litellm_token_cost(model, provider, usage, tier)
        assert cost(price, served(usage, tier)) == pytest.approx(expected, rel=0, abs=TOLERANCE)
        assert cost(price, served(usage, tier)) == cost(price, usage)


def test_tier_names_are_case_insensitive() -> None:
    price = listed("gemini/gemini-2.5-pro", "gemini")
    expected = litellm_token_cost("gemini/gemini-2.5-pro", "gemini", LONG, "PRIORITY")
    assert cost(price, served(LONG, "PRIORITY")) == pytest.approx(expected, rel=0, abs=TOLERANCE)
    assert cost(price, served(LONG, "PRIORITY")) == cost(price, served(LONG, "priority"))


@pytest.mark.parametrize(
    ("model", "provider", "usage"),
    [
        ("gpt-5", "openai", CACHED),
        ("gpt-5.4", "openai", LONG),
        ("claude-sonnet-4-5", "anthropic", WRITES),
        ("gemini/gemini-2.5-pro", "gemini", LONG),
    ],
)
def test_batch_tier_bills_batch_prices(model: str, provider: str, usage: Usage) -> None:
    # Deliberate difference: litellm prices batches only through its batch cost calculator
    # (call_type="retrieve_batch"); cost_per_token(service_tier="batch") bills the standard
    # rates. tollgate bills a call the provider says it served in the batch tier (Anthropic's
    # usage.service_tier == "batch") at the batch prices, as cost(..., batch=True) does.
    price = listed(model, provider)
    batch_price = litellm_batch_cost(model, provider, usage)
    assert cost(price, served(usage, "batch")) == pytest.approx(batch_price, rel=0, abs=TOLERANCE)
    assert cost(price, served(usage, "batch")) == cost(price, usage, batch=True)
    assert cost(price, served(usage, "priority"), batch=True) == cost(price, usage, batch=True)
    assert litellm_token_cost(model, provider, usage, "batch") == pytest.approx(
        cost(price, usage), abs=TOLERANCE
    )


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gemini/gemini-2.5-flash", "gemini"),
        ("gemini-2.5-flash", "vertex_ai"),
        ("vertex_ai/gemini-3-flash-preview", "vertex_ai"),
    ],
)
def test_priority_audio_bills_the_listed_priority_audio_price(model: str, provider: str) -> None:
    # Up to litellm 1.106 get_model_info, which cost_per_token reads the map through, dropped
    # input_cost_per_audio_token_priority, so cost_per_token billed priority audio at the
    # standard audio price; tollgate billed the listed one all along. Since 1.110 both agree.
    price = listed(model, provider)
    entry = litellm.model_cost[price.model]
    prompt, completion = cost_utils.generic_cost_per_token(
        model=price.model,
        usage=litellm_usage(model, AUDIO),
        custom_llm_provider=entry["litellm_provider"],
        service_tier="priority",
        model_info=entry,
    )
    got = cost(price, served(AUDIO, "priority"))
    assert got == pytest.approx(prompt + completion, rel=0, abs=TOLERANCE)
    assert got == pytest.approx(litellm_token_cost(model, provider, AUDIO, "priority"), rel=0, abs=TOLERANCE)
    uplift = AUDIO.audio_input_tokens * (
        entry["input_cost_per_audio_token_priority"] - entry["input_cost_per_audio_token"]
    )
    standard_audio = dataclasses.replace(price, service_tiers=())
    assert got - cost(standard_audio, AUDIO) > uplift > 0


def _listing(*keys: str) -> list[tuple[str, str]]:
    # (model, litellm provider) of every map entry listing a key that starts with one of ``keys``;
    # the sample follows the installed map, so it cannot go stale.
    return sorted(
        (name, entry["litellm_provider"])
        for name, entry in litellm.model_cost.items()
        if isinstance(entry, dict)
        and entry.get("litellm_provider")
        and any(k.startswith(keys) for k in entry)
        and entry.get("mode") in ("chat", "responses", None)
    )


LONG_AUDIO = Usage(
    input_tokens=250_000, output_tokens=2000, audio_input_tokens=50_000, cache_read_tokens=10_000
)


@pytest.mark.parametrize(("model", "provider"), _listing("input_cost_per_audio_token_above_"))
def test_long_prompt_audio_rates_agree_with_litellm(model: str, provider: str) -> None:
    # Audio input has long-prompt rates of its own (input_cost_per_audio_token_above_200k_tokens,
    # with _priority, _flex and _batches variants), crossed like the text thresholds.
    price = listed(model, provider)
    assert any(t.audio_input is not None for t in price.tiers)
    for usage in (AUDIO, LONG_AUDIO):
        for tier in (None, *(t.name for t in price.service_tiers)):
            expected = litellm_token_cost(model, provider, usage, tier)
            assert cost(price, served(usage, tier)) == pytest.approx(expected, rel=0, abs=TOLERANCE), tier
        expected = litellm_batch_cost(model, provider, usage)
        assert cost(price, usage, batch=True) == pytest.approx(expected, rel=0, abs=TOLERANCE)


TWELVE_HOURS = Usage(
    input_tokens=30_000,
    output_tokens=2000,
    cache_read_tokens=10_000,
    cache_write_tokens=8000,
    reasoning_tokens=500,
    units={"cache_write_12h_tokens": 5000},
)
LONG_TWELVE_HOURS = dataclasses.replace(LONG, units={"cache_write_12h_tokens": 15_000})


@pytest.mark.parametrize(("model", "provider"), _listing("cache_creation_input_token_cost_above_12hr"))
def test_twelve_hour_cache_writes_agree_with_litellm(model: str, provider: str) -> None:
    # OpenAI's extended prompt cache: writes kept twelve hours bill at
    # cache_creation_input_token_cost_above_12hr (thirty-minute ones at the cache-write rate),
    # with long-prompt, service-tier and batch variants.
    price = listed(model, provider)
    assert price.cache_write_12h is not None
    for usage in (TWELVE_HOURS, LONG_TWELVE_HOURS):
        for tier in (None, *(t.name for t in price.service_tiers)):
            expected = litellm_token_cost(model, provider, usage, tier)
            assert cost(price, served(usage, tier)) == pytest.approx(expected, rel=0, abs=TOLERANCE), tier
        if price.batch_input is None and usage is LONG_TWELVE_HOURS:
            # Without batch prices litellm halves the flat rates whatever the prompt's size;
            # tollgate halves the long-prompt rates the call is billed at (test_cost.py,
            # test_batch_without_listed_prices_halves_the_long_prompt_rates).
            continue
        expected = litellm_batch_cost(model, provider, usage)
        assert cost(price, usage, batch=True) == pytest.approx(expected, rel=0, abs=TOLERANCE)
    plain_writes = dataclasses.replace(TWELVE_HOURS, units={})
    assert cost(price, TWELVE_HOURS) > cost(price, plain_writes)


def test_overridden_rates_hold_at_every_service_tier() -> None:
    table = default_table().with_overrides({"gpt-5.4": {"input": 1e-06}})
    price = listed("gpt-5.4", "openai")
    custom = table.lookup("gpt-5.4")
    assert custom is not None
    priority, listed_priority = custom.service_tier("priority"), price.service_tier("priority")
    assert priority is not None and listed_priority is not None
    assert (priority.input, priority.output) == (1e-06, listed_priority.output)
    assert all(t.input == 1e-06 for t in priority.tiers)
    assert cost(custom, served(PLAIN, "priority")) == pytest.approx(
        1200 * 1e-06 + 300 * (listed_priority.output or 0.0), rel=1e-12
    )


# -- server-side tool fees -----------------------------------------------------------------------


def anthropic_usage(searches: int) -> Any:
    return litellm.Usage(
        prompt_tokens=1000, completion_tokens=100, server_tool_use={"web_search_requests": searches}
    )


def gemini_usage(searches: int, maps: int) -> Any:
    # litellm's Gemini transformation counts distinct webSearchQueries, and Maps queries
    # (at least one when a candidate carries Maps chunks), across candidates.
    details = {"web_search_requests": searches or None, "google_maps_grounding_requests": maps or None}
    return litellm.Usage(prompt_tokens=1000, completion_tokens=100, prompt_tokens_details=details)


def responses_with_searches(model: str, searches: int) -> Any:
    output: list[dict[str, Any]] = [
        {"type": "web_search_call", "id": f"ws_{i}", "status": "completed", "action": {"type": "search"}}
        for i in range(searches)
    ]
    output.append({"type": "message", "id": "msg", "role": "assistant", "status": "completed", "content": []})
    return openai_types.ResponsesAPIResponse.model_validate(
        {
            "id": "resp",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
    )


def chat_with_citations(model: str) -> Any:
    citations = [
        {
            "type": "url_citation",
            "url_citation": {"url": f"https://e.x/{i}", "title": "t", "start_index": 0, "end_index": 1},
        }
        for i in range(3)
    ]
    message = {"role": "assistant", "content": "answer", "annotations": citations}
    return litellm.ModelResponse(
        model=model, choices=[{"index": 0, "message": message, "finish_reason": "stop"}]
    )


# (id, model, provider, tollgate units, litellm usage, litellm response)
ToolCase = tuple[str, str, str, dict[str, float], Any, Any]


def _tool_cases() -> list[ToolCase]:
    cases: list[ToolCase] = []
    for searches in (1, 4):
        cases.append(
            (
                f"anthropic-{searches}",
                "claude-sonnet-4-5",
                "anthropic",
                {"web_search_requests": searches},
                anthropic_usage(searches),
                None,
            )
        )
    # Claude on Vertex reports server_tool_use like the Anthropic API, and litellm routes it to
    # the Anthropic calculator (per search, no default price).
    cases.append(
        (
            "vertex-claude",
            "vertex_ai/claude-opus-4-6",
            "vertex_ai",
            {"web_search_requests": 2},
            anthropic_usage(2),
            None,
        )
    )
    gemini = [
        ("gemini/gemini-2.5-pro", "gemini"),  # Gemini 2.x: once per grounded prompt
        ("gemini-2.5-flash", "vertex_ai"),
        ("gemini/gemini-3-flash-preview", "gemini"),  # Gemini 3.x: per query
        ("vertex_ai/gemini-3-flash-preview", "vertex_ai"),
        ("gemini/gemini-exp-1206", "gemini"),  # a listed search price, Maps at the default
        ("vertex_ai/gemini-2.0-flash", "vertex_ai"),  # no listed price: Google's list prices
    ]
    for model, provider in gemini:
        for searches, maps in ((1, 0), (3, 0), (0, 1), (0, 2), (2, 1)):
            units: dict[str, float] = {"web_search_requests": searches, "maps_grounding_requests": maps}
            cases.append(
                (f"{model}-{searches}-{maps}", model, provider, units, gemini_usage(searches, maps), None)
            )
    # OpenAI and Azure Responses: one fee per web_search_call output item.
    for model, provider, searches in (
        ("gpt-5", "openai", 1),
        ("gpt-5", "openai", 3),
        ("azure/gpt-5.6", "azure", 2),
    ):
        cases.append(
            (
                f"{model}-responses-{searches}",
                model,
                provider,
                {"web_search_requests": searches},
                None,
                responses_with_searches(model, searches),
            )
        )
    # OpenAI chat completions: a response with url_citation annotations is one search.
    cases.append(
        (
            "chat-citations",
            "gpt-4o-search-preview",
            "openai",
            {"web_search_requests": 1},
            None,
            chat_with_citations("gpt-4o-search-preview"),
        )
    )
    return cases


TOOL_CASES = _tool_cases()


def litellm_tool_fee(model: str, provider: str, usage: Any, response: Any) -> float:
    fee = tool_tracking.StandardBuiltInToolCostTracking.get_cost_for_built_in_tools(
        model=model,
        response_object=response,
        usage=usage,
        custom_llm_provider=provider,
        standard_built_in_tools_params={},
    )
    return float(fee)


@pytest.mark.parametrize(
    ("model", "provider", "units", "usage", "response"),
    [case[1:] for case in TOOL_CASES],
    ids=[case[0] for case in TOOL_CASES],
)
def test_tool_fee_agrees_with_litellm(
    model: str, provider: str, units: dict[str, float], usage: Any, response: Any
) -> None:
    expected = litellm_tool_fee(model, provider, usage, response)
    assert expected > 0
    assert cost(listed(model, provider), Usage(units=units)) == pytest.approx(expected, rel=0, abs=TOLERANCE)


def test_every_listed_tool_fee_agrees_with_litellm() -> None:
    # Every OpenAI, Azure, Anthropic, Gemini and Vertex AI entry with a tool price: three
    # searches and two Maps requests, reported as each provider's usage reports them. Given a
    # provider, litellm (like tollgate's lookup) prices a name by the entry filed under
    # "<provider>/<name>" when there is one: gemini/gemini-3.1-flash-live-preview lists a
    # search price that its bare twin, also filed under gemini, does not.
    table = default_table()
    by_name = {p.model.lower(): p for p in table}
    checked, wrong = 0, []
    for price in table:
        if price.web_search is None and price.maps_grounding is None:
            continue
        provider = price.provider
        units: dict[str, float] = {"web_search_requests": 3}
        usage, response = None, None
        if provider == "anthropic" or (provider.startswith("vertex_ai") and "claude" in price.model):
            usage = anthropic_usage(3)
        elif provider == "gemini" or provider.startswith("vertex_ai"):
            usage, units = gemini_usage(3, 2), {"web_search_requests": 3, "maps_grounding_requests": 2}
        elif provider in ("openai", "azure"):
            response = responses_with_searches(price.model, 3)
        else:
            continue
        expected = litellm_tool_fee(price.model, provider, usage, response)
        got = cost(by_name.get(f"{provider}/{price.model}".lower(), price), Usage(units=units))
        checked += 1
        if abs(got - expected) > TOLERANCE:
            wrong.append((price.model, got, expected))
    assert checked > 250
    assert wrong == []


def test_partner_models_on_vertex_have_no_grounding_fee() -> None:
    # Deliberate difference: litellm prices every non-Claude model on Vertex AI with its Gemini
    # calculator, which falls back to Google's grounding list prices. Only Google's own models
    # can ground a prompt, so tollgate lists those defaults for them alone; a Llama on Vertex
    # never reports grounding.
    model = "vertex_ai/meta/llama-3.1-405b-instruct-maas"
    price = listed(model, "vertex_ai")
    units = {"web_search_requests": 3, "maps_grounding_requests": 2}
    assert cost(price, Usage(units=units)) == 0.0
    assert litellm_tool_fee(model, price.provider, gemini_usage(3, 2), None) == pytest.approx(0.035 + 0.025)


def test_no_fee_without_a_listed_price() -> None:
    price = listed("gpt-4o", "openai")
    assert price.web_search is None
    assert litellm_tool_fee("gpt-4o", "openai", None, responses_with_searches("gpt-4o", 2)) == 0.0
    assert cost(price, Usage(units={"web_search_requests": 2})) == 0.0


def test_web_fetch_is_billed_as_tokens_only() -> None:
    # Anthropic's web fetch has no fee beyond the tokens of the fetched content, and litellm
    # reads no count for it (ServerToolUse has web_search_requests, not web_fetch_requests).
    assert "web_fetch_requests" not in litellm_types.ServerToolUse.model_fields
    price = listed("claude-sonnet-4-5", "anthropic")
    fetched = dataclasses.replace(WRITES, units={"web_fetch_requests": 5})
    assert cost(price, fetched) == cost(price, WRITES)


@pytest.mark.parametrize(
    ("model", "provider", "usage", "tier", "units", "litellm_usage_with_tools", "response"),
    [
        (
            "gemini/gemini-2.5-pro",
            "gemini",
            LONG,
            "priority",
            {"web_search_requests": 2, "maps_grounding_requests": 1},
            gemini_usage(2, 1),
            None,
        ),
        (
            "gemini/gemini-3-flash-preview",
            "gemini",
            CACHED,
            "flex",
            {"web_search_requests": 4},
            gemini_usage(4, 0),
            None,
        ),
        # Fast mode doubles the tokens, not the searches.
        (
            "claude-opus-4-8",
            "anthropic",
            WRITES,
            "fast",
            {"web_search_requests": 3},
            anthropic_usage(3),
            None,
        ),
        (
            "gpt-5",
            "openai",
            CACHED,
            "flex",
            {"web_search_requests": 2},
            None,
            responses_with_searches("gpt-5", 2),
        ),
    ],
    ids=["gemini-priority", "gemini-3-flex", "claude-fast", "gpt-5-flex"],
)
def test_tokens_at_a_tier_plus_tool_fees_agree_with_litellm(
    model: str,
    provider: str,
    usage: Usage,
    tier: str,
    units: dict[str, float],
    litellm_usage_with_tools: Any,
    response: Any,
) -> None:
    # completion_cost = cost_per_token(service_tier) + the built-in tool fees.
    expected = litellm_token_cost(model, provider, usage, tier) + litellm_tool_fee(
        model, provider, litellm_usage_with_tools, response
    )
    price = listed(model, provider)
    with_tools = dataclasses.replace(usage, service_tier=tier, units={**usage.units, **units})
    assert cost(price, with_tools) == pytest.approx(expected, rel=0, abs=TOLERANCE)
    # How tollgate prices per-request units apart from per-step parts: units alone, same tier.
    fees_only = cost(price, Usage(units=units, service_tier=tier))
    assert fees_only == pytest.approx(expected - cost(price, served(usage, tier)), rel=0, abs=TOLERANCE)


def test_batch_calls_pay_tool_fees_too() -> None:
    # Deliberate difference: litellm's batch cost calculator prices tokens only. A search run
    # inside a batch job costs what it costs outside one, so tollgate adds the fee.
    price = listed("claude-sonnet-4-5", "anthropic")
    batch = litellm_batch_cost("claude-sonnet-4-5", "anthropic", WRITES)
    fee = litellm_tool_fee("claude-sonnet-4-5", "anthropic", anthropic_usage(2), None)
    searched = dataclasses.replace(WRITES, units={"web_search_requests": 2}, service_tier="batch")
    assert cost(price, searched) == pytest.approx(batch + fee, rel=0, abs=TOLERANCE)
