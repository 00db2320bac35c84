"""Reading ../shared/cassettes (real recordings from public projects) for conformance tests.

The recordings are not copied into this repository; tests that use them skip when the
folder is absent.
"""

from __future__ import annotations

import csv
import inspect
import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.conftest import SHARED_CASSETTES

MANIFEST = SHARED_CASSETTES / "MANIFEST.tsv"


@dataclass(frozen=True)
class Exchange:
    """One recorded LLM call and the manifest's usage figures for it ('' where it has none)."""

    cassette: pathlib.Path
    index: int  # position among the cassette's chat calls
    uri: str
    body: dict[str, Any]
    provider: str
    api: str
    model: str
    status: int
    input_tokens: str
    output_tokens: str
    cached_read_tokens: str
    reasoning_tokens: str


def _split(value: str, n: int) -> list[str]:
    parts = value.split("|") if value else [""]
    return parts if len(parts) == n else parts + [""] * (n - len(parts))


def openai_chat_cassettes() -> list[pathlib.Path]:
    if not MANIFEST.exists():
        return []
    with MANIFEST.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        SHARED_CASSETTES / row["path"]
        for row in rows
        if set(row["provider"].split("|")) <= {"openai", "azure-openai"}
        and all(api.startswith("chat") for api in row["api"].split("|"))
    ]


def exchanges(cassette: pathlib.Path) -> Iterator[Exchange]:
    with MANIFEST.open() as f:
        row = next(r for r in csv.DictReader(f, delimiter="\t") if SHARED_CASSETTES / r["path"] == cassette)
    data = yaml.load(
        cassette.read_text(), Loader=yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader
    )
    chat = [i for i in data["interactions"] if "/chat/completions" in i["request"]["uri"]]
    n = len(chat)
    cols = {
        k: _split(row[k], n)
        for k in (
            "provider",
            "api",
            "model",
            "http_status",
            "input_tokens",
            "output_tokens",
            "cached_read_tokens",
            "reasoning_tokens",
        )
    }
    for i, interaction in enumerate(chat):
        body = interaction["request"]["body"]
        yield Exchange(
            cassette=cassette,
            index=i,
            uri=interaction["request"]["uri"],
            body=json.loads(body if isinstance(body, (str, bytes)) else body["string"]),
            provider=cols["provider"][i],
            api=cols["api"][i],
            model=cols["model"][i],
            status=int(cols["http_status"][i]),
            input_tokens=cols["input_tokens"][i],
            output_tokens=cols["output_tokens"][i],
            cached_read_tokens=cols["cached_read_tokens"][i],
            reasoning_tokens=cols["reasoning_tokens"][i],
        )


def client_for(openai: Any, uri: str, *, is_async: bool = False) -> Any:
    """An OpenAI SDK client whose requests land on the recorded ``uri``."""
    url = urlsplit(uri)
    if url.hostname and url.hostname.endswith("openai.azure.com"):
        cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
        version = parse_qs(url.query).get("api-version", ["2024-02-01"])[0]
        return cls(
            api_key="test", azure_endpoint=f"{url.scheme}://{url.netloc}", api_version=version, max_retries=0
        )
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    base = f"{url.scheme}://{url.netloc}{url.path.rsplit('/chat/completions', 1)[0]}"
    return cls(api_key="test", base_url=base, max_retries=0)


def create_kwargs(openai: Any, exchange: Exchange) -> dict[str, Any]:
    """The recorded body as ``chat.completions.create`` keyword arguments (unknown keys in extra_body)."""
    known = set(inspect.signature(openai.resources.chat.Completions.create).parameters)
    kwargs = {k: v for k, v in exchange.body.items() if k in known}
    extra = {k: v for k, v in exchange.body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    if "/deployments/" in exchange.uri:  # Azure: the deployment is in the path, not the body
        kwargs["model"] = exchange.uri.split("/deployments/", 1)[1].split("/", 1)[0]
    return kwargs
