"""The Gemini adapter applies every pre-flight decision to the request google-genai sends, and
streams that run past their budget are cut off mid-way. What went on the wire is read from
the SDK's httpx requests; the responses are replayed from cassettes/gemini/.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import tollgate
from tests.providers.gemini_helpers import (
    CAPITAL,
    COUNT,
    SEA,
    TERSE,
    Wire,
    estimate_of,
    gemini_client,
    only_record,
    price,
    records,
    text_of,
)
from tollgate.pricing.tokens import count_text

genai = pytest.importorskip("google.genai")
from google.genai import types  # noqa: E402

FLASH, PRO = "gemini-2.5-flash", "gemini-2.5-pro"


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def client(wire: Wire) -> Any:
    return gemini_client(wire)


def ask(client: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("model", FLASH)
    kwargs.setdefault("contents", CAPITAL)
    kwargs.setdefault("config", {"system_instruction": TERSE, "max_output_tokens": 100})
    return client.models.generate_content(**kwargs)


# -- block ----------------------------------------------------------------------------------


def test_block_sends_nothing(client, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("gemini/generate_basic.yaml") as cassette, tollgate.budget(usd=0.00001):
        with pytest.raises(tollgate.BudgetExceeded) as raised:
            ask(client, model=PRO)
        with pytest.raises(tollgate.BudgetExceeded):
            client.models.generate_content_stream(model=PRO, contents=COUNT)  # refused when called
        assert cassette.play_count == 0 and wire == []
    assert raised.value.action == "block"
    assert [r.status for r in records()] == ["blocked", "blocked"]


async def test_async_block_sends_nothing(client, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("gemini/generate_basic.yaml") as cassette, tollgate.budget(usd=0.00001):
        with pytest.raises(tollgate.BudgetExceeded):
            await ask(client.aio, model=PRO)
        with pytest.raises(tollgate.BudgetExceeded):
            await client.aio.models.generate_content_stream(model=PRO, contents=COUNT)
        assert cassette.play_count == 0 and wire == []
    assert [r.status for r in records()] == ["blocked", "blocked"]


# -- downgrade ------------------------------------------------------------------------------

DOWNGRADE = {"usd": 0.0005, "on_exceed": "downgrade", "downgrade": {PRO: FLASH}}


@pytest.mark.parametrize("model", [PRO, f"models/{PRO}"])
def test_downgrade_sends_the_cheaper_model(client, replay, wire, model) -> None:  # type: ignore[no-untyped-def]
    # The cassette only answers gemini-2.5-flash: a request for pro would find no match.
    with replay("gemini/generate_basic.yaml"), tollgate.budget(**DOWNGRADE):  # type: ignore[arg-type]
        response = ask(client, model=model)
    assert response.text == "Paris."
    assert wire[0].model == FLASH and wire[0].url.endswith(f"/models/{FLASH}:generateContent")
    record = only_record()
    assert record.request_model == PRO and record.decisions[0]["to"] == FLASH
    p = price(FLASH)
    assert record.usd == pytest.approx(15 * p.input + 2 * p.output, abs=1e-15)  # billed as flash


async def test_async_stream_downgrade(client, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("gemini/stream_basic.yaml"), tollgate.budget(**DOWNGRADE):  # type: ignore[arg-type]
        stream = await client.aio.models.generate_content_stream(
            model=PRO, contents=COUNT, config={"max_output_tokens": 100}
        )
        text = text_of([c async for c in stream])
    assert text == "One, two, three, four, five."
    assert wire[0].url.endswith(f"/models/{FLASH}:streamGenerateContent?alt=sse")
    assert only_record().request_model == PRO


# -- clamp ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        None,
        {"system_instruction": TERSE},
        {"systemInstruction": TERSE, "maxOutputTokens": 4000},
        types.GenerateContentConfig(system_instruction=TERSE, temperature=0.2),
    ],
    ids=["none", "dict", "camel-dict", "object"],
)
def test_clamp_sets_max_output_tokens_on_a_copy(client, replay, wire, config) -> None:  # type: ignore[no-untyped-def]
    before = copy.deepcopy(config)
    with replay("gemini/generate_basic.yaml"), tollgate.budget(tokens=100, on_exceed="clamp"):
        ask(client, config=config)
    sent = wire[0].body["generationConfig"]
    assert 16 <= sent["maxOutputTokens"] < 100
    if config is not None:
        assert config == before  # the caller's config is untouched
        if "temperature" in sent:
            assert sent["temperature"] == 0.2  # the rest of the config went out as given
    record = only_record()
    assert record.decisions[0]["action"] == "clamp"
    assert record.decisions[0]["max_output_tokens"] == sent["maxOutputTokens"]


def test_stream_under_clamp(client, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("gemini/stream_basic.yaml"), tollgate.budget(tokens=200, on_exceed="clamp"):
        text = text_of(list(client.models.generate_content_stream(model=FLASH, contents=COUNT)))
    assert text == "One, two, three, four, five."
    assert wire[0].body["generationConfig"]["maxOutputTokens"] <= 200
    assert only_record().status == "ok"


# -- truncate -------------------------------------------------------------------------------


def history() -> list[Any]:
    """Old turns (one of them a function call and its response), then the question."""
    padding = " ".join(["filler"] * 60)
    turns: list[Any] = []
    for i in range(3):
        turns.append(types.Content(role="user", parts=[types.Part(text=f"Earlier question {i}? {padding}")]))
        turns.append({"role": "model", "parts": [{"text": f"An earlier answer {i}. {padding}"}]})
        if i == 1:
            turns.append(
                types.Content(
                    role="model",
                    parts=[types.Part.from_function_call(name="get_weather", args={"city": "Paris"})],
                )
            )
            turns.append(
                types.Content(
                    role="user",
                    parts=[
                        types.Part.from_function_response(name="get_weather", response={"report": padding})
                    ],
                )
            )
    turns.append(types.Content(role="user", parts=[types.Part(text=CAPITAL)]))
    return turns


def kinds(contents: list[dict[str, Any]]) -> list[str]:
    def kind(content: dict[str, Any]) -> str:
        part = content["parts"][0]
        return (
            "call"
            if "functionCall" in part
            else "response"
            if "functionResponse" in part
            else content["role"]
        )

    return [kind(c) for c in contents]


def test_truncate_drops_the_oldest_turns_and_keeps_calls_with_their_responses(client, replay, wire) -> None:  # type: ignore[no-untyped-def]
    turns = history()
    original = list(turns)
    full = estimate_of({"model": FLASH, "contents": turns, "config": {"system_instruction": TERSE}})
    outcomes = []
    with replay("gemini/generate_basic.yaml", allow_playback_repeats=True):
        for limit in range(full // 3, full + 60, 15):  # budgets that cut the history at every point
            with tollgate.budget(tokens=limit, on_exceed="truncate"):
                try:
                    ask(client, contents=turns, config={"system_instruction": TERSE, "max_output_tokens": 20})
                except tollgate.BudgetExceeded:
                    continue  # even the shortest history does not fit
            sent = wire[-1].body
            outcomes.append(kinds(sent["contents"]))
            assert sent["systemInstruction"]["parts"][0]["text"] == TERSE  # the system prompt stays
            assert sent["contents"][-1]["parts"][0]["text"] == CAPITAL  # and the question
            sent_kinds = kinds(sent["contents"])
            assert sent_kinds.count("call") == sent_kinds.count("response")  # never one without the other
            if "response" in sent_kinds:
                assert sent_kinds[sent_kinds.index("response") - 1] == "call"
    assert turns == original  # the caller's list is untouched
    full_kinds = ["user", "model", "user", "model", "call", "response", "user", "model", "user"]
    assert full_kinds in outcomes  # a roomy budget sends everything
    truncated = [o for o in outcomes if o != full_kinds]
    assert any("call" in o for o in truncated) and any("call" not in o for o in truncated)
    assert all(full_kinds[-len(o) :] == o for o in truncated)  # the oldest turns went first
    dropped = [r.decisions[0]["dropped_messages"] for r in records() if r.decisions]
    assert dropped and min(dropped) >= 1


def test_truncate_of_a_single_string_blocks(client, replay, wire) -> None:  # type: ignore[no-untyped-def]
    long = "Summarise this. " + " ".join(["filler"] * 400)
    with (
        replay("gemini/generate_basic.yaml"),
        tollgate.budget(tokens=100, on_exceed="truncate"),
        pytest.raises(tollgate.BudgetExceeded),
    ):
        ask(client, contents=long, config={"max_output_tokens": 20})
    assert wire == []


# -- raise ----------------------------------------------------------------------------------


def test_raise_lets_the_call_run_then_raises(client, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("gemini/generate_basic.yaml"),
        tollgate.budget(tokens=10, on_exceed="raise"),
        pytest.raises(tollgate.BudgetExceeded) as raised,
    ):
        ask(client)
    assert raised.value.action == "raise" and len(wire) == 1
    record = only_record()
    assert record.status == "ok" and record.usage.total_tokens == 17  # recorded as the server reported


# -- mid-stream cut-off ---------------------------------------------------------------------

PROMPT = estimate_of({"model": FLASH, "contents": SEA}, stream=True)


def read(stream: Any) -> tuple[list[Any], BaseException | None]:
    seen: list[Any] = []
    try:
        for chunk in stream:
            seen.append(chunk)
    except tollgate.BudgetExceeded as exc:
        return seen, exc
    return seen, None


def test_raise_budget_cuts_a_runaway_stream_off(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("gemini/stream_long.yaml"), tollgate.budget(tokens=PROMPT + 20, on_exceed="raise"):
        stream = client.models.generate_content_stream(model=FLASH, contents=SEA)
        seen, exc = read(stream)
    assert isinstance(exc, tollgate.BudgetExceeded) and exc.action == "cutoff" and exc.unit == "tokens"
    assert text_of(seen).startswith("The sea is vast") and len(seen) < 16
    assert stream.gi_frame is None  # the SDK's generator (and its HTTP response) was closed
    record = only_record()
    assert record.status == "error" and record.estimated and "BudgetExceeded" in (record.error or "")
    assert record.decisions[-1]["action"] == "cutoff"
    streamed = count_text(text_of(seen), FLASH, "gemini")
    assert streamed <= 20 < record.usage.output_tokens <= streamed + 15  # stopped one chunk past the room
    assert record.usage.input_tokens == 9  # the provider's prompt count from the chunks, not the estimate


def test_clamp_the_provider_ignores_is_cut_off(client, replay, wire) -> None:  # type: ignore[no-untyped-def]
    limit = PROMPT + 30
    with replay("gemini/stream_long.yaml"), tollgate.budget(tokens=limit, on_exceed="clamp"):
        _, exc = read(client.models.generate_content_stream(model=FLASH, contents=SEA))
    assert wire[0].body["generationConfig"]["maxOutputTokens"] <= 30
    assert isinstance(exc, tollgate.BudgetExceeded) and exc.action == "cutoff"
    record = only_record()
    assert [d["action"] for d in record.decisions] == ["clamp", "cutoff"]
    assert limit < record.usage.total_tokens <= limit + 15


async def test_async_usd_budget_cutoff(client, replay) -> None:  # type: ignore[no-untyped-def]
    p = price(FLASH)
    usd = PROMPT * p.input + 10.5 * p.output  # room for ten output tokens
    with replay("gemini/stream_long.yaml"), tollgate.budget(usd=usd, on_exceed="raise"):
        stream = await client.aio.models.generate_content_stream(model=FLASH, contents=SEA)
        seen = 0
        with pytest.raises(tollgate.BudgetExceeded, match="cutoff"):
            async for _ in stream:
                seen += 1
    record = only_record()
    assert 10 < record.usage.output_tokens <= 25 and seen < 16
    assert record.usd <= usd + 15 * p.output


def test_roomy_budget_never_cuts(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("gemini/stream_long.yaml"), tollgate.budget(tokens=PROMPT + 1000, on_exceed="raise"):
        seen, exc = read(client.models.generate_content_stream(model=FLASH, contents=SEA))
    assert exc is None and len(seen) == 16
    record = only_record()
    assert record.status == "ok" and record.usage.output_tokens == 191 and not record.estimated
