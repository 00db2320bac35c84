"""TollgateMiddleware in LangChain v1 agents (create_agent): per model call budgets, on the wire."""

from __future__ import annotations

import pytest

import tollgate

pytest.importorskip("tollgate_langchain")
pytest.importorskip("langchain_openai")
agents = pytest.importorskip("langchain.agents")

from langchain_core.tools import tool  # noqa: E402

from tollgate_langchain import TollgateCallbackHandler  # noqa: E402
from tollgate_langchain.middleware import TollgateMiddleware  # noqa: E402

ASK = {
    "messages": [
        ("system", "You are a terse assistant."),
        ("user", "Name the capital of France in one word."),
    ]
}
WEATHER = {"messages": [("user", "What is the weather in Paris?")]}
DOWNGRADE = {"usd": 0.0005, "on_exceed": "downgrade", "downgrade": {"gpt-4o": "gpt-4o-mini"}}


@tool
def lookup(city: str) -> str:
    """Look up the weather in a city."""
    return f"Sunny in {city}."


def records() -> list[tollgate.CallRecord]:
    return tollgate.settings().ledger.records()


def test_agent_loop_stopped_by_a_budget(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    # The model asks for the tool on every turn: only the budget ends the loop.
    agent = agents.create_agent(chat_openai(max_tokens=50), tools=[lookup], middleware=[TollgateMiddleware()])
    looping = replay("langchain/openai_tool_call.yaml", allow_playback_repeats=True)
    with looping, tollgate.budget(tokens=600), pytest.raises(tollgate.BudgetExceeded):
        agent.invoke(WEATHER)
    statuses = [r.status for r in records()]
    assert statuses[-1] == "blocked" and set(statuses[:-1]) == {"ok"} and len(statuses) >= 3
    assert len(sent) == len(statuses) - 1  # the blocked call never went out
    # Each turn sends the growing history: the tool results are in the later requests.
    assert len(sent[-1]["messages"]) > len(sent[0]["messages"])
    assert sum(r.usage.total_tokens for r in records()) <= 600


async def test_async_agent_loop_stopped_by_a_budget(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    agent = agents.create_agent(chat_openai(max_tokens=50), tools=[lookup], middleware=[TollgateMiddleware()])
    with (
        replay("langchain/openai_tool_call.yaml", allow_playback_repeats=True),
        pytest.raises(tollgate.BudgetExceeded),
    ):
        async with tollgate.budget(tokens=600):
            await agent.ainvoke(WEATHER)
    statuses = [r.status for r in records()]
    assert statuses[-1] == "blocked" and len(sent) == len(statuses) - 1 >= 2


def test_downgrade(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    agent = agents.create_agent(chat_openai("gpt-4o", max_tokens=100), middleware=[TollgateMiddleware()])
    with replay("openai/chat_basic.yaml"), tollgate.budget(**DOWNGRADE):
        result = agent.invoke(ASK, config={"metadata": {"tenant": "acme"}})
    assert result["messages"][-1].content == "Paris."
    assert sent[0]["model"] == "gpt-4o-mini"
    [rec] = records()
    assert rec.decisions[0]["action"] == "downgrade" and rec.tags == {"tenant": "acme"}


def test_downgrade_keeps_tools(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    agent = agents.create_agent(
        chat_openai("gpt-4o", max_tokens=50), tools=[lookup], middleware=[TollgateMiddleware()]
    )
    from langgraph.errors import GraphRecursionError

    looping = replay("langchain/openai_tool_call.yaml", allow_playback_repeats=True)
    # The model keeps calling the tool: the recursion limit ends the loop.
    with looping, tollgate.budget(**DOWNGRADE), pytest.raises(GraphRecursionError):
        agent.invoke(WEATHER, config={"recursion_limit": 4})
    assert sent[0]["model"] == "gpt-4o-mini" and sent[0]["tools"][0]["function"]["name"] == "lookup"


async def test_clamp_async(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    agent = agents.create_agent(chat_openai(max_tokens=1000), middleware=[TollgateMiddleware()])
    with replay("openai/chat_basic.yaml"):
        async with tollgate.budget(tokens=200, on_exceed="clamp"):
            await agent.ainvoke(ASK)
    assert 0 < sent[0]["max_completion_tokens"] < 200
    [rec] = records()
    assert rec.decisions[0]["action"] == "clamp" and rec.usage.input_tokens == 26


def test_truncate_keeps_the_system_message(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    history = [("system", "You are a terse assistant.")]
    for i in range(6):
        history += [
            ("user", f"Earlier question {i}? " + "x " * 100),
            ("assistant", "An answer. " + "y " * 100),
        ]
    history.append(("user", "Name the capital of France in one word."))
    agent = agents.create_agent(
        chat_openai(max_tokens=20), system_prompt="Be brief.", middleware=[TollgateMiddleware()]
    )
    with replay("openai/chat_basic.yaml"), tollgate.budget(tokens=500, on_exceed="truncate"):
        agent.invoke({"messages": history})
    messages = sent[0]["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[-1]["content"] == "Name the capital of France in one word."
    assert len(messages) < len(history) + 1


def test_one_record_with_a_callback_too(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(callbacks=[TollgateCallbackHandler()])
    agent = agents.create_agent(model, middleware=[TollgateMiddleware()])
    with replay("openai/chat_basic.yaml"):
        agent.invoke(ASK)
    assert len(records()) == 1


def test_stream_mode(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    agent = agents.create_agent(chat_openai(stream_usage=True), middleware=[TollgateMiddleware()])
    with replay("openai/chat_stream.yaml"):
        tokens = [m for m, _ in agent.stream({"messages": [("user", "Count")]}, stream_mode="messages")]
    assert tokens and sent[0]["stream"] is True
    [rec] = records()
    assert rec.usage.output_tokens > 0 and not rec.estimated
