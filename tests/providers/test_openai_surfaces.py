"""Every OpenAI SDK surface beyond chat.completions.create: parse and stream helpers, the
Responses API, embeddings, legacy completions, and the with_raw_response /
with_streaming_response variants; sync and async.

Real openai SDK, HTTP replayed by vcrpy from constructed cassettes in cassettes/openai/.
"""

from __future__ import annotations

import pydantic
import pytest

import tollgate
from tollgate.pricing import cost, default_table

openai = pytest.importorskip("openai")

QUESTION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
COUNT = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]
INSTRUCTIONS = "You are a terse assistant."
ASK = "Name the capital of France in one word."


def records() -> list[tollgate.CallRecord]:
    return tollgate.config.settings().ledger.records()


def only_record() -> tollgate.CallRecord:
    (record,) = records()
    return record


def priced(model: str, usage: tollgate.Usage) -> float:
    price = default_table().lookup(model)
    assert price is not None, model
    return cost(price, usage)


# -- chat.completions.parse / .stream -------------------------------------------------------------


class City(pydantic.BaseModel):
    city: str
    country: str


def test_chat_parse(client, replay) -> None:  # type: ignore[no-untyped-def]
    ask = [{"role": "user", "content": "Which city is the capital of France? Reply as JSON."}]
    with replay("openai/chat_parse.yaml"):
        completion = client.chat.completions.parse(model="gpt-4o-mini", messages=ask, response_format=City)
    assert completion.choices[0].message.parsed == City(city="Paris", country="France")
    record = only_record()
    assert record.status == "ok" and not record.estimated
    assert record.usage.input_tokens == completion.usage.prompt_tokens
    assert record.usd == pytest.approx(priced("gpt-4o-mini-2024-07-18", record.usage))


def test_chat_stream_helper_sync(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_stream.yaml"),
        client.chat.completions.stream(model="gpt-4o-mini", messages=COUNT) as stream,
    ):
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        # The usage chunk tollgate asked for is hidden: no chunk event without choices.
        final = stream.get_final_completion()
    assert "".join(deltas) == "One, two, three, four, five."
    assert sent[0]["stream_options"] == {"include_usage": True}
    record = only_record()
    assert record.status == "ok" and record.stream and not record.estimated
    assert (record.usage.input_tokens, record.usage.output_tokens) == (20, 10)
    assert final.choices[0].message.content == "One, two, three, four, five."


def test_chat_stream_helper_get_final_completion_without_iterating(client, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_stream.yaml"),
        client.chat.completions.stream(model="gpt-4o-mini", messages=COUNT) as stream,
    ):
        final = stream.get_final_completion()  # the SDK reads the stream itself: through tollgate
    assert final.choices[0].message.content == "One, two, three, four, five."
    assert only_record().usage.output_tokens == 10


async def test_chat_stream_helper_async(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        async with aclient.chat.completions.stream(model="gpt-4o-mini", messages=COUNT) as stream:
            chunks = [e.chunk async for e in stream if e.type == "chunk"]
    assert all(c.choices for c in chunks)  # the injected usage-only chunk never reaches the caller
    record = only_record()
    assert record.status == "ok" and (record.usage.input_tokens, record.usage.output_tokens) == (20, 10)


def test_chat_stream_helper_blocked_on_enter_sends_nothing(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    manager = client.chat.completions.stream(model="gpt-4o", messages=COUNT, max_tokens=1000)
    with (
        replay("openai/chat_stream.yaml") as cassette,
        tollgate.budget(usd=0.00001),
        pytest.raises(tollgate.BudgetExceeded),
        manager,
    ):
        pass
        assert cassette.play_count == 0 and sent == []
    assert only_record().status == "blocked"


# -- Responses API --------------------------------------------------------------------------------


def test_responses_create(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_basic.yaml"), tollgate.track(feature="geo"):
        response = client.responses.create(model="gpt-4o-mini", instructions=INSTRUCTIONS, input=ASK)
    assert response.output_text == "Paris."
    record = only_record()
    assert (record.operation, record.response_model, record.response_id) == (
        "chat",
        "gpt-4o-mini-2024-07-18",
        "resp_tg0001",
    )
    assert record.usage.input_tokens == response.usage.input_tokens
    assert record.usage.output_tokens == response.usage.output_tokens
    assert record.usd == pytest.approx(priced("gpt-4o-mini-2024-07-18", record.usage)) and record.usd > 0
    assert record.tags == {"feature": "geo"}


def test_responses_reasoning_tokens_recorded_and_priced(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_reasoning.yaml"):
        response = client.responses.create(model="o4-mini", instructions=INSTRUCTIONS, input=ASK)
    record = only_record()
    assert record.usage.reasoning_tokens == response.usage.output_tokens_details.reasoning_tokens == 192
    assert record.usage.output_tokens == response.usage.output_tokens  # reasoning included
    assert record.usd == pytest.approx(priced("o4-mini-2025-04-16", record.usage))


def test_responses_parse(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_parse.yaml"):
        response = client.responses.parse(
            model="gpt-4o-mini", instructions=INSTRUCTIONS, input=ASK, text_format=City
        )
    assert response.output_parsed == City(city="Paris", country="France")
    record = only_record()
    assert record.status == "ok" and record.usage.output_tokens == response.usage.output_tokens
    assert record.response_id == "resp_tg0004"


async def test_responses_create_async(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_basic.yaml"):
        response = await aclient.responses.create(model="gpt-4o-mini", instructions=INSTRUCTIONS, input=ASK)
    assert only_record().usage.input_tokens == response.usage.input_tokens


def test_responses_stream_create(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_stream.yaml"):
        events = list(
            client.responses.create(model="gpt-4o-mini", instructions=INSTRUCTIONS, input=ASK, stream=True)
        )
    completed = events[-1]
    assert completed.type == "response.completed"
    record = only_record()
    assert record.stream and record.status == "ok" and not record.estimated
    assert record.usage.input_tokens == completed.response.usage.input_tokens
    assert record.usage.output_tokens == completed.response.usage.output_tokens
    assert record.response_id == "resp_tg0003"


async def test_responses_stream_helper_async(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_stream.yaml"):
        async with aclient.responses.stream(
            model="gpt-4o-mini", instructions=INSTRUCTIONS, input=ASK
        ) as stream:
            final = await stream.get_final_response()
    assert final.output_text.startswith("The capital of France is Paris")
    record = only_record()
    assert record.status == "ok" and record.usage.output_tokens == final.usage.output_tokens


def test_responses_stream_broken_early_is_abandoned_and_estimated(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_stream.yaml"):
        stream = client.responses.create(
            model="gpt-4o-mini", instructions=INSTRUCTIONS, input=ASK, stream=True
        )
        for event in stream:
            if event.type == "response.output_text.delta":
                break
        stream.close()
    record = only_record()
    assert record.status == "abandoned" and record.estimated
    assert record.usage.output_tokens >= 1


def test_responses_clamp_and_downgrade_on_the_wire(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_basic.yaml"), tollgate.budget(tokens=120, on_exceed="clamp"):
        client.responses.create(model="gpt-4o-mini", instructions=INSTRUCTIONS, input=ASK)
    assert 16 <= sent[0]["max_output_tokens"] < 120 and "max_tokens" not in sent[0]
    budget = tollgate.budget(usd=0.0004, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"})
    with replay("openai/responses_basic.yaml"), budget:
        client.responses.create(model="gpt-4o", instructions=INSTRUCTIONS, input=ASK, max_output_tokens=100)
    assert sent[1]["model"] == "gpt-4o-mini"


def test_responses_truncate_drops_oldest_items_and_keeps_tool_pairs(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    filler = "lorem ipsum " * 60
    items = [
        {"role": "user", "content": "First question. " + filler},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q": "a"}'},
        {"type": "function_call", "call_id": "c2", "name": "lookup", "arguments": '{"q": "b"}'},
        {"type": "function_call_output", "call_id": "c1", "output": filler},
        {"type": "function_call_output", "call_id": "c2", "output": filler},
        {"role": "assistant", "content": "An answer. " + filler},
        {"role": "user", "content": ASK},
    ]
    with replay("openai/responses_basic.yaml"), tollgate.budget(tokens=400, on_exceed="truncate"):
        client.responses.create(
            model="gpt-4o-mini", instructions=INSTRUCTIONS, input=items, max_output_tokens=50
        )
    body = sent[0]
    assert body["instructions"] == INSTRUCTIONS  # top-level instructions are never dropped
    assert body["input"][-1] == items[-1]
    call_ids = {i.get("call_id") for i in body["input"] if i.get("type") == "function_call"}
    output_ids = {i.get("call_id") for i in body["input"] if i.get("type") == "function_call_output"}
    assert call_ids == output_ids  # no orphaned call or output
    assert len(body["input"]) < len(items)


# -- embeddings -----------------------------------------------------------------------------------


def test_embeddings(client, replay) -> None:  # type: ignore[no-untyped-def]
    inputs = ["The sea is vast.", "Paris is the capital of France."]
    with replay("openai/embeddings.yaml"):
        result = client.embeddings.create(model="text-embedding-3-small", input=inputs)
    assert len(result.data) == 2 and len(result.data[0].embedding) == 4
    record = only_record()
    assert record.operation == "embeddings" and record.usage.output_tokens == 0
    assert record.usage.input_tokens == result.usage.prompt_tokens
    assert record.usd == pytest.approx(result.usage.prompt_tokens * 2e-08)


def test_embeddings_estimate_is_the_exact_input_count_and_no_output() -> None:
    from tollgate.request import LLMRequest

    request = LLMRequest(
        provider="openai",
        operation="embeddings",
        model="text-embedding-3-small",
        prompt=["The sea is vast.", "Paris is the capital of France."],
    )
    estimate = tollgate.estimate_request(request, default_table().lookup("text-embedding-3-small"))
    assert (estimate.input_tokens, estimate.output_tokens) == (12, 0)  # what the cassette's server counted


async def test_embeddings_async_blocked_by_a_budget(aclient, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/embeddings.yaml") as cassette,
        tollgate.budget(tokens=5),
        pytest.raises(tollgate.BudgetExceeded),
    ):
        await aclient.embeddings.create(model="text-embedding-3-small", input=["a much longer input " * 5])
        assert cassette.play_count == 0 and sent == []


# -- legacy completions ----------------------------------------------------------------------------


def test_legacy_completions(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/completions.yaml"):
        result = client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say this is a test.", max_tokens=7
        )
    record = only_record()
    assert record.operation == "text_completion"
    assert (record.usage.input_tokens, record.usage.output_tokens) == (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
    )
    assert record.priced and record.usd == pytest.approx(priced("gpt-3.5-turbo-instruct", record.usage))


def test_legacy_completions_stream_and_clamp(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/completions_stream.yaml"), tollgate.budget(tokens=40, on_exceed="clamp"):
        chunks = list(
            client.completions.create(
                model="gpt-3.5-turbo-instruct", prompt="Say this is a test.", stream=True
            )
        )
    assert "".join(c.choices[0].text for c in chunks) == "\n\nThis is a test."
    assert all(c.choices for c in chunks)  # the injected usage chunk is hidden
    assert 16 <= sent[0]["max_tokens"] < 40
    record = only_record()
    assert record.stream and not record.estimated and record.usage.output_tokens == 6


# -- with_raw_response / with_streaming_response ---------------------------------------------------


def test_with_raw_response(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
    assert raw.headers["x-request-id"] == "req_constructed"
    completion = raw.parse()
    assert completion.choices[0].message.content == "Paris."
    record = only_record()  # settled when the call returned, whether or not parse() is called
    assert record.status == "ok" and record.usage.input_tokens == completion.usage.prompt_tokens == 26


def test_with_raw_response_stream(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=COUNT, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse())
    assert text == "One, two, three, four, five."
    record = only_record()
    assert record.status == "ok" and (record.usage.input_tokens, record.usage.output_tokens) == (20, 10)


async def test_with_raw_response_async(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_basic.yaml"):
        raw = await aclient.responses.with_raw_response.create(
            model="gpt-4o-mini", instructions=INSTRUCTIONS, input=ASK
        )
    assert raw.parse().output_text == "Paris."
    assert only_record().usage.output_tokens == 2


def test_with_streaming_response_parse(client, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_basic.yaml"),
        client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=QUESTION) as r,
    ):
        assert r.headers["x-request-id"] == "req_constructed"
        completion = r.parse()
    assert completion.choices[0].message.content == "Paris."
    assert only_record().usage.input_tokens == 26


def test_with_streaming_response_iter_lines(client, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_stream.yaml"),
        client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=COUNT, stream=True
        ) as r,
    ):
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert not any('"choices": []' in line for line in lines)  # the injected usage chunk is hidden
    record = only_record()
    assert record.status == "ok" and (record.usage.input_tokens, record.usage.output_tokens) == (20, 10)


async def test_with_streaming_response_async_json(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/embeddings.yaml"):
        async with aclient.embeddings.with_streaming_response.create(
            model="text-embedding-3-small", input=["The sea is vast.", "Paris is the capital of France."]
        ) as r:
            body = await r.json()
    assert body["usage"]["prompt_tokens"] == only_record().usage.input_tokens


def test_with_streaming_response_unread_is_recorded(client, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_basic.yaml"),
        client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=QUESTION),
    ):
        pass  # the body is never read
    record = only_record()
    assert record.status == "abandoned" and record.estimated


def test_with_raw_response_error_is_recorded(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_error_500.yaml"), pytest.raises(openai.InternalServerError):
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
    record = only_record()
    assert record.status == "error" and "HTTP 500" in (record.error or "") and record.usd == 0.0


def test_raw_variants_of_ungated_methods_pass_through(client) -> None:  # type: ignore[no-untyped-def]
    raw = tollgate.uninstrument(client)
    ours, theirs = client.chat.completions.with_raw_response, raw.chat.completions.with_raw_response
    assert ours.retrieve is theirs.retrieve  # not an LLM call: the SDK's own, untouched
    assert ours.create is not theirs.create  # an LLM call: gated
    assert client.models is raw.models
