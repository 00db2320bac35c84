"""Shared fixtures: a clean tollgate per test, and vcrpy replay of recorded HTTP."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

import tollgate

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: An environment with no API key and no proxy, for running the examples as a user would offline.
OFFLINE_ENV = {"PATH": "/usr/bin:/bin", "NO_PROXY": "*", "HOME": "/nonexistent"}
CASSETTES = ROOT / "cassettes"
SHARED_CASSETTES = ROOT.parent / "shared" / "cassettes"


def http_module(sdk: str):  # type: ignore[no-untyped-def]
    """``httpx`` or ``httpx2``: whatever the installed SDK's own default client is built on
    (openai 3.x and anthropic 2.x run on httpx2), so tests build their transports with it.

    openai and anthropic name it through ``DefaultHttpxClient``; google-genai picks a default
    backend of its own and takes clients of either."""
    import importlib

    if sdk == "gemini":
        from google.genai import _api_client

        return importlib.import_module(getattr(_api_client, "_DEFAULT_HTTP_CLIENT_BACKEND", "httpx"))
    from tollgate.demo import http_library

    return http_library(sdk)


def run_python(*args: str, timeout: float = 120, **env: str) -> str:
    """Run ``python *args`` from the repository root, offline; its stdout (it must succeed)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**OFFLINE_ENV, **env},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout


@pytest.fixture(autouse=True)
def clean_tollgate() -> Iterator[None]:
    tollgate.reset()
    yield
    tollgate.reset()


@pytest.fixture
def replay():  # type: ignore[no-untyped-def]
    """``with replay("openai/chat_basic.yaml"): ...`` plays a cassette; nothing may hit the network."""
    vcr = pytest.importorskip("vcr")
    player = vcr.VCR(
        record_mode="none",
        match_on=["method", "scheme", "host", "port", "path", "query_but_beta"],
        decode_compressed_response=False,
    )
    # anthropic 1.x asked for beta endpoints with ?beta=true; 2.x sends no query (a header only).
    player.register_matcher(
        "query_but_beta",
        lambda r1, r2: {*r1.query} - {("beta", "true")} == {*r2.query} - {("beta", "true")},
    )

    def use(path: str | pathlib.Path, **options):  # type: ignore[no-untyped-def]
        path = pathlib.Path(path)
        return player.use_cassette(str(path if path.is_absolute() else CASSETTES / path), **options)

    return use


class Sent(list):  # type: ignore[type-arg]
    """JSON bodies of the requests an SDK client actually sent (captured by an httpx or httpx2
    event hook)."""

    def hook(self, request) -> None:  # type: ignore[no-untyped-def]
        import json

        self.append(json.loads(request.read()))

    async def ahook(self, request) -> None:  # type: ignore[no-untyped-def]
        self.hook(request)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def client(sent: Sent):  # type: ignore[no-untyped-def]
    """An instrumented sync OpenAI client whose outgoing request bodies land in ``sent``."""
    openai = pytest.importorskip("openai")
    http = http_module("openai").Client(event_hooks={"request": [sent.hook]})
    return tollgate.instrument(openai.OpenAI(api_key="sk-test", max_retries=0, http_client=http))


@pytest.fixture
def aclient(sent: Sent):  # type: ignore[no-untyped-def]
    """The async twin of ``client``."""
    openai = pytest.importorskip("openai")
    http = http_module("openai").AsyncClient(event_hooks={"request": [sent.ahook]})
    return tollgate.instrument(openai.AsyncOpenAI(api_key="sk-test", max_retries=0, http_client=http))


@pytest.fixture
def claude(sent: Sent):  # type: ignore[no-untyped-def]
    """An instrumented sync Anthropic client whose outgoing request bodies land in ``sent``."""
    pytest.importorskip("anthropic")
    from tests.providers.anthropic_helpers import make_client

    return make_client(sent)


@pytest.fixture
def aclaude(sent: Sent):  # type: ignore[no-untyped-def]
    """The async twin of ``claude``."""
    pytest.importorskip("anthropic")
    from tests.providers.anthropic_helpers import make_async_client

    return make_async_client(sent)
