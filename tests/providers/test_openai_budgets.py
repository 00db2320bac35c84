"""The OpenAI adapter applies every pre-flight decision to the request it sends."""

from __future__ import annotations

import pytest

import tollgate

openai = pytest.importorskip("openai")

QUESTION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]


def test_block_sends_nothing(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml") as cassette, tollgate.budget(usd=0.00001):
        with pytest.raises(tollgate.BudgetExceeded):
            client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=100)
        assert cassette.play_count == 0 and sent == []
    (record,) = tollgate.config.settings().ledger.records()
    assert record.status == "blocked"


def test_downgrade_sends_the_cheaper_model(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_basic.yaml"),
        tollgate.budget(usd=0.0005, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
    ):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=100)
    assert sent[0]["model"] == "gpt-4o-mini"
    (record,) = tollgate.config.settings().ledger.records()
    assert record.request_model == "gpt-4o" and record.decisions[0]["to"] == "gpt-4o-mini"


def test_clamp_sets_max_tokens(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"), tollgate.budget(tokens=100, on_exceed="clamp"):
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    body = sent[0]
    assert 16 <= body["max_tokens"] < 100 and "max_completion_tokens" not in body


def test_clamp_uses_max_completion_tokens_for_reasoning_models(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {"role": "user", "content": "How many prime numbers are there below 30? Answer with the number only."}
    ]
    with replay("openai/chat_reasoning.yaml"), tollgate.budget(tokens=500, on_exceed="clamp"):
        client.chat.completions.create(model="o4-mini", messages=messages, max_completion_tokens=2000)
    body = sent[0]
    assert body["max_completion_tokens"] < 500 and "max_tokens" not in body


def test_truncate_sends_fewer_messages(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    history = [QUESTION[0]]
    for i in range(6):
        history += [
            {"role": "user", "content": f"Earlier question {i}? " + "x " * 100},
            {"role": "assistant", "content": "An earlier answer. " + "y " * 100},
        ]
    history.append(QUESTION[1])
    with replay("openai/chat_basic.yaml"), tollgate.budget(tokens=500, on_exceed="truncate"):
        client.chat.completions.create(model="gpt-4o-mini", messages=history, max_tokens=20)
    body = sent[0]
    assert body["messages"][0] == QUESTION[0] and body["messages"][-1] == QUESTION[1]
    assert 2 <= len(body["messages"]) < len(history)


def test_stream_under_clamp(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    count = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]
    with replay("openai/chat_stream.yaml"), tollgate.budget(tokens=200, on_exceed="clamp"):
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="gpt-4o-mini", messages=count, stream=True)
        )
    assert text == "One, two, three, four, five."
    assert sent[0]["max_tokens"] <= 200
