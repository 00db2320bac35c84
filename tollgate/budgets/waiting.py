"""Waiting for holds: a call that does not fit only because of other calls' holds waits for
them to settle (bounded) instead of being refused.

A hold is the worst case of a call in flight; most calls settle well below it. A call refused
while ``spent + amount <= limit`` (it fits once the holds are gone) would very likely fit a
moment later, so it waits, holding nothing, and asks the store again; after ``hold_wait``
seconds the budget's action applies as it would have at once (refuse, downgrade, clamp,
truncate), and the record notes the wait (:class:`Waited`). A call that does not fit on
what is spent alone is refused (or its action applied) at once: no settle can make room.
The downgrade / clamp / truncate actions wait first too: a call that fits whole once holds
settle is better served by a short wait than by a cheaper model or a shorter answer.

How fair the wait is, as far as the store allows:

- inside a process, waiters on a counter queue in arrival order (one queue per counter key):
  only the first in line asks the store again, and a call of this process ending (its
  holds settled) wakes it at once; when it leaves the line (it fits, gives up, is cancelled)
  the next one is woken. A new call that finds a line on one of its counters joins it instead
  of overtaking it;
- across processes there is no shared queue (the stores keep counters, not waiters): the
  first in each process's line polls the store with a growing pause, 5 ms doubling to
  50 ms as :mod:`tollgate.leases` does, with jitter so that processes do not poll in step.
  A settle in another process is seen within one pause.

Nothing is held while waiting: a refused reservation holds nothing, so a waiting call that is
cancelled (or times out) leaves no hold behind. This module is I/O-free except for the
waiting itself (:meth:`Pause.wait` / :meth:`Pause.await_`), which the pre-flight drivers run.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tollgate.budgets.enforce import Check, Recent
from tollgate.budgets.rates import RateCheck
from tollgate.decisions import EVENT_PREFIX, Step
from tollgate.request import Estimate
from tollgate.stores.base import Reservation

#: The first pause between two polls of the store by the first waiter in line, and the longest.
FIRST_POLL, LONGEST_POLL = 0.005, 0.05


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Waited(Step):
    """The call waited ``seconds`` for other calls' holds to settle before it was decided."""

    seconds: float
    event: ClassVar[str] = EVENT_PREFIX + "wait"

    def fields(self) -> dict[str, Any]:
        return {"waited_s": self.seconds}


def held_back(
    checks: Sequence[Check | RateCheck | Recent], reservation: Reservation, estimate: Estimate
) -> list[Check]:
    """The budget checks that refused ``reservation`` if each of them refused only because of
    other calls' holds (the call fits on what is spent alone); else an empty list."""
    held: list[Check] = []
    for i in reservation.refused:
        check = checks[i]
        if not isinstance(check, Check):
            return []
        state = reservation.states[i]
        if (
            state.limit is None
            or state.reserved <= 0
            or state.spent + check.amount(estimate) > state.limit * (1 + 1e-12)
        ):
            return []
        held.append(check)
    return held


def patience(checks: Sequence[Check], default: float) -> float:
    """How long to wait for the holds on ``checks``: the least any of their budgets allows."""
    return min((default if c.spec.hold_wait is None else c.spec.hold_wait for c in checks), default=0.0)


def poll(tries: int) -> float:
    """The pause before the first waiter's next poll of the store: 5 ms doubling to 50 ms,
    jittered by ±50% so that waiters of several processes do not poll in step."""
    return min(LONGEST_POLL, FIRST_POLL * 2.0 ** min(tries, 16)) * random.uniform(0.5, 1.5)


# -- the per-process line ----------------------------------------------------------------------------


class Ticket:
    """A waiting call's place in the line of one counter, in this process."""

    __slots__ = ("_event", "_future", "_loop", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self._event = threading.Event()
        self._future: Any = None
        self._loop: Any = None

    def first(self) -> bool:
        with _lock:
            line = lines.get(self.key)
            return bool(line) and line[0] is self  # type: ignore[index]

    def _wake(self) -> None:  # under _lock
        self._event.set()
        if self._future is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits on it any more
                self._loop.call_soon_threadsafe(_resolve, self._future)


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True, slots=True)
class Pause:
    """What the pre-flight drivers are asked to do: wait up to ``seconds`` for ``ticket`` to be
    woken (a local settle, or its turn in line)."""

    ticket: Ticket
    seconds: float

    def wait(self) -> None:
        event = self.ticket._event
        event.wait(self.seconds)
        event.clear()

    async def await_(self) -> None:
        import asyncio  # only async callers (who have imported it already) get here

        ticket = self.ticket
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Cancelled while it asked the store, and the store's client swallowed the
            # CancelledError (redis-py finishes a command it has sent): stop waiting now.
            raise asyncio.CancelledError
        if not ticket._event.is_set():
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            with _lock:
                ticket._loop, ticket._future = loop, future
            try:
                if not ticket._event.is_set():  # a wake before the future was published is seen here
                    await asyncio.wait((future,), timeout=self.seconds)
            finally:
                with _lock:
                    ticket._future = ticket._loop = None
        ticket._event.clear()


_lock = threading.Lock()
#: The waiters of this process by counter key, first in line first.
lines: dict[str, deque[Ticket]] = {}
_watching = False


def join(key: str) -> Ticket:
    """Take a place at the end of the line of counter ``key``."""
    global _watching
    ticket = Ticket(key)
    with _lock:
        lines.setdefault(key, deque()).append(ticket)
        if not _watching:
            _watching = True
            from tollgate.config import watchers

            # Every call of this process writes its record just after settling its holds: the
            # moment room may have been made. (A record watcher, not an on_record hook:
            # configure() and reset() leave it in place.)
            watchers.append(_settled)
    return ticket


def leave(ticket: Ticket) -> None:
    """Leave the line; the next in line, if any, is woken to try."""
    with _lock:
        line = lines.get(ticket.key)
        if not line:
            return
        was_first = line[0] is ticket
        try:
            line.remove(ticket)
        except ValueError:
            return
        if not line:
            del lines[ticket.key]
        elif was_first:
            line[0]._wake()


def queued(checks: Sequence[Check | RateCheck | Recent]) -> Check | None:
    """The first of ``checks`` whose counter has a line of waiters in this process (None: none)."""
    with _lock:
        for check in checks:
            if type(check) is Check and check.key in lines:
                return check
    return None


def _settled(record: object) -> None:
    """A call of this process ended: wake the first waiter of every line to try again."""
    if lines:
        with _lock:
            for line in lines.values():
                line[0]._wake()


def turn(ticket: Ticket, until: float, tries: int, *, polls: bool = True) -> Generator[Pause, None, int]:
    """Pause until it is ``ticket``'s time to ask the store again: as the first in line, after a
    poll pause (none when ``polls`` is false: it was not refused yet) or as soon as a call of
    this process settles; behind others, once it is first. Returns at ``until`` (monotonic)
    at the latest, with the number of polls so far."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return tries
        first = ticket.first()
        if first and not polls:
            return tries
        yield Pause(ticket, min(left, poll(tries)) if first else left)
        if first:
            return tries + 1
        polls = False  # woken as the first in line: the one before it left; try at once
