"""Escrow slices: admit most calls in memory, against a slice of a counter taken from the store.

Without slices every budgeted call makes two store round trips (reserve, then settle), and a
store outage stops LLM traffic (``on_store_error="closed"``) or uncaps it (``"open"``). With
``tollgate.configure(slices=True)`` the configured store is wrapped in a :class:`SlicedStore`,
in the manner of Google's Doorman and Istio's quota prefetch:

- A process takes a **slice** of a hot counter in one atomic store step: a hold like any
  call's (so spent + reserved + every slice stays within the limit for everybody), with its
  own expiry. The store grants at most a fair share: half of what is left outside every hold,
  split among the processes holding slices of that counter, and at most ``size`` of the limit;
  so slices shrink as the budget does.
- A call whose every charge fits its counter's slice is admitted in memory, under one lock:
  its worst case comes out of the slice; its settle adds the actual to the slice's spend and
  frees the rest. Its :class:`~tollgate.stores.base.Hold` carries ``ref="slice:<id>"``.
- A background thread refills a slice that falls below ``low_water`` of its size, renews every
  slice (reporting what was spent against it, extending its expiry) every third of ``ttl``,
  and gives back what is unused when a slice goes idle, expires, is refused a refill (the last
  stretch), or the store is closed (also at exit). A process that dies strands its slices for
  at most ``ttl`` seconds, and the spend it had not reported since its last renew.
- Everything else takes today's path, through the wrapped store: a charge on a rolling window
  (rate limits, burn-rate look-backs) or without a limit, a call that does not fit its slices,
  and the **last stretch** of a budget: once less than ``last_stretch`` slice sizes are left
  outside every hold, no slice is granted, and every call reserves its own worst case, so the
  cap is spent exactly.
- While the store is unreachable, calls keep being admitted against the slices held until
  they run out or expire (``ttl``, less a margin for clocks a little apart); then the
  configured ``on_store_error`` applies. What was spent meanwhile is reported once it is back.

Trade-offs, documented in docs/semantics.md ("Slices"): other processes see a slice as
reserved, so a call refused for want of room may wait (``hold_wait``) for slices to come
back; what a slice-admitted settle returns as spent (for ``warn_at`` alerts) is what this
process knows, the store's spend at the last refill or renew plus its own since, so an alert
may fire late, or not at all when the spend that crossed it was another process's; standing
limits changed elsewhere are seen within a second.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from tollgate.ids import random_hex
from tollgate.stores.base import (
    Charge,
    CounterState,
    DelegatingStore,
    Hold,
    Reservation,
    SliceOp,
    SliceState,
    Store,
)
from tollgate.stores.windows import Rolling

log = logging.getLogger("tollgate")

#: ``Hold.ref`` of a call admitted against a slice: ``"slice:<slice id>"``.
REF = "slice:"
#: Seconds between two reads of the standing limits' version while slices admit calls.
VERSION_EVERY = 1.0
#: Seconds a counter refused a slice is left to per-call reservation before asking again.
BACKOFF = 1.0


@dataclass(frozen=True, slots=True)
class Slices:
    """How big slices are and how long they live: ``configure(slices=Slices(...))``, or a
    mapping of the same names, or ``True`` for these defaults.

    - ``size``: a slice is at most this fraction of the counter's limit (0 < size <= 0.5).
    - ``ttl``: seconds a slice lives unless renewed (renewed every third of it); what a
      process that dies strands, for at most this long.
    - ``low_water``: refill a slice once what is free in it falls below this fraction of its
      size (0 < low_water < 1).
    - ``last_stretch``: grant no slice once less than this many slice sizes are left outside
      every hold; the calls then reserve one by one (>= 0).

    >>> Slices(size=0.02).ttl
    30.0
    >>> Slices(size=2)
    Traceback (most recent call last):
    ...
    ValueError: slices size=2: a fraction of each counter's limit, above 0 and at most 0.5, e.g. size=0.05
    """

    size: float = 0.05
    ttl: float = 30.0
    low_water: float = 0.5
    last_stretch: float = 1.0

    def __post_init__(self) -> None:
        fraction = "a fraction of each counter's limit, above 0 and at most 0.5"
        _check("size", self.size, 0.0, 0.5, fraction, "0.05")
        _check("ttl", self.ttl, 1.0, 86_400.0, "seconds, at least 1 (a day at most)", "30", closed=True)
        below = "a fraction of the slice, above 0 and below 1"
        _check("low_water", self.low_water, 0.0, 1.0 - 1e-9, below, "0.5")
        _check("last_stretch", self.last_stretch, 0.0, 1e6, "slice sizes, 0 or more", "1", closed=True)


def _check(
    name: str, value: object, low: float, high: float, what: str, example: str, *, closed: bool = False
) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (low <= value if closed else low < value)
        and value <= high
    )
    if not ok:
        raise ValueError(f"slices {name}={value!r}: {what}, e.g. {name}={example}")


def slices_config(value: object) -> Slices | None:
    """``configure(slices=...)`` checked: True (defaults), False or None (off), a
    :class:`Slices`, or a mapping of its field names; ``ValueError`` naming the value and the fix.

    >>> slices_config({"size": 0.1, "ttl": 10}).size
    0.1
    >>> slices_config({"sise": 0.1})
    Traceback (most recent call last):
    ...
    ValueError: slices={'sise': 0.1}: unknown setting 'sise'; use size, ttl, low_water, last_stretch
    """
    if value is None or value is False:
        return None
    if value is True:
        return Slices()
    if isinstance(value, Slices):
        return value
    names = [f.name for f in fields(Slices)]
    if isinstance(value, Mapping):
        for key in value:
            if key not in names:
                raise ValueError(f"slices={dict(value)!r}: unknown setting {key!r}; use {', '.join(names)}")
        return Slices(**value)
    raise ValueError(
        f"slices={value!r}: use True (defaults), False, a mapping such as "
        "{'size': 0.05, 'ttl': 30, 'low_water': 0.5, 'last_stretch': 1}, or a tollgate.stores.sliced.Slices"
    )


class _Slice:
    """A slice this process holds, as it knows it. ``held`` is what the store held for it at
    the last sync, when the running totals ``spent`` and ``given`` were ``sent_spent`` and
    ``sent_given``; so what is free now is :meth:`room`."""

    __slots__ = (
        "alive",
        "biggest",
        "expires",
        "given",
        "held",
        "holds",
        "id",
        "in_flight",
        "level",
        "limit",
        "retired",
        "sent_given",
        "sent_spent",
        "size",
        "slot",
        "slot_ttl",
        "spent",
        "store_spent",
        "synced",
        "used",
    )

    def __init__(self, slot: str, limit: float, slot_ttl: int, size: float, biggest: float) -> None:
        self.id = random_hex(64)
        self.slot, self.limit, self.slot_ttl, self.size, self.biggest = slot, limit, slot_ttl, size, biggest
        self.held = self.spent = self.sent_spent = self.given = self.sent_given = self.in_flight = 0.0
        self.holds = 0  # calls' holds in flight: at 0, in_flight is exactly 0 (no float dust)
        self.store_spent = self.level = 0.0
        self.expires = self.synced = 0.0
        self.alive = self.used = self.retired = False

    def room(self) -> float:
        return self.held - (self.spent - self.sent_spent) - (self.given - self.sent_given) - self.in_flight

    def known_spent(self) -> float:
        """The slot's spend as this process knows it: the store's at the last sync, and its own since."""
        return self.store_spent + self.spent - self.sent_spent

    def op(self, want: float = 0.0, floor: float = 0.0) -> SliceOp:
        least = self.biggest if want > 0 else 0.0  # a slice too small for one call is no use
        totals = (self.spent, self.given)
        return SliceOp(self.slot, self.id, self.limit, self.slot_ttl, *totals, want, least, floor)


_LIVE: weakref.WeakSet[SlicedStore] = weakref.WeakSet()


class SlicedStore(DelegatingStore):
    """A store that admits calls against escrow slices in memory; everything else it passes to
    ``inner`` (see the module's documentation).

    >>> import time
    >>> from tollgate.stores.memory import MemoryStore
    >>> from tollgate.stores.windows import Calendar
    >>> store = SlicedStore(MemoryStore(), Slices(size=0.1))
    >>> daily = Charge("team=ml", Calendar("day"), limit=10.0, amount=0.2)
    >>> store.reserve([daily], time.time()).holds[0].ref  # no slice yet: reserved in the store
    ''
    >>> store.wait_for_slices()  # the background thread takes one meanwhile
    >>> r = store.reserve([daily], time.time())
    >>> r.holds[0].ref[:6], store.settle(r.holds, [0.1])  # no round trip for either
    ('slice:', [0.1])
    >>> store.close()  # the slice goes back: what was spent against it is reported
    >>> state = store.inner.read([daily], time.time())[0]
    >>> state.spent, round(state.reserved, 9)  # the first call is still in flight
    (0.1, 0.2)
    """

    def __init__(self, inner: Store, config: Slices | None = None) -> None:
        if isinstance(inner, SlicedStore):
            raise ValueError("SlicedStore over a SlicedStore: wrap the plain store once")
        super().__init__(inner)
        self.config = config or Slices()
        self.replays = inner.replays
        self.admitted = 0  # calls admitted against slices (for tests and benchmarks)
        self.per_call = 0  # calls of sliceable counters reserved in the store instead
        self._version: int | None = None
        self._closed = False
        self._fresh()
        _LIVE.add(self)

    def _fresh(self) -> None:
        """Empty state: at creation, and in a forked child (the parent's slices are the parent's)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._live: dict[str, _Slice] = {}  # counter slot -> the slice admitting its calls
        self._by_id: dict[str, _Slice] = {}  # every slice not yet returned for good
        self._wanted: dict[str, _Slice] = {}  # slots a call missed a slice on -> slice to take
        self._backoff: dict[str, float] = {}  # slot -> no new slice before this (store clock)
        self._reaped: dict[str, float] = {}  # slot -> when a refusal last reaped it (monotonic)
        self._version_at = self._failed_at = 0.0
        self._failing = False
        self._busy = False  # the background thread is sending a round
        self._nudged = False  # a call woke the background thread: yield the GIL to it

    def __repr__(self) -> str:
        return f"SlicedStore({self.inner!r}, {self.config!r})"

    def __getattr__(self, name: str) -> Any:
        # The wrapped store's own extras (RedisStore.round_trips, .pending, .location, ...).
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- calls: admitted against slices when they fit, else passed through -------------------

    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        admitted = self._admit(charges, now)
        if self._nudged:
            self._nudged = False
            time.sleep(0)  # let the background thread have the GIL now: a busy caller could
            # otherwise drain the slice in one switch interval (5 ms) before it is refilled
        if admitted is not None:
            return admitted
        reservation = self.inner.reserve(charges, now)
        if not reservation.ok and self._reap(charges, reservation.refused, now):
            reservation = self.inner.reserve(charges, now)
        return reservation

    async def areserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        admitted = self._admit(charges, now)
        if self._nudged:
            self._nudged = False
            time.sleep(0)
        if admitted is not None:
            return admitted
        reservation = await self.inner.areserve(charges, now)
        if not reservation.ok:
            import asyncio  # loaded already by any async caller; not at import (it costs ~25 ms)

            # The reap is the inner store's sync call: off the event loop, which it could
            # otherwise hold for a round trip (a socket timeout while the store is down).
            if await asyncio.to_thread(self._reap, charges, reservation.refused, now):
                reservation = await self.inner.areserve(charges, now)
        return reservation

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        if not holds or not holds[0].ref.startswith(REF):  # a call admits all its charges one way
            return self.inner.settle(holds, actuals)
        return self._settle_here(holds, actuals)

    async def asettle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        if not holds or not holds[0].ref.startswith(REF):
            return await self.inner.asettle(holds, actuals)
        return self._settle_here(holds, actuals)

    def release(self, holds: Sequence[Hold]) -> None:
        if not holds or not holds[0].ref.startswith(REF):
            self.inner.release(holds)
        else:
            self._settle_here(holds, None)

    async def arelease(self, holds: Sequence[Hold]) -> None:
        if not holds or not holds[0].ref.startswith(REF):
            await self.inner.arelease(holds)
        else:
            self._settle_here(holds, None)

    def _admit(self, charges: Sequence[Charge], now: float) -> Reservation | None:
        """Admit the call against its counters' slices, all or none, under the one lock; None
        when any charge cannot be (a take is then asked of the background thread)."""
        if self._closed or not charges:
            return None
        picked: list[tuple[_Slice | None, str, int]] = []
        for charge in charges:
            if charge.limit is None or math.isinf(charge.limit) or isinstance(charge.window, Rolling):
                return None  # not a counter slices serve: today's path
            slots = charge.window.slots(charge.key, now)
            picked.append((None, slots.write, slots.ttl))
        with self._lock:
            if self._thread is None:
                self._start()
            fits = True
            need: dict[str, float] = {}
            for i, (charge, (_, slot, ttl)) in enumerate(zip(charges, picked, strict=True)):
                s = self._live.get(slot)
                need[slot] = need.get(slot, 0.0) + charge.amount
                if s is None or s.limit != charge.limit or now >= s.expires or s.room() < need[slot]:
                    fits = False
                    self._want(s, slot, charge, ttl, now)
                picked[i] = (s, slot, ttl)
            if not fits:
                self.per_call += 1
                return None
            states: list[CounterState] = []
            holds: list[Hold] = []
            for charge, (s, slot, ttl) in zip(charges, picked, strict=True):
                assert s is not None
                known = s.known_spent()
                # What this process may still spend on the counter: the slice's room, so a
                # stream cut off at its room (Call.room) cannot take the slice past its grant.
                assert charge.limit is not None
                states.append(CounterState(known, max(0.0, charge.limit - known - s.room()), charge.limit))
                s.in_flight += charge.amount
                s.holds += 1
                s.used = True
                holds.append(Hold(slot, charge.amount, ttl, REF + s.id))
                if self._low(s, now):
                    self._wake.notify_all()
                    self._nudged = True
            self.admitted += 1
            return Reservation(True, tuple(states), tuple(holds), limits_version=self._version)

    def _want(self, s: _Slice | None, slot: str, charge: Charge, ttl: int, now: float) -> None:
        """Ask the background thread for a slice of ``slot``, or to refill or replace ``s``
        (call with the lock held)."""
        assert charge.limit is not None
        if s is not None and s.limit == charge.limit:
            s.biggest = max(s.biggest, charge.amount)
            if self._low(s, now) or now >= s.expires:
                self._wake.notify_all()
                self._nudged = True
            return
        if s is not None:  # the limit moved (a top-up, a raise): this slice goes back
            s.retired = True
            del self._live[slot]
        wanted = self._wanted.get(slot)
        if wanted is not None:
            wanted.biggest = max(wanted.biggest, charge.amount)
        elif now >= self._backoff.get(slot, 0.0):
            size = self.config.size * charge.limit
            self._wanted[slot] = _Slice(slot, charge.limit, ttl, size, charge.amount)
            self._wake.notify_all()
            self._nudged = True

    def _low(self, s: _Slice, now: float) -> bool:
        """Whether ``s`` wants a refill now (call with the lock held)."""
        return s.room() < self.config.low_water * s.level and now >= self._backoff.get(s.slot, 0.0)

    def _settle_here(self, holds: Sequence[Hold], actuals: Sequence[float] | None) -> list[float | None]:
        """Settle (``actuals``) or release (None) holds of slice-admitted calls, in memory."""
        spent: list[float | None] = []
        with self._lock:
            for i, hold in enumerate(holds):
                s = self._by_id.get(hold.ref[len(REF) :])
                if s is None:  # returned at close, counting this call at its worst case
                    spent.append(None)
                    continue
                s.holds -= 1
                s.in_flight = max(0.0, s.in_flight - hold.amount) if s.holds > 0 else 0.0
                if actuals is not None:
                    s.spent += actuals[i]
                spent.append(s.known_spent())
                if s.retired and s.in_flight <= 0:
                    self._wake.notify_all()
        return spent

    # -- the background thread: take, refill, renew, give back ------------------------------

    def _start(self) -> None:
        """Start the background thread (call with the lock held)."""
        self._thread = threading.Thread(
            target=_run, args=(weakref.ref(self),), name="tollgate-slices", daemon=True
        )
        self._thread.start()

    def _round(self) -> bool:
        """One round of the background thread: wait until there is something to do, do it.
        False once the store is closed."""
        from tollgate.preflight import store_clock  # here: a module-level import is circular

        with self._lock:
            if self._closed:
                return False
            wait = self._idle_for(store_clock())
            if wait > 0:
                self._wake.wait(wait)
            if self._closed:
                return False
            now = store_clock()
            takes, returns = self._plan(now)
            poll = bool(self._live) and time.monotonic() - self._version_at >= VERSION_EVERY
            self._busy = bool(takes or returns)
        try:
            self._sync(takes, returns, now, poll)
        finally:
            with self._lock:
                self._busy = False
                self._wake.notify_all()
        return True

    def _idle_for(self, now: float) -> float:
        """Seconds until the next round is due (0: now). Call with the lock held."""
        if self._failing:  # the store is down: try again once a second, not in a loop
            pause = 1.0 - (time.monotonic() - self._failed_at)
            if pause > 0:
                return pause
        if self._wanted:
            return 0.0
        due = now + 3_600.0
        for s in self._by_id.values():
            if s.retired:
                if s.in_flight <= 0 or s.room() > 0:
                    return 0.0
            elif self._low(s, now) or now >= s.expires:
                return 0.0
            due = min(due, s.synced + self.config.ttl / 3)
        if self._live:
            due = min(due, now + VERSION_EVERY)
        return max(0.0, due - now)

    def _plan(self, now: float) -> tuple[list[tuple[_Slice, SliceOp]], list[tuple[_Slice, SliceOp]]]:
        """What to send this round: takes (new slices, refills, renewals, give-backs) and
        returns for good. Call with the lock held."""
        takes: list[tuple[_Slice, SliceOp]] = []
        returns: list[tuple[_Slice, SliceOp]] = []
        renew_due = self.config.ttl / 3
        for s in list(self._by_id.values()):
            if self._live.get(s.slot) is not s:
                s.retired = True
            idle = not s.used and now - s.synced >= renew_due
            if not s.retired and (not s.alive or now >= s.expires or idle):
                s.retired = True  # expired, or idle for a whole renewal: give it back
            if s.retired:
                if self._live.get(s.slot) is s:
                    del self._live[s.slot]
                if s.in_flight <= 0:
                    returns.append((s, s.op()))
                    continue
                room = s.room()
                if room > 0:
                    s.given += room  # no call can use it now; it goes back with this round
                if room > 0 or now - s.synced >= renew_due:
                    takes.append((s, s.op()))
                continue
            if self._low(s, now):
                takes.append((s, s.op(s.size - s.room(), self.config.last_stretch * s.size)))
            elif now - s.synced >= renew_due:
                takes.append((s, s.op()))
        for slot, s in self._wanted.items():
            if slot not in self._live:
                takes.append((s, s.op(s.size, self.config.last_stretch * s.size)))
        self._wanted = {}
        return takes, returns

    def _sync(
        self,
        takes: list[tuple[_Slice, SliceOp]],
        returns: list[tuple[_Slice, SliceOp]],
        now: float,
        poll: bool,
    ) -> None:
        """Send the round's operations (no lock held: calls go on meanwhile) and apply the answers."""
        if takes:
            try:
                taken = self.inner.take_slices([op for _, op in takes], self.config.ttl, now)
            except Exception as exc:
                self._failed(exc, [s for s, _ in takes if not s.alive], now)
            else:
                with self._lock:
                    for (s, op), state in zip(takes, taken, strict=True):
                        self._taken(s, op, state, now)
        if returns:
            try:
                self.inner.return_slices([op for _, op in returns], now)
            except Exception as exc:
                self._failed(exc, [], now)
            else:
                with self._lock:
                    for s, _ in returns:
                        self._by_id.pop(s.id, None)
        if poll:
            try:
                self.limits_version()
            except Exception as exc:
                self._failed(exc, [], now)

    def _failed(self, exc: Exception, new: list[_Slice], now: float) -> None:
        """A round's operation failed (the store is down): say so once, try again later."""
        with self._lock:
            for s in new:  # ask again after a pause; and return it, in case the store took it
                self._backoff[s.slot] = now + BACKOFF  # and only the answer was lost
                s.retired = True
                self._by_id[s.id] = s
            if not self._failing:
                log.warning("tollgate could not take, renew or return escrow slices (retrying): %s", exc)
            self._failing, self._failed_at = True, time.monotonic()

    def _taken(self, s: _Slice, op: SliceOp, state: SliceState, now: float) -> None:
        """Apply the store's answer to one take (call with the lock held)."""
        if self._failing:
            log.info("tollgate can take, renew and return escrow slices again")
            self._failing = False
        new = not s.alive and s.id not in self._by_id
        s.held, s.sent_spent, s.sent_given = state.held, op.spent, op.given
        s.store_spent, s.synced, s.used = state.spent, now, False
        s.alive = state.alive
        # Stop admitting a little before the store would reap the slice: clocks differ a little.
        s.expires = now + self.config.ttl - min(self.config.ttl / 4, 5.0)
        if state.granted > 0:
            s.level = s.room()  # slices shrink with the budget: low water follows
        if new:
            if state.alive:
                self._by_id[s.id] = s
                if s.slot not in self._live:
                    self._live[s.slot] = s
                else:
                    s.retired = True  # taken twice: this one goes back
            else:
                self._backoff[s.slot] = now + BACKOFF  # the last stretch: calls reserve one by one
            return
        if op.want > 0 and state.granted <= 0:
            s.retired = True  # no refill: the last stretch; what is left goes back next round
            self._backoff[s.slot] = now + BACKOFF
        if not state.alive:
            s.retired = True  # expired in the store (renewals failed for a whole ttl)

    def _reap(self, charges: Sequence[Charge], refused: Sequence[int], now: float) -> bool:
        """After a refusal on counters slices were taken on: reap their expired slices (those of
        processes that died) at most once a second per counter; True when worth asking again."""
        ops = []
        mono = time.monotonic()
        for i in refused:
            charge = charges[i]
            slots = charge.window.slots(charge.key, now)
            last = self._reaped.get(slots.write, 0.0)
            if charge.limit is not None and not isinstance(charge.window, Rolling) and mono - last >= 1.0:
                if len(self._reaped) > 10_000:
                    self._reaped.clear()
                self._reaped[slots.write] = mono
                ops.append(SliceOp(slots.write, "", charge.limit, slots.ttl))
        if not ops:
            return False
        try:
            self.inner.take_slices(ops, self.config.ttl, now)
        except Exception:
            return False
        return True

    # -- the rest: delegated (DelegatingStore), but for what slices change -----------------

    def forget(self, slots: Sequence[str]) -> None:
        with self._lock:
            for s in list(self._by_id.values()):
                if s.slot in slots:  # the counter is done with: its slices go with it
                    self._by_id.pop(s.id, None)
                    if self._live.get(s.slot) is s:
                        del self._live[s.slot]
        self.inner.forget(slots)

    def read(self, charges: Sequence[Charge], now: float) -> tuple[CounterState, ...]:
        reap = []
        for c in charges:
            slot = c.window.slots(c.key, now)
            if not isinstance(c.window, Rolling):
                reap.append(SliceOp(slot.write, "", c.limit or 0.0, slot.ttl))
        if reap:  # slices of processes that died are reaped before anyone reads what is left
            self.inner.take_slices(reap, self.config.ttl, now)
        return self.inner.read(charges, now)

    def limits(self) -> tuple[int, dict[str, str]]:
        version, documents = self.inner.limits()
        self._version, self._version_at = version, time.monotonic()
        return version, documents

    def limits_version(self) -> int:
        version = self.inner.limits_version()
        self._version, self._version_at = version, time.monotonic()
        return version

    def clear(self) -> None:
        with self._lock:
            self._live.clear()
            self._by_id.clear()
            self._wanted.clear()
        self.inner.clear()

    # -- the end -----------------------------------------------------------------------------

    def give_back(self) -> None:
        """Return every slice to the store and stop taking new ones (the wrapped store stays
        open). A call still in flight on a slice is counted at its worst case: its settle
        comes too late to be reported, and counting less could let the cap be passed."""
        from tollgate.preflight import store_clock

        with self._lock:
            self._closed = True
            self._wake.notify_all()
            slices = list(self._by_id.values())
            flying = sum(1 for s in slices if s.holds > 0)
            for s in slices:
                s.spent += s.in_flight
                s.in_flight, s.holds = 0.0, 0
            self._live.clear()
            self._by_id.clear()
            self._wanted.clear()
        if flying:
            log.warning(
                "tollgate returned %d escrow slice(s) with calls in flight, at their worst case", flying
            )
        if slices:
            try:
                self.inner.return_slices([s.op() for s in slices], store_clock())
            except Exception as exc:
                log.warning(
                    "tollgate could not return %d escrow slice(s); they come back within %g s: %s",
                    len(slices),
                    self.config.ttl,
                    exc,
                )

    def close(self) -> None:
        """Return every slice, then close the wrapped store."""
        self.give_back()
        self.inner.close()

    def wait_for_slices(self, timeout: float = 5.0) -> None:
        """Wait until the slices calls asked for are taken or refused (tests, doctests)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._wanted and time.monotonic() < deadline:
                self._wake.notify_all()
                self._wake.wait(0.01)
            while self._thread is not None and self._busy and time.monotonic() < deadline:
                self._wake.wait(0.01)


def _run(ref: weakref.ref[SlicedStore]) -> None:
    """The background thread's loop; ends with its store (closed, or collected)."""
    while True:
        store = ref()
        if store is None:
            return
        try:
            if not store._round():
                return
        except Exception:  # a bug of ours: keep the thread (and the slices' renewals) alive
            log.exception("tollgate's escrow slice thread failed a round")
            time.sleep(1.0)
        del store


def _after_fork_in_child() -> None:
    # The parent's thread is gone and its lock may be held for ever; its slices are the
    # parent's to use, renew and return. The child starts with none.
    for store in list(_LIVE):
        store._fresh()


def _at_exit() -> None:
    for store in list(_LIVE):
        try:
            store.give_back()
        except Exception:
            log.debug("tollgate could not return escrow slices at exit", exc_info=True)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
