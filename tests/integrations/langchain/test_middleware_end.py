"""TollgateMiddleware(exit_behavior="end"): a budget ends a LangChain v1 agent run with a final
AIMessage instead of an exception, like LangChain's own ModelCallLimitMiddleware.

The agent is the real ``create_agent`` on a real ChatOpenAI, replaying
cassettes/langchain/openai_tool_call.yaml (constructed, see its header): every turn the model
asks for the ``lookup`` tool, so only a budget ends the loop. Each call is 62 input and 15
output tokens of gpt-4o-mini ($0.0000183); the second call's pre-flight estimate (its history
plus the 50 token output cap) is about $0.000043, so ``usd=5e-5`` lets the first call through
and refuses the second.
"""

from __future__ import annotations

from typing import Any

import pytest

import tollgate

pytest.importorskip("tollgate_langchain")
pytest.importorskip("langchain_openai")
agents = pytest.importorskip("langchain.agents")

from langchain.agents.middleware import ModelCallLimitMiddleware  # noqa: E402
from langchain.agents.structured_output import ToolStrategy  # noqa: E402
from langchain_core.messages import AIMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from tollgate_langchain import TollgateMiddleware  # noqa: E402

WEATHER = {"messages": [("user", "What is the weather in Paris?")]}
CASSETTE = "langchain/openai_tool_call.yaml"
TOO_SMALL_FOR_TWO = 5e-5

ran: list[str] = []


@tool
def lookup(city: str) -> str:
    """Look up the weather in a city."""
    ran.append(city)
    return f"Sunny in {city}."


class Weather(BaseModel):
    city: str
    forecast: str


@pytest.fixture(autouse=True)
def no_tool_runs_yet() -> None:
    ran.clear()


@pytest.fixture
def agent(chat_openai):  # type: ignore[no-untyped-def]
    def make(exit_behavior: Any = "end", *, before: tuple[Any, ...] = ()) -> Any:
        middleware = [*before, TollgateMiddleware(exit_behavior=exit_behavior)]
        return agents.create_agent(chat_openai(max_tokens=50), tools=[lookup], middleware=middleware)

    return make


@pytest.fixture
def looping(replay):  # type: ignore[no-untyped-def]
    return lambda: replay(CASSETTE, allow_playback_repeats=True)


def assert_ended_after_one_call(messages: list[Any], sent: Any) -> None:
    """The run: the user's question, one model call that asked for the tool, the tool's answer,
    then tollgate's final message; the second model call never went out."""
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    stop = messages[-1]
    assert isinstance(stop, AIMessage) and not stop.tool_calls
    assert stop.content == (
        "Stopped: budget 'usd=5e-05' has too little left for the next model call "
        "($0.0000183 of $0.00005 used; the call needs $0.00004305)."
    )
    facts = stop.response_metadata["tollgate"]
    assert facts["budget"] == "usd=5e-05" and facts["unit"] == "usd" and facts["action"] == "block"
    assert facts["limit"] == TOO_SMALL_FOR_TWO and facts["spent"] == pytest.approx(1.83e-5)
    assert facts["requested"] > facts["limit"] - facts["spent"]
    assert "budget 'usd=5e-05' exceeded" in facts["error"]
    assert ran == ["Paris"] and len(sent) == 1
    # The refused call is recorded, as blocked, as it is when the error propagates.
    assert [r.status for r in tollgate.records()] == ["ok", "blocked"]
    [row] = tollgate.report()
    assert row["calls"] == 2 and row["blocked_calls"] == 1


def test_a_budget_ends_the_run(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    with looping(), tollgate.budget(usd=TOO_SMALL_FOR_TWO):
        result = agent().invoke(WEATHER)
    assert_ended_after_one_call(result["messages"], sent)


async def test_a_budget_ends_the_run_async(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    with looping():
        async with tollgate.budget(usd=TOO_SMALL_FOR_TWO):
            result = await agent().ainvoke(WEATHER)
    assert_ended_after_one_call(result["messages"], sent)


def test_a_budget_ends_a_stream(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    with looping(), tollgate.budget(usd=TOO_SMALL_FOR_TWO):
        updates = list(agent().stream(WEATHER, stream_mode="updates"))
    # The model node writes the final message, the middleware's after_model hook the jump.
    hook = "TollgateMiddleware.after_model"
    assert [node for update in updates for node in update] == ["model", hook, "tools", "model", hook]
    assert updates[-2]["model"]["messages"][-1].content.startswith("Stopped: budget 'usd=5e-05'")
    assert updates[-1][hook] == {"jump_to": "end"} and updates[1][hook] is None
    assert ran == ["Paris"] and len(sent) == 1


async def test_a_budget_ends_an_async_stream(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    with looping():
        async with tollgate.budget(usd=TOO_SMALL_FOR_TWO):
            values = [v async for v in agent().astream(WEATHER, stream_mode="values")]
    assert_ended_after_one_call(values[-1]["messages"], sent)


def test_other_after_model_hooks_do_not_resume_the_loop(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    # A middleware with an after_model hook runs between the model node and the loop's exit:
    # the final message has no tool call, so the run ends there too.
    limiter = ModelCallLimitMiddleware(run_limit=10)
    with looping(), tollgate.budget(usd=TOO_SMALL_FOR_TWO):
        result = agent(before=(limiter,)).invoke(WEATHER)
    assert_ended_after_one_call(result["messages"], sent)


@pytest.mark.parametrize("before", [(), (ModelCallLimitMiddleware(run_limit=10),)])
def test_a_structured_output_agent_ends_too(chat_openai, sent, before) -> None:  # type: ignore[no-untyped-def]
    # With ToolStrategy and no tools, the loop calls the model again after a message without
    # the structured-output tool call: only the jump ends it (the loop would otherwise be
    # refused again and again, up to the recursion limit).
    agent = agents.create_agent(
        chat_openai(max_tokens=50),
        middleware=[*before, TollgateMiddleware(exit_behavior="end")],
        response_format=ToolStrategy(Weather),
    )
    with tollgate.budget(tokens=10):
        result = agent.invoke(WEATHER, config={"recursion_limit": 10})
    assert result["messages"][-1].content.startswith("Stopped: budget 'tokens=10' has too little left")
    assert result.get("structured_response") is None
    assert [r.status for r in tollgate.records()] == ["blocked"] and sent == []


def test_only_end_adds_a_node_to_the_graph(agent) -> None:  # type: ignore[no-untyped-def]
    hook = "TollgateMiddleware.after_model"
    assert hook in agent("end").get_graph().nodes and hook not in agent("error").get_graph().nodes
    assert type(TollgateMiddleware()) is TollgateMiddleware
    ending = TollgateMiddleware(exit_behavior="end")
    assert isinstance(ending, TollgateMiddleware) and ending.exit_behavior == "end"


@pytest.mark.parametrize("exit_behavior", ["error", None])
def test_error_still_raises(agent, chat_openai, looping, sent, exit_behavior) -> None:  # type: ignore[no-untyped-def]
    if exit_behavior is None:  # the default
        made = agents.create_agent(
            chat_openai(max_tokens=50), tools=[lookup], middleware=[TollgateMiddleware()]
        )
    else:
        made = agent(exit_behavior)
    with looping(), tollgate.budget(usd=TOO_SMALL_FOR_TWO), pytest.raises(tollgate.BudgetExceeded):
        made.invoke(WEATHER)
    assert [r.status for r in tollgate.records()] == ["ok", "blocked"] and len(sent) == 1


def test_a_crossed_raise_budget_keeps_the_answer_and_runs_no_tool(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    # on_exceed="raise": the call runs, then its cost crosses the cap. The answer is kept, its
    # tool call is answered by an error ToolMessage (the history stays valid) and never runs.
    with looping(), tollgate.budget(usd=1e-5, on_exceed="raise"):
        result = agent().invoke(WEATHER)
    messages = result["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    answer, refused, stop = messages[1:]
    assert isinstance(refused, ToolMessage) and refused.status == "error"
    assert refused.tool_call_id == answer.tool_calls[0]["id"]
    assert stop.content == "Stopped: budget 'usd=1e-05' exceeded ($0.0000183 of $0.00001 used)."
    assert stop.response_metadata["tollgate"]["action"] == "raise"
    assert ran == [] and len(sent) == 1
    assert [r.status for r in tollgate.records()] == ["ok"]


def test_rate_limits_still_raise(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    # Transient: the caller (or a retrying middleware) waits it out; the run is not ended.
    tollgate.limit(rpm=1, model="gpt-4o-mini", wait=False)
    with looping(), pytest.raises(tollgate.RateLimited):
        agent().invoke(WEATHER)
    assert ran == ["Paris"] and len(sent) == 1


@pytest.mark.parametrize("bad", ["stop", "END", None, "continue"])
def test_bad_exit_behavior_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"exit_behavior must be one of 'error', 'end', not") as info:
        TollgateMiddleware(exit_behavior=bad)
    assert repr(bad) in str(info.value)


def test_a_calls_budget_ends_the_run_after_its_calls(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    with looping(), tollgate.budget(calls=2):
        result = agent().invoke(WEATHER)
    messages = result["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai", "tool", "ai"]
    stop = messages[-1]
    assert stop.content == "Stopped: budget 'calls=2' reached (2 of 2 calls used)."
    facts = stop.response_metadata["tollgate"]
    assert (facts["budget"], facts["unit"], facts["limit"], facts["spent"]) == ("calls=2", "calls", 2, 2)
    assert ran == ["Paris", "Paris"] and len(sent) == 2
    assert [r.status for r in tollgate.records()] == ["ok", "ok", "blocked"]


async def test_a_tool_calls_budget_stops_the_tools_past_the_limit(agent, looping, sent) -> None:  # type: ignore[no-untyped-def]
    # Each answer asks for one tool call. The second takes the run past tool_calls=1: its tool
    # is answered with an error ToolMessage instead of being run, and the run ends there.
    with looping():
        async with tollgate.budget(tool_calls=1):
            result = await agent().ainvoke(WEATHER)
    messages = result["messages"]
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai", "tool", "ai"]
    assert messages[4].status == "error" and messages[4].content.startswith("Not run: tollgate budget")
    stop = messages[-1]
    assert stop.content.startswith("Stopped: budget 'tool_calls=1' reached (")
    facts = stop.response_metadata["tollgate"]
    assert (facts["unit"], facts["limit"], facts["spent"] + facts["requested"]) == ("tool_calls", 1, 2)
    assert ran == ["Paris"] and len(sent) == 2
    assert [(r.status, r.tool_calls) for r in tollgate.records()] == [("ok", 1), ("ok", 1)]
