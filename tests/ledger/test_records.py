"""``tollgate.records()``: the configured ledger's CallRecords, selected as ``report()`` selects them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tollgate
from tollgate.config import settings
from tollgate.request import CallRecord

NOW = time.time()


def rec(i: int, tenant: str, *, age: float) -> CallRecord:
    return CallRecord(
        id=f"c{i}",
        started_at=NOW - age,
        ended_at=NOW - age + 1,
        provider="openai",
        operation="chat",
        request_model="gpt-4o-mini",
        usd=0.001 * i,
        tags={"tenant": tenant, "feature": "search"},
    )


@pytest.fixture(params=["memory://", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """The configured ledger, memory or SQLite, holding five calls of two tenants over ten days."""
    uri = request.param if request.param == "memory://" else f"sqlite:///{tmp_path / 'ledger.db'}"
    tollgate.configure(ledger=uri)
    for i, (tenant, days) in enumerate(
        [("acme", 10), ("globex", 5), ("acme", 2), ("acme", 1), ("globex", 0)]
    ):
        settings().ledger.write(rec(i, tenant, age=days * 86_400 + 60))
    yield


def ids(records: list[CallRecord]) -> list[str]:
    return [r.id for r in records]


def test_every_record_oldest_first(ledger: None) -> None:
    found = tollgate.records()
    assert ids(found) == ["c0", "c1", "c2", "c3", "c4"]
    assert all(isinstance(r, CallRecord) for r in found)


def test_since_and_until_take_what_report_takes(ledger: None) -> None:
    assert ids(tollgate.records(since="3d")) == ["c2", "c3", "c4"]
    assert ids(tollgate.records(since=timedelta(days=3), until="1d")) == ["c2", "c3"]
    week_ago = datetime.fromtimestamp(NOW - 7 * 86_400, tz=UTC)
    assert ids(tollgate.records(since=week_ago)) == ["c1", "c2", "c3", "c4"]
    assert ids(tollgate.records(until=NOW - 6 * 86_400)) == ["c0"]  # epoch seconds


def test_where_is_report_where(ledger: None) -> None:
    assert ids(tollgate.records(where={"tenant": "acme"})) == ["c0", "c2", "c3"]
    assert ids(tollgate.records(where={"tenant": ["globex", "initech"]})) == ["c1", "c4"]
    assert ids(tollgate.records(where=lambda r: r.usd > 0.0025)) == ["c3", "c4"]
    acme = tollgate.report(where={"tenant": "acme"})
    assert ids(tollgate.records(where={"tenant": "acme"})) == ids(acme.records)


def test_limit_keeps_the_latest(ledger: None) -> None:
    assert ids(tollgate.records(limit=2)) == ["c3", "c4"]
    assert ids(tollgate.records(where={"tenant": "acme"}, limit=2)) == ["c2", "c3"]
    assert ids(tollgate.records(since="3d", limit=10)) == ["c2", "c3", "c4"]


def test_an_unknown_tag_warns_naming_the_tags_seen(ledger: None) -> None:
    with pytest.warns(UserWarning, match=r"no call has a tag 'tenat' \(did you mean 'tenant'\?\)"):
        assert tollgate.records(where={"tenat": "acme"}) == []
    with pytest.warns(UserWarning, match="tags seen: feature, tenant"):
        tollgate.report(group_by=["tenat"])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"limit": 0}, "records(limit=0): a whole number above 0"),
        ({"limit": -5}, "limit=-5"),
        ({"limit": 2.5}, "limit=2.5"),
        ({"limit": True}, "limit=True"),
        ({"since": "last tuesday"}, "cannot read 'last tuesday' as a time"),
        ({"until": [1]}, "cannot read [1] as a time"),
        ({"where": "tenant=acme"}, "where='tenant=acme': give a dict of tag name to value"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError) as e:
        tollgate.records(**kwargs)  # type: ignore[arg-type]
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_records_is_public() -> None:
    assert "records" in tollgate.__all__ and tollgate.records.__doc__
