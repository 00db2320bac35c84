"""The first end-to-end path: instrument(openai client) -> chat.completions.create -> ledger.

Real openai SDK, HTTP replayed by vcrpy from constructed cassettes in cassettes/openai/.
"""

from __future__ import annotations

import gc
import json
import warnings

import pytest
import yaml

import tollgate
from tests.conftest import CASSETTES
from tollgate.pricing import cost, default_table

openai = pytest.importorskip("openai")

QUESTION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
COUNT = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]


def only_record() -> tollgate.CallRecord:
    records = tollgate.config.settings().ledger.records()
    assert len(records) == 1, records
    return records[0]


def recorded_body(cassette: str, index: int = 0) -> dict:  # type: ignore[type-arg]
    """The JSON request body stored in a cassette (to replay exactly what was recorded)."""
    data = yaml.safe_load((CASSETTES / cassette).read_text())
    return json.loads(data["interactions"][index]["request"]["body"])  # type: ignore[no-any-return]


def price(model: str):  # type: ignore[no-untyped-def]
    p = default_table().lookup(model)
    assert p is not None, model
    return p


# -- the proxy ------------------------------------------------------------------------------


def test_proxy_is_transparent(client) -> None:  # type: ignore[no-untyped-def]
    raw = tollgate.uninstrument(client)
    assert isinstance(client, openai.OpenAI)
    assert type(raw) is openai.OpenAI
    assert client.api_key == "sk-test"
    assert client.models is raw.models  # resources tollgate does not own pass straight through
    assert tollgate.instrument(client) is client
    for derived in (client.with_options(timeout=5), client.copy(max_retries=1)):
        assert isinstance(derived, openai.OpenAI)
        assert tollgate.uninstrument(derived) is not derived  # still instrumented
        assert tollgate.uninstrument(derived) is not raw


def test_instrument_rejects_unknown_clients() -> None:
    with pytest.raises(TypeError, match=r"does not know builtins\.object"):
        tollgate.instrument(object())


# -- non-streaming ----------------------------------------------------------------------------


def test_sync_create_records_exact_usage_and_cost(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"), tollgate.track(feature="geo", tenant="acme"):
        response = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert response.choices[0].message.content == "Paris."
    record = only_record()
    assert record.status == "ok" and not record.estimated and not record.stream
    assert (record.provider, record.operation, record.request_model) == ("openai", "chat", "gpt-4o-mini")
    assert record.response_model == "gpt-4o-mini-2024-07-18"
    assert record.response_id == "chatcmpl-tg0001"
    assert record.usage.input_tokens == response.usage.prompt_tokens
    assert record.usage.output_tokens == response.usage.completion_tokens
    p = price("gpt-4o-mini-2024-07-18")
    assert record.usd == pytest.approx(
        response.usage.prompt_tokens * p.input + response.usage.completion_tokens * p.output, abs=1e-15
    )
    assert record.usd > 0
    assert dict(record.tags) == {"feature": "geo", "tenant": "acme"}
    row = tollgate.report(group_by="feature").rows[0]
    assert row["tags"] == {"feature": "geo"}
    assert (row["calls"], row["input_tokens"], row["usd"]) == (1, record.usage.input_tokens, record.usd)


def test_cached_prompt_tokens_are_priced_at_the_cache_rate(client, replay) -> None:  # type: ignore[no-untyped-def]
    messages = recorded_body("openai/chat_cached.yaml")["messages"]
    with replay("openai/chat_cached.yaml"):
        response = client.chat.completions.create(model="gpt-4o", messages=messages)
    record = only_record()
    u = response.usage
    assert record.usage.cache_read_tokens == u.prompt_tokens_details.cached_tokens == 1024
    p = price("gpt-4o-2024-08-06")
    assert p.cache_read is not None and p.cache_read < p.input
    expected = (u.prompt_tokens - 1024) * p.input + 1024 * p.cache_read + u.completion_tokens * p.output
    assert record.usd == pytest.approx(expected, abs=1e-15)
    assert record.usd == pytest.approx(cost(p, record.usage), abs=1e-15)


def test_reasoning_tokens_are_recorded(client, replay) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {"role": "user", "content": "How many prime numbers are there below 30? Answer with the number only."}
    ]
    with replay("openai/chat_reasoning.yaml"):
        response = client.chat.completions.create(
            model="o4-mini", messages=messages, max_completion_tokens=2000
        )
    record = only_record()
    assert record.usage.reasoning_tokens == response.usage.completion_tokens_details.reasoning_tokens == 320
    assert record.usage.output_tokens == response.usage.completion_tokens == 321
    p = price("o4-mini-2025-04-16")
    assert record.usd == pytest.approx(record.usage.input_tokens * p.input + 321 * p.output, abs=1e-15)


async def test_async_create(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        async with tollgate.track(feature="async"):
            response = await aclient.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    record = only_record()
    assert isinstance(aclient, openai.AsyncOpenAI)
    assert record.usage.input_tokens == response.usage.prompt_tokens
    assert record.tags == {"feature": "async"}
    assert record.usd > 0


def test_messages_given_as_a_generator(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=(m for m in QUESTION))
    assert sent[0]["messages"] == QUESTION
    assert only_record().usage.input_tokens > 0


# -- streaming --------------------------------------------------------------------------------


def test_stream_injects_include_usage_and_hides_the_usage_chunk(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True)
        assert isinstance(stream, openai.Stream)
        chunks = list(stream)
    assert sent[0]["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks), "the injected usage-only chunk reached the caller"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "One, two, three, four, five."
    record = only_record()
    assert record.stream and record.status == "ok" and not record.estimated
    assert (record.usage.input_tokens, record.usage.output_tokens) == (20, 10)
    p = price("gpt-4o-mini-2024-07-18")
    assert record.usd == pytest.approx(20 * p.input + 10 * p.output, abs=1e-15)


def test_stream_caller_who_asked_for_usage_gets_the_usage_chunk(client, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=COUNT,
                stream=True,
                stream_options={"include_usage": True, "include_obfuscation": False},
            )
        )
    assert sent[0]["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 20
    assert only_record().usage.output_tokens == 10


def test_stream_as_context_manager_stopping_at_finish_still_gets_usage(client, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/chat_stream.yaml"),
        client.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True) as stream,
    ):
        for chunk in stream:
            if chunk.choices[0].finish_reason:
                break  # the usage chunk is still unread
    record = only_record()
    assert record.status == "ok" and not record.estimated
    assert record.usage.output_tokens == 10


async def test_async_stream(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True)
        assert isinstance(stream, openai.AsyncStream)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "One, two, three, four, five."
    record = only_record()
    assert (record.usage.input_tokens, record.usage.output_tokens, record.status) == (20, 10, "ok")


def test_abandoned_stream_is_recorded_as_estimated(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True)
        seen = [next(stream) for _ in range(4)]  # role chunk, "One", ",", " two"
        stream.close()
    assert "".join(c.choices[0].delta.content or "" for c in seen) == "One, two"
    record = only_record()
    assert record.status == "abandoned" and record.estimated
    # The provider may have generated up to the output cap before it saw the close: charged
    # that (the model's maximum output, as pre-flight reserved), with what was read and counted.
    reserved = tollgate.estimate("gpt-4o-mini", COUNT).output_tokens
    assert record.usage.output_tokens == reserved
    assert record.usage.input_tokens == 20  # the pre-flight estimate, exact for OpenAI models
    assert dict(record.decisions[-1]) == {
        "abandoned": "reservation",
        "chunks_read": 4,
        "chunks_drained": 0,  # an in-memory transport: nothing can be read without waiting
        "output_tokens_counted": 3,  # "One, two" in o200k
        "output_tokens_charged": reserved,
    }
    assert record.usd == pytest.approx(tollgate.estimate("gpt-4o-mini", COUNT).usd)


def test_stream_dropped_without_close_is_still_recorded(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True)
        next(stream), next(stream)
        del stream
        gc.collect()
    record = only_record()
    assert record.status == "abandoned" and record.estimated
    assert record.usage.output_tokens == tollgate.estimate("gpt-4o-mini", COUNT).output_tokens
    assert record.decisions[-1]["output_tokens_counted"] == 1


async def test_async_abandoned_stream(aclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream.yaml"):
        stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True)
        async with stream:
            async for chunk in stream:
                if chunk.choices[0].delta.content == ",":
                    break
    record = only_record()
    assert record.status == "abandoned" and record.estimated
    assert record.usage.output_tokens == tollgate.estimate("gpt-4o-mini", COUNT).output_tokens
    assert record.decisions[-1]["output_tokens_counted"] == 2


def test_stream_without_usage_from_server_is_estimated(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream_no_usage.yaml"):
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True))
    assert chunks
    record = only_record()
    assert record.status == "ok" and record.estimated
    assert (record.usage.input_tokens, record.usage.output_tokens) == (20, 10)


def test_stream_that_raises_midway_is_recorded_with_the_error(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_stream_error.yaml"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=COUNT, stream=True)
        with pytest.raises(openai.APIError, match="server had an error"):
            for _ in stream:
                pass
    record = only_record()
    assert record.status == "error" and record.estimated
    assert record.error is not None and record.error.startswith("APIError")
    assert record.usage.output_tokens == count_tokens("One, two,")


def count_tokens(text: str) -> int:
    from tollgate.pricing.tokens import count_text

    return count_text(text, "gpt-4o-mini")


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cassette", "exc", "status"),
    [
        ("openai/chat_error_429.yaml", "RateLimitError", 429),
        ("openai/chat_error_500.yaml", "InternalServerError", 500),
    ],
)
def test_http_errors_are_recorded_with_zero_cost(client, replay, cassette, exc, status) -> None:  # type: ignore[no-untyped-def]
    with replay(cassette), pytest.raises(getattr(openai, exc)):
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    record = only_record()
    assert record.status == "error" and record.usd == 0.0 and record.usage.total_tokens == 0
    assert record.error is not None and record.error.startswith(f"{exc}: HTTP {status}")
    assert tollgate.report().total["errors"] == 1


def test_malformed_usage_never_breaks_the_call(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_malformed_usage.yaml"):
        response = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert response.choices[0].message.content == "Paris."
    record = only_record()
    assert record.status == "ok" and record.estimated
    assert record.usage.input_tokens == tollgate.estimate("gpt-4o-mini", QUESTION).input_tokens


def test_unpriced_model_warns_once_and_is_counted(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_no_usage_unpriced.yaml", allow_playback_repeats=True):
        with pytest.warns(tollgate.UnpricedModelWarning, match="house-llm-7b"):
            client.chat.completions.create(model="house-llm-7b", messages=QUESTION)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            client.chat.completions.create(model="house-llm-7b", messages=QUESTION)
    total = tollgate.report().total
    assert (total["calls"], total["unpriced_calls"], total["usd"]) == (2, 2, 0.0)
    assert total["input_tokens"] > 0  # token counts are recorded regardless


def test_unpriced_model_raises_before_any_traffic(client, replay) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(on_unpriced="raise")
    with replay("openai/chat_no_usage_unpriced.yaml") as cassette:
        with pytest.raises(tollgate.UnpricedModelError, match="house-llm-7b"):
            client.chat.completions.create(model="house-llm-7b", messages=QUESTION)
        assert cassette.play_count == 0
    record = only_record()
    assert record.status == "error" and record.error.startswith("UnpricedModelError")


def test_price_override_prices_a_house_model(client, replay) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(prices={"house-llm-7b": {"input": 1e-6, "output": 2e-6}})
    with replay("openai/chat_no_usage_unpriced.yaml"):
        response = client.chat.completions.create(model="house-llm-7b", messages=QUESTION)
    record = only_record()
    assert record.priced and record.estimated
    # No usage from the server: the output is estimated from the text it answered.
    output = tollgate.pricing.tokens.count_text(response.choices[0].message.content, "house-llm-7b", "openai")
    assert record.usage.output_tokens == output > 0
    assert record.usd == pytest.approx(record.usage.input_tokens * 1e-6 + output * 2e-6, abs=1e-15)
