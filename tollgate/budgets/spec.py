"""What a budget is: limits, window, key, and what to do when a call would exceed it.

A :class:`BudgetSpec` is a small frozen dataclass that validates itself on creation, so a typo
(``on_exceed="blok"``) fails where the budget is written, not at the first expensive call.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from tollgate.stores.windows import Calendar, Lifetime, Rolling, Window, window_for

if TYPE_CHECKING:
    from tollgate.pricing import PriceTable

Action = Literal["block", "downgrade", "clamp", "truncate", "raise"]
ACTIONS: tuple[Action, ...] = ("block", "downgrade", "clamp", "truncate", "raise")
#: The pre-flight actions, in the order the gate tries them when several budgets ask.
PREFLIGHT_ORDER: tuple[Action, ...] = ("downgrade", "clamp", "truncate")
#: Below this many output tokens a clamp is pointless: the call is blocked instead.
CLAMP_FLOOR = 16
#: Seconds a call that does not fit only because of other calls' holds waits for them to settle,
#: unless configured (``configure(hold_wait=...)``, ``budget(..., hold_wait=...)``): see
#: :mod:`tollgate.budgets.waiting`.
HOLD_WAIT = 5.0


def finite_number(value: object) -> float | None:
    """``value`` as an int or float if it is a finite real number (a bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None


def check_amount(label: str, value: object, fix: str) -> float:
    """``value`` if it is a finite number above zero, else a ValueError
    ``"{label}={value!r}: {fix}"`` naming it and saying what to give instead."""
    number = finite_number(value)
    if number is None or number <= 0:
        raise ValueError(f"{label}={value!r}: {fix}")
    return number


def check_count(label: str, value: object, fix: str, *, least: int = 1) -> int:
    """``value`` as an int if it is a whole number of at least ``least`` (``100`` or ``1e6``,
    not ``1.5``, NaN, infinity or a bool), else a ValueError naming it as :func:`check_amount`."""
    number = finite_number(value)
    if number is None or (isinstance(number, float) and not number.is_integer()) or number < least:
        raise ValueError(f"{label}={value!r}: {fix}")
    return int(number)


def check_hold_wait(label: str, value: object) -> float:
    """``value`` as seconds to wait for holds (a finite number, 0 or more), else a ValueError
    naming it and the fix.

    >>> check_hold_wait("hold_wait", 2)
    2.0
    >>> check_hold_wait("hold_wait", -1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: hold_wait=-1: seconds a call blocked only by other calls' holds waits ... e.g. hold_wait=5
    """
    number = finite_number(value)
    if number is None or number < 0:
        raise ValueError(
            f"{label}={value!r}: seconds a call blocked only by other calls' holds waits for them "
            "to settle: a finite number, 0 or more (0: decide at once), e.g. hold_wait=5"
        )
    return float(number)


def check_downgrade_models(downgrade: Mapping[str, str], prices: PriceTable) -> None:
    """Refuse a ``downgrade`` map that names a model the price table does not know: a typo
    would swap calls to a model that does not exist, or never match the model asked for.
    Models priced with ``configure(prices=...)`` are known (configure them first).

    >>> from tollgate.pricing import default_table
    >>> check_downgrade_models({"gpt-4o": "gpt4o-mini"}, default_table())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: budget downgrade=...: no price table entry for 'gpt4o-mini' (did you mean 'gpt-4o-mini'?); ...
    """
    for model in dict.fromkeys([*downgrade, *downgrade.values()]):
        if prices.lookup(model) is not None:
            continue
        names = {p.model.lower().split("/")[-1] for p in prices}
        close = difflib.get_close_matches(model.lower(), names, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"budget downgrade={dict(downgrade)!r}: no price table entry for {model!r}{hint}; fix the "
            f"name, or price the model first: tollgate.configure(prices={{{model!r}: "
            "{'input': 1e-06, 'output': 2e-06}})"
        )


@dataclass(frozen=True)
class BudgetSpec:
    """A validated budget definition.

    >>> BudgetSpec(usd=5, per="day", key="tenant").name
    'usd=5/day/tenant'
    >>> BudgetSpec(usd=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: budget usd=nan: a limit must be a positive number of USD (finite, above 0), e.g. usd=5
    """

    usd: float | None = None
    tokens: int | None = None
    #: Agent-run limits: model calls made, and tool calls the responses asked for.
    calls: int | None = None
    tool_calls: int | None = None
    per: str | timedelta | None = None
    key: tuple[str, ...] = ()
    on_exceed: Action | Callable[[Any], str] = "block"
    downgrade: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    clamp_floor: int = CLAMP_FLOOR
    #: Fractions of a limit whose crossing raises an alert, once per window and key.
    warn_at: tuple[float, ...] = ()
    #: A burn-rate alert: the spend of the last ``lookback`` (True: a 24th of the window),
    #: continued, would reach the cap before the window ends. None: off.
    burn_rate: timedelta | bool | None = None
    #: An IANA time zone for a calendar window (None: UTC).
    tz: str | None = None
    #: A lifetime counter kept in the store for good, never reset (a standing ``per=None`` limit).
    persistent: bool = False
    #: Seconds a call that fits this budget once other calls' holds settle waits for them
    #: before the action applies (None: ``configure(hold_wait=...)``; 0: decide at once).
    hold_wait: float | None = None
    window: Window = field(default=Lifetime(), init=False)
    #: Seconds of recent spend a burn-rate alert projects from (0: no burn-rate alert).
    lookback: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None and self.calls is None and self.tool_calls is None:
            raise ValueError("a budget needs a limit: usd=..., tokens=..., calls=... or tool_calls=...")
        if self.usd is not None:
            fix = "a limit must be a positive number of USD (finite, above 0), e.g. usd=5"
            object.__setattr__(self, "usd", check_amount("budget usd", self.usd, fix))
        if self.tokens is not None:
            fix = "a limit must be a positive number of tokens (a whole number above 0), e.g. tokens=20_000"
            object.__setattr__(self, "tokens", check_count("budget tokens", self.tokens, fix))
        for unit, example in (("calls", "calls=20"), ("tool_calls", "tool_calls=50")):
            if getattr(self, unit) is not None:
                fix = f"a limit must be a whole number above 0, e.g. {example}"
                object.__setattr__(self, unit, check_count(f"budget {unit}", getattr(self, unit), fix))
        if not isinstance(self.name, str):
            raise ValueError(f"budget name={self.name!r}: a name must be a string, e.g. name='nightly'")
        if self.name and not self.name.strip():
            raise ValueError(f"budget name={self.name!r}: a name must not be blank; leave it out for one")
        if self.persistent:
            if self.per is not None:
                raise ValueError(f"budget per={self.per!r}: a persistent counter has no window (per=None)")
            if self.tz is not None:
                raise ValueError(
                    f"budget tz={self.tz!r}: tz applies to calendar windows only (per='day', ...); "
                    "a lifetime limit has no window"
                )
            object.__setattr__(self, "window", Lifetime(persistent=True))
        elif self.tz is not None:
            object.__setattr__(self, "window", window_for(self.per, self.tz))
        else:
            object.__setattr__(self, "window", window_for(self.per))
        object.__setattr__(self, "warn_at", _check_warn_at(self.warn_at, self.window))
        object.__setattr__(self, "lookback", _check_burn_rate(self.burn_rate, self.window))
        key = self.key
        if isinstance(key, str):
            key = (key,)
        if not isinstance(key, tuple) or not all(isinstance(k, str) and k.isidentifier() for k in key):
            raise ValueError(
                f"budget key={self.key!r}: use a tag name or a tuple of tag names, "
                "e.g. key='tenant' or key=('tenant', 'feature')"
            )
        object.__setattr__(self, "key", key)
        if not callable(self.on_exceed) and self.on_exceed not in ACTIONS:
            raise ValueError(
                f"budget on_exceed={self.on_exceed!r}: use one of {', '.join(ACTIONS)} or a callable"
            )
        if self.on_exceed == "downgrade" and not self.downgrade:
            raise ValueError(
                "budget on_exceed='downgrade' needs a downgrade map, e.g. {'gpt-4o': 'gpt-4o-mini'}"
            )
        if not isinstance(self.downgrade, Mapping) or not all(
            isinstance(a, str) and isinstance(b, str) and a and b for a, b in self.downgrade.items()
        ):
            raise ValueError(
                f"budget downgrade={self.downgrade!r}: a map of model name to cheaper model, "
                "e.g. {'gpt-4o': 'gpt-4o-mini'}"
            )
        fix = "a positive number of tokens (a whole number above 0), e.g. clamp_floor=16"
        object.__setattr__(self, "clamp_floor", check_count("budget clamp_floor", self.clamp_floor, fix))
        if self.hold_wait is not None:
            object.__setattr__(self, "hold_wait", check_hold_wait("budget hold_wait", self.hold_wait))
        if not self.name:
            parts = [f"usd={self.usd:g}" if self.usd is not None else ""]
            parts.append(f"tokens={self.tokens}" if self.tokens else "")
            parts.append(f"calls={self.calls}" if self.calls else "")
            parts.append(f"tool_calls={self.tool_calls}" if self.tool_calls else "")
            if self.per is not None:
                parts.append(self.per if isinstance(self.per, str) else f"rolling {self.per}")
            if self.tz is not None:
                parts.append(self.tz)
            parts.extend(self.key)
            object.__setattr__(self, "name", "/".join(p for p in parts if p))

    @property
    def windowed(self) -> bool:
        """A windowed budget is one persistent counter (per key value) shared across blocks."""
        return self.per is not None or self.persistent

    def limits(self) -> tuple[tuple[str, float], ...]:
        """Each limit the budget sets, as (unit, amount): usd, tokens, calls, tool_calls."""
        pairs = (
            ("usd", self.usd),
            ("tokens", self.tokens),
            ("calls", self.calls),
            ("tool_calls", self.tool_calls),
        )
        return tuple((unit, float(value)) for unit, value in pairs if value is not None)


def _check_warn_at(warn_at: object, window: Window) -> tuple[float, ...]:
    """``warn_at`` as sorted fractions in (0, 1]; refused on a rolling window (no window to fire
    once in)."""
    values = (warn_at,) if finite_number(warn_at) is not None else warn_at
    fix = "fractions of the limit above 0 and at most 1, e.g. warn_at=(0.5, 0.8, 0.95)"
    if not isinstance(values, (tuple, list)):
        raise ValueError(f"budget warn_at={warn_at!r}: {fix}")
    fractions = []
    for value in values:
        number = finite_number(value)
        if number is None or not 0 < number <= 1:
            raise ValueError(f"budget warn_at={warn_at!r}: {value!r} is not one of {fix}")
        fractions.append(float(number))
    if fractions and isinstance(window, Rolling):
        raise ValueError(
            f"budget warn_at={warn_at!r}: a rolling window has no window for an alert to fire once in; "
            "use a calendar window (per='day', ...) or per=None"
        )
    return tuple(sorted(set(fractions)))


#: A calendar window's nominal length in seconds (a month: 30 days), for the default look-back.
_NOMINAL = {"minute": 60, "hour": 3_600, "day": 86_400, "week": 7 * 86_400, "month": 30 * 86_400}


def _check_burn_rate(burn_rate: object, window: Window) -> float:
    """Seconds of recent spend a burn-rate alert projects from (0: off)."""
    if burn_rate is None or burn_rate is False:
        return 0.0
    if not isinstance(window, Calendar):
        raise ValueError(
            f"budget burn_rate={burn_rate!r}: a burn-rate alert projects to the end of a calendar "
            "window; give per='hour', 'day', 'week' or 'month'"
        )
    length = _NOMINAL[window.unit]
    if burn_rate is True:
        return length / 24
    if not isinstance(burn_rate, timedelta) or not 0 < burn_rate.total_seconds() < length:
        raise ValueError(
            f"budget burn_rate={burn_rate!r}: True (look back a 24th of the window) or a timedelta "
            f"shorter than the window, e.g. burn_rate=timedelta(hours=1)"
        )
    return burn_rate.total_seconds()
