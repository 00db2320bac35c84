"""TollgateLogger on LiteLLM's async SDK, and the sync path: each action checked on what the
upstream (a loopback OpenAI-compatible server) received."""

from __future__ import annotations

from typing import Any

import pytest

import tollgate

tollgate_litellm = pytest.importorskip("tollgate_litellm")

import litellm  # noqa: E402

from tests.integrations.litellm.conftest import (  # noqa: E402
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    records,
    settled,
    settled_sync,
)

TollgateLogger = tollgate_litellm.TollgateLogger

QUESTION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
# gpt-4o with 100 output tokens reserves ~$0.0011; gpt-4o-mini ~$0.00007.
DOWNGRADE: dict[str, Any] = {"usd": 0.0005, "on_exceed": "downgrade", "downgrade": {"gpt-4o": "gpt-4o-mini"}}


@pytest.fixture
def logger() -> TollgateLogger:
    handler = TollgateLogger()
    litellm.callbacks = [handler]
    return handler


def args(upstream: Any, **extra: Any) -> dict[str, Any]:
    return {"api_base": upstream.url, "api_key": "sk-test", "messages": QUESTION, **extra}


async def test_acompletion_is_recorded_once(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    reply = await litellm.acompletion(
        model="openai/gpt-4o", max_tokens=100, metadata={"tollgate": {"tenant": "acme"}}, **args(upstream)
    )
    assert reply.choices[0].message.content == "Paris."
    assert upstream.received[0]["model"] == "gpt-4o" and upstream.received[0]["max_tokens"] == 100
    [rec] = await settled()
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert rec.status == "ok" and rec.request_model == "gpt-4o" and rec.provider == "openai"
    assert rec.response_id == "chatcmpl-fake" and rec.tags == {"tenant": "acme"}
    assert rec.usd == pytest.approx(20 * 2.5e-6 + 5 * 10e-6)
    assert rec.decisions == ()  # LiteLLM's response_cost agrees with tollgate's: nothing noted


async def test_cost_disagreement_with_litellm_is_kept_in_the_record(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(prices={"gpt-4o": {"input": 1e-6, "output": 1e-6}})  # LiteLLM: 2.5e-6 / 10e-6
    await litellm.acompletion(model="gpt-4o", max_tokens=100, **args(upstream))
    [rec] = await settled()
    assert rec.usd == pytest.approx(25e-6)  # tollgate's price table is what budgets count
    [note] = rec.decisions
    assert note["cost_mismatch"] and note["litellm_usd"] == pytest.approx(1e-4)


async def test_block_sends_nothing(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        await litellm.acompletion(model="gpt-4o", **args(upstream))
    assert upstream.received == []
    assert [r.status for r in await settled()] == ["blocked"]


async def test_downgrade_reaches_the_upstream(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(**DOWNGRADE):
        await litellm.acompletion(model="openai/gpt-4o", max_tokens=100, **args(upstream))
    assert upstream.received[0]["model"] == "gpt-4o-mini"
    [rec] = await settled()
    assert rec.request_model == "gpt-4o" and rec.response_model == "gpt-4o-mini"
    assert rec.decisions[0]["action"] == "downgrade"
    assert rec.usd == pytest.approx(20 * 0.15e-6 + 5 * 0.6e-6)


async def test_clamp_caps_the_output(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(tokens=300, on_exceed="clamp"):
        await litellm.acompletion(model="gpt-4o", max_tokens=1000, **args(upstream))
    cap = upstream.received[0]["max_tokens"]
    assert 0 < cap < 300
    [rec] = await settled()
    assert rec.decisions[0]["action"] == "clamp"


async def test_truncate_drops_old_turns(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    history = [{"role": "system", "content": "Be terse."}]
    for i in range(30):
        history.append({"role": "user", "content": f"Question {i}: " + "tell me more " * 40})
        history.append({"role": "assistant", "content": "More. " * 40})
    history.append({"role": "user", "content": "Name the capital of France."})
    with tollgate.budget(tokens=1500, on_exceed="truncate"):
        await litellm.acompletion(
            model="gpt-4o", max_tokens=50, api_base=upstream.url, api_key="sk-test", messages=history
        )
    sent = upstream.received[0]["messages"]
    assert len(sent) < len(history)
    assert sent[0] == history[0] and sent[-1] == history[-1]
    [rec] = await settled()
    assert rec.decisions[0]["action"] == "truncate"


async def test_stream_asks_for_usage_and_settles_when_it_ends(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(**DOWNGRADE):
        stream = await litellm.acompletion(model="gpt-4o", max_tokens=100, stream=True, **args(upstream))
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Paris."
    body = upstream.received[0]
    assert body["stream_options"] == {"include_usage": True} and body["model"] == "gpt-4o-mini"
    [rec] = await settled()
    assert rec.stream and (rec.usage.input_tokens, rec.usage.output_tokens) == (
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
    )
    assert not rec.estimated and rec.response_model == "gpt-4o-mini"


async def test_positional_model_cannot_be_downgraded_so_it_is_blocked(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(**DOWNGRADE), pytest.raises(tollgate.BudgetExceeded, match="positionally"):
        await litellm.acompletion(
            "gpt-4o", QUESTION, max_tokens=100, api_base=upstream.url, api_key="sk-test"
        )
    assert upstream.received == []
    [rec] = await settled()
    assert rec.status == "blocked"


async def test_positional_arguments_are_still_counted(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    await litellm.acompletion("gpt-4o", QUESTION, max_tokens=100, api_base=upstream.url, api_key="sk-test")
    [rec] = await settled()
    assert rec.status == "ok" and rec.request_model == "gpt-4o" and rec.usage.input_tokens == PROMPT_TOKENS


async def test_upstream_error_is_recorded(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception):  # noqa: B017 - LiteLLM maps the connection error
        await litellm.acompletion(
            model="gpt-4o",
            messages=QUESTION,
            api_base="http://127.0.0.1:9/v1",
            api_key="sk-test",
            max_retries=0,
        )
    [rec] = await settled()
    assert rec.status == "error" and rec.usd == 0


async def test_embedding_is_budgeted(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    await litellm.aembedding(
        model="openai/text-embedding-3-small", input=["hello"], api_base=upstream.url, api_key="sk-test"
    )
    [rec] = await settled()
    assert rec.operation == "embeddings" and rec.usage.input_tokens == 4


async def test_settlement_refunds_the_reservation_to_what_was_used(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    # Each call reserves ~130 tokens (its prompt + max_tokens) and uses 25: the second call fits
    # in 200 tokens only because the first was settled to its actual usage.
    with tollgate.budget(tokens=200, on_exceed="block"):
        await litellm.acompletion(model="gpt-4o", max_tokens=100, **args(upstream))
        await settled(1)
        await litellm.acompletion(model="gpt-4o", max_tokens=100, **args(upstream))
        await settled(2)
        with pytest.raises(tollgate.BudgetExceeded):
            await litellm.acompletion(model="gpt-4o", max_tokens=160, **args(upstream))
    assert len(upstream.received) == 2
    assert [r.status for r in await settled(3)] == ["ok", "ok", "blocked"]


# -- sync -------------------------------------------------------------------------------------


def test_sync_completion_is_recorded_observe_only(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.track(feature="sync"):
        reply = litellm.completion(model="gpt-4o", max_tokens=100, **args(upstream))
    assert reply.choices[0].message.content == "Paris."
    [rec] = settled_sync()
    assert rec.status == "ok" and rec.usage.output_tokens == COMPLETION_TOKENS
    assert rec.decisions == ({"action": "observe_only"},)


def test_wrapper_blocks_a_sync_call(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        tollgate_litellm.completion(model="gpt-4o", **args(upstream))
    assert upstream.received == []
    assert [r.status for r in settled_sync()] == ["blocked"]


def test_wrapper_downgrades_a_sync_call_and_settles_it_once(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(**DOWNGRADE):
        reply = tollgate_litellm.completion(
            "openai/gpt-4o", QUESTION, max_tokens=100, api_base=upstream.url, api_key="sk-test"
        )
    assert reply.choices[0].message.content == "Paris."
    assert upstream.received[0]["model"] == "gpt-4o-mini"
    assert len(records()) == 1  # settled before it returned
    [rec] = settled_sync()
    assert rec.response_model == "gpt-4o-mini" and rec.decisions[0]["action"] == "downgrade"


def test_wrapper_streams_are_settled_by_the_logger(upstream) -> None:  # type: ignore[no-untyped-def]
    litellm.callbacks = []  # the wrapper brings its own logger
    with tollgate.budget(tokens=300, on_exceed="clamp"):
        stream = tollgate_litellm.completion(model="gpt-4o", max_tokens=1000, stream=True, **args(upstream))
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Paris."
    body = upstream.received[0]
    assert body["max_tokens"] < 300 and body["stream_options"] == {"include_usage": True}
    [rec] = settled_sync()
    assert rec.stream and rec.usage.output_tokens == COMPLETION_TOKENS and not rec.estimated


async def test_async_wrapper_settles_before_returning(upstream) -> None:  # type: ignore[no-untyped-def]
    litellm.callbacks = []
    with tollgate.budget(**DOWNGRADE):
        await tollgate_litellm.acompletion(model="gpt-4o", max_tokens=100, **args(upstream))
    assert upstream.received[0]["model"] == "gpt-4o-mini"
    assert [r.response_model for r in records()] == ["gpt-4o-mini"]
    assert len(await settled(2, timeout=0.3)) == 1


async def test_a_litellm_cache_hit_costs_nothing(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    saved = litellm.cache
    litellm.cache = litellm.Cache(type="local")
    try:
        for _ in range(2):
            await litellm.acompletion(model="gpt-4o", max_tokens=100, caching=True, **args(upstream))
            await settled(len(records()) + 1)
    finally:
        litellm.cache = saved
    assert len(upstream.received) == 1
    first, second = sorted(records(), key=lambda r: r.started_at)
    assert first.usd > 0 and first.decisions == ()
    assert second.usd == 0 and second.usage.total_tokens == 0 and second.decisions == ({"cache_hit": True},)


async def test_aresponses_is_clamped_and_recorded(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(tokens=300, on_exceed="clamp"):
        await litellm.aresponses(
            model="openai/gpt-4o",
            input="Name the capital of France in one word.",
            max_output_tokens=1000,
            api_base=upstream.url,
            api_key="sk-test",
        )
    assert upstream.paths[0].endswith("/responses")
    assert 0 < upstream.received[0]["max_output_tokens"] < 300
    [rec] = await settled()
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert rec.decisions[0]["action"] == "clamp" and (rec.response_id or "").startswith("resp_")


def test_sync_stream_is_recorded_observe_only_with_its_usage(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    stream = litellm.completion(
        model="gpt-4o", stream=True, stream_options={"include_usage": True}, **args(upstream)
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Paris."
    [rec] = settled_sync()
    assert rec.stream and rec.usage.output_tokens == COMPLETION_TOKENS and not rec.estimated
    assert rec.decisions == ({"action": "observe_only"},)


async def test_abandoned_stream_is_settled_as_stale(logger, upstream, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """LiteLLM sends no event for a stream its reader abandons: the registry settles it later."""
    from tollgate_litellm import logger as logger_module

    with tollgate.budget(usd=1.0, per="day", name="litellm-stale"):
        stream = await litellm.acompletion(model="gpt-4o", max_tokens=100, stream=True, **args(upstream))
        async for _ in stream:
            break  # the reader walks away
        assert [r for r in records() if r.stream] == []  # nothing reported by LiteLLM
        monkeypatch.setattr(logger_module, "STALE_AFTER", 0.0)
        await litellm.acompletion(model="gpt-4o", max_tokens=10, **args(upstream))  # sweeps
    recs = await settled(2)
    abandoned = [r for r in recs if r.stream]
    assert len(abandoned) == 1 and abandoned[0].status == "abandoned" and abandoned[0].estimated
    assert abandoned[0].usage.input_tokens > 0
    # What the provider did after the reader left is unknown: charged what it reserved.
    assert abandoned[0].usage.output_tokens == 100
    assert abandoned[0].decisions[-1]["abandoned"] == "reservation"
