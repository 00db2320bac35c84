"""instrument(anthropic client) -> messages / beta.messages / completions -> ledger.

Real anthropic SDK, HTTP replayed by vcrpy from constructed cassettes in cassettes/anthropic/;
outgoing bodies are captured with an httpx2 event hook (see anthropic_helpers.py).
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

import tollgate
from tollgate import telemetry
from tollgate.pricing import cost
from tollgate.pricing.tokens import count_text
from tollgate.request import Usage

anthropic = pytest.importorskip("anthropic")
pytest.importorskip("httpx2")
from anthropic._models import construct_type  # noqa: E402

from tests.providers.anthropic_helpers import (  # noqa: E402
    COUNT,
    COUNT_TEXT,
    HAIKU,
    HAIKU_ID,
    PROMPT,
    QUESTION,
    SONNET,
    SONNET_ID,
    SYSTEM,
    make_client,
    only_record,
    price,
    recorded_body,
    with_legacy_completions,
)
from tollgate.providers.anthropic import (  # noqa: E402
    MessageStreamAccountant,
    provider_for,
    usage_from,
)


def records() -> list[tollgate.CallRecord]:
    return list(tollgate.config.settings().ledger.records())


def estimated_output(text: str) -> int:
    return count_text(text, SONNET, "anthropic")


def basic(client: Any) -> Any:
    return client.messages.create(model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION)


def assert_basic_record(record: tollgate.CallRecord, *, stream: bool = False) -> None:
    assert record.status == "ok" and not record.estimated and record.stream is stream
    assert (record.provider, record.operation, record.request_model) == ("anthropic", "chat", SONNET)
    assert record.response_model == SONNET_ID
    assert (record.usage.input_tokens, record.usage.output_tokens) == (27, 5)
    p = price(SONNET_ID)
    assert record.usd == pytest.approx(27 * p.input + 5 * p.output, abs=1e-15) and record.usd > 0


def assert_count_record(record: tollgate.CallRecord, *, response_id: str = "msg_tg0010") -> None:
    assert record.status == "ok" and not record.estimated and record.stream
    assert record.response_model == SONNET_ID and record.response_id == response_id
    assert (record.usage.input_tokens, record.usage.output_tokens) == (22, 14)
    p = price(SONNET_ID)
    assert record.usd == pytest.approx(22 * p.input + 14 * p.output, abs=1e-15)


def delta_text(events: list[Any]) -> str:
    return "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


# -- the proxy ------------------------------------------------------------------------------


def test_proxy_is_transparent(claude) -> None:  # type: ignore[no-untyped-def]
    raw = tollgate.uninstrument(claude)
    assert isinstance(claude, anthropic.Anthropic) and type(raw) is anthropic.Anthropic
    assert tollgate.instrument(claude) is claude
    assert claude.api_key == "sk-ant-test"
    assert claude.models is raw.models  # resources tollgate does not own pass straight through
    assert claude.messages.batches is raw.messages.batches
    assert claude.messages.count_tokens == raw.messages.count_tokens  # free: not gated
    assert claude.messages.create != raw.messages.create
    derived = claude.with_options(timeout=5)
    assert isinstance(derived, anthropic.Anthropic) and tollgate.uninstrument(derived) is not derived


def test_async_proxy_is_transparent(aclaude) -> None:  # type: ignore[no-untyped-def]
    raw = tollgate.uninstrument(aclaude)
    assert isinstance(aclaude, anthropic.AsyncAnthropic) and type(raw) is anthropic.AsyncAnthropic
    assert tollgate.instrument(aclaude) is aclaude
    assert aclaude.messages.count_tokens == raw.messages.count_tokens


def test_count_tokens_is_not_gated(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_count_tokens.yaml"), tollgate.budget(usd=1e-9):  # would block any call
        counted = claude.messages.count_tokens(model=SONNET, system=SYSTEM, messages=QUESTION)
    assert counted.input_tokens == 27
    assert records() == []


def test_provider_is_named_after_the_client() -> None:
    assert provider_for(anthropic.Anthropic(api_key="x")) == "anthropic"
    bedrock = type("AnthropicBedrock", (), {})()
    vertex = type("AsyncAnthropicVertex", (), {})()
    assert (provider_for(bedrock), provider_for(vertex)) == ("bedrock", "vertex_ai")


# -- non-streaming ----------------------------------------------------------------------------


def test_create_records_exact_usage_and_cost(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"), tollgate.track(feature="geo"):
        message = basic(claude)
    assert message.content[0].text == "Paris." and isinstance(message, anthropic.types.Message)
    record = only_record()
    assert_basic_record(record)
    assert record.response_id == "msg_tg0001" and dict(record.tags) == {"feature": "geo"}
    assert sent == [recorded_body("anthropic/messages_basic.yaml")]  # nothing edited without a budget


async def test_async_create(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"):
        message = await aclaude.messages.create(
            model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION
        )
    assert message.content[0].text == "Paris."
    assert_basic_record(only_record())


def test_parse(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"):
        parsed = claude.messages.parse(model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION)
    assert parsed.content[0].text == "Paris."
    assert_basic_record(only_record())


async def test_async_parse(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"):
        parsed = await aclaude.messages.parse(model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION)
    assert parsed.content[0].text == "Paris."
    assert_basic_record(only_record())


def test_beta_create(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/beta_messages_basic.yaml"):
        message = claude.beta.messages.create(
            model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION, betas=["context-1m-2025-08-07"]
        )
    assert isinstance(message, anthropic.types.beta.BetaMessage)
    record = only_record()
    assert_basic_record(record)
    assert record.response_id == "msg_tg0101"


async def test_async_beta_create_and_parse(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/beta_messages_basic.yaml", allow_playback_repeats=True):
        await aclaude.beta.messages.create(model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION)
        parsed = await aclaude.beta.messages.parse(
            model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION
        )
    assert parsed.content[0].text == "Paris."
    first, second = records()
    assert_basic_record(first)
    assert_basic_record(second)


def test_generators_are_read_once_and_sent(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    system = [{"type": "text", "text": SYSTEM}]
    with replay("anthropic/messages_basic.yaml"):
        claude.messages.create(
            model=SONNET, max_tokens=1024, system=(b for b in system), messages=(m for m in QUESTION)
        )
    assert sent[0]["messages"] == QUESTION and sent[0]["system"] == system
    assert only_record().usage.input_tokens == 27


def test_cache_writes_and_reads_are_priced_at_their_own_rates(claude, replay) -> None:  # type: ignore[no-untyped-def]
    body = recorded_body("anthropic/messages_cached.yaml")
    with replay("anthropic/messages_cached.yaml"):
        first = claude.messages.create(**body)
        second = claude.messages.create(**body)
    write, read = records()
    p = price(HAIKU_ID)
    assert p.cache_write and p.cache_write_1h and p.cache_read and p.cache_read < p.input < p.cache_write
    # The write: 14 uncached + 2100 written (1800 of them to the one-hour cache).
    assert first.usage.cache_creation_input_tokens == 2100
    assert (write.usage.input_tokens, write.usage.cache_write_tokens, write.usage.cache_read_tokens) == (
        2114,
        2100,
        0,
    )
    assert write.usage.units == {"cache_write_1h_tokens": 1800}
    assert write.usd == pytest.approx(
        14 * p.input + 300 * p.cache_write + 1800 * p.cache_write_1h + 41 * p.output, abs=1e-15
    )
    # The read: 14 uncached + 2100 read from the cache.
    assert second.usage.cache_read_input_tokens == 2100
    assert (read.usage.input_tokens, read.usage.cache_read_tokens, read.usage.cache_write_tokens) == (
        2114,
        2100,
        0,
    )
    assert read.usd == pytest.approx(14 * p.input + 2100 * p.cache_read + 38 * p.output, abs=1e-15)
    for record in (write, read):
        assert record.usd == pytest.approx(cost(p, record.usage), abs=1e-15)
        assert record.response_model == HAIKU_ID and record.request_model == HAIKU
    assert read.usd < write.usd


@pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-20250514' is deprecated:DeprecationWarning")
def test_cache_tokens_on_claude_sonnet_4(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_cached_sonnet4.yaml"):
        claude.messages.create(**recorded_body("anthropic/messages_cached_sonnet4.yaml"))
    record = only_record()
    p = price("claude-sonnet-4-20250514")
    u = record.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (
        1836,
        1500,
        320,
        52,
    )
    assert p.cache_read and p.cache_write
    expected = 16 * p.input + 1500 * p.cache_read + 320 * p.cache_write + 52 * p.output
    assert record.usd == pytest.approx(expected, abs=1e-15)


def test_thinking_tokens_are_recorded(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_thinking.yaml"):
        message = claude.messages.create(**recorded_body("anthropic/messages_thinking.yaml"))
    assert [b.type for b in message.content] == ["thinking", "text"]
    record = only_record()
    assert (record.usage.output_tokens, record.usage.reasoning_tokens) == (312, 280)
    p = price(SONNET_ID)
    assert record.usd == pytest.approx(48 * p.input + 312 * p.output, abs=1e-15)  # thinking bills as output


def test_usage_convention() -> None:
    assert usage_from(None) is None
    assert usage_from({"input_tokens": 3}) is None  # malformed: no output count
    assert usage_from({"input_tokens": True, "output_tokens": 1}) is None
    u = usage_from({"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": None})
    assert u is not None and (u.input_tokens, u.cache_read_tokens, u.units) == (5, 0, {})


# -- failures ---------------------------------------------------------------------------------

ERRORS = [
    ("anthropic/messages_error_429.yaml", "RateLimitError", 429),
    ("anthropic/messages_error_500.yaml", "InternalServerError", 500),
    ("anthropic/messages_error_529.yaml", "OverloadedError", 529),
]


def assert_released(name: str) -> None:
    """The failed call's reservation is gone: a new call in the same budget sees nothing held."""
    request = tollgate.LLMRequest(
        provider="anthropic", operation="chat", model=SONNET, messages=QUESTION, max_output_tokens=1024
    )
    call = tollgate.gate.preflight(request)
    assert call.states and (call.states[0].spent, call.states[0].reserved) == (0.0, 0.0), name
    call.finish(tollgate.gate.Outcome(tollgate.Usage()))


@pytest.mark.parametrize(("cassette", "exc", "status"), ERRORS)
def test_http_errors_are_recorded_with_zero_cost(claude, replay, cassette, exc, status) -> None:  # type: ignore[no-untyped-def]
    with replay(cassette), tollgate.budget(usd=1.0, name="cap"):
        with pytest.raises(getattr(anthropic, exc)):
            basic(claude)
        record = only_record()
        assert_released(cassette)
    assert record.status == "error" and record.usd == 0.0 and record.usage.total_tokens == 0
    assert record.error is not None and record.error.startswith(f"{exc}: HTTP {status}")


@pytest.mark.parametrize(("cassette", "exc", "status"), ERRORS)
async def test_async_http_errors(aclaude, replay, cassette, exc, status) -> None:  # type: ignore[no-untyped-def]
    with replay(cassette), tollgate.budget(usd=1.0, name="cap"):
        with pytest.raises(getattr(anthropic, exc)):
            await aclaude.messages.create(model=SONNET, max_tokens=1024, messages=QUESTION, stream=True)
        record = only_record()
        assert_released(cassette)
    assert record.status == "error" and record.usd == 0.0 and f"HTTP {status}" in (record.error or "")


def test_http_error_entering_a_stream_helper(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_error_529.yaml"), tollgate.budget(usd=1.0, name="cap"):
        manager = claude.messages.stream(model=SONNET, max_tokens=1024, messages=QUESTION)
        with pytest.raises(anthropic.OverloadedError), manager:
            pytest.fail("entered a failed stream")
        assert_released("stream helper")
    record = tollgate.config.settings().ledger.records()[0]
    assert record.status == "error" and record.usd == 0.0 and "HTTP 529" in (record.error or "")


def test_malformed_usage_never_breaks_the_call(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_malformed_usage.yaml"):
        message = basic(claude)
    assert message.content[0].text == "Paris."
    record = only_record()
    assert record.status == "ok" and record.estimated and record.response_model == SONNET_ID
    expected = tollgate.estimate(
        SONNET, [{"role": "system", "content": SYSTEM}, *QUESTION], provider="anthropic"
    )
    assert record.usage.input_tokens == expected.input_tokens > 0


# -- create(stream=True) ----------------------------------------------------------------------


def count_stream(client: Any) -> Any:
    return client.messages.create(model=SONNET, max_tokens=1024, messages=COUNT, stream=True)


def test_stream_read_to_the_end(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        stream = count_stream(claude)
        assert isinstance(stream, anthropic.Stream)
        events = list(stream)
    assert delta_text(events) == COUNT_TEXT
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert_count_record(only_record())


async def test_async_stream_read_to_the_end(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        stream = await count_stream(aclaude)
        assert isinstance(stream, anthropic.AsyncStream)
        events = [e async for e in stream]
    assert delta_text(events) == COUNT_TEXT
    assert_count_record(only_record())


def test_stream_broken_early_then_closed(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        stream = count_stream(claude)
        seen = []
        for event in stream:
            seen.append(event)
            if event.type == "content_block_delta" and event.delta.text == ", two":
                break
        stream.close()
    assert delta_text(seen) == "One, two"
    record = only_record()
    assert record.status == "abandoned" and record.estimated
    # The provider may have generated up to max_tokens before it saw the close: charged that,
    # with what was read and counted in the record.
    assert record.usage.output_tokens == 1024
    step = record.decisions[-1]
    assert (step["abandoned"], step["output_tokens_counted"]) == ("reservation", estimated_output("One, two"))
    # The input is the provider's own count from message_start, not tollgate's estimate (24).
    assert record.usage.input_tokens == 22
    assert record.usd == pytest.approx(cost(price(SONNET), Usage(input_tokens=22, output_tokens=1024)))


async def test_async_stream_broken_early(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        stream = await count_stream(aclaude)
        async with stream:
            async for event in stream:
                if event.type == "content_block_delta":
                    break  # "One"
    record = only_record()
    assert record.status == "abandoned" and record.estimated and record.usage.output_tokens == 1024
    assert record.decisions[-1]["output_tokens_counted"] == estimated_output("One")


def test_stream_closed_unread(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        stream = count_stream(claude)
        stream.close()
        assert stream.response.is_closed
    record = only_record()
    assert record.status == "abandoned" and record.estimated and record.usage.output_tokens == 1024
    assert (record.decisions[-1]["chunks_read"], record.decisions[-1]["output_tokens_counted"]) == (0, 0)


async def test_async_stream_closed_unread(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        stream = await count_stream(aclaude)
        await stream.close()
    record = only_record()
    assert record.status == "abandoned" and record.usage.output_tokens == 1024
    assert record.decisions[-1]["output_tokens_counted"] == 0


def test_stream_dropped_without_close_is_still_recorded(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        stream = count_stream(claude)
        next(stream), next(stream)  # message_start, content_block_start
        del stream
        gc.collect()
    record = only_record()
    assert record.status == "abandoned" and record.estimated
    assert (record.usage.input_tokens, record.usage.output_tokens) == (22, 1024)  # the reservation
    assert record.decisions[-1]["output_tokens_counted"] == 1  # message_start's count


def test_stream_stopped_after_the_usage_is_complete(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"), count_stream(claude) as stream:
        for event in stream:
            if event.type == "message_delta":
                break  # message_stop unread: the usage is final already
    assert_count_record(only_record())


def test_stream_error_event_midway(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream_error.yaml"):
        stream = count_stream(claude)
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            for _ in stream:
                pass
    record = only_record()
    assert record.status == "error" and record.estimated
    assert record.error == "APIStatusError: overloaded_error"  # no message without capture
    assert record.usage.output_tokens == estimated_output("One, two,")


def test_stream_with_thinking_tool_use_and_cache(claude, replay) -> None:  # type: ignore[no-untyped-def]
    body = recorded_body("anthropic/messages_stream_tools.yaml")
    with replay("anthropic/messages_stream_tools.yaml"):
        events = list(claude.messages.create(**body))
    assert events[-1].type == "message_stop"
    record = only_record()
    u = record.usage
    # message_start said input_tokens=410; message_delta's cumulative 415 replaces it.
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (1439, 1024, 96, 51)
    p = price(SONNET_ID)
    assert p.cache_read
    assert record.usd == pytest.approx(415 * p.input + 1024 * p.cache_read + 96 * p.output, abs=1e-15)


def test_stream_accountant_reads_sdk_events_and_json_alike() -> None:
    message_start = {
        "type": "message_start",
        "message": {"id": "m", "model": "x", "usage": {"input_tokens": 9, "output_tokens": 1}},
    }
    deltas = [
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "Hm."}},
        {"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": "s"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": "{}"}},
    ]
    as_json = MessageStreamAccountant()
    as_sdk = MessageStreamAccountant()
    for event in [message_start, *deltas, {"type": "message_delta", "usage": {"output_tokens": 7}}]:
        as_json.observe(event)
        as_sdk.observe(construct_type(type_=anthropic.types.RawMessageStreamEvent, value=event))
    assert as_json.text == as_sdk.text == ["Hm.", "Hi", "{}"]
    assert as_json.usage == as_sdk.usage
    assert as_json.usage is not None and (as_json.usage.input_tokens, as_json.usage.output_tokens) == (9, 7)
    assert as_json.text_of(deltas[2]) == "Hi" and as_json.text_of(deltas[0]) is None
    assert not as_json.done
    as_json.observe({"type": "message_stop"})
    assert as_json.done
    assert as_json.observe("garbage") is True  # never breaks the caller's stream


def test_beta_stream(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/beta_messages_stream.yaml"):
        events = list(claude.beta.messages.create(model=SONNET, max_tokens=1024, messages=COUNT, stream=True))
    assert delta_text(events) == COUNT_TEXT
    assert_count_record(only_record(), response_id="msg_tg0110")


# -- messages.stream() ------------------------------------------------------------------------


def test_stream_helper_text_stream_and_final_message(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        manager = claude.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT)
        assert records() == []  # nothing is sent before the manager is entered
        with manager as stream:
            assert isinstance(stream, anthropic.lib.streaming.MessageStream)
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text == COUNT_TEXT
    assert final.content[0].text == COUNT_TEXT and final.usage.output_tokens == 14
    assert_count_record(only_record())


async def test_async_stream_helper(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        async with aclaude.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream:
            assert isinstance(stream, anthropic.lib.streaming.AsyncMessageStream)
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
    assert text == COUNT_TEXT and final.usage.output_tokens == 14
    assert_count_record(only_record())


def test_stream_helper_get_final_text_reads_through_tollgate(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream.yaml"),
        claude.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream,
    ):
        assert stream.get_final_text() == COUNT_TEXT
        assert only_record().status == "ok"  # settled before the block ends
    assert_count_record(only_record())


async def test_async_stream_helper_until_done(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        async with aclaude.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream:
            await stream.until_done()
            assert await stream.get_final_text() == COUNT_TEXT
    assert_count_record(only_record())


def test_stream_helper_iterated_events(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream.yaml"),
        claude.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream,
    ):
        kinds = [event.type for event in stream]
    assert "text" in kinds and kinds[-1] == "message_stop"  # the helper's own events reach the caller
    assert_count_record(only_record())


def test_stream_helper_left_early(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream.yaml"),
        claude.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream,
    ):
        for text in stream.text_stream:
            assert text == "One"
            break
    record = only_record()
    assert record.status == "abandoned" and record.estimated and record.usage.output_tokens == 1024
    assert record.decisions[-1]["output_tokens_counted"] == estimated_output("One")


def test_beta_stream_helper(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/beta_messages_stream.yaml"),
        claude.beta.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream,
    ):
        text = "".join(stream.text_stream)
    assert text == COUNT_TEXT
    assert_count_record(only_record(), response_id="msg_tg0110")


async def test_async_beta_stream_helper(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/beta_messages_stream.yaml"):
        async with aclaude.beta.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream:
            final = await stream.get_final_message()
    assert final.usage.output_tokens == 14
    assert_count_record(only_record(), response_id="msg_tg0110")


# -- with_raw_response / with_streaming_response ----------------------------------------------


@pytest.mark.parametrize("path", ["resource", "client"])
def test_with_raw_response_create(claude, replay, path) -> None:  # type: ignore[no-untyped-def]
    raw_api = claude.messages.with_raw_response if path == "resource" else claude.with_raw_response.messages
    with replay("anthropic/messages_basic.yaml"):
        response = raw_api.create(model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION)
        assert_basic_record(only_record())  # settled as soon as the SDK returned it
        assert response.headers["request-id"] == "req_constructed"
        assert response.parse().content[0].text == "Paris."
    assert len(records()) == 1


def test_with_raw_response_stream(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        response = claude.messages.with_raw_response.create(
            model=SONNET, max_tokens=1024, messages=COUNT, stream=True
        )
        assert records() == []
        events = list(response.parse())
    assert delta_text(events) == COUNT_TEXT
    assert_count_record(only_record())


def test_beta_with_raw_response_parse(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/beta_messages_basic.yaml"):
        response = claude.beta.messages.with_raw_response.parse(
            model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION
        )
        assert response.parse().content[0].text == "Paris."
    assert_basic_record(only_record())


async def test_async_with_raw_response_create(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"):
        response = await aclaude.with_raw_response.messages.create(
            model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION
        )
        message = await response.parse()
    assert message.content[0].text == "Paris."
    assert_basic_record(only_record())


async def test_async_with_raw_response_stream(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        response = await aclaude.messages.with_raw_response.create(
            model=SONNET, max_tokens=1024, messages=COUNT, stream=True
        )
        events = [e async for e in await response.parse()]
    assert delta_text(events) == COUNT_TEXT
    assert_count_record(only_record())


def test_with_streaming_response_parse(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"):
        manager = claude.messages.with_streaming_response.create(
            model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION
        )
        assert records() == []
        with manager as response:
            assert response.parse().content[0].text == "Paris."
    assert_basic_record(only_record())


def test_with_streaming_response_json(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_basic.yaml"),
        claude.with_streaming_response.messages.create(
            model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION
        ) as response,
    ):
        assert response.json()["usage"]["input_tokens"] == 27
    assert_basic_record(only_record())


def test_with_streaming_response_iter_lines(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream.yaml"),
        claude.messages.with_streaming_response.create(
            model=SONNET, max_tokens=1024, messages=COUNT, stream=True
        ) as response,
    ):
        lines = list(response.iter_lines())
    assert "event: message_stop" in lines
    assert_count_record(only_record())


def test_with_streaming_response_left_unread(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("anthropic/messages_stream.yaml"),
        claude.messages.with_streaming_response.create(
            model=SONNET, max_tokens=1024, messages=COUNT, stream=True
        ),
    ):
        pass
    record = only_record()
    assert record.status == "abandoned" and record.estimated


async def test_async_with_streaming_response_parse(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_basic.yaml"):
        async with aclaude.messages.with_streaming_response.create(
            model=SONNET, max_tokens=1024, system=SYSTEM, messages=QUESTION
        ) as response:
            message = await response.parse()
    assert message.content[0].text == "Paris."
    assert_basic_record(only_record())


async def test_async_with_streaming_response_iter_lines(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        async with aclaude.messages.with_streaming_response.create(
            model=SONNET, max_tokens=1024, messages=COUNT, stream=True
        ) as response:
            lines = [line async for line in response.iter_lines()]
    assert "event: message_stop" in lines
    assert_count_record(only_record())


async def test_async_with_streaming_response_stream_parse(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_stream.yaml"):
        async with aclaude.messages.with_streaming_response.create(
            model=SONNET, max_tokens=1024, messages=COUNT, stream=True
        ) as response:
            events = [e async for e in await response.parse()]
    assert delta_text(events) == COUNT_TEXT
    assert_count_record(only_record())


# -- legacy Text Completions (older SDKs' client.completions) ----------------------------------

LEGACY_PRICE = {"claude-2.1": {"input": 8e-06, "output": 2.4e-05}}


def test_legacy_completion_has_no_usage_and_is_estimated(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(prices=LEGACY_PRICE)
    client = with_legacy_completions(claude)
    with replay("anthropic/complete.yaml"):
        completion = client.completions.create(model="claude-2.1", max_tokens_to_sample=300, prompt=PROMPT)
    assert completion.completion == " Paris."
    record = only_record()
    assert (record.operation, record.request_model, record.response_model) == (
        "text_completion",
        "claude-2.1",
        "claude-2.1",
    )
    assert record.status == "ok" and record.estimated and record.response_id == "compl_tg0001"
    assert record.usage.input_tokens == count_text(PROMPT, "claude-2.1", "anthropic") > 0
    # No usage in this API: the output is estimated from the completion's text.
    assert record.usage.output_tokens == count_text(" Paris.", "claude-2.1", "anthropic") > 0
    assert record.usd == pytest.approx(
        record.usage.input_tokens * 8e-06 + record.usage.output_tokens * LEGACY_PRICE["claude-2.1"]["output"],
        abs=1e-15,
    )
    assert sent[0]["max_tokens_to_sample"] == 300


async def test_async_legacy_completion_stream(aclaude, replay) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(prices=LEGACY_PRICE)
    client = with_legacy_completions(aclaude)
    with replay("anthropic/complete_stream.yaml"):
        stream = await client.completions.create(
            model="claude-2.1", max_tokens_to_sample=300, prompt=PROMPT, stream=True
        )
        text = "".join([event.completion async for event in stream])
    assert text == " Paris."
    record = only_record()
    assert record.stream and record.estimated and record.status == "ok"
    assert record.usage.output_tokens == count_text(" Paris.", "claude-2.1", "anthropic")
    assert record.response_id == "compl_tg0002"


def test_legacy_completion_clamp_sets_max_tokens_to_sample(claude, replay, sent) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(prices=LEGACY_PRICE)
    client = with_legacy_completions(claude)
    with replay("anthropic/complete.yaml"), tollgate.budget(usd=0.002, on_exceed="clamp"):
        client.completions.create(model="claude-2.1", max_tokens_to_sample=300, prompt=PROMPT)
    assert 16 <= sent[0]["max_tokens_to_sample"] < 300
    assert only_record().decisions[0]["action"] == "clamp"


# -- OpenTelemetry: the SDK's span nests under tollgate's ----------------------------------------


@pytest.fixture
def otel(monkeypatch):  # type: ignore[no-untyped-def]
    """A TracerProvider with an in-memory exporter, for tollgate and the SDK client alike.

    The global provider can be set once per process (tests/telemetry/ sets it), so this points
    tollgate's tracer at the test's own provider instead, and tells tollgate an SDK is there
    (it skips span work while no global provider is set).
    """
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    from tests.providers.anthropic_helpers import SDK_SPANS

    if not SDK_SPANS:
        pytest.skip(f"anthropic {anthropic.__version__} makes no spans of its own (open_telemetry=)")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("tollgate"))
    monkeypatch.setattr(telemetry, "_no_sdk", lambda module, name: False)
    return provider, exporter


def test_sdk_span_is_a_child_of_tollgates_span(otel, replay, sent) -> None:  # type: ignore[no-untyped-def]
    provider, exporter = otel
    client = make_client(sent, open_telemetry={"tracer_provider": provider})
    with replay("anthropic/messages_basic.yaml"):
        basic(client)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"chat claude-sonnet-4-6", "anthropic.messages.create"}
    ours, sdk = spans["chat claude-sonnet-4-6"], spans["anthropic.messages.create"]
    assert sdk.parent is not None and sdk.parent.span_id == ours.context.span_id
    assert sdk.context.trace_id == ours.context.trace_id
    record = only_record()
    assert (ours.attributes or {})["tollgate.cost.usd"] == record.usd > 0
    assert (ours.attributes or {})["gen_ai.usage.input_tokens"] == 27
    assert "tollgate.cost.usd" not in (sdk.attributes or {})  # cost lives on tollgate's span only


def test_sdk_stream_span_is_a_child_too(otel, replay, sent) -> None:  # type: ignore[no-untyped-def]
    provider, exporter = otel
    client = make_client(sent, open_telemetry={"tracer_provider": provider})
    with (
        replay("anthropic/messages_stream.yaml"),
        client.messages.stream(model=SONNET, max_tokens=1024, messages=COUNT) as stream,
    ):
        stream.until_done()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    ours, sdk = spans["chat claude-sonnet-4-6"], spans["anthropic.messages.create"]
    assert sdk.parent is not None and sdk.parent.span_id == ours.context.span_id
    assert (ours.attributes or {})["gen_ai.usage.output_tokens"] == 14


def test_open_telemetry_false_leaves_one_span_per_call(otel, replay, sent) -> None:  # type: ignore[no-untyped-def]
    _, exporter = otel
    client = make_client(sent, open_telemetry=False)
    with replay("anthropic/messages_basic.yaml"):
        basic(client)
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat claude-sonnet-4-6"
    assert (span.attributes or {})["tollgate.cost.usd"] == only_record().usd
