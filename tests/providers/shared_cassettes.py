"""Reading ../shared/cassettes (real recordings from public projects) for conformance tests.

The recordings are not copied into this repository; tests that use them skip when the
folder is absent.
"""

from __future__ import annotations

import csv
import importlib
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


# Providers whose recordings the OpenAI SDK can replay (OpenAI-compatible APIs), and the APIs.
OPENAI_SDK_PROVIDERS = frozenset(
    {"openai", "azure-openai", "mistral", "api.together.ai", "groq", "deepseek", "openrouter"}
)
# Endpoint path suffix -> API, as ../shared/cassettes/parse.py classifies them (first match wins).
OPENAI_ENDPOINTS = (
    ("/chat/completions", "chat"),
    ("/responses", "responses"),
    ("/embeddings", "embeddings"),
    ("/completions", "completions"),
)


def manifest_rows() -> list[dict[str, str]]:
    if not MANIFEST.exists():
        return []
    with MANIFEST.open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def endpoint(uri: str) -> tuple[str, str] | None:
    """(path suffix, API) of an OpenAI-style endpoint, or None for any other request."""
    path = urlsplit(uri).path
    for suffix, api in OPENAI_ENDPOINTS:
        if path.endswith(suffix):
            return suffix, api
    return None


def openai_sdk_cassettes() -> list[pathlib.Path]:
    """Every recording of an OpenAI-compatible API (chat, responses, embeddings, completions)."""
    return [
        SHARED_CASSETTES / row["path"]
        for row in manifest_rows()
        if set(row["provider"].split("|")) <= OPENAI_SDK_PROVIDERS
        and all(api.split("-")[0] in {a for _, a in OPENAI_ENDPOINTS} for api in row["api"].split("|"))
    ]


def openai_chat_cassettes() -> list[pathlib.Path]:
    """The OpenAI and Azure OpenAI chat recordings (for the token-estimate checks)."""
    return [
        SHARED_CASSETTES / row["path"]
        for row in manifest_rows()
        if set(row["provider"].split("|")) <= {"openai", "azure-openai"}
        and all(api.startswith("chat") for api in row["api"].split("|"))
    ]


def exchanges(cassette: pathlib.Path) -> Iterator[Exchange]:
    row = next(r for r in manifest_rows() if SHARED_CASSETTES / r["path"] == cassette)
    data = yaml.load(
        cassette.read_text(), Loader=yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader
    )
    chat = [i for i in data["interactions"] if endpoint(i["request"]["uri"]) is not None]
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
    found = endpoint(uri)
    suffix = found[0] if found else "/chat/completions"
    url = urlsplit(uri)
    if url.hostname and url.hostname.endswith("openai.azure.com"):
        cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
        version = parse_qs(url.query).get("api-version", ["2024-02-01"])[0]
        return cls(
            api_key="test", azure_endpoint=f"{url.scheme}://{url.netloc}", api_version=version, max_retries=0
        )
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    base = f"{url.scheme}://{url.netloc}{url.path.rsplit(suffix, 1)[0]}"
    return cls(api_key="test", base_url=base, max_retries=0)


def resource(client: Any, exchange: Exchange) -> Any:
    """The SDK resource whose ``create`` sends the recorded request."""
    found = endpoint(exchange.uri)
    api = found[1] if found else "chat"
    return {
        "chat": lambda: client.chat.completions,
        "responses": lambda: client.responses,
        "embeddings": lambda: client.embeddings,
        "completions": lambda: client.completions,
    }[api]()


def create_kwargs(openai: Any, exchange: Exchange) -> dict[str, Any]:
    """The recorded body as ``create`` keyword arguments of its resource (unknown keys in extra_body)."""
    found = endpoint(exchange.uri)
    method = {
        "chat": openai.resources.chat.Completions.create,
        "responses": importlib.import_module("openai.resources.responses").Responses.create,
        "embeddings": openai.resources.Embeddings.create,
        "completions": openai.resources.Completions.create,
    }[found[1] if found else "chat"]
    known = set(inspect.signature(method).parameters)
    kwargs = {k: v for k, v in exchange.body.items() if k in known}
    extra = {k: v for k, v in exchange.body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    if "/deployments/" in exchange.uri:  # Azure: the deployment is in the path, not the body
        kwargs["model"] = exchange.uri.split("/deployments/", 1)[1].split("/", 1)[0]
    return kwargs
