"""The LangChain doors bill what the provider bills (issue 17): ``usage_metadata`` leaves out
Anthropic's compaction and advisor iterations, server tool requests and the tier, so the
provider's own usage, kept in ``response_metadata``, is read by tollgate's adapter."""

from __future__ import annotations

import math

import tollgate
from tollgate_langchain import TollgateCallbackHandler, guard

SONNET = {"input": 3e-06, "output": 1.5e-05}
OPUS = {"input": 5e-06, "output": 2.5e-05}


def only() -> tollgate.CallRecord:
    (record,) = tollgate.config.settings().ledger.records()
    return record


def test_the_handler_bills_a_compacted_call_in_full(chat_anthropic, replay) -> None:  # type: ignore[no-untyped-def]
    model = chat_anthropic(callbacks=[TollgateCallbackHandler()], max_tokens=2048)
    with replay("anthropic/messages_compaction.yaml"):
        model.invoke("Go on.")
    record = only()
    assert (record.usage.input_tokens, record.usage.output_tokens) == (203_000, 4_500)
    assert [p.kind for p in record.usage.parts] == ["compaction", "message"]
    assert math.isclose(record.usd, 0.6765, rel_tol=1e-12)


def test_the_guard_bills_an_advisor_at_its_own_rates(chat_anthropic, replay) -> None:  # type: ignore[no-untyped-def]
    model = guard(chat_anthropic(max_tokens=2048))
    with replay("anthropic/messages_advisor.yaml"):
        model.invoke("Go on.")
    record = only()
    sonnet = 1_200 * SONNET["input"] + 800 * 3e-07 + 150 * SONNET["output"]
    sonnet += 1_950 * SONNET["input"] + 800 * 3e-07 + 420 * SONNET["output"]
    opus = 2_100 * OPUS["input"] + 640 * OPUS["output"]
    assert [p.model for p in record.usage.parts] == [
        "claude-sonnet-4-6",
        "claude-opus-4-6",
        "claude-sonnet-4-6",
    ]
    assert math.isclose(record.usd, sonnet + opus, rel_tol=1e-12)


def test_the_handler_reads_server_tools_and_the_tier(chat_anthropic, replay) -> None:  # type: ignore[no-untyped-def]
    model = chat_anthropic(callbacks=[TollgateCallbackHandler()], max_tokens=2048)
    with replay("anthropic/messages_web_search_priority.yaml"):
        model.invoke("Go on.")
    record = only()
    assert record.usage.units == {"web_search_requests": 3, "web_fetch_requests": 1}
    assert record.usage.service_tier == "priority"
    assert math.isclose(record.usd, 9_400 * SONNET["input"] + 820 * SONNET["output"] + 0.03, rel_tol=1e-12)
