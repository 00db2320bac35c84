"""The Anthropic adapter applies every budget decision to the request it sends, and streams
that run past their budget are cut off.

Token sizes used below (tollgate's estimates for claude-sonnet-4-6: o200k x 1.2):
the truncate history totals 1138 prompt tokens, of which its first user turn is 251, the
first assistant turn 252, the next user turn 14, the tool call 32 and its result 497; the
counting prompt is 20 tokens and the long cassette streams text tollgate counts as 118 tokens
(while its message_delta reports 172).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import tollgate

anthropic = pytest.importorskip("anthropic")
pytest.importorskip("httpx2")

from tests.providers.anthropic_helpers import (  # noqa: E402
    COUNT,
    HAIKU,
    QUESTION,
    SONNET,
    SYSTEM,
    Sent,
    only_record,
    recorded_body,
)


def ask(client: Any, **kwargs: Any) -> Any:
    return client.messages.create(
        **{"model": SONNET, "max_tokens": 1024, "system": SYSTEM, "messages": QUESTION, **kwargs}
    )


# -- block, downgrade, clamp, raise -----------------------------------------------------------


def test_block_sends_nothing(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml") as cassette, tollgate.budget(usd=0.00001):
        with pytest.raises(tollgate.BudgetExceeded) as blocked:
            ask(claude)
        assert cassette.play_count == 0 and sent == []
    assert blocked.value.action == "block"
    record = only_record()
    assert record.status == "blocked" and record.usd == 0.0


async def test_async_stream_helper_block_sends_nothing(aclaude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml") as cassette, tollgate.budget(usd=0.00001):
        manager = aclaude.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT)
        with pytest.raises(tollgate.BudgetExceeded):
            async with manager:
                pytest.fail("entered a blocked stream")
        assert cassette.play_count == 0 and sent == []
    assert only_record().status == "blocked"


def test_downgrade_sends_the_cheaper_model(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_basic.yaml"),
        tollgate.budget(usd=0.01, on_exceed="downgrade", downgrade={SONNET: HAIKU}),
    ):
        ask(claude)
    assert sent[0]["model"] == HAIKU
    record = only_record()
    assert record.request_model == SONNET and record.decisions[0] == {
        "action": "downgrade",
        "from": SONNET,
        "to": HAIKU,
    }


def test_downgrade_in_a_stream_helper(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream.yaml"),
        tollgate.budget(usd=0.01, on_exceed="downgrade", downgrade={SONNET: HAIKU}),
        claude.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream,
    ):
        stream.until_done()
    assert sent[0]["model"] == HAIKU and sent[0]["stream"] is True


def test_clamp_sets_max_tokens(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"), tollgate.budget(tokens=300, on_exceed="clamp"):
        ask(claude)
    assert 16 <= sent[0]["max_tokens"] < 300
    assert only_record().decisions[0]["action"] == "clamp"


async def test_async_clamp_on_a_stream(aclaude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"), tollgate.budget(tokens=200, on_exceed="clamp"):
        stream = await aclaude.messages.create(model=SONNET, max_tokens=1024, messages=COUNT, stream=True)
        async for _ in stream:
            pass
    assert sent[0]["max_tokens"] == 200 - tollgate.estimate(SONNET, COUNT, provider="anthropic").input_tokens
    assert only_record().status == "ok"


def test_clamp_lowers_the_thinking_budget_below_max_tokens(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    body = recorded_body("anthropic/messages_thinking.yaml")  # max_tokens 4096, budget_tokens 2048
    thinking = body["thinking"]
    with replay("anthropic/messages_thinking.yaml"), tollgate.budget(tokens=1600, on_exceed="clamp"):
        claude.messages.create(**body)
    cap = sent[0]["max_tokens"]
    assert 1024 < cap < 2048
    assert sent[0]["thinking"] == {"type": "enabled", "budget_tokens": cap - 1}
    assert thinking == {"type": "enabled", "budget_tokens": 2048}  # the caller's dict is untouched


def test_clamp_below_the_thinking_minimum_turns_thinking_off(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    body = recorded_body("anthropic/messages_thinking.yaml")
    with replay("anthropic/messages_thinking.yaml"), tollgate.budget(tokens=600, on_exceed="clamp"):
        claude.messages.create(**body)
    assert sent[0]["max_tokens"] <= 1024
    assert sent[0]["thinking"] == {"type": "disabled"}


def test_clamp_leaves_a_thinking_budget_that_fits(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    body = {
        **recorded_body("anthropic/messages_thinking.yaml"),
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    with replay("anthropic/messages_thinking.yaml"), tollgate.budget(tokens=3000, on_exceed="clamp"):
        claude.messages.create(**body)
    assert 1024 < sent[0]["max_tokens"] < 4096 and sent[0]["thinking"] == body["thinking"]


def test_raise_lets_the_call_run_then_raises(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_basic.yaml"),
        tollgate.budget(tokens=30, on_exceed="raise"),
        pytest.raises(tollgate.BudgetExceeded) as crossed,
    ):
        ask(claude)
    assert crossed.value.action == "raise" and len(sent) == 1
    record = only_record()
    assert record.status == "ok" and record.usage.total_tokens == 32


async def test_async_raise(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_basic.yaml"),
        tollgate.budget(tokens=30, on_exceed="raise"),
        pytest.raises(tollgate.BudgetExceeded, match="raise"),
    ):
        await ask(aclaude)
    assert only_record().status == "ok"


# -- truncate ---------------------------------------------------------------------------------

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Earlier question? " + "x " * 200},
    {"role": "assistant", "content": "An earlier answer. " + "y " * 200},
    {"role": "user", "content": "Look up the weather in Paris."},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_tg0001", "name": "get_weather", "input": {"city": "Paris"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_tg0001", "content": "18 C and sunny. " + "z " * 400}
        ],
    },
    {"role": "assistant", "content": "It is 18 C and sunny in Paris."},
    *QUESTION,
]


def truncated(client: Any, sent: Sent, replay: Any, tokens: int) -> dict[str, Any]:
    history = copy.deepcopy(HISTORY)
    system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    with replay("anthropic/messages_basic.yaml"), tollgate.budget(tokens=tokens, on_exceed="truncate"):
        client.messages.create(
            model=SONNET, max_tokens=20, system=system, messages=history, tools=[WEATHER_TOOL]
        )
    assert history == HISTORY  # the caller's list and messages are untouched
    body = sent[0]
    assert body["system"] == system  # the system prompt stays top level, whole
    assert body["messages"][-1] == QUESTION[0]  # the last user turn is always kept
    assert body["tools"] == [WEATHER_TOOL]
    return body


def test_truncate_drops_the_oldest_turns(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    body = truncated(claude, sent, replay, tokens=700)  # needs the first two turns gone
    assert body["messages"] == HISTORY[2:]
    assert only_record().decisions[0] == {"action": "truncate", "dropped_messages": 2}


def test_truncate_never_opens_with_an_assistant_turn(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    body = truncated(claude, sent, replay, tokens=1000)  # dropping the first user turn would do
    assert body["messages"] == HISTORY[2:]  # ... but the answer it left in front goes too


def test_truncate_drops_a_tool_call_with_its_result(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    body = truncated(claude, sent, replay, tokens=630)  # needs the tool call's 32 + 497 tokens gone
    assert "toolu_tg0001" not in str(body["messages"])  # call and result dropped together
    assert body["messages"] == [QUESTION[0]]  # the answer left in front was dropped too


async def test_async_truncate(aclaude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"), tollgate.budget(tokens=700, on_exceed="truncate"):
        await aclaude.messages.create(
            model=SONNET, max_tokens=20, system=SYSTEM, messages=HISTORY, tools=[WEATHER_TOOL]
        )
    assert sent[0]["messages"] == HISTORY[2:] and sent[0]["system"] == SYSTEM


def test_truncate_keeps_a_conversation_that_opened_with_the_assistant(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    history = [{"role": "assistant", "content": "How can I help?"}, *HISTORY]
    with replay("anthropic/messages_basic.yaml"), tollgate.budget(tokens=1000, on_exceed="truncate"):
        claude.messages.create(model=SONNET, max_tokens=20, messages=history, tools=[WEATHER_TOOL])
    assert sent[0]["messages"] == HISTORY[1:]  # opens with an answer, as the caller's own did


# -- mid-stream cut-off -----------------------------------------------------------------------

LONG = [{"role": "user", "content": "Count from one to forty, in words."}]
LONG_PROMPT = 20  # tollgate's estimate of LONG


def long_stream(client: Any) -> Any:
    return client.messages.create(model=SONNET, max_tokens=1024, messages=LONG, stream=True)


def read_text(stream: Any) -> tuple[str, BaseException | None]:
    text: list[str] = []
    try:
        for event in stream:
            if event.type == "content_block_delta":
                text.append(event.delta.text)
    except tollgate.BudgetExceeded as exc:
        return "".join(text), exc
    return "".join(text), None


def assert_cut(
    record: tollgate.CallRecord, exc: BaseException | None, room: int, *, own_cap: bool = False
) -> None:
    """``own_cap``: the room is the call's own (clamped) cap, which the provider ignored. The cut
    then comes once the tokenizer's own count passes that cap (a count past it by the provider
    factor alone is the estimate's margin, not a runaway), and the record bills that count with
    the factor (Anthropic's 1.2)."""
    assert isinstance(exc, tollgate.BudgetExceeded) and exc.action == "cutoff" and exc.unit == "tokens"
    assert record.status == "error" and record.estimated and "BudgetExceeded" in (record.error or "")
    assert record.decisions[-1]["action"] == "cutoff"
    most = room * 1.2 + 6 if own_cap else room + 6
    assert room < record.usage.output_tokens <= most  # stopped at the first delta past the room
    assert record.usage.input_tokens == 18  # message_start's count: the provider's, not the estimate


def test_raise_budget_cuts_a_runaway_stream_off(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream_long.yaml"),
        tollgate.budget(tokens=LONG_PROMPT + 30, on_exceed="raise"),
    ):
        stream = long_stream(claude)
        text, exc = read_text(stream)
    assert text.startswith("One, two") and not text.endswith("forty.")
    assert_cut(only_record(), exc, 30)
    assert stream.response.is_closed  # closed: the provider stops generating


def test_clamp_the_provider_ignores_is_cut_off(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream_long.yaml"),
        tollgate.budget(tokens=LONG_PROMPT + 40, on_exceed="clamp"),
    ):
        _, exc = read_text(long_stream(claude))
    assert sent[0]["max_tokens"] == 40  # the cassette streams on regardless
    record = only_record()
    assert_cut(record, exc, 40, own_cap=True)
    assert [d["action"] for d in record.decisions] == ["clamp", "cutoff"]


def test_text_stream_reader_gets_the_cutoff(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream_long.yaml"),
        tollgate.budget(tokens=LONG_PROMPT + 30, on_exceed="raise"),
        claude.messages.stream(model=SONNET, max_tokens=1024, messages=LONG) as stream,
    ):
        pieces = []
        with pytest.raises(tollgate.BudgetExceeded) as cut:
            for text in stream.text_stream:
                pieces.append(text)
    assert pieces[0] == "One"
    assert_cut(only_record(), cut.value, 30)


def test_reported_running_output_count_cuts_too(claude, replay) -> None:  # type: ignore[no-untyped-def]
    # Room for 140: the text alone (118 by tollgate's count) fits, the 172 message_delta reports does not.
    with (
        replay("anthropic/messages_stream_long.yaml"),
        tollgate.budget(tokens=LONG_PROMPT + 140, on_exceed="raise"),
    ):
        text, exc = read_text(long_stream(claude))
    assert text.endswith("forty.")
    assert isinstance(exc, tollgate.BudgetExceeded) and exc.action == "cutoff"
    record = only_record()
    assert (record.usage.input_tokens, record.usage.output_tokens) == (18, 172)  # the provider's own figures


async def test_async_stream_cutoff(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream_long.yaml"),
        tollgate.budget(tokens=LONG_PROMPT + 30, on_exceed="raise"),
    ):
        stream = await long_stream(aclaude)
        with pytest.raises(tollgate.BudgetExceeded) as cut:
            async for _ in stream:
                pass
    assert_cut(only_record(), cut.value, 30)


async def test_async_stream_helper_cutoff(aclaude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream_long.yaml"),
        tollgate.budget(tokens=LONG_PROMPT + 40, on_exceed="clamp"),
    ):
        async with aclaude.messages.stream(model=SONNET, max_tokens=1024, messages=LONG) as stream:
            with pytest.raises(tollgate.BudgetExceeded) as cut:
                await stream.get_final_message()
    assert sent[0]["max_tokens"] == 40
    assert_cut(only_record(), cut.value, 40, own_cap=True)


def test_roomy_budget_never_cuts(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream_long.yaml"),
        tollgate.budget(tokens=LONG_PROMPT + 200, on_exceed="raise"),
    ):
        text, exc = read_text(long_stream(claude))
    assert exc is None and text.endswith("forty.")
    record = only_record()
    assert record.status == "ok" and not record.estimated and record.usage.output_tokens == 172
