"""Alerts before the cap: thresholds (``warn_at``) and burn rate, fired once per window and key.

A budget or standing limit with ``warn_at=(0.5, 0.8, 0.95)`` raises an :class:`Alert` when its
spend crosses each fraction of the limit. The crossing is decided in the store: settles are
serialised there, and each returns the counter's spend after it (see
:meth:`~tollgate.stores.base.Store.settle`), so exactly one settle, in one process, sees the
spend go past a mark; it then claims the alert's flag (:meth:`~tollgate.stores.base.Store.claim`,
also atomic), so a settle replayed after an outage, or a process whose cached limit is stale,
cannot fire it twice. The flag names the counter's slot (its window) and the limit, so a new
window, or a top-up that raises the limit, arms every threshold again.

A burn-rate alert (``burn_rate=True`` or a look-back ``timedelta``) fires when the spend of the
last look-back, continued at that rate, would reach the cap before the calendar window ends; it
says when. It is judged pre-flight from the states the reservation returned anyway (the
look-back is one more counter in the same atomic reserve), so it costs no round trip until it
fires.

Each alert goes to the ``configure(on_alert=...)`` hooks (callables; ``tollgate.Webhook``, in
:mod:`tollgate.webhook`, posts Slack-compatible JSON with the HTTP sink's retries), to the
call's span as a ``tollgate.alert`` event, to the ``tollgate.alerts`` metric, and to the
``tollgate`` logger. An alert carries the budget's name, its key values, amounts and times:
never prompt text.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import metrics

from tollgate.budgets.enforce import Check, Recent
from tollgate.stores.base import CounterState, Hold
from tollgate.stores.windows import Calendar

if TYPE_CHECKING:
    from tollgate.call import Call

log = logging.getLogger("tollgate")

Kind = Literal["threshold", "burn_rate"]

_alerts = metrics.get_meter("tollgate").create_counter(
    "tollgate.alerts", unit="{alert}", description="Budget alerts fired (thresholds crossed, burn rates)."
)


@dataclass(frozen=True, slots=True)
class Alert:
    """A budget nearing its cap.

    ``kind``: ``"threshold"`` (``threshold`` of ``limit`` was crossed) or ``"burn_rate"`` (at the
    recent rate the cap is reached at ``exhausted_at``, before ``window_end``). ``name`` is the
    budget's (a standing limit's id), ``key`` the values of its key tags (and a standing limit's
    match), ``unit`` what ``spent`` and ``limit`` count (usd, tokens, calls, tool_calls).
    """

    kind: Kind
    name: str
    key: Mapping[str, str]
    unit: str
    spent: float
    limit: float
    threshold: float | None = None
    window_end: datetime | None = None
    exhausted_at: datetime | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def message(self) -> str:
        """One line for people (a log line, a chat message)."""
        who = f"budget {self.name!r}" + (f" ({_pairs(self.key)})" if self.key else "")
        share = f" ({self.spent / self.limit:.0%})" if self.limit else ""
        used = f"{_amount(self.unit, self.spent)} of {_amount(self.unit, self.limit)}{share}"
        end = f", window ends {_when(self.window_end)}" if self.window_end else ""
        if self.kind == "threshold":
            return f"{who} crossed {self.threshold:.0%} of its limit: {used} spent{end}"
        return f"{who} is burning fast: {used} spent, the cap is reached by {_when(self.exhausted_at)}{end}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (times as ISO 8601)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "key": dict(self.key),
            "unit": self.unit,
            "spent": self.spent,
            "limit": self.limit,
            "threshold": self.threshold,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "exhausted_at": self.exhausted_at.isoformat() if self.exhausted_at else None,
            "at": self.at.isoformat(),
            "message": self.message(),
        }


def _pairs(key: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(key.items()))


def _amount(unit: str, value: float) -> str:
    return (
        f"${value:,.6f}".rstrip("0").rstrip(".")
        if unit == "usd"
        else f"{value:,.0f} {unit.replace('_', ' ')}"
    )


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "?"


# -- deciding ------------------------------------------------------------------------------------

#: Flags this process claimed or saw claimed, by store (flag -> expiry on the store clock), so a
#: threshold left behind costs no further round trip for the rest of its window.
_seen: dict[tuple[int, str], float] = {}
_seen_lock = threading.Lock()
_SEEN_KEPT = 10_000


def _claim(call: Call, flag: str, ttl: float, now: float) -> bool:
    store = call.settings.store
    seen = (id(store), flag)
    with _seen_lock:
        if _seen.get(seen, 0.0) > now:
            return False
        if len(_seen) >= _SEEN_KEPT:
            _seen.clear()
        _seen[seen] = now + ttl
    try:
        return store.claim(flag, ttl, now)
    except Exception:
        log.warning("tollgate could not claim alert %s in the store", flag, exc_info=True)
        return False


def forget() -> None:
    """Drop the flags seen (the store changed: a new one may get the old one's ``id()``)."""
    with _seen_lock:
        _seen.clear()


def _after_fork() -> None:
    global _seen_lock
    _seen_lock = threading.Lock()  # the parent's may have been held by another thread


os.register_at_fork(after_in_child=_after_fork)


def after_settle(call: Call, spent: Sequence[float | None], amounts: Sequence[float]) -> None:
    """Fire the threshold alerts the settle of ``call`` crossed (never raises)."""
    for check in call.checks:  # most budgets have no thresholds: settle them at no further cost
        if type(check) is Check and check.spec.warn_at:
            break
    else:
        return
    try:
        _thresholds(call, spent, amounts)
    except Exception:
        log.exception("tollgate could not check the alert thresholds of call %s", call.id)


def _thresholds(call: Call, spent: Sequence[float | None], amounts: Sequence[float]) -> None:
    for check, hold, after, amount in zip(call.checks, call.holds, spent, amounts, strict=False):
        if not isinstance(check, Check) or not check.spec.warn_at or after is None:
            continue
        before = after - amount
        for threshold in check.spec.warn_at:
            mark = threshold * check.limit
            if before < mark <= after * (1 + 1e-12):
                from tollgate.preflight import store_clock  # here: a module-level import is circular

                flag = f"alert:{hold.slot}:{threshold:g}:{check.limit!r}"
                now = store_clock()
                if _claim(call, flag, hold.ttl, now):
                    fire(call, _alert(call, check, "threshold", after, now, threshold=threshold))


def after_reserve(call: Call, now: float) -> None:
    """Fire the burn-rate alerts a reservation's states (at ``now``) call for (never raises)."""
    try:
        _burn_rates(call, now)
    except Exception:
        log.exception("tollgate could not check the burn rate of call %s", call.id)


def _burn_rates(call: Call, now: float) -> None:
    checks, states, holds = call.checks, call.states, call.holds
    for i, recent in enumerate(checks):
        if type(recent) is not Recent:
            continue
        main = recent.of
        j = next(k for k, check in enumerate(checks) if check is main)
        state: CounterState = states[j]
        exhausted = projected(state.spent, states[i].spent, main.spec.lookback, main.limit, now)
        window = main.spec.window
        assert isinstance(window, Calendar)
        if exhausted >= window.ends(now):
            continue
        hold: Hold = holds[j]
        flag = f"alert:{hold.slot}:burn:{main.limit!r}"
        if _claim(call, flag, hold.ttl, now):
            fire(call, _alert(call, main, "burn_rate", state.spent, now, exhausted_at=exhausted))


def _alert(
    call: Call,
    check: Check,
    kind: Kind,
    spent: float,
    now: float,
    *,
    threshold: float | None = None,
    exhausted_at: float | None = None,
) -> Alert:
    spec = check.spec
    key = {**check.frame.match, **{k: call.tags.get(k, "") for k in spec.key}}
    window = spec.window
    end = window.end(now) if isinstance(window, Calendar) else None
    return Alert(
        kind=kind,
        name=spec.name,
        key=key,
        unit=check.unit,
        spent=spent,
        limit=check.limit,
        threshold=threshold,
        window_end=end,
        exhausted_at=datetime.fromtimestamp(exhausted_at, UTC) if exhausted_at is not None else None,
        at=datetime.fromtimestamp(now, UTC),
    )


def fire(call: Call | None, alert: Alert) -> None:
    """Deliver ``alert``: span event, metric, log line, then each ``on_alert`` hook (guarded)."""
    from tollgate.config import settings

    attributes: dict[str, Any] = {
        "tollgate.alert.kind": alert.kind,
        "tollgate.budget.name": alert.name,
        "tollgate.budget.unit": alert.unit,
        "tollgate.budget.spent": alert.spent,
        "tollgate.budget.limit": alert.limit,
    }
    if alert.threshold is not None:
        attributes["tollgate.alert.threshold"] = alert.threshold
    if alert.exhausted_at is not None:
        attributes["tollgate.alert.exhausted_at"] = alert.exhausted_at.isoformat()
    if call is not None:
        try:
            call.span.add_event("tollgate.alert", attributes)
        except Exception:
            log.debug("tollgate could not add an alert event", exc_info=True)
    try:
        _alerts.add(1, {"tollgate.alert.kind": alert.kind, "tollgate.budget.name": alert.name})
    except Exception:
        log.debug("tollgate could not count an alert", exc_info=True)
    hooks = settings().on_alert
    # Heard through a hook, it is logged for the record; with no hook, the log is the alert.
    log.log(logging.INFO if hooks else logging.WARNING, "tollgate alert: %s", alert.message())
    for hook in hooks:
        try:
            hook(alert)
        except Exception:
            log.exception("tollgate on_alert hook %r failed", hook)


def projected(spent: float, recent: float, lookback: float, limit: float, now: float) -> float:
    """When the cap is reached if the spend of the last ``lookback`` seconds goes on (inf: never).

    >>> projected(spent=2.0, recent=1.0, lookback=3600, limit=5.0, now=0.0)
    10800.0
    """
    rate = recent / lookback
    return now + (limit - spent) / rate if rate > 0 and limit > spent else math.inf
