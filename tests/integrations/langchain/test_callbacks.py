"""TollgateCallbackHandler (and its async twin) on real LangChain chat models, replayed from cassettes."""

from __future__ import annotations

import logging

import pytest

import tollgate

tollgate_langchain = pytest.importorskip("tollgate_langchain")
pytest.importorskip("langchain_openai")

from tollgate_langchain import AsyncTollgateCallbackHandler, TollgateCallbackHandler  # noqa: E402

QUESTION = [
    ("system", "You are a terse assistant."),
    ("user", "Name the capital of France in one word."),
]
COUNT = "Count from one to five, in words, separated by commas."


def records() -> list[tollgate.CallRecord]:
    return tollgate.settings().ledger.records()


@pytest.fixture(autouse=True)
def _no_global_handler():  # type: ignore[no-untyped-def]
    yield
    tollgate_langchain.disable()


def test_invoke_records_usage_tags_and_model(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(callbacks=[TollgateCallbackHandler()])
    with replay("openai/chat_basic.yaml"):
        reply = model.invoke(
            QUESTION, config={"metadata": {"tenant": "acme"}, "tags": ["feature=search", "x"]}
        )
    assert reply.content == "Paris."
    [rec] = records()
    assert (rec.provider, rec.request_model, rec.response_model) == (
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
    )
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.status, rec.estimated) == (
        26,
        2,
        "ok",
        False,
    )
    assert rec.response_id == "chatcmpl-tg0001"
    assert dict(rec.tags) == {"tenant": "acme", "feature": "search"}
    assert rec.usd > 0 and rec.priced
    assert len(sent) == 1


@pytest.mark.parametrize(
    ("cassette", "field", "value"),
    [
        ("openai/chat_cached.yaml", "cache_read_tokens", 1024),
        ("openai/chat_reasoning.yaml", "reasoning_tokens", 320),
    ],
)
def test_openai_usage_details(chat_openai, replay, cassette, field, value) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(
        "o4-mini" if "reasoning" in cassette else "gpt-4o-mini", callbacks=[TollgateCallbackHandler()]
    )
    with replay(cassette):
        model.invoke("hi")
    [rec] = records()
    assert getattr(rec.usage, field) == value


def test_anthropic_cache_write_and_read(chat_anthropic, replay) -> None:  # type: ignore[no-untyped-def]
    model = chat_anthropic(callbacks=[TollgateCallbackHandler()])
    with replay("anthropic/messages_cached.yaml"):
        model.invoke("one")
        model.invoke("two")
    first, second = records()
    # input_tokens counts the cache tokens too (tollgate's convention, and LangChain's).
    assert (first.usage.input_tokens, first.usage.cache_write_tokens) == (14 + 2100, 2100)
    assert first.usage.units == {"cache_write_1h_tokens": 1800}
    assert (second.usage.input_tokens, second.usage.cache_read_tokens) == (14 + 2100, 2100)
    assert first.provider == "anthropic" and second.usd < first.usd


def test_block_sends_nothing(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(callbacks=[TollgateCallbackHandler()])
    with replay("openai/chat_basic.yaml"), tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        model.invoke(QUESTION)
    assert sent == []
    [rec] = records()
    assert rec.status == "blocked"


async def test_block_under_ainvoke(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    for handler in (TollgateCallbackHandler(), AsyncTollgateCallbackHandler()):
        model = chat_openai(callbacks=[handler])
        with replay("openai/chat_basic.yaml"), pytest.raises(tollgate.BudgetExceeded):
            async with tollgate.budget(usd=1e-9):
                await model.ainvoke(QUESTION)
    assert sent == []
    assert [r.status for r in records()] == ["blocked", "blocked"]


async def test_async_handler_ainvoke_records(chat_anthropic, replay) -> None:  # type: ignore[no-untyped-def]
    model = chat_anthropic(callbacks=[AsyncTollgateCallbackHandler()])
    with replay("anthropic/messages_basic.yaml"):
        reply = await model.ainvoke("What is the capital of France?")
    assert reply.content == "Paris."
    [rec] = records()
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.status) == (27, 5, "ok")


def test_async_handler_under_sync_invoke_cannot_block(chat_openai, replay, sent, caplog) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(callbacks=[AsyncTollgateCallbackHandler()])
    with caplog.at_level(logging.WARNING), replay("openai/chat_basic.yaml"), tollgate.budget(usd=1e-9):
        reply = model.invoke(QUESTION)  # LangChain swallows what an async handler raises here
    assert reply.content == "Paris." and len(sent) == 1
    blocked, ran = records()
    assert blocked.status == "blocked"
    assert ran.status == "ok" and ran.usage.input_tokens == 26
    assert ran.decisions == ({"action": "block_ignored"},)
    assert "cannot stop a sync invoke" in caplog.text


def test_stream_with_usage(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(stream_usage=True, callbacks=[TollgateCallbackHandler()])
    with replay("openai/chat_stream.yaml"):
        text = "".join(str(c.content) for c in model.stream(COUNT))
    assert text.startswith("One")
    [rec] = records()
    assert rec.stream and not rec.estimated and rec.usage.output_tokens > 0
    assert sent[0]["stream_options"] == {"include_usage": True}


def test_stream_without_usage_is_estimated(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(stream_usage=False, callbacks=[TollgateCallbackHandler()])
    with replay("openai/chat_stream_no_usage.yaml"):
        text = "".join(str(c.content) for c in model.stream(COUNT))
    [rec] = records()
    assert "stream_options" not in sent[0]
    assert rec.stream and rec.estimated and rec.status == "ok"
    assert (
        rec.usage.input_tokens > 0
        and rec.usage.output_tokens
        == tollgate.estimate("gpt-4o-mini", [{"role": "assistant", "content": text}]).input_tokens
        - tollgate.estimate("gpt-4o-mini", [{"role": "assistant", "content": ""}]).input_tokens
    )


async def test_anthropic_astream(chat_anthropic, replay) -> None:  # type: ignore[no-untyped-def]
    model = chat_anthropic(callbacks=[TollgateCallbackHandler()])
    with replay("anthropic/messages_stream.yaml"):
        chunks = [c async for c in model.astream(COUNT)]
    assert chunks
    [rec] = records()
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.stream, rec.estimated) == (
        22,
        14,
        True,
        False,
    )


def test_error_releases(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(callbacks=[TollgateCallbackHandler()])
    with replay("openai/chat_error_500.yaml"), tollgate.budget(usd=1.0), pytest.raises(Exception) as info:
        model.invoke(QUESTION)
    assert not isinstance(info.value, tollgate.TollgateError)
    [rec] = records()
    assert rec.status == "error" and "500" in (rec.error or "") and rec.usd == 0


def test_post_flight_raise(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(callbacks=[TollgateCallbackHandler()])
    raising = tollgate.budget(usd=1e-9, on_exceed="raise")
    with replay("openai/chat_basic.yaml"), raising, pytest.raises(tollgate.BudgetExceeded) as info:
        model.invoke(QUESTION)
    assert info.value.action == "raise" and len(sent) == 1
    [rec] = records()
    assert rec.status == "ok" and rec.usage.input_tokens == 26


def test_edit_actions_block_by_default(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    budget = tollgate.budget(usd=0.0005, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"})
    model = chat_openai("gpt-4o", max_tokens=100, callbacks=[TollgateCallbackHandler()])
    with replay("openai/chat_basic.yaml"), budget, pytest.raises(tollgate.BudgetExceeded, match="guard"):
        model.invoke(QUESTION)
    assert sent == []
    proceeding = chat_openai(
        "gpt-4o", max_tokens=100, callbacks=[TollgateCallbackHandler(on_action="proceed")]
    )
    with replay("openai/chat_basic.yaml"), budget:
        proceeding.invoke(QUESTION)
    assert sent[0]["model"] == "gpt-4o"  # a callback cannot edit the request
    assert [r.status for r in records()] == ["blocked", "ok"]


def test_enable_covers_every_model_once(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    tollgate_langchain.enable()
    with replay("openai/chat_basic.yaml", allow_playback_repeats=True):
        chat_openai().invoke(QUESTION)  # no callbacks given
        chat_openai(callbacks=[TollgateCallbackHandler()]).invoke(QUESTION)  # one given too
        chat_openai(callbacks=[AsyncTollgateCallbackHandler()]).invoke(QUESTION)
    assert len(records()) == 3
    tollgate_langchain.disable()
    with replay("openai/chat_basic.yaml"):
        chat_openai().invoke(QUESTION)
    assert len(records()) == 3


def test_enable_blocks(chat_openai, replay, sent) -> None:  # type: ignore[no-untyped-def]
    tollgate_langchain.enable()
    with replay("openai/chat_basic.yaml"), tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
        chat_openai().invoke(QUESTION)
    assert sent == []


def test_batch(chat_openai, replay) -> None:  # type: ignore[no-untyped-def]
    model = chat_openai(callbacks=[TollgateCallbackHandler()])
    with replay("openai/chat_basic.yaml", allow_playback_repeats=True), tollgate.track(feature="batch"):
        model.batch([QUESTION, QUESTION, QUESTION])
    recs = records()
    assert len(recs) == 3 and all(r.tags.get("feature") == "batch" for r in recs)


def test_plain_llm(replay, sent) -> None:  # type: ignore[no-untyped-def]
    httpx = pytest.importorskip("httpx")
    from langchain_openai import OpenAI

    llm = OpenAI(
        model="gpt-3.5-turbo-instruct",
        api_key="sk-test",
        max_retries=0,
        max_tokens=20,
        http_client=httpx.Client(event_hooks={"request": [sent.hook]}),
        callbacks=[TollgateCallbackHandler()],
    )
    with replay("openai/completions.yaml"):
        llm.invoke("Say hello")
    [rec] = records()
    assert (rec.operation, rec.provider, rec.request_model) == (
        "text_completion",
        "openai",
        "gpt-3.5-turbo-instruct",
    )
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.estimated) == (6, 6, False)
