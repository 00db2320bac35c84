"""TollgateLogger settles a call in the call's own path (LiteLLM's success deployment hook), not
later in LiteLLM's logging task: the next call, even one made right after, never sees its hold;
and the logging event that follows does not settle it a second time.

The budget fits one call's hold (worst case: max_tokens=100) but the spend of several, and
``hold_wait=0``: a hold left over would refuse the next call at once.
"""

from __future__ import annotations

from typing import Any

import pytest

import tollgate

tollgate_litellm = pytest.importorskip("tollgate_litellm")

import litellm  # noqa: E402

from tests.integrations.litellm.conftest import COMPLETION_TOKENS, PROMPT_TOKENS, settled  # noqa: E402

QUESTION = [{"role": "user", "content": "Name the capital of France in one word."}]
CALLS = 4


@pytest.fixture
def logger() -> Any:
    handler = tollgate_litellm.TollgateLogger()
    litellm.callbacks = [handler]
    return handler


def cap() -> float:
    """Room for one call's hold, and for the spend of every call made here."""
    hold = tollgate.estimate("gpt-4o-mini", QUESTION, max_tokens=100).usd
    return hold * 1.5


def one_call_usd() -> float:
    price = tollgate.settings().prices.lookup("gpt-4o-mini")
    assert price is not None and price.input and price.output
    return PROMPT_TOKENS * price.input + COMPLETION_TOKENS * price.output


async def test_sequential_sdk_calls_see_no_leftover_hold_and_settle_once(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(hold_wait=0)  # a hold left over would refuse the next call at once
    with tollgate.budget(usd=cap(), per="day", name="early-sdk") as b:
        for _ in range(CALLS):
            await litellm.acompletion(
                model="openai/gpt-4o-mini",
                max_tokens=100,
                api_base=upstream.url,
                api_key="sk-test",
                messages=QUESTION,
            )
            assert b.reserved == 0  # settled before the call returned
        records = await settled(CALLS)  # LiteLLM's logging events have run meanwhile
        assert b.spent == pytest.approx(CALLS * one_call_usd())  # each call counted once
    assert len(records) == CALLS and all(r.status == "ok" for r in records)
    assert sum(r.usd for r in records) == pytest.approx(CALLS * one_call_usd())


async def test_sequential_router_calls_see_no_leftover_hold_and_settle_once(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(hold_wait=0)
    router = litellm.Router(
        model_list=[
            {
                "model_name": "mini",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": upstream.url,
                    "api_key": "sk-test",
                },
            }
        ]
    )
    with tollgate.budget(usd=cap(), per="day", name="early-router") as b:
        for _ in range(CALLS):
            await router.acompletion(model="mini", max_tokens=100, messages=QUESTION)
            assert b.reserved == 0
        records = await settled(CALLS)
        assert b.spent == pytest.approx(CALLS * one_call_usd())
    assert len(records) == CALLS and all(r.status == "ok" for r in records)


async def test_sequential_streams_settle_once_and_the_next_call_goes(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    # LiteLLM hands a stream's usage to callbacks only in its logging task, started as the
    # stream ends: a call made right after waits for that settle (hold_wait), not refused.
    with tollgate.budget(usd=cap(), per="day", name="early-stream") as b:
        for _ in range(CALLS):
            stream = await litellm.acompletion(
                model="openai/gpt-4o-mini",
                max_tokens=100,
                stream=True,
                api_base=upstream.url,
                api_key="sk-test",
                messages=QUESTION,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "Paris."
        records = await settled(CALLS)
        assert b.reserved == 0
        assert b.spent == pytest.approx(CALLS * one_call_usd())
    assert len(records) == CALLS and all(r.status == "ok" and r.stream for r in records)
    assert all(
        (r.usage.input_tokens, r.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS) for r in records
    )


async def test_an_unbudgeted_call_is_still_settled_by_the_logging_event(logger, upstream) -> None:  # type: ignore[no-untyped-def]
    await litellm.acompletion(
        model="openai/gpt-4o-mini",
        max_tokens=100,
        api_base=upstream.url,
        api_key="sk-test",
        messages=QUESTION,
    )
    [record] = await settled()
    assert record.status == "ok" and record.usd == pytest.approx(one_call_usd())
