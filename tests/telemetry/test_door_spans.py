"""Spans of the doors without an SDK of their own: @metered functions and tollgate.record()."""

from __future__ import annotations

from typing import Any

import pytest

import tollgate

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.telemetry.conftest import OTel  # noqa: F401


def tollgate_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.instrumentation_scope.name == "tollgate"]


def test_metered_function_span(spans: InMemorySpanExporter) -> None:
    @tollgate.metered(model="gpt-4o-mini", extract_usage=lambda r: ("gpt-4o-mini", r["i"], r["o"]))
    def house(prompt: str) -> dict[str, Any]:
        return {"i": 120, "o": 30}

    with tollgate.track(feature="house"):
        house("hello")
    (span,) = tollgate_spans(spans)
    (record,) = tollgate.config.settings().ledger.records()
    a = span.attributes or {}
    assert span.name == "chat gpt-4o-mini"
    assert (a["gen_ai.request.model"], a["gen_ai.provider.name"]) == ("gpt-4o-mini", "openai")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (120, 30)
    assert a["tollgate.cost.usd"] == record.usd > 0
    assert a["tollgate.tag.feature"] == "house"


def test_model_less_metered_function_span_names_the_model_it_learned(spans: InMemorySpanExporter) -> None:
    @tollgate.metered
    def raw() -> dict[str, Any]:
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}

    raw()
    (span,) = tollgate_spans(spans)
    a = span.attributes or {}
    assert span.name == "chat gpt-4o" and a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.response.model"] == "gpt-4o" and a["gen_ai.usage.input_tokens"] == 10
    assert a["tollgate.cost.usd"] > 0


def test_record_span(spans: InMemorySpanExporter) -> None:
    rec = tollgate.record(
        provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300, feature="batch"
    )
    (span,) = tollgate_spans(spans)
    a = span.attributes or {}
    assert (a["gen_ai.request.model"], a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        "gpt-4o",
        1200,
        300,
    )
    assert a["tollgate.cost.usd"] == rec.usd and a["tollgate.tag.feature"] == "batch"
