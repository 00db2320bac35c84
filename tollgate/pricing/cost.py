"""What a call cost in USD, from its usage and its model's price.

The arithmetic is litellm's (``generic_cost_per_token``, ``batch_cost_calculator`` and the
built-in tool fees of ``completion_cost``) applied to tollgate's token convention (see
:mod:`tollgate.request`): ``input_tokens`` includes the cache reads and writes,
``output_tokens`` includes the reasoning tokens, so each part is billed once, at its own rate.

Cache writes last five minutes (Anthropic) or thirty (OpenAI) at the cache-write rate;
``units["cache_write_1h_tokens"]`` (Anthropic's one-hour cache) and
``units["cache_write_12h_tokens"]`` (OpenAI's twelve-hour cache), parts of
``cache_write_tokens``, bill at their lifetime's rate where the model lists one. Audio input
has long-prompt rates of its own on a few Gemini models; they switch with the prompt's size
like the text rates.

Service tiers
-------------
``Usage.service_tier`` names the tier the provider served the call at. A tier the model lists
prices for (:meth:`~tollgate.pricing.table.ModelPrice.service_tier`: ``"priority"``,
``"flex"``, ``"balanced"``, ``"ultrafast"``; ``"fast"`` is ``"priority"``, or Anthropic's fast
mode where the model has one) bills at that tier's rates, each rate the tier does not list
falling back to the standard one, exactly as litellm's ``get_cost_per_unit`` does:

* a long prompt crosses the standard thresholds and the tier's own; above one, a rate is the
  tier's above-threshold rate, else the standard above-threshold rate, else the tier's rate;
* reasoning tokens bill at the tier's reasoning rate, else at the tier's output rate when the
  tier lists one, else at the standard reasoning rate, else at the output rate;
* audio input bills at the tier's audio rate, else the standard audio rate, else the tier's
  input rate; audio output at the standard audio output rate, else the tier's output rate;
  image output at the tier's image rate, else the standard one, else the tier's output rate;
* the one- and twelve-hour cache writes resolve like the other rates. litellm 1.110 differs
  above a threshold at a tier that lists no above-threshold rate for the lifetime: it bills
  the flat lifetime rate there, not the standard above-threshold one, so a long Claude call
  served at "priority" would cost less than at standard rates (see ``_service_tier`` in
  ``scripts/update_prices.py``); tollgate bills the listed long-prompt rate;
* Anthropic's fast mode multiplies the whole token cost by the model's fast multiplier.

``"batch"`` bills the batch prices, as ``cost(..., batch=True)`` does. Any other name
(``"default"``, ``"scale"``, a tier the model lists no price for) bills the standard rates.

Server-side tool fees
---------------------
Added to the token cost, never scaled by a tier and billed in batches too:
``units["web_search_requests"]`` x ``price.web_search`` (litellm's medium search-context price;
web searches, Google Search grounding queries) and ``units["maps_grounding_requests"]`` x
``price.maps_grounding``. A model billed per prompt (``price.search_per_prompt``, Gemini 2.x)
pays each fee once when its count is above zero. ``web_fetch_requests`` (Anthropic's web fetch)
has no price: the fetched content is billed as input tokens. A unit the model lists no price
for costs nothing.

>>> from tollgate.pricing import default_table
>>> gpt5 = default_table().lookup("gpt-5")
>>> usage = Usage(input_tokens=10_000, output_tokens=1_000, service_tier="priority")
>>> round(cost(gpt5, usage) / cost(gpt5, Usage(10_000, 1_000)), 6)
2.0
>>> round(cost(gpt5, Usage(1000, 100, units={"web_search_requests": 3})) - cost(gpt5, Usage(1000, 100)), 6)
0.03
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from tollgate.pricing.table import ModelPrice, PriceTable, PriceTier, ServiceTierPrice
from tollgate.request import Estimate, LLMRequest, Usage

__all__ = ["cost", "estimate_cost", "estimate_media"]


class _Rates(Protocol):
    # What a ModelPrice, a PriceTier and a service tier's resolved rates have in common: the
    # rates a prompt-size tier replaces.
    @property
    def input(self) -> float | None: ...
    @property
    def output(self) -> float | None: ...
    @property
    def cache_read(self) -> float | None: ...
    @property
    def cache_write(self) -> float | None: ...
    @property
    def cache_write_1h(self) -> float | None: ...
    @property
    def reasoning(self) -> float | None: ...
    @property
    def cache_write_12h(self) -> float | None: ...
    @property
    def audio_input(self) -> float | None: ...
    @property
    def batch_input(self) -> float | None: ...
    @property
    def batch_output(self) -> float | None: ...
    @property
    def batch_cache_read(self) -> float | None: ...
    @property
    def batch_cache_write(self) -> float | None: ...
    @property
    def batch_cache_write_12h(self) -> float | None: ...
    @property
    def batch_audio_input(self) -> float | None: ...


class _ServedRates(NamedTuple):
    # A service tier's rates at one prompt size, each already resolved to the standard one
    # where the tier lists none (``None`` still means: fall back as for the standard rates).
    input: float | None
    output: float | None
    cache_read: float | None
    cache_write: float | None
    cache_write_1h: float | None
    reasoning: float | None
    cache_write_12h: float | None
    audio_input: float | None
    image_output: float | None
    batch_input: None = None
    batch_output: None = None
    batch_cache_read: None = None
    batch_cache_write: None = None
    batch_cache_write_12h: None = None
    batch_audio_input: None = None


def _rates_for(price: ModelPrice, input_tokens: int) -> _Rates:
    # A tier bills the whole call, so the highest threshold the prompt exceeds wins.
    tier: PriceTier | None = None
    for candidate in price.tiers:
        if input_tokens > candidate.above_input_tokens:
            tier = candidate
    return tier if tier is not None else price


def _served_rates(price: ModelPrice, served: ServiceTierPrice, input_tokens: int) -> _ServedRates:
    """The rates of a call served at ``served``, resolved as litellm's ``_get_token_base_cost``
    and ``_resolve_reasoning_token_cost`` resolve them (see the module doc)."""
    crossed: PriceTier | None = None
    for candidate in served.tiers:
        if input_tokens > candidate.above_input_tokens:
            crossed = candidate
    if served.reasoning is not None:
        reasoning: float | None = served.reasoning
    elif served.output is not None:
        reasoning = None  # the tier's output rate, at this prompt size
    else:
        reasoning = price.reasoning
    image_output = _first(served.image_output, price.image_output)
    if crossed is not None:  # written out in full by the generator
        return _ServedRates(
            crossed.input,
            crossed.output,
            crossed.cache_read,
            crossed.cache_write,
            crossed.cache_write_1h,
            reasoning,
            crossed.cache_write_12h,
            _first(crossed.audio_input, price.audio_input),
            image_output,
        )
    return _ServedRates(
        _first(served.input, price.input),
        _first(served.output, price.output),
        _first(served.cache_read, price.cache_read),
        _first(served.cache_write, price.cache_write),
        _first(served.cache_write_1h, price.cache_write_1h),
        reasoning,
        _first(served.cache_write_12h, price.cache_write_12h),
        _first(served.audio_input, price.audio_input),
        image_output,
    )


def cost(price: ModelPrice, usage: Usage, *, batch: bool = False) -> float:
    """The USD cost of one call that used ``usage`` tokens of the model priced by ``price``.

    Uncached input is billed at the input price, cache reads and writes at their prices (or
    the input price when the model lists none), audio at the audio prices when listed, and
    reasoning tokens at the reasoning price when the model has a separate one. Cache writes
    counted in ``usage.units["cache_write_1h_tokens"]`` (Anthropic's one-hour cache) or
    ``usage.units["cache_write_12h_tokens"]`` (OpenAI's twelve-hour cache) are billed at that
    lifetime's write price (above a long-prompt threshold, the one listed there). Audio,
    speech and image units (image tokens, audio seconds, characters, images; see
    :func:`_media_cost`) are billed at their own prices. A prompt above a tier's threshold
    bills the whole call at that tier's rates. ``batch=True`` (or ``usage.service_tier ==
    "batch"``) uses the batch prices, or half the standard ones where none are listed. Another
    ``usage.service_tier`` bills at that service tier's rates, and server-side tool requests in
    ``usage.units`` add their fees (see the module doc).

    >>> p = ModelPrice("m", "openai", input=2e-06, output=8e-06, cache_read=5e-07)
    >>> round(cost(p, Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=400)), 10)
    0.0022
    >>> round(cost(p, Usage(input_tokens=1000, output_tokens=100), batch=True), 10)
    0.0014
    """
    served: ServiceTierPrice | None = None
    if usage.service_tier:
        if usage.service_tier.lower() == "batch":
            batch = True
        elif not batch:
            served = price.service_tier(usage.service_tier)
    r: _Rates
    if served is not None:
        r = _served_rates(price, served, usage.input_tokens)
    else:
        r = _rates_for(price, usage.input_tokens) if price.tiers else price
    input_rate = r.input or 0.0
    output_rate = r.output or 0.0
    if not (
        batch
        or served
        or usage.cache_read_tokens
        or usage.cache_write_tokens
        or usage.reasoning_tokens
        or usage.audio_input_tokens
        or usage.audio_output_tokens
        or usage.units
    ):  # the common case, tokens in and out only: the same sum as below, term by term
        return max(usage.input_tokens, 0) * input_rate + max(usage.output_tokens, 0) * output_rate
    fees = _tool_fees(price, usage) if usage.units else 0.0
    cache_read = max(usage.cache_read_tokens, 0)
    cache_write = max(usage.cache_write_tokens, 0)
    uncached = usage.uncached_input_tokens
    output = max(usage.output_tokens, 0)
    audio_in = min(max(usage.audio_input_tokens, 0), uncached)
    # Writes to a longer-lived cache (parts of cache_write_tokens) have their own prices.
    write_1h = _part(usage, "cache_write_1h_tokens", cache_write)
    write_12h = _part(usage, "cache_write_12h_tokens", cache_write - write_1h)
    if batch:
        return (
            _batch_cost(price, r, uncached - audio_in, audio_in, cache_read, cache_write, write_12h, output)
            + fees
        )

    reasoning = min(max(usage.reasoning_tokens, 0), output)
    audio_out = min(max(usage.audio_output_tokens, 0), output - reasoning)
    write_rate = _or(r.cache_write, input_rate)
    read_rate = _or(r.cache_read, input_rate)
    image_in = image_cached = image_out = media = 0.0
    if usage.units and not usage.units.keys() <= _NON_MEDIA_UNITS:  # audio, speech, images
        image_in, image_cached, image_out = _media_parts(
            usage, uncached - audio_in, cache_read, output - reasoning - audio_out
        )
        image_rate = r.image_output if isinstance(r, _ServedRates) else price.image_output
        rates = (input_rate, r.cache_read, output_rate, image_rate)
        media = _media_cost(price, usage, (image_in, image_cached, image_out), rates)
    tokens = (
        (uncached - audio_in - image_in) * input_rate
        + (cache_read - image_cached) * read_rate
        + audio_in * _or(_first(r.audio_input, price.audio_input), input_rate)
        + (cache_write - write_1h - write_12h) * write_rate
        + write_1h * _or(r.cache_write_1h, write_rate)
        + write_12h * _or(r.cache_write_12h, write_rate)
        + (output - reasoning - audio_out - image_out) * output_rate
        + audio_out * _or(price.audio_output, output_rate)
        + reasoning * _or(r.reasoning, output_rate)
        + media
    )
    if served is not None and served.multiplier != 1.0:
        tokens *= served.multiplier
    return tokens + fees


def _tool_fees(price: ModelPrice, usage: Usage) -> float:
    """Server-side tool fees: web searches and Google Maps grounding requests, per request or,
    for a model billed per prompt, once for any number of them."""
    searches = _unit(usage, "web_search_requests")
    maps = _unit(usage, "maps_grounding_requests")
    if price.search_per_prompt:
        searches, maps = float(searches > 0), float(maps > 0)
    return searches * (price.web_search or 0.0) + maps * (price.maps_grounding or 0.0)


#: Units that are not audio, speech or image media: refinements of token counts already billed
#: above, and server-side tool requests (billed by :func:`_tool_fees`).
_NON_MEDIA_UNITS = frozenset(
    {
        "cache_write_1h_tokens",
        "cache_write_12h_tokens",
        "web_search_requests",
        "web_fetch_requests",
        "maps_grounding_requests",
    }
)


def _unit(usage: Usage, name: str) -> float:
    value = usage.units.get(name, 0)
    return value if isinstance(value, int | float) and value > 0 else 0.0


def _part(usage: Usage, name: str, whole: int) -> int:
    # A count that is a part of another one, clipped to it.
    return min(int(_unit(usage, name)), max(whole, 0)) if usage.units else 0


def _media_parts(usage: Usage, text_in: int, cache_read: int, text_out: int) -> tuple[float, float, float]:
    """Image input, image cache-read and image output tokens, each clipped to the token count
    it is a part of (so a malformed unit can never bill more tokens than the call used)."""
    image_cached = min(_unit(usage, "image_cache_read_tokens"), cache_read)
    image_in = min(max(_unit(usage, "image_input_tokens") - image_cached, 0.0), text_in)
    image_out = min(_unit(usage, "image_output_tokens"), text_out)
    return image_in, image_cached, image_out


def _media_cost(
    price: ModelPrice,
    usage: Usage,
    image_tokens: tuple[float, float, float],
    rates: tuple[float, float | None, float, float | None],
) -> float:
    """What ``usage.units`` adds: image tokens at the image rates, audio seconds, characters
    and images at their listed prices.

    Units: ``image_input_tokens`` / ``image_cache_read_tokens`` (parts of ``input_tokens`` and
    of ``cache_read_tokens``), ``image_output_tokens`` (a part of ``output_tokens``), billed at
    ``image_input`` / ``image_cache_read`` / ``image_output`` (the service tier's image output
    rate where it lists one), each falling back to the text rate it replaces (``rates``: the
    call's input, cache-read, output and image output rates at its prompt size and tier, or
    ``None`` where the model lists none);
    ``audio_seconds`` of input audio at ``input_per_second``; ``audio_output_seconds`` of
    generated audio at ``output_per_second``; ``characters`` of input text at
    ``input_per_character``; ``images`` generated at ``output_per_image`` (or
    ``input_per_image``, where litellm files OpenAI's per-image prices). A unit whose price the
    model does not list costs nothing.
    """
    image_in, image_cached, image_out = image_tokens
    input_rate, read_rate, output_rate, image_out_rate = rates
    image_in_rate = _or(price.image_input, input_rate)
    per_image = price.output_per_image if price.output_per_image is not None else price.input_per_image
    return (
        image_in * image_in_rate
        + image_cached * _or(price.image_cache_read, _or(read_rate, image_in_rate))
        + image_out * _or(image_out_rate, output_rate)
        + _unit(usage, "audio_seconds") * (price.input_per_second or 0.0)
        + _unit(usage, "audio_output_seconds") * (price.output_per_second or 0.0)
        + _unit(usage, "characters") * (price.input_per_character or 0.0)
        + _unit(usage, "images") * (per_image or 0.0)
    )


def _batch_cost(
    price: ModelPrice,
    r: _Rates,
    text_in: int,
    audio_in: int,
    cache_read: int,
    cache_write: int,
    write_12h: int,
    output: int,
) -> float:
    # As litellm bills batches: a listed batch price, else half the standard one. When the
    # model lists a batch input price but no batch cache-read price, cache reads bill at the
    # standard cache-read rate (at the prompt's size), or as batch input when it lists none;
    # cache writes without a batch price bill as batch input, twelve-hour ones at their own
    # batch price where listed. All output, reasoning and audio included, bills at the output
    # rate.
    input_rate = r.input or 0.0
    listed_input = r.batch_input
    batch_input = listed_input if listed_input is not None else input_rate / 2
    write_12h_rate: float | None = None
    if listed_input is not None:
        read_rate = _or(r.batch_cache_read, _or(r.cache_read, listed_input))
        write_rate = _or(r.batch_cache_write, listed_input)
        write_12h_rate = r.batch_cache_write_12h
    else:
        read_rate = _or(r.batch_cache_read, _or(r.cache_read, input_rate) / 2)
        write_rate = _or(r.batch_cache_write, _or(r.cache_write, input_rate) / 2)
    output_rate = _or(r.batch_output, (r.output or 0.0) / 2)
    audio_rate = _or(_first(r.batch_audio_input, price.batch_audio_input), batch_input)
    return (
        text_in * batch_input
        + audio_in * audio_rate
        + cache_read * read_rate
        + (cache_write - write_12h) * write_rate
        + write_12h * _or(write_12h_rate, write_rate)
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


def estimate_media(
    request: LLMRequest, price: ModelPrice | None, input_tokens: int, table: PriceTable
) -> Estimate:
    """The pre-flight estimate of an audio, speech or image call: its prompt tokens and the
    units its adapter expects (``request.units``), priced by :func:`cost`.

    Output tokens are the caller's cap, else the model's maximum output when it lists an output
    price (a transcription's text), else none (speech and images bill their output in units).
    ``"images@<quality>/<size>"`` units are priced at the table's per-image entry for that
    quality and size when there is one (its image tokens are then not priced again).

    >>> p = ModelPrice("whisper-1", "openai", input_per_second=0.0001)
    >>> r = LLMRequest("openai", "transcription", "whisper-1", units={"audio_seconds": 12.5})
    >>> round(estimate_media(r, p, 0, PriceTable([p])).usd, 10)
    0.00125
    """
    units = dict(request.units)
    cap = request.max_output_tokens
    if cap is None:
        cap = (price.max_output_tokens or 0) if price is not None and price.output else 0
    listed = 0.0
    for key in [k for k in units if k.startswith("images@")]:
        count = units.pop(key)
        entry = table.lookup(f"{key.removeprefix('images@')}/{request.model}", request.provider)
        per_image = None
        if entry is not None and price is not None:
            per_image = _or(entry.output_per_image, entry.input_per_image or 0.0) or None
        if per_image is not None:
            listed += count * per_image
            units.pop("images", None)
    image_out = int(units.get("image_output_tokens", 0))
    usage = Usage(
        input_tokens=input_tokens + int(units.get("image_input_tokens", 0)),
        output_tokens=cap * max(1, request.n) + image_out,
        units=units,
    )
    if price is None:
        return Estimate(usage.input_tokens, usage.output_tokens, 0.0, priced=False)
    if listed:  # the per-image price covers the images' output tokens
        units.pop("image_output_tokens", None)
        priced = Usage(usage.input_tokens, usage.output_tokens - image_out, units=units)
        return Estimate(usage.input_tokens, usage.output_tokens, cost(price, priced) + listed)
    return Estimate(usage.input_tokens, usage.output_tokens, cost(price, usage))


def _or(value: float | None, default: float) -> float:
    # Explicit None check: a listed price of 0.0 is a real (free) price, not a missing one.
    return default if value is None else value


def _first(value: float | None, default: float | None) -> float | None:
    return default if value is None else value
