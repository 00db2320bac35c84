"""TollgateLogger on a litellm.Router: the deployment hook, routing a downgrade to a cheaper
deployment of the group (async_filter_deployments), and sync Router calls."""

from __future__ import annotations

from typing import Any

import pytest

import tollgate

tollgate_litellm = pytest.importorskip("tollgate_litellm")

import litellm  # noqa: E402

from tests.integrations.litellm.conftest import records, settled, settled_sync  # noqa: E402

TollgateLogger = tollgate_litellm.TollgateLogger

QUESTION = [{"role": "user", "content": "Name the capital of France in one word."}]
DOWNGRADE: dict[str, Any] = {"usd": 0.0005, "on_exceed": "downgrade", "downgrade": {"gpt-4o": "gpt-4o-mini"}}


@pytest.fixture
def router(upstream):  # type: ignore[no-untyped-def]
    litellm.callbacks = [TollgateLogger()]

    def deployment(group: str, model: str) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {"model": model, "api_base": upstream.url, "api_key": "sk-test"},
        }

    return litellm.Router(
        model_list=[
            deployment("smart", "openai/gpt-4o"),
            deployment("smart", "openai/gpt-4o-mini"),
            deployment("flagship", "openai/gpt-4o"),
            deployment("small", "openai/gpt-4o-mini"),
        ],
        num_retries=0,
    )


async def test_router_call_is_recorded_once(router, upstream) -> None:  # type: ignore[no-untyped-def]
    await router.acompletion(model="flagship", messages=QUESTION, max_tokens=100)
    assert upstream.received[0]["model"] == "gpt-4o"
    [rec] = await settled()
    assert rec.status == "ok" and rec.request_model == "gpt-4o" and rec.usage.output_tokens == 5


async def test_router_block_sends_nothing(router, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        await router.acompletion(model="flagship", messages=QUESTION)
    assert upstream.received == []
    assert [r.status for r in await settled()] == ["blocked"]


async def test_downgrade_in_a_single_model_group_rewrites_the_model(router, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(**DOWNGRADE):
        await router.acompletion(model="flagship", messages=QUESTION, max_tokens=100)
    assert upstream.received[0]["model"] == "gpt-4o-mini"
    [rec] = await settled()
    assert rec.decisions[0]["action"] == "downgrade" and rec.response_model == "gpt-4o-mini"


async def test_downgrade_routes_to_the_cheaper_deployment_of_the_group(router, upstream) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):  # the router would otherwise pick either deployment
        with tollgate.budget(**DOWNGRADE):
            await router.acompletion(model="smart", messages=QUESTION, max_tokens=100)
    assert [body["model"] for body in upstream.received] == ["gpt-4o-mini"] * 4
    recs = await settled(4)
    assert len(recs) == 4
    assert {(r.request_model, r.response_model, r.decisions[0]["action"]) for r in recs} == {
        ("gpt-4o", "gpt-4o-mini", "downgrade")
    }


async def test_mixed_group_without_pressure_routes_freely_and_counts_once(router, upstream) -> None:  # type: ignore[no-untyped-def]
    for _ in range(6):
        await router.acompletion(model="smart", messages=QUESTION, max_tokens=100)
    recs = await settled(6)
    assert len(recs) == 6 and all(r.status == "ok" and r.decisions == () for r in recs)
    assert sorted({r.response_model for r in recs}) == sorted({b["model"] for b in upstream.received})


async def test_router_stream_settles_with_usage(router, upstream) -> None:  # type: ignore[no-untyped-def]
    stream = await router.acompletion(model="flagship", messages=QUESTION, stream=True, max_tokens=50)
    async for _ in stream:
        pass
    assert upstream.received[0]["stream_options"] == {"include_usage": True}
    [rec] = await settled()
    assert rec.stream and rec.usage.output_tokens == 5 and not rec.estimated


# -- sync ---------------------------------------------------------------------------------------


def test_sync_router_is_blocked_when_the_budget_is_spent(router, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        router.completion(model="flagship", messages=QUESTION)
    assert upstream.received == []
    assert [r.status for r in settled_sync()] == ["blocked"]


def test_sync_router_call_with_room_is_recorded_once(router, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(usd=1.0):
        router.completion(model="flagship", messages=QUESTION, max_tokens=100)
    [rec] = settled_sync()
    assert rec.status == "ok" and rec.decisions == ({"action": "observe_only"},)


def test_wrapper_with_router_downgrades_to_the_cheaper_group(router, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(**DOWNGRADE):
        tollgate_litellm.completion(model="flagship", messages=QUESTION, max_tokens=100, router=router)
    assert upstream.received[0]["model"] == "gpt-4o-mini"
    assert len(records()) == 1
    [rec] = settled_sync()
    assert rec.request_model == "gpt-4o" and rec.response_model == "gpt-4o-mini"


async def test_block_in_a_mixed_group_sends_nothing(router, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        await router.acompletion(model="smart", messages=QUESTION)
    assert upstream.received == []
    assert [r.status for r in await settled()] == ["blocked"]


# -- a Router that retries: a refusal is final ---------------------------------------------------


@pytest.fixture
def retrying(upstream):  # type: ignore[no-untyped-def]
    litellm.callbacks = [TollgateLogger()]
    deployments = [
        {
            "model_name": group,
            "litellm_params": {"model": model, "api_base": upstream.url, "api_key": "sk-test"},
        }
        for group, model in (
            ("flagship", "openai/gpt-4o"),
            ("smart", "openai/gpt-4o"),
            ("smart", "openai/gpt-4o-mini"),
        )
    ]
    # A Router retries what a hook raises (num_retries=2, and no backoff to wait through here).
    return litellm.Router(model_list=deployments, num_retries=2, retry_after=0)


@pytest.mark.parametrize("group", ["flagship", "smart"])  # the deployment hook; the group filter
async def test_a_retrying_router_takes_a_refusal_as_final(retrying, upstream, group: str) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded) as refused:
        await retrying.acompletion(model=group, messages=QUESTION)
    assert refused.value.num_retries == 0  # type: ignore[attr-defined]  # what the Router reads
    assert upstream.received == []
    assert [r.status for r in await settled()] == ["blocked"]  # one refusal, one record (was three)


def test_a_retrying_router_takes_a_sync_refusal_as_final(retrying, upstream) -> None:  # type: ignore[no-untyped-def]
    with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        retrying.completion(model="flagship", messages=QUESTION)
    assert upstream.received == []
    assert [r.status for r in settled_sync()] == ["blocked"]
