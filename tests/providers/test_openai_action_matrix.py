"""Every budget action on every OpenAI surface, sync and async, checked on the wire.

For each surface the same four budgets are tried: ``block`` (nothing is sent, a "blocked"
record), ``downgrade`` (the cheaper model is sent), ``clamp`` (the API's own cap parameter is
sent, lowered) and ``raise`` (the call is made, then BudgetExceeded; streams are cut off).
Truncate is checked per message shape in test_openai_budgets.py and test_openai_surfaces.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import tollgate

openai = pytest.importorskip("openai")

QUESTION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
COUNT = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]
INSTRUCTIONS = "You are a terse assistant."
ASK = "Name the capital of France in one word."
INPUTS = ["The sea is vast.", "Paris is the capital of France."]


@dataclass(frozen=True)
class Surface:
    name: str
    cassette: str
    call: Callable[[Any, str], Any]  # (client, model) -> result, read to the end
    acall: Callable[[Any, str], Any]  # the async twin (a coroutine function)
    expensive: str  # the model asked for
    cheap: str  # what a downgrade sends
    cap: str | None  # the API's output-cap parameter (None: the API has no output)


def _drain(result: Any) -> Any:
    for _ in result:
        pass
    return result


async def _adrain(result: Any) -> Any:
    async for _ in result:
        pass
    return result


def _chat_stream(c: Any, m: str) -> Any:
    with c.chat.completions.stream(model=m, messages=COUNT, max_tokens=100) as s:
        return s.get_final_completion()


async def _achat_stream(c: Any, m: str) -> Any:
    async with c.chat.completions.stream(model=m, messages=COUNT, max_tokens=100) as s:
        return await s.get_final_completion()


def _responses_stream(c: Any, m: str) -> Any:
    with c.responses.stream(model=m, instructions=INSTRUCTIONS, input=ASK, max_output_tokens=100) as s:
        return s.get_final_response()


async def _aresponses_stream(c: Any, m: str) -> Any:
    async with c.responses.stream(model=m, instructions=INSTRUCTIONS, input=ASK, max_output_tokens=100) as s:
        return await s.get_final_response()


def _streaming_response(c: Any, m: str) -> Any:
    with c.chat.completions.with_streaming_response.create(model=m, messages=QUESTION, max_tokens=100) as r:
        return r.parse()


async def _astreaming_response(c: Any, m: str) -> Any:
    async with c.chat.completions.with_streaming_response.create(
        model=m, messages=QUESTION, max_tokens=100
    ) as r:
        return await r.parse()


async def _araw(c: Any, m: str) -> Any:
    raw = await c.chat.completions.with_raw_response.create(model=m, messages=QUESTION, max_tokens=100)
    return raw.parse()


SURFACES = [
    Surface(
        "chat.completions.create",
        "openai/chat_basic.yaml",
        lambda c, m: c.chat.completions.create(model=m, messages=QUESTION, max_tokens=100),
        lambda c, m: c.chat.completions.create(model=m, messages=QUESTION, max_tokens=100),
        "gpt-4o",
        "gpt-4o-mini",
        "max_tokens",
    ),
    Surface(
        "chat.completions.create(stream=True)",
        "openai/chat_stream.yaml",
        lambda c, m: _drain(c.chat.completions.create(model=m, messages=COUNT, max_tokens=100, stream=True)),
        lambda c, m: _adrain_awaited(
            c.chat.completions.create(model=m, messages=COUNT, max_tokens=100, stream=True)
        ),
        "gpt-4o",
        "gpt-4o-mini",
        "max_tokens",
    ),
    Surface(
        "chat.completions.stream()",
        "openai/chat_stream.yaml",
        _chat_stream,
        _achat_stream,
        "gpt-4o",
        "gpt-4o-mini",
        "max_tokens",
    ),
    Surface(
        "chat.completions.with_raw_response.create",
        "openai/chat_basic.yaml",
        lambda c, m: c.chat.completions.with_raw_response.create(
            model=m, messages=QUESTION, max_tokens=100
        ).parse(),
        _araw,
        "gpt-4o",
        "gpt-4o-mini",
        "max_tokens",
    ),
    Surface(
        "chat.completions.with_streaming_response.create",
        "openai/chat_basic.yaml",
        _streaming_response,
        _astreaming_response,
        "gpt-4o",
        "gpt-4o-mini",
        "max_tokens",
    ),
    Surface(
        "responses.create",
        "openai/responses_basic.yaml",
        lambda c, m: c.responses.create(model=m, instructions=INSTRUCTIONS, input=ASK, max_output_tokens=100),
        lambda c, m: c.responses.create(model=m, instructions=INSTRUCTIONS, input=ASK, max_output_tokens=100),
        "gpt-4o",
        "gpt-4o-mini",
        "max_output_tokens",
    ),
    Surface(
        "responses.stream()",
        "openai/responses_stream.yaml",
        _responses_stream,
        _aresponses_stream,
        "gpt-4o",
        "gpt-4o-mini",
        "max_output_tokens",
    ),
    Surface(
        "completions.create",
        "openai/completions.yaml",
        lambda c, m: c.completions.create(model=m, prompt="Say this is a test.", max_tokens=100),
        lambda c, m: c.completions.create(model=m, prompt="Say this is a test.", max_tokens=100),
        "gpt-3.5-turbo-instruct",
        "babbage-002",
        "max_tokens",
    ),
    Surface(
        "embeddings.create",
        "openai/embeddings.yaml",
        lambda c, m: c.embeddings.create(model=m, input=INPUTS),
        lambda c, m: c.embeddings.create(model=m, input=INPUTS),
        "text-embedding-3-large",
        "text-embedding-3-small",
        None,
    ),
]


def _adrain_awaited(pending: Any) -> Any:
    async def run() -> Any:
        return await _adrain(await pending)

    return run()


def estimate_usd(surface: Surface, model: str) -> float:
    """What pre-flight reserves for the surface's call on ``model`` (from a dry, unbudgeted run)."""
    request = {
        "openai/embeddings.yaml": tollgate.LLMRequest("openai", "embeddings", model, prompt=INPUTS),
        "openai/completions.yaml": tollgate.LLMRequest(
            "openai", "text_completion", model, prompt=["Say this is a test."], max_output_tokens=100
        ),
    }.get(
        surface.cassette,
        tollgate.LLMRequest("openai", "chat", model, messages=QUESTION, max_output_tokens=100),
    )
    price = tollgate.config.settings().prices.lookup(model)
    return tollgate.estimate_request(request, price).usd


def budget_for(action: str, surface: Surface) -> Any:
    if action == "block":
        return tollgate.budget(usd=1e-9)
    if action == "downgrade":
        # Between the two models' reservations: the cheap one fits, the dear one does not.
        usd = (estimate_usd(surface, surface.cheap) * 3 + estimate_usd(surface, surface.expensive)) / 4
        return tollgate.budget(usd=usd, on_exceed="downgrade", downgrade={surface.expensive: surface.cheap})
    if action == "clamp":
        return tollgate.budget(tokens=90, on_exceed="clamp")
    return tollgate.budget(usd=1e-9, on_exceed="raise")


CASES = [(s, a) for s in SURFACES for a in ("block", "downgrade", "clamp", "raise") if s.cap or a != "clamp"]
IDS = [f"{s.name}-{a}" for s, a in CASES]


def check(surface: Surface, action: str, played: int, sent: list[dict[str, Any]], raised: Any) -> None:
    records = tollgate.config.settings().ledger.records()
    assert len(records) == 1, records
    record = records[0]
    if action == "block":
        assert played == 0 and sent == [] and record.status == "blocked"
        assert isinstance(raised, tollgate.BudgetExceeded) and raised.action == "block"
        return
    assert played == 1 and len(sent) == 1
    body = sent[0]
    if action == "downgrade":
        assert raised is None and body["model"] == surface.cheap
        assert record.request_model == surface.expensive and record.decisions[0]["to"] == surface.cheap
    elif action == "clamp":
        assert raised is None and surface.cap is not None
        assert 16 <= body[surface.cap] < 100, body
        assert record.decisions[0]["action"] == "clamp"
    else:  # raise: the call went out; the cap is crossed after (or, for a stream, while) it runs
        assert isinstance(raised, tollgate.BudgetExceeded) and raised.action in ("raise", "cutoff")
        assert body["model"] == surface.expensive


@pytest.mark.parametrize(("surface", "action"), CASES, ids=IDS)
def test_sync(surface: Surface, action: str, client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    raised = None
    with replay(surface.cassette) as cassette, budget_for(action, surface):
        try:
            surface.call(client, surface.expensive)
        except tollgate.BudgetExceeded as exc:
            raised = exc
        played = cassette.play_count
    check(surface, action, played, sent, raised)


@pytest.mark.parametrize(("surface", "action"), CASES, ids=IDS)
async def test_async(surface: Surface, action: str, aclient, replay, sent) -> None:  # type: ignore[no-untyped-def]
    raised = None
    with replay(surface.cassette) as cassette:
        async with budget_for(action, surface):
            try:
                await surface.acall(aclient, surface.expensive)
            except tollgate.BudgetExceeded as exc:
                raised = exc
        played = cassette.play_count
    check(surface, action, played, sent, raised)
