"""Replays every real recording of an OpenAI-compatible API in ../shared/cassettes (OpenAI,
Azure OpenAI, Mistral, Together: chat, Responses, embeddings, legacy completions; streamed or
not; errors) through ``instrument(client)`` and checks tollgate's records against the
manifest's usage numbers."""

from __future__ import annotations

import pathlib

import pytest

import tollgate
from tests.providers.shared_cassettes import (
    client_for,
    create_kwargs,
    exchanges,
    openai_sdk_cassettes,
    resource,
)

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.shared

CASSETTES = openai_sdk_cassettes()


def test_shared_cassettes_found_or_skipped() -> None:
    if not CASSETTES:
        pytest.skip("../shared/cassettes is absent")
    assert len(CASSETTES) >= 30


@pytest.mark.parametrize("cassette", CASSETTES, ids=lambda p: p.name[-70:])
def test_recorded_usage_matches_manifest(cassette: pathlib.Path, replay) -> None:  # type: ignore[no-untyped-def]
    calls = list(exchanges(cassette))
    with replay(cassette):
        for exchange in calls:
            client = tollgate.instrument(client_for(openai, exchange.uri))
            kwargs = create_kwargs(openai, exchange)
            try:
                result = resource(client, exchange).create(**kwargs)
                if kwargs.get("stream"):
                    for _ in result:
                        pass
            except openai.APIStatusError as exc:
                assert exc.status_code == exchange.status
    records = tollgate.config.settings().ledger.records()
    assert len(records) == len(calls)
    for exchange, record in zip(calls, records, strict=True):
        where = f"{cassette.name} call {exchange.index}"
        if exchange.status >= 400:
            assert record.status == "error", where
            assert record.usd == 0.0 and record.usage.total_tokens == 0, where
            assert f"HTTP {exchange.status}" in (record.error or ""), where
            continue
        assert record.status == "ok", where
        assert record.response_model == exchange.model, where  # the model billed is the one that answered
        if exchange.input_tokens == "":  # the server sent no usage: tollgate estimates and says so
            assert record.estimated, where
            assert record.usage.input_tokens > 0 and record.usage.output_tokens > 0, where
            continue
        assert not record.estimated, where
        assert record.usage.input_tokens == int(exchange.input_tokens), where
        assert record.usage.output_tokens == int(exchange.output_tokens or 0), where  # embeddings: none
        assert record.usage.cache_read_tokens == int(exchange.cached_read_tokens or 0), where
        assert record.usage.reasoning_tokens == int(exchange.reasoning_tokens or 0), where
        assert record.priced and record.usd > 0, where
        assert not record.usage.unknown, where  # every field of real traffic is known
