"""What a reported usage may be trusted for: readable (counts the gate can price), plausible
(counts a call could have used), and the units a request is billed whatever came back.

The gate estimates a usage that fails either test (:mod:`tollgate.call`), and so does an
abandoned stream's charge (:mod:`tollgate.abandoned`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

from tollgate.pricing.table import ModelPrice
from tollgate.request import LLMRequest, Usage

__all__ = ["amount", "billed_units", "implausible", "readable"]

#: Units an audio or image request expects that bill it whatever came back (see ``LLMRequest.units``).
BILLED_UNITS = ("audio_seconds", "audio_output_seconds", "characters", "images")
_counts = operator.attrgetter(
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
)


def amount(value: Any) -> bool:
    """``value`` is a finite, non-negative int or float."""
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def readable(usage: Any) -> bool:
    """``usage`` is a Usage the gate can price: counts are non-negative ints, units finite numbers."""
    if type(usage) is not Usage:
        return False
    for value in _counts(usage):
        if type(value) is not int or value < 0:
            return False
    units = usage.units
    return not units or (
        isinstance(units, Mapping) and all(isinstance(k, str) and amount(v) for k, v in units.items())
    )


def billed_units(request: LLMRequest) -> dict[str, float]:
    """The units ``request`` is billed whatever came back (the audio sent, the characters spoken,
    the images asked for)."""
    units = request.units
    return {k: units[k] for k in BILLED_UNITS if k in units} if units else {}


#: Counts beyond this are not counts (10^30 tokens overflows a ledger and blocks a budget).
_MAX_COUNT = 10**9
#: How many times its context window a call may read: server-side tool loops and compaction
#: read the context again at each step, and report the sum. A call without tools or parts is
#: one step, but the table's window may be short of a beta's (Anthropic's 1M context on models
#: listed at 200k): 8.
_STEPS = 64
_ONE_STEP = 8


def implausible(usage: Usage, price: ModelPrice | None, request: LLMRequest) -> str | None:
    """Why ``usage`` cannot be what the call used, or None: a count beyond any call's, cache
    or reasoning or audio tokens beyond the count they are a part of, input beyond what the
    model can read or output beyond what it can write (over every step of a tool loop)."""
    if usage.input_tokens > _MAX_COUNT or usage.output_tokens > _MAX_COUNT:
        return f"more than {_MAX_COUNT:,} tokens"
    if usage.cache_read_tokens + usage.cache_write_tokens > usage.input_tokens:
        return "cached tokens exceed input tokens"
    if usage.reasoning_tokens + usage.audio_output_tokens > usage.output_tokens:
        return "reasoning or audio tokens exceed output tokens"
    if usage.audio_input_tokens > usage.input_tokens:
        return "audio tokens exceed input tokens"
    if usage.units and any(v > _MAX_COUNT for v in usage.units.values()):
        return f"a unit count above {_MAX_COUNT:,}"
    if price is None:
        return None
    steps = max(len(usage.parts), 1) * _STEPS if usage.parts or request.tools else _ONE_STEP
    window = price.max_input_tokens
    if window and usage.input_tokens > window * steps:
        return f"input tokens above {steps} times the context window ({window:,})"
    most = price.max_output_tokens
    if most and usage.output_tokens > most * max(request.n, 1) * steps:
        return f"output tokens above {steps} times the model's maximum output ({most:,})"
    return None
