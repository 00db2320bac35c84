"""Small builders shared by the budget tests: requests and a call that settles like a provider."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import tollgate
from tollgate import gate
from tollgate.request import CallRecord, LLMRequest, Usage

QUESTION = [{"role": "user", "content": "Summarise the attached report in three bullet points."}]


def request(
    model: str = "gpt-4o",
    *,
    cap: int | None = 500,
    messages: Sequence[Mapping[str, Any]] = QUESTION,
) -> LLMRequest:
    return LLMRequest(
        provider="openai", operation="chat", model=model, messages=messages, max_output_tokens=cap
    )


def run(req: LLMRequest, output_tokens: int = 100) -> tuple[gate.Call, CallRecord]:
    """Pre-flight ``req``, then settle it as if the provider answered with ``output_tokens``."""
    call = gate.preflight(req)
    record = call.finish(
        tollgate.gate.Outcome(Usage(input_tokens=call.estimate.input_tokens, output_tokens=output_tokens))
    )
    assert record is not None
    return call, record


SAY_OK = [{"role": "user", "content": "Say OK."}]


def completion(request: Any) -> Any:
    """A stand-in for OpenAI's /v1/chat/completions (an ``httpx.MockTransport`` handler): 10
    prompt tokens, and exactly ``max_tokens`` output tokens, so a call costs its reservation."""
    import httpx

    return httpx.Response(200, json=completion_body(request.content))


def completion_body(content: bytes) -> dict[str, Any]:
    """The JSON body :func:`completion` answers a request body ``content`` with."""
    out = json.loads(content)["max_tokens"]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": out, "total_tokens": 10 + out},
    }


async def slow_completion(request: Any) -> Any:
    await asyncio.sleep(0.01)  # every call is in flight at the same time
    return completion(request)


def per_call_usd(output_tokens: int = 20) -> float:
    """What one :func:`completion` call with ``max_tokens=output_tokens`` costs on gpt-4o-mini."""
    price = tollgate.config.settings().prices.lookup("gpt-4o-mini")
    assert price is not None and price.input and price.output
    return 10 * price.input + output_tokens * price.output
