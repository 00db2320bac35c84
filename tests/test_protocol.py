"""The one call protocol (tollgate/gate.py): each hole issue 16 named, held by a test here
(the framework note taken for a store outage: tests/telemetry/test_spans.py, on real spans).

The classes those holes belong to are held by the door x failure matrices in tests/faults/
(test_door_matrix_sdk.py, test_door_matrix_doors.py); these tests name the original cases.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

import tollgate
from tests.conftest import http_module
from tollgate import gate
from tollgate.decisions import Blocked, Implausible, PricingFailed, Unreadable
from tollgate.request import CallRecord, LLMRequest, Usage

KEY = "sk-test-LEAKCHECK-000000000000"
PROMPT = "SECRET-PROMPT-7731: what is the capital of France?"


def chat_reply(model: Any = "gpt-4o-mini-2024-07-18", usage: Any = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ],
        "usage": usage
        if usage is not None
        else {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
    }


#: The transport libraries the installed SDKs run on (openai 3.x and anthropic 2.x: httpx2).
HTTP: Any = http_module("openai")
ANTHROPIC_HTTP: Any = http_module("anthropic")


def respond_with(body: dict[str, Any], request: Any) -> Any:
    return HTTP.Response(200, json=body)


def openai_client(respond: Callable[[Any], Any], sent: list[Any]) -> openai.OpenAI:
    def handler(request: Any) -> Any:
        sent.append(json.loads(request.content))
        return respond(request)

    http = HTTP.Client(transport=HTTP.MockTransport(handler))
    return tollgate.instrument(openai.OpenAI(api_key=KEY, max_retries=0, http_client=http))


def records() -> list[CallRecord]:
    return tollgate.config.settings().ledger.records()


def held(model: str = "gpt-4o-mini") -> float:
    """What the day budget in force holds for calls in flight, as a new call sees it."""
    call = gate.preflight(LLMRequest(provider="openai", operation="chat", model=model, max_output_tokens=1))
    reserved = call.states[0].reserved
    call.fail(RuntimeError("not sent"))
    return reserved


@pytest.fixture
def day_budget() -> Iterator[None]:
    with tollgate.budget(usd=1.0, per="day", name="protocol-day"):
        yield


def test_a_response_model_that_is_not_a_string_is_recorded_and_settled(day_budget: None) -> None:
    # Was: pricing raised in settle; no record, no store settle, the hold kept for the window.
    for model in (42, ["gpt-4o"], {"name": "gpt-4o"}):
        sent: list[Any] = []
        client = openai_client(functools.partial(respond_with, chat_reply(model=model)), sent)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "Paris."
    assert [r.response_model for r in records()] == [None, None, None]
    assert all(r.status == "ok" and r.usd > 0 and r.usage.output_tokens == 2 for r in records())
    assert held() == 0.0


@pytest.mark.parametrize("messages", ["hello", {"role": "user", "content": "hi"}, [None], [{"role": "user"}]])
def test_malformed_messages_reach_the_sdk_and_leave_one_record(day_budget: None, messages: Any) -> None:
    # Was: AttributeError from token counting, before anything was recorded or sent.
    sent: list[Any] = []
    client = openai_client(
        lambda _: HTTP.Response(400, json={"error": {"message": "bad", "code": "bad_request"}}), sent
    )
    raw = tollgate.uninstrument(client)
    with pytest.raises(openai.BadRequestError) as theirs:
        raw.chat.completions.create(model="gpt-4o-mini", messages=messages)
    with pytest.raises(openai.BadRequestError) as ours:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert str(ours.value) == str(theirs.value) and len(sent) == 2  # sent as given, both times
    (record,) = records()
    assert record.status == "error" and record.error == "BadRequestError: HTTP 400: bad_request"
    assert held() == 0.0


def test_an_unreadable_request_is_budgeted_and_noted() -> None:
    with tollgate.budget(usd=1.0):
        junk: Any = [None]
        call = gate.preflight(
            lambda: LLMRequest(provider="openai", operation="chat", model="gpt-4o", messages=junk)
        )
        call.finish(gate.Outcome(Usage(input_tokens=3, output_tokens=1)))

        def unreadable() -> LLMRequest:
            raise ZeroDivisionError

        broken = gate.preflight(unreadable, provider="openai", model="gpt-4o")
        broken.fail(RuntimeError("sent, failed"))
    first, second = records()
    assert first.decisions == (Unreadable("messages", "AttributeError"),) and first.usd > 0
    assert (
        second.decisions == (Unreadable("request", "ZeroDivisionError"),) and second.request_model == "gpt-4o"
    )


def test_anthropic_reply_with_unreadable_usage_estimates_its_output_from_the_text(sent: Any) -> None:
    # Was: 0 output tokens (its reading had no text to estimate from), where OpenAI's estimated.
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Paris is the capital of France, on the Seine."}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": "twelve", "output_tokens": -3},
    }
    respond = ANTHROPIC_HTTP.MockTransport(lambda _: ANTHROPIC_HTTP.Response(200, json=body))
    http = ANTHROPIC_HTTP.Client(transport=respond)
    client = tollgate.instrument(anthropic.Anthropic(api_key=KEY, max_retries=0, http_client=http))
    client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "Capital?"}]
    )
    (record,) = records()
    assert record.estimated and record.usage.output_tokens >= 10 and record.usd > 0


def test_usage_no_call_could_use_is_estimated_flagged_and_never_overflows(day_budget: None) -> None:
    huge = {"prompt_tokens": 10**400, "completion_tokens": 1, "total_tokens": 10**400}  # overflows a float
    sent: list[Any] = []
    client = openai_client(lambda _: HTTP.Response(200, json=chat_reply(usage=huge)), sent)
    client.chat.completions.create(
        model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    (record,) = records()
    assert record.status == "ok" and record.priced and record.estimated
    assert isinstance(record.decisions[-1], Implausible)
    assert record.usage.input_tokens < 100 and 0 < record.usd < 1e-4
    assert held() == 0.0


def test_pricing_that_fails_still_records_and_charges_what_was_reserved(
    day_budget: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> float:
        raise ArithmeticError("a price table entry that cannot be applied")

    monkeypatch.setattr("tollgate.call.cost", broken)
    sent: list[Any] = []
    client = openai_client(lambda _: HTTP.Response(200, json=chat_reply()), sent)
    client.chat.completions.create(
        model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    (record,) = records()
    assert record.status == "ok" and not record.priced and isinstance(record.decisions[-1], PricingFailed)
    assert held() == 0.0


def test_error_messages_leave_out_the_key_and_the_prompt_unless_captured(day_budget: None) -> None:
    echo = {"error": {"message": f"Incorrect API key {KEY} for prompt {PROMPT}", "code": "invalid_api_key"}}
    sent: list[Any] = []
    client = openai_client(lambda _: HTTP.Response(401, json=echo), sent)
    for capture in (False, True):
        tollgate.configure(capture_content=capture)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
            )
    plain, captured = (r.error or "" for r in records())
    assert plain == "AuthenticationError: HTTP 401: invalid_api_key"
    assert "Incorrect API key" in captured and KEY not in captured and "LEAKCHECK" not in captured


def test_a_decision_a_door_cannot_apply_refuses_the_call_with_one_record(day_budget: None) -> None:
    # Was (guard, middleware, Surface.apply): raised after pre-flight, outside the try: no record,
    # no span, the reservation kept on the daily counter until its slot expired.
    def cannot(*_: Any) -> None:
        raise TypeError("no model field")

    request = LLMRequest(
        provider="openai",
        operation="chat",
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        max_output_tokens=1000,
    )
    with (
        tollgate.budget(tokens=300, on_exceed="clamp"),
        pytest.raises(tollgate.BudgetExceeded) as refused,
        gate.flight(request) as call,
    ):
        assert call.decision.action == "clamp"
        call.edit(cannot)
    assert "could not clamp this call (TypeError)" in str(refused.value)
    blocked = records()[-1]
    assert blocked.status == "blocked" and isinstance(blocked.decisions[-1], Blocked)
    assert held() == 0.0
