"""What a ledger that writes to a database shares: records queued in memory and written in
batches by a daemon thread, so no call waits on storage.

``write()`` only appends to a queue; the writer thread takes up to ``batch_size`` records at a
time and hands them to the subclass's ``_insert`` (one transaction each), every
``flush_interval`` seconds. ``flush()`` returns once everything written before it was handed
over (committed, or counted in ``dropped()``); ``close()`` stops the thread and flushes. Every
loss is counted and logged (at most once per 10 s, so a stuck database cannot flood the log),
never raised into a call. Ledgers still open at a normal interpreter exit are flushed and
closed; after a fork the child drops the parent's queue and connection (the parent writes
them) and starts its own writer.

A subclass sets its own attributes, then calls ``_start(...)``; it implements ``_connect``,
``_insert``, ``_disconnect``, ``records`` and ``clear``, and may do background work in
``_idle`` (called by the writer when the queue is empty).
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from tollgate.ledger.base import Ledger, logger
from tollgate.request import CallRecord

Row = tuple[Any, ...]
_LOG_EVERY = 10.0  # seconds between two "records lost" log lines
_OPEN: set[BatchedLedger] = set()  # strong references: atexit must flush ledgers the app forgot to close
_OPEN_LOCK = threading.Lock()
_ABANDONED: list[Any] = []  # connections inherited across a fork: never used, never closed


class BatchedLedger(Ledger):
    """A ledger whose records a writer thread inserts in batches (see the module)."""

    #: Where the records go, for messages: a path, or a URL without its password.
    label: str

    def _start(self, *, flush_interval: float, batch_size: int, max_pending: int, timeout: float) -> None:
        """Check the options, connect (raising ``ValueError`` for a database that cannot be
        used), start the writer thread."""
        kind = type(self).__name__
        for name, value in (("flush_interval", flush_interval), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{kind} {name} must be > 0, got {value!r}")
        for name, count in (("batch_size", batch_size), ("max_pending", max_pending)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{kind} {name} must be a positive int, got {count!r}")
        self._flush_interval = float(flush_interval)
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._timeout = float(timeout)
        self._closed = False
        self._dropped = 0
        self._last_log: dict[str, float] = {}
        self._pending: deque[CallRecord] = deque()
        self._lock = threading.Lock()  # owns the connection; held for a whole batch or query
        self._drop_lock = threading.Lock()
        self._conn: Any = self._connect()
        self._start_writer()
        with _OPEN_LOCK:
            _OPEN.add(self)

    # -- what a subclass provides ---------------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new connection, the schema ready; ``ValueError`` naming the cause when impossible."""

    @abc.abstractmethod
    def _insert(self, batch: list[CallRecord]) -> None:
        """Commit ``batch`` in one transaction (``_lock`` held); count what cannot be stored
        with ``_lose``. Never raises for a storage failure."""

    @abc.abstractmethod
    def _disconnect(self, conn: Any) -> None:
        """Close ``conn``."""

    def _idle(self) -> bool:
        """Background work while the queue is empty; True to be called again at once."""
        return False

    # -- the hot path -------------------------------------------------------------------------

    def write(self, record: CallRecord) -> None:
        # No lock: deque.append is atomic, and the bound may be overshot by a few racing threads.
        if self._closed or len(self._pending) >= self._max_pending:
            self._lose(1, "the ledger is closed" if self._closed else "the write queue is full")
            return
        self._pending.append(record)

    # -- housekeeping ---------------------------------------------------------------------------

    def dropped(self) -> int:
        return self._dropped

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        """The ledger's connection to read with, once everything written before is committed
        (held by one reader at a time, the writer waiting)."""
        self._check_open()
        self.flush()
        with self._lock:
            yield self._connection()

    def flush(self) -> None:
        """Commit everything written before this call, then return: a record written before is
        now stored, unless ``dropped()`` grew (failures are logged and counted, never raised)."""
        self._drain()

    def close(self) -> None:
        """Stop the writer, insert what is queued, and close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._drain()
        with self._lock:
            if self._conn is not None:
                try:
                    self._disconnect(self._conn)
                finally:
                    self._conn = None
            if self._pending:  # appended by a write() that raced this close()
                self._lose(len(self._pending), "written while the ledger was closing")
                self._pending.clear()
        with _OPEN_LOCK:
            _OPEN.discard(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pending={len(self._pending)}"
        return f"{type(self).__name__}({self.label!r}, {state}, dropped={self._dropped})"

    # -- internals ------------------------------------------------------------------------------

    def _connection(self) -> Any:
        """The open connection (opened lazily in a forked child); call with ``_lock`` held."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"ledger {self.label!r} is closed")

    def _start_writer(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tollgate-ledger-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        busy = True
        while not self._stop.wait(0.0 if busy else self._flush_interval):
            self._drain()
            busy = False
            if not self._pending:
                try:
                    busy = self._idle()
                except Exception:  # the writer thread must survive anything
                    logger.exception("tollgate ledger %s: unexpected error in the background", self.label)

    def _drain(self) -> None:
        try:
            with self._lock:
                while self._pending:
                    batch: list[CallRecord] = []
                    popleft = self._pending.popleft
                    try:
                        for _ in range(self._batch_size):
                            batch.append(popleft())
                    except IndexError:
                        pass
                    try:
                        self._insert(batch)
                    except Exception as exc:  # never lose a record without counting it
                        self._lose(len(batch), f"unexpected error while writing: {exc!r}")
        except Exception:  # the writer thread must survive anything
            logger.exception("tollgate ledger %s: unexpected error while writing", self.label)

    def _rows(
        self, batch: list[CallRecord], to_row: Callable[[CallRecord], tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """The rows of ``batch``; a record that cannot be made one is counted lost."""
        rows: list[Row] = []
        for record in batch:
            try:
                rows.append(to_row(record))
            except Exception as exc:
                self._lose(1, f"record {getattr(record, 'id', None)!r} cannot be stored: {exc!r}")
        return rows

    def _lose(self, count: int, reason: str) -> None:
        with self._drop_lock:
            self._dropped += count
            total = self._dropped
            should_log = self._may_log("lost")
        if should_log:
            logger.error(
                "tollgate ledger %s lost %d record(s): %s (%d lost so far)", self.label, count, reason, total
            )

    def _may_log(self, kind: str) -> bool:
        """True at most once per 10 seconds for each kind of line: a stuck database must not
        flood the log."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -_LOG_EVERY) < _LOG_EVERY:
            return False
        self._last_log[kind] = now
        return True

    def _reset_after_fork(self) -> None:
        # The parent's writer thread did not survive the fork and its lock may be held forever.
        # A connection must not be used across a fork: abandon it without closing (closing
        # could disturb the parent's locks and files or its server session) and reopen lazily.
        # The queued records are the parent's to write.
        if self._conn is not None:
            _ABANDONED.append(self._conn)
        self._conn = None
        self._lock = threading.Lock()
        self._drop_lock = threading.Lock()
        self._pending = deque()
        self._dropped = 0
        if not self._closed:
            self._start_writer()


def _close_all() -> None:
    with _OPEN_LOCK:
        ledgers = list(_OPEN)
    for ledger in ledgers:
        try:
            ledger.close()
        except Exception:
            logger.exception("tollgate ledger %s: could not close at exit", ledger.label)


def _after_fork_in_child() -> None:
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()
    for ledger in list(_OPEN):
        ledger._reset_after_fork()
    mp_util = sys.modules.get("multiprocessing.util")
    if _OPEN and mp_util is not None:
        # A multiprocessing child leaves through os._exit, skipping atexit, but runs its own
        # exit finalizers; those are reset after this hook, so register from its after-fork hook.
        mp_util.register_after_fork(_close_all, lambda _: mp_util.Finalize(None, _close_all, exitpriority=0))


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
