"""Pre-flight estimates against the prompt_tokens OpenAI reported in real recordings.

A budget reserves the estimate before a call, so an estimate below the truth is the costly
error; the bound here is: never below, and within 5 % (or 4 tokens) above.
"""

from __future__ import annotations

import pytest

import tollgate
from tests.providers.shared_cassettes import exchanges, openai_chat_cassettes
from tollgate.pricing.tokens import is_exact

pytestmark = pytest.mark.shared

CASES = [
    pytest.param(ex, id=f"{ex.cassette.name[-50:]}#{ex.index}")
    for cassette in openai_chat_cassettes()
    for ex in exchanges(cassette)
    if ex.input_tokens and is_exact(str(ex.body.get("model")))
]


def test_recordings_present_or_skipped() -> None:
    if not CASES:
        pytest.skip("../shared/cassettes is absent")
    assert len(CASES) >= 15


@pytest.mark.parametrize("exchange", CASES)
def test_estimate_is_never_below_and_close_above(exchange) -> None:  # type: ignore[no-untyped-def]
    body = exchange.body
    estimate = tollgate.estimate(body["model"], body["messages"], max_tokens=1, tools=body.get("tools") or ())
    actual = int(exchange.input_tokens)
    assert actual <= estimate.input_tokens <= max(actual + 4, actual * 1.05)
