"""Mid-stream enforcement: a stream whose output runs past what its budget can pay for is
closed by tollgate, the partial usage is settled, and the reader gets BudgetExceeded.

The cassette streams 55 output tokens whatever cap is asked for, standing in for a provider
that ignores a clamp (or a budget with on_exceed="raise", which reserves nothing up front).
"""

from __future__ import annotations

import pytest

import tollgate
from tollgate.pricing.tokens import count_messages

openai = pytest.importorskip("openai")

SEA = [{"role": "user", "content": "Write a short paragraph about the sea."}]
PROMPT = count_messages(SEA, "gpt-4o-mini")
FULL_TEXT_TOKENS = 55  # what the cassette's final usage chunk reports


def only_record() -> tollgate.CallRecord:
    (record,) = tollgate.config.settings().ledger.records()
    return record


def read(stream) -> tuple[str, BaseException | None]:  # type: ignore[no-untyped-def]
    text = []
    try:
        for chunk in stream:
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
    except tollgate.BudgetExceeded as exc:
        return "".join(text), exc
    return "".join(text), None


def test_raise_budget_cuts_a_runaway_stream_off(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream_long.yaml"), tollgate.budget(tokens=PROMPT + 20, on_exceed="raise"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=SEA, stream=True)
        text, exc = read(stream)
    assert isinstance(exc, tollgate.BudgetExceeded) and exc.action == "cutoff" and exc.unit == "tokens"
    assert 0 < len(text) < 200 and text.startswith("The sea is vast")
    record = only_record()
    assert record.status == "error" and record.estimated and "BudgetExceeded" in (record.error or "")
    assert record.decisions[-1]["action"] == "cutoff"
    assert 20 < record.usage.output_tokens <= 22  # stopped at the first chunk past the room
    assert record.usage.input_tokens == PROMPT
    assert stream.response.is_closed  # the HTTP response was closed: no more tokens are generated


def test_clamp_the_provider_ignores_is_cut_off_at_the_reservation(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    limit = PROMPT + 30
    with replay("openai/chat_stream_long.yaml"), tollgate.budget(tokens=limit, on_exceed="clamp"):
        _, exc = read(client.chat.completions.create(model="gpt-4o-mini", messages=SEA, stream=True))
    assert sent[0]["max_tokens"] <= 30
    assert isinstance(exc, tollgate.BudgetExceeded) and exc.action == "cutoff"
    record = only_record()
    assert record.usage.total_tokens <= limit + 2  # at most one chunk past the cap
    assert [d["action"] for d in record.decisions] == ["clamp", "cutoff"]


async def test_async_usd_budget_cutoff(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    price = tollgate.config.settings().prices.lookup("gpt-4o-mini")
    assert price is not None and price.input and price.output
    usd = PROMPT * price.input + 10.5 * price.output  # room for ten output tokens
    with replay("openai/chat_stream_long.yaml"), tollgate.budget(usd=usd, on_exceed="raise"):
        stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=SEA, stream=True)
        seen = 0
        with pytest.raises(tollgate.BudgetExceeded, match="cutoff"):
            async for _ in stream:
                seen += 1
    record = only_record()
    assert 10 < record.usage.output_tokens <= 12 and seen <= 12
    assert record.usd <= usd + 2 * price.output


def test_roomy_budget_or_no_budget_never_cuts(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream_long.yaml", allow_playback_repeats=True):
        text, exc = read(client.chat.completions.create(model="gpt-4o-mini", messages=SEA, stream=True))
        assert exc is None
        with tollgate.budget(tokens=PROMPT + FULL_TEXT_TOKENS + 1, on_exceed="raise"):
            text2, exc2 = read(client.chat.completions.create(model="gpt-4o-mini", messages=SEA, stream=True))
    assert exc2 is None and text == text2
    first, second = tollgate.config.settings().ledger.records()
    assert first.usage.output_tokens == second.usage.output_tokens == FULL_TEXT_TOKENS
    assert first.status == second.status == "ok"


def test_windowed_counter_holds_only_the_partial_usage(client, replay) -> None:  # type: ignore[no-untyped-def]
    daily = tollgate.budget(tokens=PROMPT + 20, per="day", name="cutoff-daily", on_exceed="raise")
    with replay("openai/chat_stream_long.yaml"), daily:
        _, exc = read(client.chat.completions.create(model="gpt-4o-mini", messages=SEA, stream=True))
    assert exc is not None
    record = only_record()
    with (
        tollgate.budget(tokens=PROMPT + 20, per="day", name="cutoff-daily"),
        pytest.raises(tollgate.BudgetExceeded) as blocked,
    ):
        tollgate.gate.preflight(
            tollgate.LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini", messages=SEA)
        )
    assert blocked.value.spent == record.usage.total_tokens  # settled at what streamed, not the cap
