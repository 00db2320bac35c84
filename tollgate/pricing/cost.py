"""What a call cost in USD, from its usage and its model's price.

The arithmetic is litellm's (``generic_cost_per_token`` and ``batch_cost_calculator``) applied
to tollgate's token convention (see :mod:`tollgate.request`): ``input_tokens`` includes the
cache reads and writes, ``output_tokens`` includes the reasoning tokens, so each part is
billed once, at its own rate.
"""

from __future__ import annotations

from typing import Protocol

from tollgate.pricing.table import ModelPrice, PriceTier
from tollgate.request import Usage

__all__ = ["cost", "estimate_cost"]


class _Rates(Protocol):
    # What a ModelPrice and a PriceTier have in common: the rates a prompt-size tier replaces.
    @property
    def input(self) -> float | None: ...
    @property
    def output(self) -> float | None: ...
    @property
    def cache_read(self) -> float | None: ...
    @property
    def cache_write(self) -> float | None: ...
    @property
    def reasoning(self) -> float | None: ...
    @property
    def batch_input(self) -> float | None: ...
    @property
    def batch_output(self) -> float | None: ...
    @property
    def batch_cache_read(self) -> float | None: ...
    @property
    def batch_cache_write(self) -> float | None: ...


def _rates_for(price: ModelPrice, input_tokens: int) -> _Rates:
    # A tier bills the whole call, so the highest threshold the prompt exceeds wins.
    tier: PriceTier | None = None
    for candidate in price.tiers:
        if input_tokens > candidate.above_input_tokens:
            tier = candidate
    return tier if tier is not None else price


def cost(price: ModelPrice, usage: Usage, *, batch: bool = False) -> float:
    """The USD cost of one call that used ``usage`` tokens of the model priced by ``price``.

    Uncached input is billed at the input price, cache reads and writes at their prices (or
    the input price when the model lists none), audio at the audio prices when listed, and
    reasoning tokens at the reasoning price when the model has a separate one. Cache writes
    counted in ``usage.units["cache_write_1h_tokens"]`` (Anthropic's one-hour cache) are billed
    at the one-hour write price. A prompt
    above a tier's threshold bills the whole call at that tier's rates. ``batch=True``
    uses the batch prices, or half the standard ones where none are listed.

    >>> p = ModelPrice("m", "openai", input=2e-06, output=8e-06, cache_read=5e-07)
    >>> round(cost(p, Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=400)), 10)
    0.0022
    >>> round(cost(p, Usage(input_tokens=1000, output_tokens=100), batch=True), 10)
    0.0014
    """
    r = _rates_for(price, usage.input_tokens) if price.tiers else price
    input_rate = r.input or 0.0
    output_rate = r.output or 0.0
    if not (
        batch
        or usage.cache_read_tokens
        or usage.cache_write_tokens
        or usage.reasoning_tokens
        or usage.audio_input_tokens
        or usage.audio_output_tokens
        or usage.units
    ):  # the common case, tokens in and out only: the same sum as below, term by term
        return max(usage.input_tokens, 0) * input_rate + max(usage.output_tokens, 0) * output_rate
    cache_read = max(usage.cache_read_tokens, 0)
    cache_write = max(usage.cache_write_tokens, 0)
    uncached = usage.uncached_input_tokens
    output = max(usage.output_tokens, 0)
    audio_in = min(max(usage.audio_input_tokens, 0), uncached)
    if batch:
        return _batch_cost(price, r, uncached - audio_in, audio_in, cache_read, cache_write, output)

    reasoning = min(max(usage.reasoning_tokens, 0), output)
    audio_out = min(max(usage.audio_output_tokens, 0), output - reasoning)
    # Anthropic's one-hour cache writes (a part of cache_write_tokens) have their own price.
    write_1h = (
        min(max(int(usage.units.get("cache_write_1h_tokens", 0)), 0), cache_write) if usage.units else 0
    )
    write_rate = _or(r.cache_write, input_rate)
    return (
        (uncached - audio_in) * input_rate
        + cache_read * _or(r.cache_read, input_rate)
        + audio_in * _or(price.audio_input, input_rate)
        + (cache_write - write_1h) * write_rate
        + write_1h * _or(price.cache_write_1h, write_rate)
        + (output - reasoning - audio_out) * output_rate
        + audio_out * _or(price.audio_output, output_rate)
        + reasoning * _or(r.reasoning, output_rate)
    )


def _batch_cost(
    price: ModelPrice, r: _Rates, text_in: int, audio_in: int, cache_read: int, cache_write: int, output: int
) -> float:
    # As litellm bills batches: a listed batch price, else half the standard one. When the
    # model lists a batch input price but no batch cache price, cached tokens bill at the
    # batch input price. All output, reasoning and audio included, bills at the output rate.
    input_rate = r.input or 0.0
    listed_input = r.batch_input
    batch_input = listed_input if listed_input is not None else input_rate / 2
    if listed_input is not None:
        read_rate = _or(r.batch_cache_read, listed_input)
        write_rate = _or(r.batch_cache_write, listed_input)
    else:
        read_rate = _or(r.batch_cache_read, _or(r.cache_read, input_rate) / 2)
        write_rate = _or(r.batch_cache_write, _or(r.cache_write, input_rate) / 2)
    output_rate = _or(r.batch_output, (r.output or 0.0) / 2)
    return (
        text_in * batch_input
        + audio_in * _or(price.batch_audio_input, batch_input)
        + cache_read * read_rate
        + cache_write * write_rate
        + output * output_rate
    )


def estimate_cost(price: ModelPrice, input_tokens: int, output_tokens: int) -> float:
    """The pre-flight USD estimate of a call: no cache hits, and output at its dearest rate.

    Whether output tokens will be reasoning is unknown before the call, so they are priced
    at the higher of the output and reasoning prices; a tier applies as in :func:`cost`.

    >>> p = ModelPrice("m", "openai", input=2e-06, output=8e-06, reasoning=1e-05)
    >>> round(estimate_cost(p, 1000, 100), 10)
    0.003
    """
    r = _rates_for(price, input_tokens)
    output_rate = max(r.output or 0.0, r.reasoning or 0.0)
    return max(input_tokens, 0) * (r.input or 0.0) + max(output_tokens, 0) * output_rate


def _or(value: float | None, default: float) -> float:
    # Explicit None check: a listed price of 0.0 is a real (free) price, not a missing one.
    return default if value is None else value
