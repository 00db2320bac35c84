"""The door for usage learned elsewhere: :func:`record` writes a call tollgate did not see (a
batch job's results file, a provider invoice line, a job run by another service)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from tollgate import gate
from tollgate.config import settings
from tollgate.errors import UnpricedModelError
from tollgate.pricing.estimate import lookup_price
from tollgate.request import CallRecord, LLMRequest, Status, Usage
from tollgate.tags import _tag_value, current_tags

_USAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Usage) if f.type == "int")  # the counts
_STATUSES = ("ok", "error", "blocked", "abandoned")


def record(
    *,
    provider: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    operation: str = "chat",
    usd: float | None = None,
    units: dict[str, float] | None = None,
    started_at: float | datetime | None = None,
    ended_at: float | datetime | None = None,
    response_model: str | None = None,
    response_id: str | None = None,
    status: Status = "ok",
    estimated: bool = False,
    tool_calls: int = 0,
    **usage_and_tags: Any,
) -> CallRecord:
    """Record one call's usage, learned outside tollgate; returns its :class:`~tollgate.CallRecord`.

    It counts like a gated call: charged to every budget and standing limit in force here (and
    to the windowed ones it names by tags), written to the ledger (so it is in reports), with a
    span and the ``on_record`` hooks. It is never refused: the tokens are spent already, so a
    record past a cap is counted and later calls meet the full budget. Rate limits are not
    charged.

    Keywords beyond the named ones: the other :class:`~tollgate.Usage` counts
    (``cache_read_tokens``, ``cache_write_tokens``, ``reasoning_tokens``,
    ``audio_input_tokens``, ``audio_output_tokens``), then tags (``feature="batch"``), merged
    over the ambient ones of :func:`tollgate.track`. ``usd`` is a cost known already (an
    invoice line), recorded instead of the price table's; ``started_at`` / ``ended_at`` date the
    call (epoch seconds or a datetime; default now): reports select on it, and windowed budgets
    count it in its own window (yesterday's usage does not fill today's daily budget; a time in
    the future counts as now). ``tool_calls``: the tool calls the response asked for (what
    ``budget(tool_calls=...)`` counts).

    An unpriced model follows ``on_unpriced``: a warning and $0, or with ``"raise"``
    :class:`~tollgate.UnpricedModelError` and nothing recorded (pass ``usd=`` to record it).

    >>> import tollgate
    >>> rec = tollgate.record(provider="openai", model="gpt-4o", input_tokens=1200,
    ...                       output_tokens=300, feature="batch")
    >>> (rec.usd, dict(rec.tags), rec.decisions[0]["action"])
    (0.006, {'feature': 'batch'}, 'record')
    >>> tollgate.record(provider="openai", model="gpt-4o", input_tokens=-5)
    Traceback (most recent call last):
    ...
    ValueError: record(input_tokens=-5): a count of tokens (an int >= 0)
    >>> _ = tollgate.reset()
    """
    for name, value in (("provider", provider), ("model", model), ("operation", operation)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"record({name}={value!r}): a non-empty string")
    counts: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    tags: dict[str, str] = {}
    for name, value in usage_and_tags.items():
        if name in _USAGE_FIELDS:
            counts[name] = value
        else:
            tags[name] = _tag_value(name, value)
    for name, value in counts.items():
        if type(value) is not int or value < 0:
            raise ValueError(f"record({name}={value!r}): a count of tokens (an int >= 0)")
    if type(tool_calls) is not int or tool_calls < 0:
        raise ValueError(f"record(tool_calls={tool_calls!r}): a count of tool calls (an int >= 0)")
    if usd is not None and (isinstance(usd, bool) or not isinstance(usd, (int, float)) or not usd >= 0):
        raise ValueError(f"record(usd={usd!r}): a cost in USD (a number >= 0) or None")
    if units is not None and not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
        for k, v in units.items()
    ):
        raise ValueError(f"record(units={units!r}): a mapping of unit names to numbers >= 0")
    if status not in _STATUSES:
        raise ValueError(f"record(status={status!r}) is not one of {', '.join(map(repr, _STATUSES))}")
    times = [_epoch(name, t) for name, t in (("started_at", started_at), ("ended_at", ended_at))]
    s = settings()
    if (
        usd is None
        and s.on_unpriced == "raise"
        and lookup_price(s, response_model or model, provider) is None
    ):
        raise UnpricedModelError(response_model or model, provider)
    request = LLMRequest(provider=provider, operation=operation, model=model)
    start = times[0]
    end = times[1] if times[1] is not None else start
    written = gate.account(
        request,
        gate.Outcome(
            Usage(**counts, units=dict(units or {})),
            response_model,
            response_id,
            usd=usd,
            status=status,
            estimated=estimated,
            tool_calls=tool_calls,
        ),
        tags={**current_tags(), **tags},
        started_at=start,
        ended_at=end,
    )
    if written is None:  # tollgate's own bookkeeping failed, and logged why
        raise RuntimeError("tollgate could not record this usage; see the 'tollgate' logger")
    return written


def _epoch(name: str, value: float | datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ValueError(f"record({name}={value!r}): epoch seconds or a datetime")
