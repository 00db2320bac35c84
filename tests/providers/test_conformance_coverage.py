"""Every row of ../shared/cassettes/MANIFEST.tsv is replayed by one conformance test, or is
named here as out of reach of ``instrument(client)``, so a row can never be skipped silently."""

from __future__ import annotations

import pytest

from tests.providers import test_anthropic_conformance, test_gemini_conformance
from tests.providers.shared_cassettes import SHARED_CASSETTES, manifest_rows, openai_sdk_cassettes

pytestmark = pytest.mark.shared

# Recordings of SDKs tollgate does not instrument (boto3's Bedrock runtime, Cohere's SDK): the
# "other doors" (tollgate.metered / tollgate.record) are how those calls are counted.
NOT_AN_INSTRUMENT_SURFACE = frozenset({"bedrock", "cohere"})


def test_every_manifest_row_is_replayed_or_named() -> None:
    rows = manifest_rows()
    if not rows:
        pytest.skip("../shared/cassettes is absent")
    covered = {str(p) for p in openai_sdk_cassettes()}
    covered |= {str(SHARED_CASSETTES / r["path"]) for r in test_anthropic_conformance.ROWS}
    covered |= {str(SHARED_CASSETTES / r["path"]) for r in test_gemini_conformance.ROWS}
    unaccounted = [
        r["path"]
        for r in rows
        if str(SHARED_CASSETTES / r["path"]) not in covered
        and not set(r["provider"].split("|")) <= NOT_AN_INSTRUMENT_SURFACE
    ]
    assert unaccounted == []
    # What the three conformance tests replay, for the record: 50 of the 60 rows.
    assert len(covered) == len(rows) - sum(
        set(r["provider"].split("|")) <= NOT_AN_INSTRUMENT_SURFACE for r in rows
    )
