"""Shared by the Gemini tests: instrumented google-genai clients whose outgoing requests are
captured, and small readers of the ledger and the price table.

google-genai 3.4 sends through httpx2 unless it is handed httpx clients; vcrpy patches httpx,
so every client here is given httpx clients (whose event hooks capture what went on the wire).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

import tollgate
from tollgate.pricing import ModelPrice, default_table

genai = pytest.importorskip("google.genai")
httpx = pytest.importorskip("httpx")

from google.genai import types  # noqa: E402

PROJECT, LOCATION = "tollgate-test", "us-central1"
GEMINI_HOST = "generativelanguage.googleapis.com"
VERTEX_HOST = f"{LOCATION}-aiplatform.googleapis.com"

CAPITAL = "Name the capital of France in one word."
TERSE = "You are a terse assistant."
COUNT = "Count from one to five, in words, separated by commas."
PRIMES = "How many prime numbers are there below 30? Answer with the number only."
SEA = "Write a short paragraph about the sea."


@dataclass(frozen=True)
class Request:
    """One request the SDK sent: its URL and JSON body."""

    url: str
    body: dict[str, Any]

    @property
    def model(self) -> str:
        """The model named in the URL path (``.../models/{model}:generateContent``)."""
        return self.url.rsplit("/models/", 1)[1].split(":", 1)[0]


class Wire(list[Request]):
    """The requests a client sent, captured by httpx event hooks."""

    def hook(self, request: Any) -> None:
        content = request.read()
        self.append(Request(str(request.url), json.loads(content) if content else {}))

    async def ahook(self, request: Any) -> None:
        self.hook(request)

    def http_options(self, **options: Any) -> Any:
        return types.HttpOptions(
            httpx_client=httpx.Client(event_hooks={"request": [self.hook]}),
            httpx_async_client=httpx.AsyncClient(event_hooks={"request": [self.ahook]}),
            **options,
        )


def gemini_client(wire: Wire, *, instrumented: bool = True) -> Any:
    """A Gemini Developer API client (api_key auth)."""
    # The cassettes hold /v1 paths, google-genai 3.x's default; 1.x defaulted to /v1beta.
    client = genai.Client(api_key="test", http_options=wire.http_options(api_version="v1"))
    return tollgate.instrument(client) if instrumented else client


def vertex_client(wire: Wire) -> Any:
    """A Vertex AI client; a static OAuth token stands in for Google credentials (no network)."""
    from google.oauth2.credentials import Credentials

    client = genai.Client(
        vertexai=True,
        project=PROJECT,
        location=LOCATION,
        credentials=Credentials(token="test-token"),
        http_options=wire.http_options(),
    )
    return tollgate.instrument(client)


def records() -> list[tollgate.CallRecord]:
    return list(tollgate.config.settings().ledger.records())


def only_record() -> tollgate.CallRecord:
    found = records()
    assert len(found) == 1, found
    return found[0]


def price(model: str, provider: str = "gemini") -> ModelPrice:
    p = default_table().lookup(model, provider)
    assert p is not None and p.input is not None and p.output is not None, model
    return p


def estimate_of(kwargs: dict[str, Any], provider: str = "gemini", *, stream: bool = False) -> int:
    """The pre-flight input estimate tollgate makes for ``generate_content(**kwargs)``."""
    from tollgate.providers import gemini

    request = gemini.generate_request(kwargs, provider, (None, None), stream=stream)
    return tollgate.estimate_request(request, price(request.model, provider)).input_tokens


def text_of(chunks: list[Any]) -> str:
    return "".join(c.text or "" for c in chunks)
