"""Builders shared by the Anthropic adapter tests: instrumented clients whose outgoing request
bodies are captured, the messages the constructed cassettes in cassettes/anthropic/ answer,
and a stand-in for the legacy ``completions`` resource that SDK 1.x+ no longer ships."""

from __future__ import annotations

import inspect
import json
from typing import Any

import anthropic
from anthropic._resource import AsyncAPIResource, SyncAPIResource

import tollgate
from tests.conftest import (
    CASSETTES,
    Sent,  # its hooks read httpx2 requests as well as httpx ones
    http_module,
)
from tollgate.pricing import default_table
from tollgate.pricing.table import ModelPrice

SYSTEM = "You are a terse assistant."
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
COUNT = [{"role": "user", "content": "Count from one to five, in words, separated by commas."}]
COUNT_TEXT = "One, two, three, four, five."
SONNET, SONNET_ID = "claude-sonnet-4-6", "claude-sonnet-4-6"
HAIKU, HAIKU_ID = "claude-haiku-4-5", "claude-haiku-4-5-20251001"
PROMPT = "\n\nHuman: What is the capital of France? Answer in one word.\n\nAssistant:"


#: httpx2 under anthropic 2.x, httpx before: what the installed SDK's own client is built on.
HTTP = http_module("anthropic")
#: Whether the installed SDK makes OpenTelemetry spans of its own (``open_telemetry=``, 2.x).
SDK_SPANS = "open_telemetry" in inspect.signature(anthropic.Anthropic).parameters


def _options(options: dict[str, Any]) -> dict[str, Any]:
    if not SDK_SPANS and options.get("open_telemetry") is False:  # no spans of its own to turn off
        options.pop("open_telemetry")
    return options


def make_client(sent: Sent, **options: Any) -> anthropic.Anthropic:
    client = HTTP.Client(event_hooks={"request": [sent.hook]})
    raw = anthropic.Anthropic(api_key="sk-ant-test", max_retries=0, http_client=client, **_options(options))
    return tollgate.instrument(raw)


def make_async_client(sent: Sent, **options: Any) -> anthropic.AsyncAnthropic:
    client = HTTP.AsyncClient(event_hooks={"request": [sent.ahook]})
    raw = anthropic.AsyncAnthropic(
        api_key="sk-ant-test", max_retries=0, http_client=client, **_options(options)
    )
    return tollgate.instrument(raw)


def only_record() -> tollgate.CallRecord:
    records = tollgate.config.settings().ledger.records()
    assert len(records) == 1, records
    return records[0]


def price(model: str) -> ModelPrice:
    p = default_table().lookup(model, "anthropic")
    assert p is not None, model
    return p


def recorded_body(cassette: str, index: int = 0) -> dict[str, Any]:
    """The JSON request body stored in one of our cassettes."""
    import yaml

    data = yaml.safe_load((CASSETTES / cassette).read_text())
    return json.loads(data["interactions"][index]["request"]["body"])  # type: ignore[no-any-return]


# -- legacy Text Completions ------------------------------------------------------------------


class Completion(anthropic.BaseModel):
    """The legacy ``completion`` object (older SDKs' ``anthropic.types.Completion``)."""

    id: str
    completion: str
    model: str
    stop_reason: str | None = None
    type: str = "completion"


class LegacyCompletions(SyncAPIResource):
    """``client.completions`` as SDKs before 1.0 had it: POST /v1/complete."""

    def create(self, *, max_tokens_to_sample: int, model: str, prompt: str, stream: bool = False) -> Any:
        body: dict[str, Any] = {
            "max_tokens_to_sample": max_tokens_to_sample,
            "model": model,
            "prompt": prompt,
        }
        if stream:
            body["stream"] = True
        return self._post(
            "/v1/complete",
            body=body,
            cast_to=Completion,
            stream=stream,
            stream_cls=anthropic.Stream[Completion],
        )


class AsyncLegacyCompletions(AsyncAPIResource):
    async def create(
        self, *, max_tokens_to_sample: int, model: str, prompt: str, stream: bool = False
    ) -> Any:
        body: dict[str, Any] = {
            "max_tokens_to_sample": max_tokens_to_sample,
            "model": model,
            "prompt": prompt,
        }
        if stream:
            body["stream"] = True
        return await self._post(
            "/v1/complete",
            body=body,
            cast_to=Completion,
            stream=stream,
            stream_cls=anthropic.AsyncStream[Completion],
        )


def with_legacy_completions(client: Any) -> Any:
    """``client`` (instrumented) with a ``completions`` resource, as older SDKs had."""
    raw = tollgate.uninstrument(client)
    is_async = isinstance(raw, anthropic.AsyncAnthropic)
    raw.completions = AsyncLegacyCompletions(raw) if is_async else LegacyCompletions(raw)
    return tollgate.instrument(raw)
