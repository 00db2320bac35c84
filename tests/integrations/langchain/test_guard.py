"""guard(model): every pre-flight action applied to real LangChain chat models, checked on the wire."""

from __future__ import annotations

from typing import Any

import pytest

import tollgate

tollgate_langchain = pytest.importorskip("tollgate_langchain")
pytest.importorskip("langchain_openai")

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402

from tollgate_langchain import TollgateCallbackHandler, guard  # noqa: E402

QUESTION = [
    SystemMessage("You are a terse assistant."),
    HumanMessage("Name the capital of France in one word."),
]
COUNT = "Count from one to five, in words, separated by commas."
# gpt-4o with 100 output tokens reserves ~$0.0011; gpt-4o-mini ~$0.00006.
DOWNGRADE = {"usd": 0.0005, "on_exceed": "downgrade", "downgrade": {"gpt-4o": "gpt-4o-mini"}}


@tool
def lookup(city: str) -> str:
    """Look up the weather in a city."""
    return f"Sunny in {city}."


def records() -> list[tollgate.CallRecord]:
    return tollgate.settings().ledger.records()


@pytest.fixture(autouse=True)
def _no_global_handler():  # type: ignore[no-untyped-def]
    yield
    tollgate_langchain.disable()


def test_proceed_sends_the_request_unchanged(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    safe = guard(chat_openai(max_tokens=100))
    with replay("openai/chat_basic.yaml"):
        reply = safe.invoke(QUESTION, config={"metadata": {"tenant": "acme"}})
    assert isinstance(reply, AIMessage) and reply.content == "Paris."
    assert sent[0]["model"] == "gpt-4o-mini" and sent[0]["max_completion_tokens"] == 100
    [rec] = records()
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.status) == (26, 2, "ok")
    assert rec.tags == {"tenant": "acme"} and rec.decisions == ()
    assert safe.model_name == "gpt-4o-mini"  # the wrapped model's attributes stay reachable


def test_block_sends_nothing(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"), tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        guard(chat_openai()).invoke(QUESTION)
    assert sent == [] and [r.status for r in records()] == ["blocked"]


def test_downgrade_swaps_the_model(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"), tollgate.budget(**DOWNGRADE):
        guard(chat_openai("gpt-4o", max_tokens=100)).invoke(QUESTION)
    assert sent[0]["model"] == "gpt-4o-mini"
    [rec] = records()
    assert rec.decisions[0]["action"] == "downgrade" and rec.response_model == "gpt-4o-mini-2024-07-18"


def test_downgrade_keeps_bound_tools(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    safe = guard(chat_openai("gpt-4o", max_tokens=100)).bind_tools([lookup])
    with replay("langchain/openai_tool_call.yaml"), tollgate.budget(**DOWNGRADE):
        reply = safe.invoke("What is the weather in Paris?")
    assert sent[0]["model"] == "gpt-4o-mini"
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["lookup"]
    assert reply.tool_calls[0]["name"] == "lookup"  # type: ignore[attr-defined]


def test_structured_output_is_guarded(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    schema = {
        "title": "lookup",
        "description": "Look up the weather in a city.",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    structured = guard(chat_openai("gpt-4o", max_tokens=100)).with_structured_output(
        schema, method="function_calling"
    )
    with replay("langchain/openai_tool_call.yaml"), tollgate.budget(**DOWNGRADE):
        assert structured.invoke("What is the weather in Paris?") == {"city": "Paris"}
    assert sent[0]["model"] == "gpt-4o-mini" and sent[0]["tools"][0]["function"]["name"] == "lookup"
    [rec] = records()
    assert rec.decisions[0]["action"] == "downgrade" and rec.usage.input_tokens == 62


def test_downgrade_to_a_given_model_object(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    cheap = chat_openai("gpt-4o-mini", temperature=0.0)
    with replay("openai/chat_basic.yaml"), tollgate.budget(**DOWNGRADE):
        guard(chat_openai("gpt-4o", max_tokens=100), models={"gpt-4o-mini": cheap}).invoke(QUESTION)
    assert sent[0]["model"] == "gpt-4o-mini" and sent[0]["temperature"] == 0.0


@pytest.mark.parametrize(
    ("maker", "cassette", "cap"),
    [
        ("chat_openai", "openai/chat_basic.yaml", "max_completion_tokens"),
        ("chat_anthropic", "anthropic/messages_basic.yaml", "max_tokens"),
    ],
)
def test_clamp_sets_the_provider_cap(request, replay, sent, maker, cassette, cap) -> None:  # type: ignore[no-untyped-def]
    model = request.getfixturevalue(maker)(max_tokens=1000)
    with replay(cassette), tollgate.budget(tokens=200, on_exceed="clamp"):
        guard(model).invoke(QUESTION)
    assert 0 < sent[0][cap] < 200
    [rec] = records()
    assert rec.decisions[0]["action"] == "clamp"


def test_truncate_drops_old_turns(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    history: list[Any] = [QUESTION[0]]
    for i in range(6):
        history += [
            HumanMessage(f"Earlier question {i}? " + "x " * 100),
            AIMessage("An answer. " + "y " * 100),
        ]
    history.append(QUESTION[1])
    with replay("openai/chat_basic.yaml"), tollgate.budget(tokens=500, on_exceed="truncate"):
        guard(chat_openai(max_tokens=20)).invoke(history)
    messages = sent[0]["messages"]
    assert messages[0]["content"] == QUESTION[0].content and messages[-1]["content"] == QUESTION[1].content
    assert 2 <= len(messages) < len(history)


async def test_ainvoke_downgrade(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        async with tollgate.budget(**DOWNGRADE):
            reply = await guard(chat_openai("gpt-4o", max_tokens=100)).ainvoke(QUESTION)
    assert reply.content == "Paris." and sent[0]["model"] == "gpt-4o-mini"
    assert [r.status for r in records()] == ["ok"]


async def test_ainvoke_block(chat_anthropic, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"), pytest.raises(tollgate.BudgetExceeded):
        async with tollgate.budget(usd=1e-9):
            await guard(chat_anthropic()).ainvoke(QUESTION)
    assert sent == []


def test_stream_asks_for_usage_and_clamps(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(base_url="https://api.openai.com/v1", stream_usage=False)
    with replay("openai/chat_stream.yaml"), tollgate.budget(tokens=200, on_exceed="clamp"):
        text = "".join(str(c.content) for c in guard(model).stream(COUNT))
    assert text.startswith("One")
    assert sent[0]["stream"] is True and sent[0]["stream_options"] == {"include_usage": True}
    assert 0 < sent[0]["max_completion_tokens"] < 200
    [rec] = records()
    assert rec.stream and not rec.estimated and rec.usage.output_tokens > 0


def test_stream_closed_early_is_abandoned(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        stream = guard(chat_openai()).stream(COUNT)
        next(stream)
        stream.close()
    [rec] = records()
    assert rec.status == "abandoned" and rec.estimated
    # The provider may have generated up to the output cap (the model's maximum) before it saw
    # the close: charged what pre-flight reserved.
    assert (
        rec.usage.output_tokens
        == tollgate.estimate("gpt-4o-mini", [{"role": "user", "content": COUNT}]).output_tokens
    )
    assert rec.decisions[-1]["abandoned"] == "reservation"


async def test_astream_anthropic_downgrade(chat_anthropic, replay, sent) -> None:  # type: ignore[no-untyped-def]
    budget = tollgate.budget(
        usd=0.001, on_exceed="downgrade", downgrade={"claude-opus-4-5": "claude-sonnet-4-6"}
    )
    with replay("anthropic/messages_stream.yaml"):
        async with budget:
            chunks = [c async for c in guard(chat_anthropic("claude-opus-4-5", max_tokens=50)).astream(COUNT)]
    assert chunks and sent[0]["model"] == "claude-sonnet-4-6" and sent[0]["stream"] is True
    [rec] = records()
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.stream) == (22, 14, True)


def test_batch(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml", allow_playback_repeats=True):
        replies = guard(chat_openai()).batch([QUESTION, QUESTION])
    assert [r.content for r in replies] == ["Paris.", "Paris."]
    assert len(records()) == 2


async def test_abatch(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml", allow_playback_repeats=True):
        await guard(chat_openai()).abatch([QUESTION, QUESTION])
    assert len(records()) == 2


def test_no_double_counting_with_callbacks(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    tollgate_langchain.enable()
    safe = guard(chat_openai(callbacks=[TollgateCallbackHandler()]))
    with replay("openai/chat_basic.yaml"):
        safe.invoke(QUESTION)
    with replay("openai/chat_stream.yaml"):
        list(safe.stream(COUNT))
    assert len(records()) == 2


async def test_no_double_counting_async(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    tollgate_langchain.enable()
    safe = guard(chat_openai(callbacks=[TollgateCallbackHandler()]))
    with replay("openai/chat_basic.yaml"):
        await safe.ainvoke(QUESTION)
    with replay("openai/chat_stream.yaml"):
        [c async for c in safe.astream(COUNT)]
    assert len(records()) == 2


def test_no_double_counting_with_an_instrumented_client(replay, sent) -> None:  # type: ignore[no-untyped-def]
    """A ChatOpenAI built on a client wrapped by tollgate.instrument(): the guard gates and
    records each call; the instrumented client inside passes it through (counted once)."""
    import httpx
    import langchain_openai
    import openai

    http = httpx.Client(event_hooks={"request": [sent.hook]})
    client = tollgate.instrument(openai.OpenAI(api_key="sk-test", max_retries=0, http_client=http))
    model = langchain_openai.ChatOpenAI(
        model="gpt-4o-mini", api_key="sk-test", client=client.chat.completions
    )
    safe = guard(model)
    with replay("openai/chat_basic.yaml"):
        safe.invoke(QUESTION)
    with replay("openai/chat_stream.yaml"):
        list(safe.stream(COUNT))
    assert [r.stream for r in records()] == [False, True]  # one record per call, no twin
    with replay("openai/chat_basic.yaml"):  # outside a guard, the instrumented client counts
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert len(records()) == 3 and len(sent) == 3


def test_error_releases(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    openai = pytest.importorskip("openai")
    with replay("openai/chat_error_500.yaml"), pytest.raises(openai.InternalServerError):
        guard(chat_openai()).invoke(QUESTION)
    [rec] = records()
    assert rec.status == "error"


def test_guard_in_a_chain(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    from langchain_core.output_parsers import StrOutputParser

    chain = guard(chat_openai()) | StrOutputParser()
    with replay("openai/chat_basic.yaml"):
        assert chain.invoke(QUESTION) == "Paris."
    assert len(records()) == 1


def test_one_span_per_model_call(chat_openai, replay, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tollgate import telemetry

    started: list[str] = []
    ended: list[str] = []
    start, end = telemetry.start_span, telemetry.end_span

    def counting_start(request, tags):  # type: ignore[no-untyped-def]
        started.append(request.model)
        return start(request, tags)

    def counting_end(span, record, call=None):  # type: ignore[no-untyped-def]
        ended.append(record.request_model)
        return end(span, record, call)

    monkeypatch.setattr(telemetry, "start_span", counting_start)
    monkeypatch.setattr(telemetry, "end_span", counting_end)
    tollgate_langchain.enable()
    model = chat_openai(callbacks=[TollgateCallbackHandler()])
    with replay("openai/chat_basic.yaml", allow_playback_repeats=True):
        guard(model).invoke(QUESTION)  # guard + handler + enable(): one call
        model.invoke(QUESTION)  # handler + enable(): one call
    assert started == ended == ["gpt-4o-mini", "gpt-4o-mini"]
    assert len(records()) == 2
