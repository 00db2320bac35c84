"""The tool calls a LangChain chat model's reply asks for, counted by the callback handler and by
guard() (``CallRecord.tool_calls``), plain and streamed, as the provider doors count them."""

from __future__ import annotations

from typing import Any

import pytest

import tollgate

tollgate_langchain = pytest.importorskip("tollgate_langchain")
pytest.importorskip("langchain_openai")

from tollgate_langchain import TollgateCallbackHandler, guard  # noqa: E402

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# Anthropic's web search runs on its servers; get_weather is the caller's.
ANTHROPIC_TOOLS = [
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 1},
    {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
]


def only_record() -> tollgate.CallRecord:
    [record] = tollgate.settings().ledger.records()
    return record


@pytest.fixture(autouse=True)
def _no_global_handler():  # type: ignore[no-untyped-def]
    yield
    tollgate_langchain.disable()


def _run(model: Any, how: str) -> Any:
    """The reply of ``model`` (invoked, or streamed and its chunks added up)."""
    if how == "invoke":
        return model.invoke("What is the weather in Paris and in London?")
    reply = None
    for chunk in model.stream("What is the weather in Paris, London and Tokyo?"):
        reply = chunk if reply is None else reply + chunk
    return reply


@pytest.mark.parametrize(
    ("how", "cassette", "expected"),
    [("invoke", "openai/chat_tool_calls.yaml", 2), ("stream", "openai/chat_tool_calls_stream.yaml", 3)],
)
@pytest.mark.parametrize("door", ["callback", "guard"])
def test_openai_chat_tool_calls(chat_openai, replay, door, how, cassette, expected) -> None:  # type: ignore[no-untyped-def]
    if door == "callback":
        model = chat_openai(callbacks=[TollgateCallbackHandler()]).bind_tools([WEATHER])
    else:
        model = guard(chat_openai()).bind_tools([WEATHER])
    with replay(cassette):
        reply = _run(model, how)
    assert len(reply.tool_calls) == expected
    record = only_record()
    assert record.tool_calls == expected and record.status == "ok"
    assert record.stream == (how == "stream")


@pytest.mark.parametrize(
    ("how", "cassette"),
    [("invoke", "openai/responses_tool_calls.yaml"), ("stream", "openai/responses_tool_calls_stream.yaml")],
)
@pytest.mark.parametrize("door", ["callback", "guard"])
def test_openai_responses_count_built_in_tool_calls_too(chat_openai, replay, door, how, cassette) -> None:  # type: ignore[no-untyped-def]
    tools = (
        [{"type": "web_search"}, WEATHER]
        if how == "invoke"
        else [WEATHER, {"type": "custom", "name": "run_sql"}]
    )
    # guard() streams a Responses API model without stream_usage=True (the chat API's switch for
    # a usage chunk), which langchain-openai would pass on and the SDK refuse.
    if door == "callback":
        model = chat_openai("gpt-5", use_responses_api=True, callbacks=[TollgateCallbackHandler()])
    else:
        model = guard(chat_openai("gpt-5", use_responses_api=True))
    model = model.bind_tools(tools)
    with replay(cassette):
        reply = _run(model, how)
    assert len(reply.tool_calls) == 2
    # The plain reply also ran a web search, which LangChain keeps in the content.
    assert only_record().tool_calls == (3 if how == "invoke" else 2)


@pytest.mark.parametrize(
    ("how", "cassette"),
    [("invoke", "anthropic/messages_tool_use.yaml"), ("stream", "anthropic/messages_tool_use_stream.yaml")],
)
@pytest.mark.parametrize("door", ["callback", "guard"])
def test_anthropic_server_and_client_tool_calls(chat_anthropic, replay, door, how, cassette) -> None:  # type: ignore[no-untyped-def]
    if door == "callback":
        model = chat_anthropic(callbacks=[TollgateCallbackHandler()]).bind_tools(ANTHROPIC_TOOLS)
    else:
        model = guard(chat_anthropic()).bind_tools(ANTHROPIC_TOOLS)
    with replay(cassette):
        reply = _run(model, how)
    assert len(reply.tool_calls) == 2  # LangChain's tool_calls are the caller's tools only
    assert only_record().tool_calls == 3  # and the web search, as instrument(anthropic client) counts


def test_a_reply_without_tool_calls_counts_none(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        guard(chat_openai()).invoke("Name the capital of France in one word.")
    assert only_record().tool_calls == 0
