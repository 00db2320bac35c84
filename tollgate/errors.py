"""Exceptions and warnings raised by tollgate.

Every exception derives from :class:`TollgateError`, so ``except tollgate.TollgateError``
catches anything tollgate raises on purpose. Configuration mistakes raise ``ValueError``
(the standard library's meaning: a bad argument), never a TollgateError.
"""

from __future__ import annotations

from typing import Any


class TollgateError(Exception):
    """Base class of every exception tollgate raises on purpose."""


class BudgetExceeded(TollgateError):
    """A budget does not allow the call; raised pre-flight, before any network traffic.

    Attributes name the budget, its limit, what was spent and reserved before this call,
    what the call asked for, and the action taken.

    >>> e = BudgetExceeded("daily", limit=5.0, spent=4.9, reserved=0.0, requested=0.2, action="block")
    >>> e.budget, e.action
    ('daily', 'block')
    """

    def __init__(
        self,
        budget: str,
        *,
        limit: float,
        spent: float,
        reserved: float = 0.0,
        requested: float,
        action: str = "block",
        unit: str = "usd",
        detail: str = "",
    ) -> None:
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested
        self.action = action
        self.unit = unit
        fmt = (
            _fmt_usd if unit == "usd" else _counted(unit.replace("_", " ") if unit != "tokens" else "tokens")
        )
        message = (
            f"budget {budget!r} exceeded: limit {fmt(limit)}, spent {fmt(spent)}, "
            f"reserved {fmt(reserved)}, this call needs {fmt(requested)}; action: {action}"
        )
        super().__init__(message + (f" ({detail})" if detail else ""))


class RateLimited(TollgateError):
    """A rate limit (requests or tokens per minute) does not allow the call now."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class UnpricedModelError(TollgateError):
    """The model has no price (neither bundled nor configured) and ``on_unpriced="raise"``."""

    def __init__(self, model: str, provider: str | None = None) -> None:
        self.model = model
        self.provider = provider
        where = f" (provider {provider})" if provider else ""
        super().__init__(
            f"no price known for model {model!r}{where}; add one with "
            f"tollgate.configure(prices={{{model!r}: {{'input': ..., 'output': ...}}}}) "
            f"or set on_unpriced='warn'"
        )


class StoreUnavailable(TollgateError):
    """The budget store (SQLite file, Redis server) cannot be reached."""


class UnpricedModelWarning(UserWarning):
    """Issued once per model when a call's model has no price and ``on_unpriced="warn"``."""


class UnknownUsageWarning(UserWarning):
    """Issued once per (provider, field) when a response's usage carries a field tollgate does
    not know: possibly a new billing dimension that the recorded cost leaves out."""


def _fmt_usd(value: Any) -> str:
    return f"${float(value):.6f}".rstrip("0").rstrip(".") if value else "$0"


def _counted(what: str) -> Any:
    def fmt(value: Any) -> str:
        return f"{int(value):,} {what}"

    return fmt
