"""An in-process ledger: a bounded ring buffer of the latest records."""

from __future__ import annotations

import threading
from collections import deque

from tollgate.ledger.base import Ledger
from tollgate.request import CallRecord


class MemoryLedger(Ledger):
    """Keeps the latest ``maxlen`` records in memory; older ones fall out and are counted.

    Records are kept as the very objects written (no copy). Thread-safe. The default bound,
    20,000 records (about 10 MB), keeps a long-running process's memory flat; reports over a
    longer history want the SQLite ledger.

    >>> ledger = MemoryLedger(maxlen=2)
    >>> for i in range(3):
    ...     ledger.write(CallRecord(id=f"c{i}", started_at=float(i), ended_at=float(i),
    ...                             provider="openai", operation="chat", request_model="gpt-4o"))
    >>> [r.id for r in ledger.records()], ledger.dropped()
    (['c1', 'c2'], 1)
    """

    def __init__(self, maxlen: int = 20_000) -> None:
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"MemoryLedger maxlen must be a positive int, got {maxlen!r}")
        self.maxlen = maxlen
        self._buffer: deque[CallRecord] = deque(maxlen=maxlen)
        # The deque is thread-safe by itself; the lock only keeps the drop count exact.
        self._lock = threading.Lock()
        self._dropped = 0

    def write(self, record: CallRecord) -> None:
        with self._lock:
            if len(self._buffer) == self.maxlen:
                self._dropped += 1
            self._buffer.append(record)

    def records(self, since: float | None = None, until: float | None = None) -> list[CallRecord]:
        with self._lock:
            found = list(self._buffer)
        if since is not None:
            found = [r for r in found if r.started_at >= since]
        if until is not None:
            found = [r for r in found if r.started_at < until]
        # Records arrive in the order calls *ended*; sort is stable, so ties keep write order.
        found.sort(key=lambda r: r.started_at)
        return found

    def dropped(self) -> int:
        return self._dropped

    def clear(self) -> None:
        with self._lock:
            self._buffer.clear()
            self._dropped = 0

    def __len__(self) -> int:
        return len(self._buffer)

    def __repr__(self) -> str:
        return f"MemoryLedger(maxlen={self.maxlen}, records={len(self._buffer)}, dropped={self._dropped})"
