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

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> None:
        self.inner.settle(holds, actuals)

    async def asettle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> None:
        await self.inner.asettle(holds, actuals)

    def release(self, holds: Sequence[Hold]) -> None:
        self.inner.release(holds)

    async def arelease(self, holds: Sequence[Hold]) -> None:
        await self.inner.arelease(holds)

    def forget(self, slots: Sequence[str]) -> None:
        self.inner.forget(slots)

    def read(self, charges: Sequence[Charge], now: float) -> tuple[CounterState, ...]:
        return self.inner.read(charges, now)

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
