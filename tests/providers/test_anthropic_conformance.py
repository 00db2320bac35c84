"""Replays every Anthropic recording in ../shared/cassettes (MANIFEST.tsv rows whose provider
is "anthropic": apis messages, messages-stream, anthropic-complete) through
``instrument(anthropic client)`` and checks tollgate's records against the manifest.

The manifest copies Anthropic's own fields: its ``input_tokens`` excludes the cache, while
tollgate's includes cache reads and writes (see tollgate.request). The legacy /v1/complete
API reports no usage: tollgate estimates and says so. SDK 1.x+ has no ``completions``
resource, so that call goes through a stand-in of the old one (anthropic_helpers.py).
"""

from __future__ import annotations

import csv
import inspect
import json
import pathlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import tollgate
from tests.conftest import SHARED_CASSETTES

anthropic = pytest.importorskip("anthropic")
pytest.importorskip("httpx2")

from tests.providers.anthropic_helpers import with_legacy_completions  # noqa: E402

pytestmark = [
    pytest.mark.shared,
    # Some recordings use models the SDK now warns about; that is not what is tested here.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    # claude-2.1 (legacy /v1/complete) is not in the price table: recorded with its tokens and $0.
    pytest.mark.filterwarnings("ignore:tollgate has no price for model 'claude-2.1'"),
]

MANIFEST = SHARED_CASSETTES / "MANIFEST.tsv"
ENDPOINTS = ("/v1/messages", "/v1/complete")
COLUMNS = ("api", "model", "http_status", "input_tokens", "output_tokens")
COLUMNS += ("cached_read_tokens", "cache_creation_tokens")


@dataclass(frozen=True)
class Call:
    """One recorded call and the manifest's figures for it ('' where it has none)."""

    cassette: pathlib.Path
    index: int
    uri: str
    body: dict[str, Any]
    api: str
    model: str
    status: int
    input_tokens: str
    output_tokens: str
    cache_read: str
    cache_creation: str

    @property
    def where(self) -> str:
        return f"{self.cassette.name} call {self.index}"


def _rows() -> list[dict[str, str]]:
    if not MANIFEST.exists():
        return []
    with MANIFEST.open() as f:
        return [
            r for r in csv.DictReader(f, delimiter="\t") if set(r["provider"].split("|")) == {"anthropic"}
        ]


ROWS = _rows()


def _column(row: dict[str, str], name: str, n: int) -> list[str]:
    parts = row[name].split("|") if row[name] else [""]
    return parts + [""] * (n - len(parts))


def calls_of(row: dict[str, str]) -> list[Call]:
    cassette = SHARED_CASSETTES / row["path"]
    data = yaml.load(cassette.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    recorded = [i for i in data["interactions"] if urlsplit(i["request"]["uri"]).path in ENDPOINTS]
    n = len(recorded)
    cols = {k: _column(row, k, n) for k in COLUMNS}
    out = []
    for i, interaction in enumerate(recorded):
        body = interaction["request"]["body"]
        out.append(
            Call(
                cassette=cassette,
                index=i,
                uri=interaction["request"]["uri"],
                body=json.loads(body if isinstance(body, (str, bytes)) else body["string"]),
                api=cols["api"][i],
                model=cols["model"][i],
                status=int(cols["http_status"][i]),
                input_tokens=cols["input_tokens"][i],
                output_tokens=cols["output_tokens"][i],
                cache_read=cols["cached_read_tokens"][i],
                cache_creation=cols["cache_creation_tokens"][i],
            )
        )
    return out


def client_for(uri: str) -> Any:
    url = urlsplit(uri)
    raw = anthropic.Anthropic(api_key="test", base_url=f"{url.scheme}://{url.netloc}", max_retries=0)
    return with_legacy_completions(tollgate.instrument(raw))


def send(client: Any, call: Call) -> None:
    """Make the recorded call with the SDK (the body gives the keyword arguments) and read it all."""
    if call.api == "anthropic-complete":
        client.completions.create(**call.body)
        return
    known = set(inspect.signature(anthropic.resources.Messages.create).parameters)
    kwargs = {k: v for k, v in call.body.items() if k in known}
    extra = {k: v for k, v in call.body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    result = client.messages.create(**kwargs)
    if kwargs.get("stream"):
        for _ in result:
            pass


def test_shared_cassettes_found_or_skipped() -> None:
    if not ROWS:
        pytest.skip("../shared/cassettes is absent")
    apis = {api for row in ROWS for api in row["api"].split("|")}
    assert apis == {"messages", "messages-stream", "anthropic-complete"}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: pathlib.Path(r["path"]).name[-70:])
def test_recorded_usage_matches_manifest(row: dict[str, str], replay) -> None:  # type: ignore[no-untyped-def]
    calls = calls_of(row)
    assert calls, row["path"]
    with replay(calls[0].cassette):
        for call in calls:
            try:
                send(client_for(call.uri), call)
            except anthropic.APIStatusError as exc:
                assert exc.status_code == call.status, call.where
    records = tollgate.config.settings().ledger.records()
    assert len(records) == len(calls)
    for call, record in zip(calls, records, strict=True):
        if call.status >= 400:
            assert record.status == "error" and record.usd == 0.0, call.where
            continue
        assert record.status == "ok", call.where
        assert record.stream is (call.api == "messages-stream"), call.where
        assert record.response_model == call.model, call.where  # the model billed is the one that answered
        if call.input_tokens == "":  # the API sent no usage (legacy /v1/complete): estimated, and flagged
            assert record.estimated and record.usage.input_tokens > 0, call.where
            continue
        read, creation = int(call.cache_read or 0), int(call.cache_creation or 0)
        u = record.usage
        assert not record.estimated, call.where
        assert not record.usage.unknown, call.where  # every field of real traffic is known
        assert u.input_tokens == int(call.input_tokens) + read + creation, call.where
        assert u.output_tokens == int(call.output_tokens), call.where
        assert (u.cache_read_tokens, u.cache_write_tokens) == (read, creation), call.where
        assert record.priced and record.usd > 0, call.where
