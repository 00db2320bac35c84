"""What an abandoned call is charged: at least what its provider may have generated.

A call is abandoned when its caller lets go of it before its end: a stream closed, left or
dropped before the provider's final usage, a generator closed early, a call its framework never
said the end of. The provider bills every token it generated before it saw the connection
close, and that is more than the caller read: it goes on generating while the caller works,
and what it sent waits in buffers on the way. Charging what was read let a reader that takes
three chunks and drops the stream run a provider to several times a budget.

So the stream wrappers first read what has already arrived, without waiting for more (see
:mod:`tollgate.streams`), and an abandoned call is then charged, in this order:

- ``"usage"``: the provider's own final usage, when it was among what arrived (the provider
  had finished): as reported, not estimated;
- ``"text"``: what the text counts, when the provider had finished but reported no usage (a
  stream without ``include_usage``): estimated, as any call without usage;
- ``"reservation"``: otherwise the provider's bill cannot be known from this side, and is
  bounded by what pre-flight reserved: the input (as the provider reported it, else as
  estimated) and the larger of the output counted and the output cap pre-flight reserved (the
  caller's cap after any clamp, else the model's maximum output): the most the provider can
  have generated. Estimated.

The record says which, with what was read, drained, counted and charged: one
:class:`~tollgate.decisions.Abandoned` step. The gate applies this to every outcome a door ends
as ``"abandoned"`` (:meth:`tollgate.gate.Call.finish`), so no door decides it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from tollgate.decisions import Abandoned
from tollgate.plausible import billed_units, readable
from tollgate.pricing.tokens import RunningCount
from tollgate.request import Usage

if TYPE_CHECKING:
    from tollgate.call import Call, Outcome


def charge(
    call: Call, outcome: Outcome, *, ended: bool = False, read: int | None = None, drained: int = 0
) -> Outcome:
    """``outcome`` (status ``"abandoned"``) as charged: see the module. ``ended``: the provider
    had finished (its last chunk was read); ``read``, ``drained``: chunks the caller read, and
    tollgate after it. An outcome charged already (it has its step) is returned as it is."""
    if any(isinstance(step, Abandoned) for step in outcome.steps):
        return outcome
    try:
        return _charged(call, outcome, ended, read, drained)
    except Exception:  # a bug of tollgate's own: still charge the bound, never raise to a closing caller
        bound = Usage(input_tokens=call.estimate.input_tokens, output_tokens=call.estimate.output_tokens)
        step = Abandoned("reservation", read, drained, 0, bound.output_tokens)
        return outcome._replace(
            usage=bound, usd=None, status="abandoned", estimated=True, steps=(*outcome.steps, step)
        )


def _charged(call: Call, outcome: Outcome, ended: bool, read: int | None, drained: int) -> Outcome:
    usage = outcome.usage if readable(outcome.usage) else None
    text = outcome.text if isinstance(outcome.text, str) else ""
    counter = RunningCount(call.decision.model, call.request.provider)
    counted = counter.recount(text) if text else 0
    reported = usage.output_tokens if usage is not None else 0
    counted = max(counted, reported)  # a running count (Anthropic, Gemini) may lag the text
    if ended and usage is not None:
        step = Abandoned("usage", read, drained, usage.output_tokens, usage.output_tokens)
        return outcome._replace(status="abandoned", steps=(*outcome.steps, step))
    if ended:
        step = Abandoned("text", read, drained, counted, counted)
        return outcome._replace(usage=None, status="abandoned", estimated=True, steps=(*outcome.steps, step))
    reserved = call.estimate.output_tokens
    # A provider keeps to the cap pre-flight reserved, so within it the cap is the bound (the
    # tokenizer's own count compared, not the one with the provider factor: like with like); a
    # provider that went past it is charged what was counted.
    charged = reserved if counter.raw <= reserved and reported <= reserved else max(counted, reserved)
    if usage is not None and usage.input_tokens > 0:  # the provider said what it read
        bound = dataclasses.replace(usage, output_tokens=charged)
    else:
        billed = billed_units(call.request)
        if usage is not None and usage.units:
            billed = {**billed, **usage.units}
        bound = Usage(input_tokens=call.estimate.input_tokens, output_tokens=charged, units=billed)
    step = Abandoned("reservation", read, drained, counted, charged)
    return outcome._replace(
        usage=bound, usd=None, status="abandoned", estimated=True, steps=(*outcome.steps, step)
    )
