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

from tollgate.stores.windows import Lifetime, Window, window_for

if TYPE_CHECKING:
    from tollgate.pricing import PriceTable

Action = Literal["block", "downgrade", "clamp", "truncate", "raise"]
ACTIONS: tuple[Action, ...] = ("block", "downgrade", "clamp", "truncate", "raise")
#: The pre-flight actions, in the order the gate tries them when several budgets ask.
PREFLIGHT_ORDER: tuple[Action, ...] = ("downgrade", "clamp", "truncate")
#: Below this many output tokens a clamp is pointless: the call is blocked instead.
CLAMP_FLOOR = 16


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
    per: str | timedelta | None = None
    key: tuple[str, ...] = ()
    on_exceed: Action | Callable[[Any], str] = "block"
    downgrade: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    clamp_floor: int = CLAMP_FLOOR
    window: Window = field(default=Lifetime(), init=False)

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None:
            raise ValueError("a budget needs a limit: usd=..., tokens=..., or both")
        if self.usd is not None:
            fix = "a limit must be a positive number of USD (finite, above 0), e.g. usd=5"
            object.__setattr__(self, "usd", check_amount("budget usd", self.usd, fix))
        if self.tokens is not None:
            fix = "a limit must be a positive number of tokens (a whole number above 0), e.g. tokens=20_000"
            object.__setattr__(self, "tokens", check_count("budget tokens", self.tokens, fix))
        if not isinstance(self.name, str):
            raise ValueError(f"budget name={self.name!r}: a name must be a string, e.g. name='nightly'")
        if self.name and not self.name.strip():
            raise ValueError(f"budget name={self.name!r}: a name must not be blank; leave it out for one")
        object.__setattr__(self, "window", window_for(self.per))
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
        if not self.name:
            parts = [f"usd={self.usd:g}" if self.usd is not None else ""]
            parts.append(f"tokens={self.tokens}" if self.tokens else "")
            if self.per is not None:
                parts.append(self.per if isinstance(self.per, str) else f"rolling {self.per}")
            parts.extend(self.key)
            object.__setattr__(self, "name", "/".join(p for p in parts if p))

    @property
    def windowed(self) -> bool:
        """A windowed budget is one persistent counter (per key value) shared across blocks."""
        return self.per is not None
