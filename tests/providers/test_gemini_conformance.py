"""Replays every real Gemini and Vertex AI recording in ../shared/cassettes through
``instrument(google.genai.Client)`` and checks tollgate's records against the manifest.

The manifest holds Gemini's own figures: input = ``promptTokenCount``, output =
``candidatesTokenCount`` (thoughts excluded), reasoning = ``thoughtsTokenCount``, and
``usage_extra`` carries ``toolUsePromptTokenCount``. tollgate's convention counts tool-use
prompt tokens as input and thoughts as output, so it must record input = prompt + tool use and
output = candidates + thoughts.

Two Vertex recordings (opentelemetry-instrumentation-vertexai) were made with the older
``vertexai`` SDK, which asks for int-encoded enums (``?$alt=json;enum-encoding=int``, so
``"finishReason": 1``): google-genai cannot parse those responses. For them, the recorded
response body is read with the adapter's own :func:`tollgate.providers.gemini.response_found`
and compared the same way. The error recording of that set has no enums and replays through
the SDK. Requests are matched without their query, which that older SDK set differently.
"""

from __future__ import annotations

import csv
import json
import pathlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import tollgate
from tests.conftest import SHARED_CASSETTES
from tollgate.providers import gemini

genai = pytest.importorskip("google.genai")
httpx = pytest.importorskip("httpx")
vcr = pytest.importorskip("vcr")
from google.genai import errors, types  # noqa: E402

pytestmark = pytest.mark.shared

MANIFEST = SHARED_CASSETTES / "MANIFEST.tsv"
PROVIDERS = {"gemini", "vertex-ai"}
APIS = {"generateContent", "streamGenerateContent", "generateContent-error"}
# Request body keys that google-genai takes inside ``config`` (it accepts the wire's camelCase).
CONFIG_KEYS = ("systemInstruction", "tools", "toolConfig", "safetySettings", "cachedContent", "labels")


@dataclass(frozen=True)
class Exchange:
    """One recorded generateContent call and the manifest's figures for it."""

    cassette: pathlib.Path
    uri: str
    request: dict[str, Any]
    response: str
    api: str
    model: str
    status: int
    input_tokens: int
    output_tokens: int
    cached_read_tokens: int
    reasoning_tokens: int
    tool_use_tokens: int

    @property
    def replayable(self) -> bool:
        """False for a success body in int-encoded enums, which google-genai cannot parse."""
        return not (self.status < 400 and "enum-encoding%3Dint" in self.uri)


def _int(value: str) -> int:
    return int(value) if value else 0


def _rows() -> list[dict[str, str]]:
    if not MANIFEST.exists():
        return []
    with MANIFEST.open() as f:
        return [
            row
            for row in csv.DictReader(f, delimiter="\t")
            if set(row["provider"].split("|")) <= PROVIDERS and set(row["api"].split("|")) <= APIS
        ]


def _body(value: Any) -> Any:
    """A vcrpy body: a string, or ``{"string": ...}`` (text, or bytes for gzip)."""
    return value["string"] if isinstance(value, dict) else value


def exchanges(row: dict[str, str]) -> list[Exchange]:
    path = SHARED_CASSETTES / row["path"]
    data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    calls = [i for i in data["interactions"] if "enerateContent" in i["request"]["uri"]]

    def column(name: str) -> list[str]:  # one value per call ('' where the manifest has none)
        values = (row[name] or "").split("|")
        return values + [""] * (len(calls) - len(values))

    out = []
    for i, call in enumerate(calls):
        extra = dict(p.split("=", 1) for p in column("usage_extra")[i].split(";") if "=" in p)
        response = _body(call["response"]["body"])
        out.append(
            Exchange(
                cassette=path,
                uri=call["request"]["uri"],
                request=json.loads(_body(call["request"]["body"])),
                response=response if isinstance(response, str) else "",  # gzip bytes: replayed, not read
                api=column("api")[i],
                model=column("model")[i],
                status=int(column("http_status")[i]),
                input_tokens=_int(column("input_tokens")[i]),
                output_tokens=_int(column("output_tokens")[i]),
                cached_read_tokens=_int(column("cached_read_tokens")[i]),
                reasoning_tokens=_int(column("reasoning_tokens")[i]),
                tool_use_tokens=_int(extra.get("toolUsePromptTokenCount", "")),
            )
        )
    return out


ROWS = _rows()


def client_for(uri: str) -> Any:
    """An instrumented google-genai client whose requests land on the recorded ``uri``."""
    url = urlsplit(uri)
    segments = url.path.strip("/").split("/")
    http = types.HttpOptions(api_version=segments[0], httpx_client=httpx.Client())
    if (url.hostname or "").endswith("aiplatform.googleapis.com"):
        from google.oauth2.credentials import Credentials

        project = segments[segments.index("projects") + 1]
        location = segments[segments.index("locations") + 1]
        client = genai.Client(
            vertexai=True,
            project=project,
            location=location,
            credentials=Credentials(token="test-token"),
            http_options=http,
        )
    else:
        client = genai.Client(api_key="test", http_options=http)
    return tollgate.instrument(client)


def call_kwargs(exchange: Exchange) -> dict[str, Any]:
    """The recorded request body as ``generate_content`` keyword arguments."""
    body = exchange.request
    config = dict(body.get("generationConfig") or {})
    config.update({key: body[key] for key in CONFIG_KEYS if key in body})
    model = urlsplit(exchange.uri).path.rsplit("/models/", 1)[1].split(":", 1)[0]
    return {"model": model, "contents": body["contents"], "config": config or None}


def test_shared_cassettes_found_or_skipped() -> None:
    if not ROWS:
        pytest.skip("../shared/cassettes is absent")
    assert len(ROWS) >= 9
    assert sum(len(exchanges(row)) for row in ROWS) == sum(len(row["api"].split("|")) for row in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["path"].rsplit("__", 1)[-1][-60:])
def test_recorded_usage_matches_manifest(row: dict[str, str]) -> None:
    calls = exchanges(row)
    player = vcr.VCR(record_mode="none", match_on=["method", "scheme", "host", "port", "path"])
    replayed = [e for e in calls if e.replayable]
    with player.use_cassette(str(calls[0].cassette), allow_playback_repeats=True):
        for exchange in replayed:
            client = client_for(exchange.uri)
            kwargs = call_kwargs(exchange)
            try:
                if exchange.api == "streamGenerateContent":
                    for _ in client.models.generate_content_stream(**kwargs):
                        pass
                else:
                    client.models.generate_content(**kwargs)
            except errors.APIError as exc:
                assert exc.code == exchange.status
    records = tollgate.config.settings().ledger.records()
    assert len(records) == len(replayed)
    for exchange, record in zip(replayed, records, strict=True):
        where = f"{exchange.cassette.name}"
        assert record.provider == ("vertex_ai" if "aiplatform" in exchange.uri else "gemini"), where
        if exchange.status >= 400:
            assert record.status == "error", where
            assert record.usd == 0.0 and record.usage.total_tokens == 0, where
            assert str(exchange.status) in (record.error or ""), where
            continue
        assert record.status == "ok" and not record.estimated, where
        assert record.response_model == exchange.model, where
        assert_usage(record.usage, exchange, where)
        assert record.priced and record.usd > 0, where
        assert not record.usage.unknown, where  # every field of real traffic is known
    for exchange in calls:
        if not exchange.replayable:  # parsed directly: see the module doc
            found = gemini.response_found(json.loads(exchange.response))
            assert found.usage is not None and found.model == exchange.model
            assert_usage(found.usage, exchange, f"{exchange.cassette.name} (parsed)")


def assert_usage(usage: tollgate.Usage, exchange: Exchange, where: str) -> None:
    assert usage.input_tokens == exchange.input_tokens + exchange.tool_use_tokens, where
    assert usage.output_tokens == exchange.output_tokens + exchange.reasoning_tokens, where
    assert usage.reasoning_tokens == exchange.reasoning_tokens, where
    assert usage.cache_read_tokens == exchange.cached_read_tokens, where
