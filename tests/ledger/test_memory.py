"""MemoryLedger: the bounded in-process ring buffer, and memory:// URIs."""

from __future__ import annotations

import threading

import pytest

from tollgate.ledger import Ledger, MemoryLedger, open_ledger
from tollgate.request import CallRecord


def rec(id: str, started_at: float = 0.0, **kw: object) -> CallRecord:
    return CallRecord(
        id=id,
        started_at=started_at,
        ended_at=started_at + 1,
        provider="openai",
        operation="chat",
        request_model="gpt-4o",
        **kw,  # type: ignore[arg-type]
    )


def test_records_are_returned_oldest_first_whatever_the_write_order() -> None:
    ledger = MemoryLedger()
    for i, t in enumerate([30.0, 10.0, 20.0, 10.0]):
        ledger.write(rec(f"c{i}", t))
    assert [r.id for r in ledger.records()] == ["c1", "c3", "c2", "c0"]


def test_the_same_objects_come_back() -> None:
    ledger = MemoryLedger()
    record = rec("a", tags={"feature": "search"}, usd=0.5)
    ledger.write(record)
    assert ledger.records()[0] is record


def test_since_is_inclusive_and_until_exclusive() -> None:
    ledger = MemoryLedger()
    for t in (10.0, 20.0, 30.0, 40.0):
        ledger.write(rec(f"t{int(t)}", t))
    assert [r.id for r in ledger.records(since=20.0)] == ["t20", "t30", "t40"]
    assert [r.id for r in ledger.records(until=30.0)] == ["t10", "t20"]
    assert [r.id for r in ledger.records(since=20.0, until=40.0)] == ["t20", "t30"]
    assert ledger.records(since=50.0) == []


def test_oldest_records_fall_out_and_are_counted() -> None:
    ledger = MemoryLedger(maxlen=3)
    for i in range(5):
        ledger.write(rec(f"c{i}", float(i)))
    assert [r.id for r in ledger.records()] == ["c2", "c3", "c4"]
    assert ledger.dropped() == 2
    assert len(ledger) == 3


def test_clear_forgets_records_and_the_drop_count() -> None:
    ledger = MemoryLedger(maxlen=1)
    ledger.write(rec("a"))
    ledger.write(rec("b"))
    ledger.clear()
    assert ledger.records() == []
    assert ledger.dropped() == 0


def test_concurrent_writers_lose_nothing_but_what_overflows() -> None:
    ledger = MemoryLedger(maxlen=10_000)
    threads, per_thread = 8, 5_000
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            ledger.write(rec(f"{n}-{i}", float(i)))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    kept = ledger.records()
    assert len(kept) == 10_000
    assert ledger.dropped() == threads * per_thread - 10_000
    assert len({r.id for r in kept}) == 10_000


@pytest.mark.parametrize("maxlen", [0, -1, 1.5, True, "10"])
def test_bad_maxlen_is_rejected(maxlen: object) -> None:
    with pytest.raises(ValueError, match="maxlen"):
        MemoryLedger(maxlen=maxlen)  # type: ignore[arg-type]


def test_context_manager_and_close_keep_it_readable() -> None:
    with MemoryLedger() as ledger:
        ledger.write(rec("a"))
    assert isinstance(ledger, Ledger)
    assert [r.id for r in ledger.records()] == ["a"]


def test_open_ledger_memory_uris() -> None:
    default = open_ledger("memory://")
    assert isinstance(default, MemoryLedger)
    assert default.maxlen == 20_000
    small = open_ledger("memory://?maxlen=5")
    assert isinstance(small, MemoryLedger)
    assert small.maxlen == 5


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("memory://?maxlen=lots", "maxlen must be an integer"),
        ("memory://?maxlen=0", "maxlen must be a positive int"),
        ("memory://?size=3", "unknown option"),
        ("redis://localhost:6379/0", "unknown ledger URI 'redis://localhost:6379/0'.*memory://.*sqlite:///"),
        ("memory:", "unknown ledger URI"),
        ("sqlite://", "unknown ledger URI"),
        ("", "unknown ledger URI"),
    ],
)
def test_open_ledger_rejects_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_ledger(uri)
