"""``memory://``: counters in this process, guarded by one lock (threads and asyncio alike)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tollgate.stores.base import (
    DONE,
    EXPIRED,
    NEW,
    Charge,
    CounterState,
    Hold,
    Reservation,
    SliceOp,
    SliceState,
    Store,
    fits,
    slice_step,
)

# Expired slots are swept every this many reserves, so memory stays bounded by live windows.
_SWEEP_EVERY = 10_000


class MemoryStore(Store):
    """The default store: exact and fast, but private to one process.

    >>> from tollgate.stores.windows import Lifetime
    >>> store = MemoryStore()
    >>> r = store.reserve([Charge("b", Lifetime(), limit=1.0, amount=0.6)], now=0.0)
    >>> r.ok, store.reserve([Charge("b", Lifetime(), limit=1.0, amount=0.6)], now=0.0).ok
    (True, False)
    >>> store.settle(r.holds, [0.1])  # what the slot has spent after
    [0.1]
    >>> store.read([Charge("b", Lifetime(), limit=1.0, amount=0)], now=0.0)[0].spent
    0.1
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, list[float]] = {}  # slot -> [spent, reserved, expires_at]
        self._limits: dict[str, str] = {}
        self._flags: dict[str, float] = {}  # flag -> expires_at
        self._leases: dict[str, dict[str, float]] = {}  # key -> lease -> expires_at
        self._version = 0
        self._ops = 0
        self._slices: dict[str, tuple[str, list[float]]] = {}  # slice -> (slot, record: see slice_step)
        self._sliced: dict[str, dict[str, float]] = {}  # slot -> live slice -> expires_at

    def _sums(self, names: tuple[str, ...], now: float) -> tuple[float, float]:
        """Spent and reserved over the live slots among ``names``."""
        spent = reserved = 0.0
        for name in names:
            slot = self._slots.get(name)
            if slot is not None and slot[2] > now:
                spent += slot[0]
                reserved += slot[1]
        return spent, reserved

    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        states: list[CounterState] = []
        holds: list[Hold] = []
        refused: list[int] = []
        with self._lock:
            for i, charge in enumerate(charges):
                slots = charge.window.slots(charge.key, now)
                spent, reserved = self._sums(slots.read, now)
                state = CounterState(spent, reserved, charge.limit)
                states.append(state)
                if not fits(state, charge.amount):
                    refused.append(i)
                holds.append(Hold(slots.write, charge.amount, slots.ttl))
            if refused:
                return Reservation(False, tuple(states), refused=tuple(refused), limits_version=self._version)
            for hold in holds:
                slot = self._slots.get(hold.slot)
                if slot is None or slot[2] <= now:
                    slot = self._slots[hold.slot] = [0.0, 0.0, 0.0]
                slot[1] += hold.amount
                slot[2] = max(slot[2], now + hold.ttl)
            self._ops += 1
            if self._ops % _SWEEP_EVERY == 0:
                self._slots = {k: v for k, v in self._slots.items() if v[2] > now}
            return Reservation(True, tuple(states), tuple(holds), limits_version=self._version)

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> list[float | None]:
        spent: list[float | None] = []
        with self._lock:
            for hold, actual in zip(holds, actuals, strict=True):
                slot = self._slots.get(hold.slot)
                if slot is None:
                    spent.append(None)
                    continue
                slot[1] = max(0.0, slot[1] - hold.amount)
                slot[0] += actual
                spent.append(slot[0])
        return spent

    def release(self, holds: Sequence[Hold]) -> None:
        with self._lock:
            for hold in holds:
                slot = self._slots.get(hold.slot)
                if slot is not None:
                    slot[1] = max(0.0, slot[1] - hold.amount)

    def forget(self, slots: Sequence[str]) -> None:
        with self._lock:
            for slot in slots:
                self._slots.pop(slot, None)

    def read(self, charges: Sequence[Charge], now: float) -> tuple[CounterState, ...]:
        with self._lock:
            return tuple(
                CounterState(*self._sums(c.window.slots(c.key, now).read, now), c.limit) for c in charges
            )

    def reset(self, charges: Sequence[Charge], now: float) -> None:
        with self._lock:
            for charge in charges:
                for name in charge.window.slots(charge.key, now).read:
                    slot = self._slots.get(name)
                    if slot is not None and slot[2] > now:
                        slot[0] = 0.0

    def claim(self, flag: str, ttl: float, now: float) -> bool:
        with self._lock:
            if self._flags.get(flag, 0.0) > now:
                return False
            if len(self._flags) > _SWEEP_EVERY:
                self._flags = {k: v for k, v in self._flags.items() if v > now}
            self._flags[flag] = now + ttl
            return True

    def acquire(self, key: str, lease: str, most: int, ttl: float, now: float) -> bool:
        with self._lock:
            held = {k: v for k, v in self._leases.get(key, {}).items() if v > now}
            self._leases[key] = held
            if lease not in held and len(held) >= most:
                return False
            held[lease] = now + ttl
            return True

    def renew(self, leases: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        with self._lock:
            for key, lease in leases:
                held = self._leases.get(key, {})
                if held.get(lease, 0.0) > now:
                    held[lease] = now + ttl

    def let_go(self, key: str, lease: str) -> None:
        with self._lock:
            self._leases.get(key, {}).pop(lease, None)

    def take_slices(self, ops: Sequence[SliceOp], ttl: float, now: float) -> list[SliceState]:
        with self._lock:
            return [self._slice(op, True, ttl, now) for op in ops]

    def return_slices(self, ops: Sequence[SliceOp], now: float) -> list[SliceState]:
        with self._lock:
            return [self._slice(op, False, 0.0, now) for op in ops]

    def _slice(self, op: SliceOp, take: bool, ttl: float, now: float) -> SliceState:
        """One slice operation (call with the lock held): reap the slot's expired slices, then
        :func:`slice_step` over the slot's counters and the slice's record."""
        slot = self._slots.get(op.slot)
        if slot is None or slot[2] <= now:
            slot = self._slots[op.slot] = [0.0, 0.0, 0.0]
        slot[2] = max(slot[2], now + op.slot_ttl)
        live = self._sliced.setdefault(op.slot, {})
        for name, expires in list(live.items()):
            if expires <= now:  # a process that stopped renewing: its slice comes back
                record = self._slices[name][1]
                slot[1] = max(0.0, slot[1] - record[0])
                record[0], record[3] = 0.0, EXPIRED
                del live[name]
        if not op.slice:
            return SliceState(0.0, 0.0, slot[0], slot[1], len(live), False)
        record = self._slices.setdefault(op.slice, (op.slot, [0.0, 0.0, 0.0, NEW]))[1]
        pair = [slot[0], slot[1]]
        state = slice_step(op, take, pair, record, len(live))
        slot[0], slot[1] = pair
        if state.alive:
            live[op.slice] = now + ttl
        else:
            live.pop(op.slice, None)
        if record[3] == DONE and len(self._slices) > _SWEEP_EVERY:
            self._slices = {k: v for k, v in self._slices.items() if v[0] in self._slots}
        return state

    def swap_limit(self, limit_id: str, expected: str | None, document: str | None) -> bool:
        with self._lock:
            if self._limits.get(limit_id) != expected:
                return False
            if document is None:
                self._limits.pop(limit_id, None)
            else:
                self._limits[limit_id] = document
            self._version += 1
            return True

    def put_limit(self, limit_id: str, document: str) -> None:
        with self._lock:
            self._limits[limit_id] = document
            self._version += 1

    def delete_limit(self, limit_id: str) -> bool:
        with self._lock:
            existed = self._limits.pop(limit_id, None) is not None
            self._version += existed
            return existed

    def limits(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            return self._version, dict(self._limits)

    def limits_version(self) -> int:
        return self._version

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
            self._limits.clear()
            self._flags.clear()
            self._leases.clear()
            self._slices.clear()
            self._sliced.clear()
            self._version += 1
