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
