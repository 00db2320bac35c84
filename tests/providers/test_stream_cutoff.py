"""Mid-stream enforcement: a stream whose output runs past what its budget can pay for is
closed by tollgate, the partial usage is settled, and the reader gets BudgetExceeded.

The cassette streams 55 output tokens whatever cap is asked for, standing in for a provider
that ignores a clamp (or a budget with on_exceed="raise", which reserves nothing up front).
"""

from __future__ import annotations

import pytest

import tollgate
from tests.conftest import http_module
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


# -- like with like: a stream inside its own cap is never cut (issue 17) ----------------------------
# Constructed SSE bodies (not recordings), in OpenAI's chat-completions streaming format and
# Anthropic's Messages streaming format as documented: words that are one o200k token each, so
# the tokenizer's own count is exact while the running count carries the provider factor.

WORDS = [" sea", " wave", " salt", " tide", " blue", " wind", " foam", " shore"] * 25  # one token each


def _openai_sse(words: list[str], model: str) -> bytes:
    import json as _json

    def chunk(delta: dict[str, object], finish: str | None = None) -> str:
        body = {
            "id": "chatcmpl-c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {_json.dumps(body)}\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w}) for w in words]
    events.append(chunk({}, "length"))
    usage = {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)}
    last = {"id": "chatcmpl-c", "object": "chat.completion.chunk", "created": 0, "model": model}
    events.append(f"data: {_json.dumps({**last, 'choices': [], 'usage': usage})}\n\n")
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def _compatible_client(words: list[str]):  # type: ignore[no-untyped-def]
    httpx = http_module("openai")  # httpx2 under openai 3.x
    body = _openai_sse(words, "meta-llama/Llama-3.3-70B-Instruct-Turbo")

    def handler(request):  # type: ignore[no-untyped-def]
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    raw = openai.OpenAI(
        api_key="sk-test", base_url="https://api.together.xyz/v1", max_retries=0, http_client=http
    )
    return tollgate.instrument(raw)


def _room_for_exactly(provider: str, model: str, cap: int) -> int:
    request = tollgate.LLMRequest(
        provider=provider, operation="chat", model=model, messages=SEA, max_output_tokens=cap
    )
    call = tollgate.gate.preflight(request)
    call.fail(RuntimeError("measured, not sent"))
    return call.estimate.input_tokens + cap


@pytest.mark.parametrize("cap", [20, 100])
def test_a_compatible_host_stream_within_its_own_cap_is_not_cut(cap: int) -> None:
    client = _compatible_client(WORDS[:cap])
    model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    limit = _room_for_exactly("together_ai", model, cap)
    with tollgate.budget(tokens=limit, on_exceed="block"):
        text, exc = read(
            client.chat.completions.create(model=model, messages=SEA, max_tokens=cap, stream=True)
        )
    assert exc is None and text == "".join(WORDS[:cap])
    record = tollgate.config.settings().ledger.records()[-1]
    assert record.status == "ok" and record.usage.output_tokens == cap


def test_a_compatible_host_that_ignores_the_cap_is_still_cut() -> None:
    model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    client = _compatible_client(WORDS[:60])  # asked for 20, sends 60
    limit = _room_for_exactly("together_ai", model, 20)
    with tollgate.budget(tokens=limit, on_exceed="block"):
        text, exc = read(
            client.chat.completions.create(model=model, messages=SEA, max_tokens=20, stream=True)
        )
    assert isinstance(exc, tollgate.BudgetExceeded) and exc.action == "cutoff"
    assert len(text.split()) == 20  # the chunk that took it past its own cap was not handed over
    record = tollgate.config.settings().ledger.records()[-1]
    assert record.status == "error" and record.decisions[-1]["action"] == "cutoff"


def _anthropic_sse(words: list[str]) -> bytes:
    import json as _json

    def event(kind: str, data: dict[str, object]) -> str:
        return f"event: {kind}\ndata: {_json.dumps({'type': kind, **data})}\n\n"

    message = {
        "id": "msg_c", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 14, "output_tokens": 1},
    }  # fmt: skip
    out = [event("message_start", {"message": message})]
    out.append(event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
    out += [
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}}) for w in words
    ]
    out.append(event("content_block_stop", {"index": 0}))
    out.append(
        event(
            "message_delta",
            {
                "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        )
    )
    out.append(event("message_stop", {}))
    return "".join(out).encode()


def test_an_anthropic_stream_within_its_own_cap_is_not_cut() -> None:
    anthropic = pytest.importorskip("anthropic")
    httpx2 = http_module("anthropic")
    body = _anthropic_sse(WORDS[:100])

    def handler(request):  # type: ignore[no-untyped-def]
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = tollgate.instrument(anthropic.Anthropic(api_key="sk-ant-test", max_retries=0, http_client=http))
    limit = _room_for_exactly("anthropic", "claude-sonnet-4-6", 100)
    with tollgate.budget(tokens=limit, on_exceed="block"):
        stream = client.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=SEA, stream=True)
        texts = [e.delta.text for e in stream if e.type == "content_block_delta"]
    assert "".join(texts) == "".join(WORDS[:100])
    record = tollgate.config.settings().ledger.records()[-1]
    assert record.status == "ok" and record.usage.output_tokens == 100
