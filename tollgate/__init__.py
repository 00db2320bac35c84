"""tollgate: budgets, rate limits and cost attribution for LLM calls, as composable middleware.

>>> import tollgate
>>> tollgate.estimate("gpt-4o", [{"role": "user", "content": "hello world"}], max_tokens=100).input_tokens
9

Importing tollgate imports no LLM SDK, LangChain or LiteLLM; each adapter imports its own
SDK when a client of that SDK is instrumented.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tollgate.budgets.scope import budget
from tollgate.config import configure, limit, remove_limit, reset, set_limit, settings
from tollgate.errors import (
    BudgetExceeded,
    RateLimited,
    StoreUnavailable,
    TollgateError,
    UnknownUsageWarning,
    UnpricedModelError,
    UnpricedModelWarning,
)
from tollgate.instrument import instrument, uninstrument
from tollgate.ledger import Report, build_report, parse_time
from tollgate.manual import record
from tollgate.metered import metered
from tollgate.pricing.estimate import estimate_request, lookup_price
from tollgate.request import CallRecord, Estimate, LLMRequest, Usage
from tollgate.tags import current_tags, propagate, track

if TYPE_CHECKING:
    from tollgate.ledger.http import HttpSink

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "CallRecord",
    "Estimate",
    "HttpSink",
    "LLMRequest",
    "RateLimited",
    "Report",
    "StoreUnavailable",
    "TollgateError",
    "UnknownUsageWarning",
    "UnpricedModelError",
    "UnpricedModelWarning",
    "Usage",
    "budget",
    "configure",
    "current_tags",
    "estimate",
    "instrument",
    "limit",
    "metered",
    "propagate",
    "record",
    "remove_limit",
    "report",
    "reset",
    "set_limit",
    "track",
    "uninstrument",
]

TimeArg = float | int | str | datetime | timedelta | None


def estimate(
    model: str,
    messages: str | Sequence[Mapping[str, Any]],
    max_tokens: int | None = None,
    *,
    provider: str | None = None,
    tools: Sequence[Any] = (),
) -> Estimate:
    """Worst-case tokens and USD of a chat call, with no network call.

    ``messages`` is a chat (``[{"role": ..., "content": ...}]``) or, as a string, one user
    message. ``output_tokens`` is ``max_tokens`` or, when not given, the model's maximum output.

    >>> e = estimate("gpt-4o-mini", [{"role": "user", "content": "hi"}], max_tokens=10)
    >>> (e.input_tokens, e.output_tokens, e.usd > 0)
    (8, 10, True)
    >>> estimate("gpt-4o-mini", "hi", max_tokens=10).input_tokens
    8
    """
    chat = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
    if not isinstance(chat, Sequence) or not all(isinstance(m, Mapping) for m in chat):
        raise TypeError(
            f"estimate(messages={messages!r:.60}): give a string (one user message) or a list of "
            'chat messages such as [{"role": "user", "content": "hi"}]'
        )
    s = settings()
    price = lookup_price(s, model, provider)
    request = LLMRequest(
        provider=provider or (price.provider if price else "unknown"),
        operation="chat",
        model=model,
        messages=chat,
        max_output_tokens=max_tokens,
        tools=tools,
    )
    return estimate_request(request, price, s.expected_output_tokens)


def report(
    group_by: str | Sequence[str] | None = None,
    since: TimeArg = None,
    until: TimeArg = None,
    where: Mapping[str, str | Collection[str]] | Callable[[CallRecord], bool] | None = None,
) -> Report:
    """Spend and usage from the configured ledger, grouped by tags (or model, provider...).

    ``since`` / ``until``: epoch seconds, ``datetime``, ``timedelta`` ("that long ago") or
    strings like ``"7d"``, ``"24h"``; ``where``: tag values to keep, or a predicate.

    >>> import tollgate
    >>> tollgate.report(group_by="feature").total["calls"]
    0
    """
    records = settings().ledger.records(parse_time(since), parse_time(until))
    return build_report(records, group_by=group_by, where=where)


def __getattr__(name: str) -> Any:
    # HttpSink is imported when first used: it brings urllib.request (~25 ms) with it.
    if name == "HttpSink":
        from tollgate.ledger.http import HttpSink

        return HttpSink
    raise AttributeError(f"module 'tollgate' has no attribute {name!r}")
