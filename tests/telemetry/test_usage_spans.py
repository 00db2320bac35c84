"""Spans name what a call was billed for: its parts, its tier, and usage fields tollgate does not know."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from tests.conftest import Sent
from tests.providers.anthropic_helpers import make_client

pytest.importorskip("anthropic")
ASK = [{"role": "user", "content": "Go on."}]


def _span(replay: Any, spans: Any, cassette: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with replay(cassette):
            make_client(Sent()).messages.create(model="claude-sonnet-4-6", max_tokens=2048, messages=ASK)
    (span,) = [s for s in spans.get_finished_spans() if "tollgate.cost.usd" in (s.attributes or {})]
    spans.clear()
    return span


def test_parts_are_on_the_span(replay, spans) -> None:  # type: ignore[no-untyped-def]
    a = _span(replay, spans, "anthropic/messages_advisor.yaml").attributes
    assert list(a["tollgate.usage.parts.kind"]) == ["message", "advisor_message", "message"]
    assert list(a["tollgate.usage.parts.model"]) == [
        "claude-sonnet-4-6",
        "claude-opus-4-6",
        "claude-sonnet-4-6",
    ]
    assert abs(sum(a["tollgate.usage.parts.usd"]) - a["tollgate.cost.usd"]) < 1e-12


def test_unknown_usage_fields_and_the_tier_are_named_not_their_values(replay, spans) -> None:  # type: ignore[no-untyped-def]
    a = _span(replay, spans, "anthropic/messages_unknown_usage.yaml").attributes
    assert sorted(a["tollgate.usage.unknown"]) == [
        "hologram_tokens",
        "server_tool_use.code_execution_requests",
    ]
    b = _span(replay, spans, "anthropic/messages_web_search_priority.yaml").attributes
    assert b["tollgate.usage.service_tier"] == "priority" and "tollgate.usage.unknown" not in b


def test_the_tool_calls_asked_for_are_on_the_span_when_there_are_any(replay, spans) -> None:  # type: ignore[no-untyped-def]
    # The GenAI conventions have no count of tool calls: tollgate's own attribute carries it.
    a = _span(replay, spans, "anthropic/messages_tool_use.yaml").attributes
    assert a["tollgate.tool_calls"] == 3  # one server tool (web search) and two client tools
    b = _span(replay, spans, "anthropic/messages_basic.yaml").attributes
    assert "tollgate.tool_calls" not in b
    assert not [k for k in {**a, **b} if k.startswith("gen_ai.") and "tool_call" in k]
