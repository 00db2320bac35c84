"""The ledger interface: where every :class:`~tollgate.request.CallRecord` is written.

A ledger sits on every call's hot path, so ``write`` must be cheap and must never raise into
the caller because storage failed: implementations log to the ``"tollgate"`` logger and count
the loss in ``dropped()`` instead. ``report()`` reads back through ``records()``.
"""

from __future__ import annotations

import abc
import logging
from types import TracebackType
from typing import Self

from tollgate.request import CallRecord

logger = logging.getLogger("tollgate")


class Ledger(abc.ABC):
    """Where call records go. One instance is shared by every thread of a process.

    ``records(since, until)`` selects on ``started_at`` (epoch seconds) with ``since``
    inclusive and ``until`` exclusive, oldest first; everything written before the call is
    visible (read-your-writes). A ledger is a context manager that closes itself.

    >>> from tollgate.ledger import MemoryLedger
    >>> rec = CallRecord(id="c1", started_at=10.0, ended_at=11.0, provider="openai",
    ...                  operation="chat", request_model="gpt-4o")
    >>> with MemoryLedger() as ledger:
    ...     ledger.write(rec)
    ...     [r.id for r in ledger.records(since=10.0)], ledger.dropped()
    (['c1'], 0)
    """

    @abc.abstractmethod
    def write(self, record: CallRecord) -> None:
        """Append one record. Cheap, and never raises because storage failed."""

    @abc.abstractmethod
    def records(self, since: float | None = None, until: float | None = None) -> list[CallRecord]:
        """The records with ``since <= started_at < until`` (either bound optional), oldest first."""

    @abc.abstractmethod
    def dropped(self) -> int:
        """How many records were lost: pushed out of a bounded buffer or failed to persist."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget every record (and reset the ``dropped()`` count)."""

    def flush(self) -> None:  # noqa: B027 -- optional hook: ledgers that buffer override it
        """Persist anything still buffered; a no-op for ledgers that do not buffer."""

    def close(self) -> None:
        """Flush and release resources; the default only flushes."""
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
