"""Concurrency caps: ``tollgate.limit(concurrent=10, model="gpt-4o")``, shared by every process on
the store.

A call takes one slot of each concurrency limit that matches it before its budgets are
reserved, and gives it back when it ends, however it ends (the call's one way out,
:meth:`~tollgate.call.Call._end`). A slot is a lease in the store
(:meth:`~tollgate.stores.base.Store.acquire`) that expires ``lease`` seconds after it was last
renewed: a background thread renews every slot this process holds, in one store operation,
every third of the shortest lease, so a call may run for as long as it needs, while the
slots of a process that died (SIGKILL, a lost machine) come back within one lease.

When every slot is taken, a call waits, polling with a growing pause (up to the limit's
``timeout``), or raises :class:`~tollgate.RateLimited` at once with ``wait=False``: as rate
limits do.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence

from tollgate.budgets.rates import RateLimit
from tollgate.ids import random_hex
from tollgate.request import LLMRequest
from tollgate.stores.base import Store

log = logging.getLogger("tollgate")

#: The first pause between two tries for a slot, and the longest.
FIRST_PAUSE, LONGEST_PAUSE = 0.005, 0.05


class Lease:
    """One slot held: its limit, the store key, the lease's unique name, and the call holding it
    (weakly: a call a door lost track of, never ended, is not renewed once it is gone)."""

    __slots__ = ("key", "name", "owner", "rate", "store")

    def __init__(self, rate: RateLimit, store: Store, owner: object = None) -> None:
        self.rate = rate
        self.store = store
        self.key = f"{rate.name}:concurrent"
        self.name = random_hex(64)
        self.owner = weakref.ref(owner) if owner is not None else None

    def orphaned(self) -> bool:
        return self.owner is not None and self.owner() is None


def matching(limits: Sequence[RateLimit], request: LLMRequest) -> list[RateLimit]:
    """The concurrency limits that apply to ``request``, one per slot pool (a limit set twice,
    by two modules or two threads of one process, takes one slot, not two)."""
    found: dict[str, RateLimit] = {}
    for rate in limits:
        if rate.concurrent is not None and rate.matches(request):
            found.setdefault(f"{rate.name}:concurrent", rate)
    return list(found.values())


def pause(tries: int) -> float:
    """How long to wait before the next try for a slot (doubling from 5 ms to 50 ms)."""
    return min(LONGEST_PAUSE, FIRST_PAUSE * 2.0 ** min(tries, 16))


class Keeper:
    """Renews the leases this process holds, from one daemon thread started on first use."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # In a forked child the parent's thread is gone, its lock may be held for ever, and its
        # leases are the parent's to renew and give back: start afresh.
        self._lock = threading.Lock()
        self._held: dict[tuple[int, str, str], Lease] = {}
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def hold(self, lease: Lease) -> None:
        with self._lock:
            self._held[(id(lease.store), lease.key, lease.name)] = lease
            self._wake.notify()  # a shorter lease than those held may need an earlier round
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tollgate-leases", daemon=True)
                self._thread.start()

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop((id(lease.store), lease.key, lease.name), None)

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _run(self) -> None:
        from tollgate.preflight import store_clock

        last = time.monotonic()
        while True:
            with self._lock:
                if not self._held:  # idle until a call takes a slot (daemon: never joined)
                    self._wake.wait()
                    last = time.monotonic()
                    continue
                every = min(lease.rate.lease for lease in self._held.values()) / 3
                wait = last + every - time.monotonic()
                if wait > 0:  # a new, shorter lease wakes the wait early, to count again
                    self._wake.wait(wait)
                    continue
                last = time.monotonic()
                lost = [self._held.pop(k) for k, lease in list(self._held.items()) if lease.orphaned()]
                by_store: dict[int, list[Lease]] = {}
                for lease in self._held.values():
                    by_store.setdefault(id(lease.store), []).append(lease)
            if lost:
                log.warning("tollgate gave back %d concurrency slot(s) of calls that never ended", len(lost))
                let_go(lost)
            for leases in by_store.values():
                ttl = min(lease.rate.lease for lease in leases)
                try:
                    leases[0].store.renew([(lease.key, lease.name) for lease in leases], ttl, store_clock())
                except Exception:  # the next round tries again; a lease lasts three rounds
                    log.warning(
                        "tollgate could not renew %d concurrency lease(s)", len(leases), exc_info=True
                    )


keeper = Keeper()


def let_go(leases: Sequence[Lease]) -> None:
    """Give the slots back (never raises: a slot not given back expires with its lease)."""
    for lease in leases:
        keeper.drop(lease)
        try:
            lease.store.let_go(lease.key, lease.name)
        except Exception:
            log.warning(
                "tollgate could not give back a concurrency slot of %s", lease.rate.name, exc_info=True
            )


async def alet_go(leases: Sequence[Lease]) -> None:
    """The async twin of :func:`let_go`."""
    for lease in leases:
        keeper.drop(lease)
        try:
            await lease.store.alet_go(lease.key, lease.name)
        except Exception:
            log.warning(
                "tollgate could not give back a concurrency slot of %s", lease.rate.name, exc_info=True
            )
