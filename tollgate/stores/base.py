"""The store interface: atomic reserve / settle / release over windowed counters.

A *charge* names a counter (``key``), its window and cap, and an amount (USD or tokens; the
store does not care which). :meth:`Store.reserve` takes all the charges of one call and, in
one atomic step, either holds every amount (when each counter's spent + reserved + amount
stays within its limit) or holds nothing. Either way it returns every counter's state, so
the gate can work out a downgrade or clamp without asking again. :meth:`Store.settle` then
turns each hold into the actual amount; :meth:`Store.release` drops the holds of a call that
failed or was cancelled. Holds expire with their slot, so a process that dies mid-call
cannot pin a budget for longer than the window (or a day, for lifetime counters).

Standing limits (``set_limit``) are stored as opaque JSON documents under an id, with a
version number that changes on every write, so readers can cache them and notice changes.

One backend per file: ``memory.py`` (in-process), ``sqlite.py`` (one machine),
``redis.py`` (many machines). Each operation is one atomic step and, for Redis, one round trip.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from tollgate.stores.windows import Window


@dataclass(slots=True)  # not frozen: made on every call, and frozen ones take 3x longer to make
class Charge:
    """An amount to reserve against one counter. ``limit`` None means: count, never refuse."""

    key: str
    window: Window
    limit: float | None
    amount: float


@dataclass(slots=True)  # not frozen: made on every call, and frozen ones take 3x longer to make
class CounterState:
    """A counter's state at reserve time, before this call's hold (if any) was added."""

    spent: float
    reserved: float
    limit: float | None

    @property
    def remaining(self) -> float:
        """What is left to spend (may be negative after post-flight overruns)."""
        return float("inf") if self.limit is None else self.limit - self.spent - self.reserved


@dataclass(slots=True)  # not frozen: made on every call, and frozen ones take 3x longer to make
class Hold:
    """One amount held in one slot, to be settled or released later."""

    slot: str
    amount: float
    ttl: int
    #: The store's own name for this hold, when it needs one to undo the hold at most once
    #: (Redis: the reservation's token and the charge's index); empty for the other stores.
    ref: str = ""


@dataclass(slots=True)  # not frozen: made on every call, and frozen ones take 3x longer to make
class Reservation:
    """The outcome of :meth:`Store.reserve`: ``ok`` with holds, or refused with the states."""

    ok: bool
    states: tuple[CounterState, ...]
    holds: tuple[Hold, ...] = ()
    #: Indexes of the charges that did not fit (empty when ``ok``).
    refused: tuple[int, ...] = ()
    #: The standing limits' version as the store saw it in the same atomic step, so a caller
    #: that built its charges from cached limits learns, at no extra cost, that they moved.
    limits_version: int | None = None


class Store(abc.ABC):
    """Budget and rate-limit state; one instance is shared by every thread of a process."""

    #: A settle or release the store could not make while unreachable is kept and made once it
    #: is back (Redis); otherwise the gate gives a failed settle's holds back by a release.
    replays: bool = False

    @abc.abstractmethod
    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        """Hold every charge's amount, or none of them, atomically."""

    @abc.abstractmethod
    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        """Replace each hold by the matching actual amount (spent).

        Returns what each hold's slot has spent once its actual is added, in the same atomic
        step (None for a hold whose slot is gone, or all None when the store cannot say, e.g.
        a settle queued for replay). Settles are serialised by the store, so exactly one
        settle sees a slot's spend go past any given mark: thresholds are decided from this.
        """

    @abc.abstractmethod
    def release(self, holds: Sequence[Hold]) -> None:
        """Drop holds without spending anything (the call failed or never happened)."""

    @abc.abstractmethod
    def forget(self, slots: Sequence[str]) -> None:
        """Drop these slots now (a lifetime budget's block ended: its counter is done with)."""

    @abc.abstractmethod
    def read(self, charges: Sequence[Charge], now: float) -> tuple[CounterState, ...]:
        """The counters' current states, changing nothing."""

    @abc.abstractmethod
    def reset(self, charges: Sequence[Charge], now: float) -> None:
        """Set what each charge's counter has spent in its current window to zero, atomically
        (every live slot it reads); holds of calls in flight stay, and settle as usual."""

    @abc.abstractmethod
    def claim(self, flag: str, ttl: float, now: float) -> bool:
        """Set ``flag`` for ``ttl`` seconds unless it is set: True for the one caller, across
        every process on the store, that set it (an alert fires once)."""

    @abc.abstractmethod
    def acquire(self, key: str, lease: str, most: int, ttl: float, now: float) -> bool:
        """Take one of ``most`` slots of ``key`` for ``lease`` (a unique name) until ``now + ttl``,
        if fewer than ``most`` unexpired leases hold one; True when taken. A lease that is not
        renewed expires by itself: a process that dies gives its slots back after ``ttl``."""

    @abc.abstractmethod
    def renew(self, leases: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        """Extend each ``(key, lease)`` still held to ``now + ttl`` (an expired one stays gone)."""

    @abc.abstractmethod
    def let_go(self, key: str, lease: str) -> None:
        """Give a slot back (a no-op when the lease is gone)."""

    @abc.abstractmethod
    def swap_limit(self, limit_id: str, expected: str | None, document: str | None) -> bool:
        """Replace the standing limit ``limit_id`` by ``document`` (None: delete it) only if its
        stored document is ``expected`` (None: there is none), bumping the version; True when
        swapped. Read-modify-write of a limit (a top-up, a temporary raise) retries on False."""

    @abc.abstractmethod
    def put_limit(self, limit_id: str, document: str) -> None:
        """Create or replace a standing limit (an opaque JSON document)."""

    @abc.abstractmethod
    def delete_limit(self, limit_id: str) -> bool:
        """Remove a standing limit; True if it existed."""

    @abc.abstractmethod
    def limits(self) -> tuple[int, dict[str, str]]:
        """The standing limits' version and documents, by id."""

    @abc.abstractmethod
    def limits_version(self) -> int:
        """A number that changes whenever a standing limit is put or deleted."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget every counter and standing limit (tests)."""

    def close(self) -> None:  # noqa: B027 - optional hook: only networked stores hold connections
        """Release connections."""

    # Escrow slices (see SliceOp and tollgate/stores/sliced.py). Not abstract: a store without
    # them (a test double) still works, and SlicedStore is simply not used over it.
    def take_slices(self, ops: Sequence[SliceOp], ttl: float, now: float) -> list[SliceState]:
        """Apply each op's report, grant it up to ``want`` more, and keep it until ``now + ttl``,
        in one atomic step; expired slices of the slots touched are reaped first."""
        raise NotImplementedError(f"{type(self).__name__} does not support escrow slices")

    def return_slices(self, ops: Sequence[SliceOp], now: float) -> list[SliceState]:
        """Apply each op's last report and give the rest of its slice back, in one atomic step."""
        raise NotImplementedError(f"{type(self).__name__} does not support escrow slices")

    def renew_slices(self, ops: Sequence[SliceOp], ttl: float, now: float) -> list[SliceState]:
        """Report and extend slices, taking nothing more (``take_slices`` with no ``want``)."""
        for op in ops:
            op.want = 0.0
        return self.take_slices(ops, ttl, now)

    # Async twins. Backends with real async I/O (Redis) override them; the in-process and
    # SQLite stores answer in microseconds and are called directly.
    async def areserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        return self.reserve(charges, now)

    async def asettle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        return self.settle(holds, actuals)

    async def arelease(self, holds: Sequence[Hold]) -> None:
        self.release(holds)

    async def aacquire(self, key: str, lease: str, most: int, ttl: float, now: float) -> bool:
        return self.acquire(key, lease, most, ttl, now)

    async def alet_go(self, key: str, lease: str) -> None:
        self.let_go(key, lease)


class DelegatingStore(Store):
    """Every operation of ``inner``, as it is: the base of a store that changes a few of them
    (:class:`~tollgate.stores.sliced.SlicedStore`; the fault suites' failing stores)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        return self.inner.reserve(charges, now)

    async def areserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        return await self.inner.areserve(charges, now)

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        return self.inner.settle(holds, actuals)

    async def asettle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        return await self.inner.asettle(holds, actuals)

    def release(self, holds: Sequence[Hold]) -> None:
        self.inner.release(holds)

    async def arelease(self, holds: Sequence[Hold]) -> None:
        await self.inner.arelease(holds)

    def forget(self, slots: Sequence[str]) -> None:
        self.inner.forget(slots)

    def read(self, charges: Sequence[Charge], now: float) -> tuple[CounterState, ...]:
        return self.inner.read(charges, now)

    def reset(self, charges: Sequence[Charge], now: float) -> None:
        self.inner.reset(charges, now)

    def claim(self, flag: str, ttl: float, now: float) -> bool:
        return self.inner.claim(flag, ttl, now)

    def acquire(self, key: str, lease: str, most: int, ttl: float, now: float) -> bool:
        return self.inner.acquire(key, lease, most, ttl, now)

    async def aacquire(self, key: str, lease: str, most: int, ttl: float, now: float) -> bool:
        return await self.inner.aacquire(key, lease, most, ttl, now)

    def renew(self, leases: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        self.inner.renew(leases, ttl, now)

    def let_go(self, key: str, lease: str) -> None:
        self.inner.let_go(key, lease)

    async def alet_go(self, key: str, lease: str) -> None:
        await self.inner.alet_go(key, lease)

    def swap_limit(self, limit_id: str, expected: str | None, document: str | None) -> bool:
        return self.inner.swap_limit(limit_id, expected, document)

    def put_limit(self, limit_id: str, document: str) -> None:
        self.inner.put_limit(limit_id, document)

    def delete_limit(self, limit_id: str) -> bool:
        return self.inner.delete_limit(limit_id)

    def limits(self) -> tuple[int, dict[str, str]]:
        return self.inner.limits()

    def limits_version(self) -> int:
        return self.inner.limits_version()

    def take_slices(self, ops: Sequence[SliceOp], ttl: float, now: float) -> list[SliceState]:
        return self.inner.take_slices(ops, ttl, now)

    def return_slices(self, ops: Sequence[SliceOp], now: float) -> list[SliceState]:
        return self.inner.return_slices(ops, now)

    def clear(self) -> None:
        self.inner.clear()

    def close(self) -> None:
        self.inner.close()


def fits(state: CounterState, amount: float) -> bool:
    """Whether ``amount`` more fits under the counter's limit."""
    return state.limit is None or state.spent + state.reserved + amount <= state.limit * (1 + 1e-12)


# -- escrow slices (tollgate/stores/sliced.py) ------------------------------------------------------
#
# A slice is a hold a process takes on one counter slot for many calls at once, with its own
# expiry. In the store it is an amount added to the slot's ``reserved`` like any hold (so the
# cap stays hard for everybody) plus a record {held, reported, given, expires, done} under the
# slice's id. The process reports what it spent against the slice and what it gives back as
# *running totals*: the store applies the difference from what it last saw, so a report sent
# twice (a retry after a lost reply) counts once. An expired slice is reaped by the next slice
# operation on its slot (its hold released; a report that arrives afterwards is still spent).


@dataclass(slots=True)
class SliceOp:
    """One slice to take, refill, renew or return, on the counter slot ``slot``.

    ``spent`` and ``given``: the running totals spent against the slice and given back by the
    process. ``want``: how much more to hold (0: none); nothing is granted when less than
    ``least`` would come, or when the slot has less than ``floor`` left outside every hold
    (the last stretch, left to per-call reservation). ``slice`` "" only reaps the slot.
    """

    slot: str
    slice: str
    limit: float
    slot_ttl: int
    spent: float = 0.0
    given: float = 0.0
    want: float = 0.0
    least: float = 0.0
    floor: float = 0.0


@dataclass(slots=True)
class SliceState:
    """A slice after one operation: what was added to it, what it holds in the store now, its
    slot's spent and reserved (every hold and slice), the slot's live slices, and whether it
    is still live (False: returned, expired and reaped, or never granted)."""

    granted: float
    held: float
    spent: float
    reserved: float
    holders: int
    alive: bool


#: A slice record's state in the store: never granted, live, expired (reaped), returned.
NEW, LIVE, EXPIRED, DONE = 0, 1, 2, 3


def slice_step(op: SliceOp, take: bool, slot: list[float], record: list[float], holders: int) -> SliceState:
    """The store-neutral arithmetic of one slice operation (memory and SQLite; slices.lua mirrors
    it). ``slot`` is ``[spent, reserved]``, ``record`` ``[held, reported, given, state]`` (state:
    NEW, LIVE, EXPIRED or DONE), both updated in place; ``holders`` counts the slot's live slices,
    this one included when live. ``take`` False returns the slice for good.

    A report is applied even to an expired slice (the money was spent), never to a returned one
    (its last report was final); only a new or live slice is granted more, at most ``want`` and
    a fair share, half of what is left outside every hold split among the holders, so slices
    shrink as the budget does and a newcomer always finds room.
    """
    held, reported, given, state = record
    if state == DONE:
        return SliceState(0.0, 0.0, slot[0], slot[1], holders, False)
    spend = max(0.0, op.spent - reported)
    back = max(0.0, op.given - given)
    slot[0] += spend
    if state == LIVE:
        out = min(held, spend + back)
        held -= out
        slot[1] = max(0.0, slot[1] - out)
    granted = 0.0
    if take and op.want > 0 and state in (NEW, LIVE):
        if state == NEW:
            holders += 1
        left = op.limit - slot[0] - slot[1]
        grant = min(op.want, left / (2 * holders))
        if left >= op.floor and grant >= op.least and grant > 0:
            granted = grant
            held += grant
            slot[1] += grant
            state = LIVE
        elif state == NEW:
            holders -= 1
    if not take:
        if state == LIVE:
            slot[1] = max(0.0, slot[1] - held)
            holders -= 1
        held, state = 0.0, DONE
    record[:] = [held, max(reported, op.spent), max(given, op.given), state]
    return SliceState(granted, held, slot[0], slot[1], holders, state == LIVE)
