"""What a call is expected to cost before it is made: its prompt, and the most output it may get.

Pre-flight reserves this estimate on every budget; a failed request read here never fails the
call (see :func:`estimate_request`).
"""

from __future__ import annotations

from collections.abc import Callable

from tollgate.config import Settings
from tollgate.pricing.cost import cost, estimate_cost
from tollgate.pricing.table import ModelPrice, has_price
from tollgate.pricing.tokens import count_messages, count_prompt
from tollgate.request import Estimate, LLMRequest, Usage

#: Output cap assumed for the worst case when neither the caller nor the price table gives one.
DEFAULT_MAX_OUTPUT_TOKENS = 4096


def lookup_price(s: Settings, model: str, provider: str | None) -> ModelPrice | None:
    """The price ``model`` is billed at, or None when unpriced.

    Some table entries list only token limits (subscription products): for cost they are unpriced.
    """
    entry = s.prices.lookup(model, provider)
    return entry if entry is not None and has_price(entry) else None


def input_tokens(request: LLMRequest) -> int:
    """The prompt's tokens: messages (with tools) and raw prompts. Raises on content it cannot
    read (a message that is not a mapping); :func:`estimate_request` falls back."""
    counted = 0
    if request.messages or request.tools:
        counted = count_messages(request.messages, request.model, request.provider, request.tools)
    if request.prompt:
        counted += count_prompt(request.prompt, request.model, request.provider)
    return counted


def estimate_request(
    request: LLMRequest,
    price: ModelPrice | None,
    expected_output: int | None = None,
) -> Estimate:
    """Tokens and USD to reserve for ``request``: its prompt, and the most output it may get.

    The output is the caller's cap; without one, ``expected_output`` (see
    ``configure(expected_output_tokens=...)``), else the model's maximum output. Embeddings
    have no output. A request with ``units`` (audio, speech, images) is estimated by
    :func:`~tollgate.pricing.cost.estimate_media`.
    """
    counted = input_tokens(request)
    if request.units:  # audio, speech and images: billed in units beyond tokens
        from tollgate.config import settings
        from tollgate.pricing.cost import estimate_media

        return estimate_media(request, price, counted, settings().prices)
    cap = request.max_output_tokens
    if request.operation == "embeddings":
        cap = 0
    elif cap is None:
        cap = expected_output or (price.max_output_tokens if price else None) or DEFAULT_MAX_OUTPUT_TOKENS
    output_tokens = cap * max(1, request.n)
    if price is None:
        return Estimate(counted, output_tokens, 0.0, priced=False)
    if request.service_tier:  # the dearer of all-reasoning and no-reasoning output, at the tier's rates
        tier = request.service_tier
        usd = max(
            cost(price, Usage(counted, output_tokens, service_tier=tier)),
            cost(price, Usage(counted, output_tokens, reasoning_tokens=output_tokens, service_tier=tier)),
        )
        return Estimate(counted, output_tokens, usd)
    return Estimate(counted, output_tokens, estimate_cost(price, counted, output_tokens))


Estimator = Callable[[LLMRequest], tuple[Estimate, ModelPrice | None]]


def estimator(s: Settings) -> Estimator:
    """``request -> (estimate, price)`` under settings ``s``: what pre-flight reserves for a request."""

    def estimate(request: LLMRequest) -> tuple[Estimate, ModelPrice | None]:
        price = lookup_price(s, request.model, request.provider)
        return estimate_request(request, price, s.expected_output_tokens), price

    return estimate
