"""Where a budget stands, from code: :func:`usage`, :func:`reset_usage`, :func:`top_up`.

A windowed budget (``budget(..., per=...)``) is found by its name; a standing limit
(``set_limit``) by the tags it matches, plus the values of its key tags
(``usage(tenant="acme")``, ``usage(plan="free", api_key="k-1")`` for a limit kept per
``api_key``), or by its id. Each reads or changes the store in one atomic step, so every
process sharing the store sees the same answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tollgate.budgets.enforce import LOOKBACK_PARTS
from tollgate.budgets.scope import Frame, known
from tollgate.budgets.spec import check_amount, check_count
from tollgate.budgets.standing import UNITS, check_match, in_force, limit_id, parse, topped_up
from tollgate.stores.base import Charge, Store
from tollgate.stores.windows import Calendar, Rolling


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget's counter as the store has it now, for one unit (usd, tokens, calls, tool_calls).

    ``spent`` is settled spend in the current window, ``reserved`` what calls in flight hold,
    ``limit`` the cap in force (a temporary raise or top-ups included); ``window_start`` and
    ``window_end`` are None for a lifetime limit. ``topped_up``: what top-ups added to ``limit``.
    """

    name: str
    unit: str
    key: Mapping[str, str]
    spent: float
    reserved: float
    limit: float
    window_start: datetime | None
    window_end: datetime | None
    topped_up: float = 0.0
    until: datetime | None = field(default=None)

    @property
    def remaining(self) -> float:
        """What is left to spend (negative after an overrun)."""
        return self.limit - self.spent - self.reserved

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "key": dict(self.key),
            "spent": self.spent,
            "reserved": self.reserved,
            "limit": self.limit,
            "remaining": self.remaining,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "topped_up": self.topped_up,
            "until": self.until.isoformat() if self.until else None,
        }


def _store(store: Store | None) -> Store:
    from tollgate.config import settings

    return settings().store if store is None else store


def _clock() -> float:
    from tollgate import preflight

    return preflight.store_clock()


def _charges(frame: Frame, tags: Mapping[str, str], units: tuple[str, ...]) -> list[Charge]:
    counter = frame.counter(tags)
    charges = [Charge(f"{counter}:{unit}", frame.spec.window, None, 0.0) for unit in units]
    if frame.spec.lookback:  # the burn-rate look-back starts again with the counter
        charges += [
            Charge(f"{counter}:{u}:recent", Rolling(frame.spec.lookback, LOOKBACK_PARTS), None, 0.0)
            for u in units
        ]
    return charges


def frame_state(
    frame: Frame, tags: Mapping[str, str] | None, unit: str | None, store: Store | None = None, **extra: Any
) -> BudgetState:
    """The state of ``frame``'s counter for the calls tagged ``tags`` (default: the ambient tags)."""
    from tollgate.tags import current_tags

    spec = frame.spec
    tags = current_tags() if tags is None else tags
    limits = dict(spec.limits())
    if unit is None:
        unit = next(iter(limits))
    elif unit not in limits:
        raise ValueError(f"unit={unit!r}: budget {spec.name!r} limits {', '.join(limits)}")
    now = _clock()
    (state,) = _store(store).read(_charges(frame, tags, (unit,))[:1], now)
    window = spec.window
    start = end = None
    if isinstance(window, Calendar):
        start, end = window.start(now), window.end(now)
    elif isinstance(window, Rolling):
        start, end = datetime.fromtimestamp(now - window.seconds, UTC), datetime.fromtimestamp(now, UTC)
    return BudgetState(
        name=spec.name,
        unit=unit,
        key={**frame.match, **{k: tags.get(k, "") for k in spec.key}},
        spent=state.spent,
        reserved=state.reserved,
        limit=limits[unit],
        window_start=start,
        window_end=end,
        **extra,
    )


def _find(name: str | None, tags: Mapping[str, str], store: Store) -> tuple[Frame, dict[str, Any]]:
    """The budget or standing limit ``name`` / ``tags`` select, and what its state adds."""
    if name is not None and name in known:
        return Frame(known[name], "usage"), {}
    check_match(tags, "usage")
    _, documents = store.limits()
    now = time.time()
    found = []
    for ident, document in documents.items():
        match, base, raised = parse(document)
        frame = in_force(base, raised, now)
        if frame is None:
            continue
        if name is not None:
            if ident == name:
                found.append((frame, document, raised))
        elif all(tags.get(k) == v for k, v in match.items()) and set(tags) <= {*match, *frame.spec.key}:
            found.append((frame, document, raised))
    if not found:
        wanted = f"name={name!r}" if name is not None else ", ".join(f"{k}={v!r}" for k, v in tags.items())
        raise ValueError(
            f"usage({wanted}): no windowed budget of that name was made in this process, and no standing "
            "limit matches; give a budget's name (budget(..., name='nightly')), or the tags a set_limit() "
            "matches plus the values of its key tags, e.g. usage(tenant='acme')"
        )
    if len(found) > 1:
        raise ValueError(
            f"usage({name!r}): {len(found)} standing limits match; give one's id, "
            f"e.g. usage({found[0][0].spec.name!r})"
        )
    frame, document, raised = found[0]
    extra: dict[str, Any] = {}
    if raised is not None and frame is raised[0]:
        extra["until"] = datetime.fromtimestamp(raised[1], UTC)
    added = json.loads(document).get("topped_up") or {}
    extra["topped_up"] = added
    return frame, extra


def usage(
    name: str | None = None, *, unit: str | None = None, store: Store | None = None, **tags: str
) -> BudgetState:
    """Where a windowed budget (by ``name``) or a standing limit (by its tags) stands now.

    >>> import tollgate
    >>> _ = tollgate.set_limit(usd=50, per="month", tenant="acme")
    >>> state = tollgate.usage(tenant="acme")
    >>> state.spent, state.remaining, state.limit
    (0.0, 50.0, 50.0)
    >>> _ = tollgate.reset()
    """
    target = _store(store)
    frame, extra = _find(name, tags, target)
    added = extra.pop("topped_up", {})
    unit = unit or next(iter(dict(frame.spec.limits())))
    _key_given(frame, tags)
    return frame_state(frame, tags, unit, target, topped_up=float(added.get(unit, 0.0)), **extra)


def _key_given(frame: Frame, tags: Mapping[str, str]) -> None:
    missing = [k for k in frame.spec.key if k not in tags]
    if missing:
        raise ValueError(
            f"budget {frame.spec.name!r} is kept per {', '.join(missing)}: give "
            + ", ".join(f"{k}=..." for k in missing)
            + " to say whose counter"
        )


def reset_usage(name: str | None = None, *, store: Store | None = None, **tags: str) -> BudgetState:
    """Start a budget's (or standing limit's) current window again from zero spent, atomically;
    calls in flight keep their holds. Returns the state after. Alerts already fired in this
    window stay fired."""
    target = _store(store)
    frame, _ = _find(name, tags, target)
    _key_given(frame, tags)
    units = tuple(unit for unit, _ in frame.spec.limits())
    target.reset(_charges(frame, tags, units), _clock())
    return usage(name, store=target, **tags)


def top_up(
    usd: float | None = None, tokens: int | None = None, *, store: Store | None = None, **match: str
) -> BudgetState:
    """Add to the lifetime limit (``set_limit(..., per=None, **match)``) of the calls tagged
    ``match``: prepaid credit. Atomic (compare-and-swap on the stored limit), recorded in the
    ledger (operation ``top_up``). Returns the limit's state after.

    >>> import tollgate
    >>> _ = tollgate.set_limit(usd=20, per=None, tenant="acme")
    >>> tollgate.top_up(usd=5, tenant="acme").limit
    25.0
    >>> _ = tollgate.reset()
    """
    amounts: dict[str, float] = {}
    if usd is not None:
        amounts["usd"] = check_amount("top_up usd", usd, "a positive number of USD, e.g. usd=20")
    if tokens is not None:
        amounts["tokens"] = check_count("top_up tokens", tokens, "a whole number of tokens above 0")
    if not amounts:
        raise ValueError("top_up needs an amount: usd=... or tokens=...")
    check_match(match, "top_up")
    ident = limit_id(match)
    target = _store(store)
    for _ in range(1_000):  # each retry means another writer won the swap: progress is made
        _, documents = target.limits()
        current = documents.get(ident)
        if current is None:
            raise ValueError(
                f"top_up for {ident}: there is no standing limit for these tags; set one first: "
                f"tollgate.set_limit(usd=..., per=None, {', '.join(f'{k}={v!r}' for k, v in match.items())})"
            )
        if target.swap_limit(ident, current, topped_up(current, ident, amounts)):
            break
    else:  # pragma: no cover - a thousand lost races in a row
        raise RuntimeError(f"top_up for {ident}: the limit kept changing; try again")
    _record_top_up(match, amounts)
    return usage(ident, unit=next(iter(amounts)), store=target)


def _record_top_up(match: Mapping[str, str], amounts: Mapping[str, float]) -> None:
    """A top-up in the ledger: operation ``top_up``, no cost, the amounts as its one step."""
    from tollgate.config import settings
    from tollgate.decisions import Note
    from tollgate.ids import random_hex
    from tollgate.request import CallRecord

    now = time.time()
    record = CallRecord(
        id=random_hex(128),
        started_at=now,
        ended_at=now,
        provider="tollgate",
        operation="top_up",
        request_model="",
        tags=dict(match),
        decisions=(Note({"action": "top_up", **{f"added_{u}": a for u, a in amounts.items()}}),),
    )
    settings().ledger.write(record)


__all__ = ["UNITS", "BudgetState", "frame_state", "reset_usage", "top_up", "usage"]
