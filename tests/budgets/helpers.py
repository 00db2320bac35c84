"""Small builders shared by the budget tests: requests and a call that settles like a provider."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
    record = gate.settle(call, Usage(input_tokens=call.estimate.input_tokens, output_tokens=output_tokens))
    assert record is not None
    return call, record
