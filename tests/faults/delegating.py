"""A store that hands every operation to another one: the base of the matrices' faulty stores,
which override the operations they make fail."""

from __future__ import annotations

from tollgate.stores.base import DelegatingStore as _Delegating


class DelegatingStore(_Delegating):
    """Every operation of ``inner``, as it is; ``close`` leaves ``inner`` open (the tests own it).
    ``replays`` stays False: a failure the wrapper injects is not replayed."""

    def close(self) -> None:
        """Nothing: the inner store is the test's, reused by every cell."""
