"""What a budget is: limits, window, key, and what to do when a call would exceed it.

A :class:`BudgetSpec` is a small frozen dataclass that validates itself on creation, so a typo
(``on_exceed="blok"``) fails where the budget is written, not at the first expensive call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from tollgate.stores.windows import Lifetime, Window, window_for

Action = Literal["block", "downgrade", "clamp", "truncate", "raise"]
ACTIONS: tuple[Action, ...] = ("block", "downgrade", "clamp", "truncate", "raise")
#: The pre-flight actions, in the order the gate tries them when several budgets ask.
PREFLIGHT_ORDER: tuple[Action, ...] = ("downgrade", "clamp", "truncate")
#: Below this many output tokens a clamp is pointless: the call is blocked instead.
CLAMP_FLOOR = 16


@dataclass(frozen=True)
class BudgetSpec:
    """A validated budget definition.

    >>> BudgetSpec(usd=5, per="day", key="tenant").name
    'usd=5/day/tenant'
    >>> BudgetSpec(usd=-1)
    Traceback (most recent call last):
    ...
    ValueError: budget usd=-1: a limit must be a positive number
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
        for unit in ("usd", "tokens"):
            value = getattr(self, unit)
            bad = isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
            if value is not None and bad:
                raise ValueError(f"budget {unit}={value!r}: a limit must be a positive number")
        object.__setattr__(self, "window", window_for(self.per))
        key = self.key
        if isinstance(key, str):
            key = (key,)
        if not isinstance(key, tuple) or not all(isinstance(k, str) and k.isidentifier() for k in key):
            raise ValueError(f"budget key={self.key!r}: use a tag name or a tuple of tag names")
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
            isinstance(a, str) and isinstance(b, str) for a, b in self.downgrade.items()
        ):
            raise ValueError(f"budget downgrade={self.downgrade!r}: a map of model name to cheaper model")
        if not isinstance(self.clamp_floor, int) or self.clamp_floor < 1:
            raise ValueError(f"budget clamp_floor={self.clamp_floor!r}: a positive number of tokens")
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
