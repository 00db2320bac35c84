"""Bill what the provider bills (issue 17): every billed usage field, on every surface it comes on.

Real SDKs (anthropic, openai, google-genai) replay the constructed cassettes that
``scripts/make_billing_cassettes.py`` writes, one per field. Expected costs are computed here
by hand from the models' list prices (LiteLLM's cost map, bundled), not by tollgate's pricing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import tollgate
from tests.conftest import Sent, http_module
from tests.providers.anthropic_helpers import make_async_client, make_client, only_record
from tollgate.request import CallRecord, UsagePart

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

# List prices, USD per token (LiteLLM's cost map, as bundled).
SONNET = {"input": 3e-06, "output": 1.5e-05, "cache_read": 3e-07}
OPUS = {"input": 5e-06, "output": 2.5e-05, "cache_read": 5e-07}
GPT_56 = {"input": 4e-06, "output": 2e-05, "cache_write": 5e-06}
GPT_5 = {
    "priority": {"input": 2.5e-06, "output": 2e-05, "cache_read": 2.5e-07},
    "flex": {"input": 6.25e-07, "output": 5e-06, "cache_read": 6.25e-08},
    "default": {"input": 1.25e-06, "output": 1e-05, "cache_read": 1.25e-07},
}
WEB_SEARCH = 0.01  # per search, Anthropic and OpenAI (gpt-5), any context size
ASK = [{"role": "user", "content": "Go on."}]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def tokens(p: dict[str, float], uncached: int, output: int, read: int = 0, written: int = 0) -> float:
    return (
        uncached * p["input"]
        + read * p.get("cache_read", 0.0)
        + written * p.get("cache_write", 0.0)
        + (output * p["output"])
    )


# -- Anthropic: every way a Messages call is made ------------------------------------------------


def _drain(events: Any) -> None:
    for _ in events:
        pass


async def _adrain(events: Any) -> None:
    async for _ in events:
        pass


def create(sent: Sent, cassette: str) -> None:
    make_client(sent).messages.create(model="claude-sonnet-4-6", max_tokens=2048, messages=ASK)


def acreate(sent: Sent, cassette: str) -> None:
    async def run() -> None:
        await make_async_client(sent).messages.create(
            model="claude-sonnet-4-6", max_tokens=2048, messages=ASK
        )

    asyncio.run(run())


def raw(sent: Sent, cassette: str) -> None:
    make_client(sent).messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=2048, messages=ASK
    ).parse()


def beta(sent: Sent, cassette: str) -> None:
    make_client(sent).beta.messages.create(model="claude-sonnet-4-6", max_tokens=2048, messages=ASK)


def stream(sent: Sent, cassette: str) -> None:
    _drain(
        make_client(sent).messages.create(
            model="claude-sonnet-4-6", max_tokens=2048, messages=ASK, stream=True
        )
    )


def astream(sent: Sent, cassette: str) -> None:
    async def run() -> None:
        client = make_async_client(sent)
        await _adrain(
            await client.messages.create(
                model="claude-sonnet-4-6", max_tokens=2048, messages=ASK, stream=True
            )
        )

    asyncio.run(run())


def manager(sent: Sent, cassette: str) -> None:
    with make_client(sent).messages.stream(
        model="claude-sonnet-4-6", max_tokens=2048, messages=ASK
    ) as events:
        _drain(events)


PLAIN: dict[str, Callable[[Sent, str], None]] = {
    "create": create,
    "acreate": acreate,
    "raw": raw,
    "beta": beta,
}
STREAMED: dict[str, Callable[[Sent, str], None]] = {"stream": stream, "astream": astream, "manager": manager}
ANTHROPIC_CASES = [(name, door, False) for name, door in PLAIN.items()] + [
    (name, door, True) for name, door in STREAMED.items()
]


def run_anthropic(
    replay: Any, sent: Sent, cassette: str, door: Callable[[Sent, str], None], streamed: bool
) -> CallRecord:
    path = f"anthropic/{cassette}{'_stream' if streamed else ''}.yaml"
    with replay(path):
        door(sent, path)
    return only_record()


@pytest.mark.parametrize(
    ("surface", "door", "streamed"), ANTHROPIC_CASES, ids=[c[0] for c in ANTHROPIC_CASES]
)
def test_compaction_is_billed_as_the_sum_of_its_iterations(replay, sent, surface, door, streamed) -> None:  # type: ignore[no-untyped-def]
    # Was: $0.084 (the top-level counts, which leave the compaction step out).
    record = run_anthropic(replay, sent, "messages_compaction", door, streamed)
    assert (record.usage.input_tokens, record.usage.output_tokens) == (203_000, 4_500)
    assert [(p.kind, p.model) for p in record.usage.parts] == [("compaction", None), ("message", None)]
    compaction, message = tokens(SONNET, 180_000, 3_500), tokens(SONNET, 23_000, 1_000)
    assert [
        close(p.usd or 0.0, want) for p, want in zip(record.usage.parts, (compaction, message), strict=True)
    ] == [
        True,
        True,
    ]
    assert close(record.usd, compaction + message) and close(record.usd, 0.6765)
    assert not record.estimated and not record.unknown_usage


@pytest.mark.parametrize(
    ("surface", "door", "streamed"), ANTHROPIC_CASES, ids=[c[0] for c in ANTHROPIC_CASES]
)
def test_an_advisor_on_another_model_is_billed_at_that_models_rates(
    replay, sent, surface, door, streamed
) -> None:  # type: ignore[no-untyped-def]
    record = run_anthropic(replay, sent, "messages_advisor", door, streamed)
    parts = record.usage.parts
    assert [(p.kind, p.model) for p in parts] == [
        ("message", "claude-sonnet-4-6"),
        ("advisor_message", "claude-opus-4-6"),
        ("message", "claude-sonnet-4-6"),
    ]
    want = [
        tokens(SONNET, 1_200, 150, read=800),
        tokens(OPUS, 2_100, 640),
        tokens(SONNET, 1_950, 420, read=800),
    ]
    assert all(close(p.usd or 0.0, w) for p, w in zip(parts, want, strict=True))
    assert close(record.usd, sum(want))
    by_model = tollgate.report().total["parts_usd"]  # the report sums the parts by model
    assert by_model.keys() == {"claude-sonnet-4-6", "claude-opus-4-6"}
    assert close(by_model["claude-opus-4-6"], want[1]) and close(
        by_model["claude-sonnet-4-6"], want[0] + want[2]
    )
    # Tokens count every part: the advisor's are spent too.
    assert (record.usage.input_tokens, record.usage.cache_read_tokens, record.usage.output_tokens) == (
        1_200 + 800 + 2_100 + 1_950 + 800,
        1_600,
        150 + 640 + 420,
    )


@pytest.mark.parametrize(
    ("surface", "door", "streamed"), ANTHROPIC_CASES, ids=[c[0] for c in ANTHROPIC_CASES]
)
def test_server_tool_requests_and_the_tier_are_read(replay, sent, surface, door, streamed) -> None:  # type: ignore[no-untyped-def]
    cassette = "messages_web_search" + ("" if streamed else "_priority")
    record = run_anthropic(replay, sent, cassette, door, streamed)
    assert record.usage.units == {"web_search_requests": 3, "web_fetch_requests": 1}
    assert record.usage.service_tier == "priority"
    # Anthropic's priority tier has no separate list price in the cost map; web fetches are free.
    assert close(record.usd, tokens(SONNET, 9_400, 820) + 3 * WEB_SEARCH)


def test_a_shortfall_in_the_iterations_is_never_billed_below_the_top_level() -> None:
    from tollgate.providers.anthropic import usage_from

    usage = usage_from(
        {
            "input_tokens": 5_000,
            "output_tokens": 700,
            "iterations": [
                {"type": "compaction", "input_tokens": 90_000, "output_tokens": 2_000},
                {"type": "message", "input_tokens": 3_000, "output_tokens": 500},
            ],
        }
    )
    assert usage is not None
    assert usage.parts[-1] == UsagePart(None, tollgate.Usage(2_000, 200), "unlisted")
    assert (usage.input_tokens, usage.output_tokens) == (95_000, 2_700)


# -- the drift alarm ----------------------------------------------------------------------------


def test_unknown_usage_fields_warn_once_are_kept_and_counted(replay, sent) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with replay("anthropic/messages_unknown_usage.yaml", allow_playback_repeats=True):
            client = make_client(sent)
            for _ in range(3):
                client.messages.create(model="claude-sonnet-4-6", max_tokens=2048, messages=ASK)
    unknown = {"server_tool_use.code_execution_requests": 2, "hologram_tokens": 17}
    alarms = [w for w in caught if issubclass(w.category, tollgate.UnknownUsageWarning)]
    assert sorted(str(w.message).split("'")[1] for w in alarms) == sorted(unknown)  # once per field
    assert all("anthropic" in str(w.message) for w in alarms)
    records = tollgate.config.settings().ledger.records()
    assert [r.unknown_usage for r in records] == [unknown] * 3
    report = tollgate.report()
    assert report.total["unknown_usage_calls"] == 3
    assert report.total["unknown_usage"] == {f"anthropic:{name}": 3 for name in unknown}
    assert "hologram_tokens" in str(report)


# -- OpenAI and OpenAI-compatible hosts -----------------------------------------------------------


def openai_client(base_url: str | None = None, asynchronous: bool = False) -> Any:
    http = http_module("openai")
    if asynchronous:
        raw_client: Any = openai.AsyncOpenAI(
            api_key="sk-test", max_retries=0, base_url=base_url, http_client=http.AsyncClient()
        )
    else:
        raw_client = openai.OpenAI(
            api_key="sk-test", max_retries=0, base_url=base_url, http_client=http.Client()
        )
    return tollgate.instrument(raw_client)


def responses(how: str, base_url: str | None = None, **kwargs: Any) -> None:
    if how == "create":
        openai_client(base_url).responses.create(**kwargs)
    elif how == "raw":
        openai_client(base_url).responses.with_raw_response.create(**kwargs).parse()
    elif how == "stream":
        _drain(openai_client(base_url).responses.create(stream=True, **kwargs))
    elif how == "manager":
        with openai_client(base_url).responses.stream(**kwargs) as events:
            _drain(events)
    elif how == "acreate":

        async def run() -> None:
            await openai_client(base_url, asynchronous=True).responses.create(**kwargs)

        asyncio.run(run())
    else:  # astream

        async def arun() -> None:
            await _adrain(
                await openai_client(base_url, asynchronous=True).responses.create(stream=True, **kwargs)
            )

        asyncio.run(arun())


RESPONSES_DOORS = ["create", "acreate", "raw", "stream", "astream", "manager"]


def _responses_cassette(name: str, how: str) -> str:
    return f"openai/{name}{'_stream' if how in ('stream', 'astream', 'manager') else ''}.yaml"


@pytest.mark.parametrize("how", RESPONSES_DOORS)
def test_responses_cache_writes_are_read_and_priced(replay, how) -> None:  # type: ignore[no-untyped-def]
    with replay(_responses_cassette("responses_cache_write", how)):
        responses(how, model="gpt-5.6", input="Go on.")
    record = only_record()
    assert record.usage.cache_write_tokens == 3_072
    assert close(record.usd, tokens(GPT_56, 4_000 - 3_072, 300, written=3_072))


@pytest.mark.parametrize("how", RESPONSES_DOORS)
def test_responses_web_searches_and_the_priority_tier_are_billed(replay, how) -> None:  # type: ignore[no-untyped-def]
    with replay(_responses_cassette("responses_web_search_priority", how)):
        responses(how, model="gpt-5", input="Find it.", tools=[{"type": "web_search"}])
    record = only_record()
    assert record.usage.units == {"web_search_requests": 2} and record.usage.service_tier == "priority"
    want = tokens(GPT_5["priority"], 12_000 - 2_048, 700, read=2_048) + 2 * WEB_SEARCH
    assert close(record.usd, want)


@pytest.mark.parametrize("how", RESPONSES_DOORS)
def test_openrouter_reported_cost_is_recorded_on_the_responses_api(replay, how) -> None:  # type: ignore[no-untyped-def]
    with replay(_responses_cassette("openrouter_responses", how)):
        responses(how, base_url="https://openrouter.ai/api/v1", model="openai/gpt-4o-mini", input="Go on.")
    record = only_record()
    assert record.provider == "openrouter" and record.usd == 0.00042 and not record.unknown_usage


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_together_cache_hits_are_read(replay, streamed) -> None:  # type: ignore[no-untyped-def]
    with replay(f"openai/together_cached{'_stream' if streamed else ''}.yaml"):
        reply = openai_client("https://api.together.xyz/v1").chat.completions.create(
            model="meta-llama/Llama-3.3-70B-Instruct-Turbo", messages=ASK, stream=streamed
        )
        if streamed:
            _drain(reply)
    record = only_record()
    assert record.usage.cache_read_tokens == 1_024 and not record.unknown_usage


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_chat_is_billed_at_the_tier_the_response_names(replay, streamed) -> None:  # type: ignore[no-untyped-def]
    with replay(f"openai/chat_service_tiers{'_stream' if streamed else ''}.yaml"):
        client = openai_client()
        for tier in ("priority", "flex", "default"):
            reply = client.chat.completions.create(
                model="gpt-5", messages=ASK, service_tier=tier, stream=streamed
            )
            if streamed:
                _drain(reply)
    records = tollgate.config.settings().ledger.records()
    assert [r.usage.service_tier for r in records] == ["priority", "flex", None]
    for record, tier in zip(records, ("priority", "flex", "default"), strict=True):
        assert close(record.usd, tokens(GPT_5[tier], 2_000 - 1_024, 400, read=1_024)), tier


# -- Gemini ---------------------------------------------------------------------------------------


GEMINI_DOORS = ["create", "acreate", "stream", "astream"]


def gemini_call(client: Any, how: str) -> None:
    kwargs: dict[str, Any] = {"model": "gemini-2.5-flash", "contents": "Go on."}
    if how == "create":
        client.models.generate_content(**kwargs)
    elif how == "stream":
        _drain(client.models.generate_content_stream(**kwargs))
    elif how == "acreate":
        asyncio.run(client.aio.models.generate_content(**kwargs))
    else:

        async def run() -> None:
            await _adrain(await client.aio.models.generate_content_stream(**kwargs))

        asyncio.run(run())


def _gemini_cassette(name: str, how: str) -> str:
    return f"gemini/{name}{'_stream' if 'stream' in how else ''}.yaml"


@pytest.mark.parametrize("how", GEMINI_DOORS)
def test_gemini_grounding_is_billed_per_grounded_prompt(replay, how) -> None:  # type: ignore[no-untyped-def]
    from tests.providers.gemini_helpers import Wire, gemini_client

    with replay(_gemini_cassette("generate_grounding", how)):
        gemini_call(gemini_client(Wire()), how)
    record = only_record()
    assert record.usage.service_tier is None and record.usage.units == {"web_search_requests": 2}
    # Gemini 2.5 bills grounding per grounded prompt ($35 / 1,000), however many queries it ran.
    assert close(record.usd, tokens({"input": 3e-07, "output": 2.5e-06}, 40 + 900, 120) + 0.035)


@pytest.mark.parametrize("how", GEMINI_DOORS)
def test_vertex_priority_traffic_is_billed_at_priority_rates(replay, how) -> None:  # type: ignore[no-untyped-def]
    from tests.providers.gemini_helpers import Wire, vertex_client

    with replay(_gemini_cassette("vertex_grounding_priority", how)):
        gemini_call(vertex_client(Wire()), how)
    record = only_record()
    assert record.usage.service_tier == "priority" and record.usage.units == {"web_search_requests": 2}
    assert close(record.usd, tokens({"input": 5.4e-07, "output": 4.5e-06}, 40 + 900, 120) + 0.035)


def test_gemini_maps_grounding_is_billed(replay) -> None:  # type: ignore[no-untyped-def]
    from tests.providers.gemini_helpers import Wire, gemini_client

    with replay("gemini/generate_maps_grounding.yaml"):
        gemini_call(gemini_client(Wire()), "create")
    record = only_record()
    # A Maps-only grounding: its query is a Maps request, not a web search ($25 / 1,000 prompts).
    assert record.usage.units == {"maps_grounding_requests": 1}
    assert close(record.usd, tokens({"input": 3e-07, "output": 2.5e-06}, 30, 80) + 0.025)


# -- implausible usage ----------------------------------------------------------------------------


def _anthropic_replying(usage: dict[str, Any], stream: bool = False) -> Any:
    http = http_module("anthropic")
    message = {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Paris."}],
        "stop_reason": "end_turn",
        "usage": usage,
    }

    def handler(request: Any) -> Any:
        if not stream:
            return http.Response(200, json=message)
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        events = [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Paris."}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
            {"type": "message_stop"},
        ]
        body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        return http.Response(200, text=body, headers={"content-type": "text/event-stream"})

    raw_client = anthropic.Anthropic(
        api_key="sk-ant-test", max_retries=0, http_client=http.Client(transport=http.MockTransport(handler))
    )
    return tollgate.instrument(raw_client)


def _openai_replying(usage: dict[str, Any], stream: bool = False) -> Any:
    http = http_module("openai")

    def handler(request: Any) -> Any:
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini"}
        if not stream:
            return http.Response(200, json=_chat_reply(usage))
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Paris."}}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**chunk, "choices": [], "usage": usage},
        ]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return http.Response(200, text=body, headers={"content-type": "text/event-stream"})

    raw_client = openai.OpenAI(
        api_key="sk-test", max_retries=0, http_client=http.Client(transport=http.MockTransport(handler))
    )
    return tollgate.instrument(raw_client)


def _chat_reply(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }


IMPLAUSIBLE = {
    # The case: 1,000,000 cached tokens on an 8-token prompt.
    "openai cached beyond the prompt": (
        "openai",
        "gpt-4o-mini",
        {"prompt_tokens": 8, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1_000_000}},
    ),
    "openai 10^30 tokens": ("openai", "gpt-4o-mini", {"prompt_tokens": 10**30, "completion_tokens": 10**30}),
    "openai reasoning beyond the output": (
        "openai",
        "gpt-4o-mini",
        {
            "prompt_tokens": 8,
            "completion_tokens": 2,
            "completion_tokens_details": {"reasoning_tokens": 5_000},
        },
    ),
    # Anthropic counts cache reads beside the input: bounded by what the model can read.
    "anthropic cache beyond any window": (
        "anthropic",
        "claude-haiku-4-5",
        {"input_tokens": 8, "output_tokens": 2, "cache_read_input_tokens": 10_000_000},
    ),
    "anthropic 10^30 tokens": (
        "anthropic",
        "claude-haiku-4-5",
        {"input_tokens": 10**30, "output_tokens": 10**30},
    ),
    "anthropic beyond the model's output": (
        "anthropic",
        "claude-haiku-4-5",
        {"input_tokens": 8, "output_tokens": 64_000 * 8 + 1},
    ),
}


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(("provider", "model", "usage"), IMPLAUSIBLE.values(), ids=IMPLAUSIBLE.keys())
def test_implausible_usage_is_estimated_flagged_and_never_poisons_the_ledger_or_a_budget(
    tmp_path, provider, model, usage, streamed
) -> None:  # type: ignore[no-untyped-def]
    from tollgate.decisions import Implausible
    from tollgate.ledger import SQLiteLedger

    tollgate.configure(ledger=SQLiteLedger(tmp_path / "calls.db"))
    make = _anthropic_replying if provider == "anthropic" else _openai_replying
    client = make(usage, stream=streamed)
    create = client.messages.create if provider == "anthropic" else client.chat.completions.create
    with tollgate.budget(usd=0.05, name="team"):
        for _ in range(2):  # the second call is not blocked by a poisoned counter
            reply = create(model=model, max_tokens=100, messages=ASK, stream=streamed)
            if streamed:
                _drain(reply)
    records = tollgate.config.settings().ledger.records()  # SQLite kept both (no integer overflow)
    assert len(records) == 2 and all(r.estimated and r.status == "ok" for r in records)
    assert all(isinstance(r.decisions[-1], Implausible) for r in records)
    assert all(r.usage.input_tokens < 100 and r.usage.output_tokens <= 100 and r.usd < 1e-3 for r in records)
    assert tollgate.report().total["usd"] < 2e-3


def test_a_long_tool_loop_is_not_implausible() -> None:
    # Server-side tool loops report the sum of their steps: 5 steps reading a 200k context.
    from tollgate.plausible import implausible as _implausible
    from tollgate.pricing import default_table
    from tollgate.request import LLMRequest, Usage

    price = default_table().lookup("claude-haiku-4-5", "anthropic")
    request = LLMRequest("anthropic", "chat", "claude-haiku-4-5")
    assert _implausible(Usage(5 * 200_000, 5 * 4_000), price, request) is None


# -- pre-flight reserves at the tier asked for ------------------------------------------------------


def test_a_priority_request_is_reserved_at_priority_rates(replay) -> None:  # type: ignore[no-untyped-def]
    from tollgate.pricing import default_table
    from tollgate.pricing.estimate import estimate_request
    from tollgate.providers.openai import chat_request

    price = default_table().lookup("gpt-5", "openai")
    kwargs: dict[str, Any] = {"model": "gpt-5", "messages": ASK, "max_completion_tokens": 1_000}
    standard = estimate_request(chat_request(kwargs, "openai", (None, None)), price).usd
    priority = estimate_request(
        chat_request({**kwargs, "service_tier": "priority"}, "openai", (None, None)), price
    )
    flex = estimate_request(chat_request({**kwargs, "service_tier": "flex"}, "openai", (None, None)), price)
    assert close(priority.usd, 2 * standard) and close(flex.usd, standard / 2)
    # A budget with room for the standard reservation but not the priority one blocks the call
    # before any traffic (the replay has no interaction to play: nothing may be sent).
    with (
        replay("openai/chat_service_tiers.yaml"),
        tollgate.budget(usd=1.5 * standard, on_exceed="block"),
        pytest.raises(tollgate.BudgetExceeded),
    ):
        openai_client().chat.completions.create(
            model="gpt-5", messages=ASK, max_completion_tokens=1_000, service_tier="priority"
        )


# -- OpenAI's twelve-hour cache writes ------------------------------------------------------------


@pytest.mark.parametrize("shape", ["wire", "sdk"])
def test_twelve_hour_cache_writes_bill_at_their_own_rate(shape: str) -> None:
    """Responses usage splits cache_write_tokens by how long the cache is kept; the 12-hour part
    bills at the model's 12-hour rate (twice the 30-minute one for gpt-5.6), and the split is
    known usage, not drift."""
    from tollgate.pricing import cost, default_table
    from tollgate.providers.openai import responses_usage

    raw: dict[str, Any] = {
        "input_tokens": 10_000,
        "output_tokens": 100,
        "total_tokens": 10_100,
        "input_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 6_000,
            "cache_write_tokens_details": {"ttl_30m_tokens": 2_000, "ttl_12h_tokens": 4_000},
        },
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    if shape == "sdk":
        usage_types = pytest.importorskip("openai.types.responses.response_usage")
        if "cache_write_tokens_details" not in usage_types.InputTokensDetails.model_fields:
            pytest.skip("this openai SDK has no cache_write_tokens_details")
        raw = usage_types.ResponseUsage.model_validate(raw)
    usage = responses_usage(raw)
    assert usage is not None and usage.unknown == {}
    assert usage.cache_write_tokens == 6_000 and usage.units == {"cache_write_12h_tokens": 4_000}
    price = default_table().lookup("gpt-5.6", "openai")
    assert price is not None and price.cache_write is not None and price.cache_write_12h is not None
    all_short = dataclasses.replace(usage, units={})
    assert cost(price, usage) - cost(price, all_short) == pytest.approx(
        4_000 * (price.cache_write_12h - price.cache_write), rel=1e-9
    )
