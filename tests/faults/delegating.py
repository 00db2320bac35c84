"""A store that hands every operation to another one: the base of the matrices' faulty stores,
which override the operations they make fail."""

from __future__ import annotations

from collections.abc import Sequence

from tollgate.stores import Charge, CounterState, Hold, Reservation, Store


class DelegatingStore(Store):
    """Every operation of ``inner``, as it is; ``close`` leaves ``inner`` open (the tests own it)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner  # replays stays False: a failure the wrapper injects is not replayed

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

    def clear(self) -> None:
        self.inner.clear()

    def close(self) -> None:
        """Nothing: the inner store is the test's, reused by every cell."""
