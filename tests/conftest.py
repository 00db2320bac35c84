"""Shared fixtures: a clean tollgate per test, and vcrpy replay of recorded HTTP."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

import tollgate

ROOT = pathlib.Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
SHARED_CASSETTES = ROOT.parent / "shared" / "cassettes"


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
        match_on=["method", "scheme", "host", "port", "path", "query"],
        decode_compressed_response=False,
    )

    def use(path: str | pathlib.Path, **options):  # type: ignore[no-untyped-def]
        path = pathlib.Path(path)
        return player.use_cassette(str(path if path.is_absolute() else CASSETTES / path), **options)

    return use


class Sent(list):  # type: ignore[type-arg]
    """JSON bodies of the requests an SDK client actually sent (captured by an httpx event hook)."""

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
    httpx = pytest.importorskip("httpx")
    http = httpx.Client(event_hooks={"request": [sent.hook]})
    return tollgate.instrument(openai.OpenAI(api_key="sk-test", max_retries=0, http_client=http))


@pytest.fixture
def aclient(sent: Sent):  # type: ignore[no-untyped-def]
    openai = pytest.importorskip("openai")
    httpx = pytest.importorskip("httpx")
    """The async twin of ``client``."""
    http = httpx.AsyncClient(event_hooks={"request": [sent.ahook]})
    return tollgate.instrument(openai.AsyncOpenAI(api_key="sk-test", max_retries=0, http_client=http))
