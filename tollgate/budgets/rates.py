"""Rate limits: requests and tokens per rolling window, reserve-then-refund.

``tollgate.limit(rpm=500, tpm=200_000, model="gpt-4o")`` keeps a call from starting while
the last minute's requests or tokens are at the quota. Tokens are reserved at their
worst case (prompt + output cap) and the unused part is refunded when the call settles.
Rate limits share the budgets' store, so processes sharing a store share the quota.
When a quota is full, async callers wait for room (up to ``timeout`` seconds); sync callers
wait too, or raise :class:`~tollgate.RateLimited` at once with ``wait=False``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from tollgate.budgets.spec import check_count, finite_number
from tollgate.request import Estimate, LLMRequest
from tollgate.stores.base import Charge
from tollgate.stores.windows import Rolling

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A validated quota. ``model`` is a name or a glob (``"gpt-4o"`` also covers its dated
    snapshots; ``"gpt-4*"`` a whole family); None applies to every model."""

    requests: int | None = None
    tokens: int | None = None
    #: Calls in flight at once, across every process on the store (leases).
    concurrent: int | None = None
    per: timedelta = timedelta(minutes=1)
    model: str | None = None
    provider: str | None = None
    wait: bool = True
    timeout: float = 60.0
    #: Seconds a concurrency slot's lease lasts unless renewed (while its call runs, it is):
    #: how long the slots of a process that died stay taken.
    lease: float = 60.0
    window: Rolling = field(init=False)
    name: str = field(init=False)

    def __post_init__(self) -> None:
        if self.requests is None and self.tokens is None and self.concurrent is None:
            raise ValueError(
                "a rate limit needs rpm=... (requests), tpm=... (tokens) and/or concurrent=... "
                "(calls in flight)"
            )
        for unit, example in (
            ("requests", "rpm=500"),
            ("tokens", "tpm=200_000"),
            ("concurrent", "concurrent=10"),
        ):
            value = getattr(self, unit)
            if value is not None:
                fix = f"a quota must be a positive integer (a whole number above 0), e.g. {example}"
                object.__setattr__(self, unit, check_count(f"rate limit {unit}", value, fix))
        if not isinstance(self.per, timedelta) or self.per.total_seconds() <= 0:
            raise ValueError(
                f"rate limit per={self.per!r}: a window longer than zero, e.g. per=timedelta(minutes=1)"
            )
        timeout = finite_number(self.timeout)
        if timeout is None or timeout < 0:
            raise ValueError(
                f"rate limit timeout={self.timeout!r}: seconds to wait for room, a finite number, "
                "zero or more, e.g. timeout=60"
            )
        for what in ("model", "provider"):
            value = getattr(self, what)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(
                    f"rate limit {what}={value!r}: a {what} name (or a glob, for model), "
                    f"e.g. {what}={'gpt-4o' if what == 'model' else 'openai'!r}, or None for every {what}"
                )
        lease = finite_number(self.lease)
        if lease is None or lease < 1:
            raise ValueError(
                f"rate limit lease={self.lease!r}: seconds a concurrency slot is held unless renewed, "
                "at least 1, e.g. lease=60"
            )
        if not isinstance(self.wait, bool):
            raise ValueError(f"rate limit wait={self.wait!r}: use True (wait for room) or False (raise)")
        object.__setattr__(self, "window", Rolling(self.per.total_seconds()))
        scope = "/".join(p for p in (self.provider, self.model) if p) or "all"
        object.__setattr__(self, "name", f"rate[{scope}]/{self.per.total_seconds():g}s")
        if self.requests is None and self.tokens is None:
            object.__setattr__(self, "name", f"concurrent[{scope}]")

    def matches(self, request: LLMRequest) -> bool:
        if self.provider is not None and request.provider != self.provider:
            return False
        if self.model is None:
            return True
        model = request.model.lower()
        pattern = self.model.lower()
        return fnmatch.fnmatchcase(model, pattern) or fnmatch.fnmatchcase(_SNAPSHOT.sub("", model), pattern)

    def retry_after(self, now: float) -> float:
        """Seconds until the oldest sub-slot of the window drops out (when room may appear)."""
        width = self.window.seconds / 30
        return max(0.01, width - math.fmod(now, width))


@dataclass(frozen=True, slots=True)
class RateCheck:
    """One quota of one rate limit, applied to one call."""

    rate: RateLimit
    unit: Literal["requests", "tokens"]
    key: str
    post_flight = False

    @property
    def limit(self) -> float:
        value = self.rate.requests if self.unit == "requests" else self.rate.tokens
        assert value is not None
        return float(value)

    def amount(self, estimate: Estimate) -> float:
        return 1.0 if self.unit == "requests" else float(estimate.input_tokens + estimate.output_tokens)

    def charge(self, estimate: Estimate) -> Charge:
        return Charge(self.key, self.rate.window, self.limit, self.amount(estimate))


def rate_checks(limits: tuple[RateLimit, ...], request: LLMRequest) -> list[RateCheck]:
    checks = []
    for rate in limits:
        if rate.matches(request):
            if rate.requests is not None:
                checks.append(RateCheck(rate, "requests", f"{rate.name}:requests"))
            if rate.tokens is not None:
                checks.append(RateCheck(rate, "tokens", f"{rate.name}:tokens"))
    return checks
