"""tollgate: budgets, rate limits and cost attribution for LLM calls, as composable middleware.

>>> import tollgate
>>> tollgate.estimate("gpt-4o", [{"role": "user", "content": "hello world"}], max_tokens=100).input_tokens
9

Importing tollgate imports no LLM SDK, LangChain or LiteLLM; each adapter imports its own
SDK when a client of that SDK is instrumented.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tollgate.alerts import Alert
from tollgate.budgets.scope import BudgetHandle, budget
from tollgate.config import configure, limit, remove_limit, reset, set_limit, settings
from tollgate.control import BudgetState, reset_usage, top_up, usage
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
from tollgate.ledger.report import Where, select, unknown_tag
from tollgate.manual import record
from tollgate.metered import metered
from tollgate.pricing.estimate import estimate_request, lookup_price
from tollgate.request import CallRecord, Estimate, LLMRequest, Usage
from tollgate.tags import current_tags, propagate, track

if TYPE_CHECKING:
    from tollgate.ledger.http import HttpSink
    from tollgate.webhook import Webhook

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "BudgetExceeded",
    "BudgetHandle",
    "BudgetState",
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
    "Webhook",
    "budget",
    "configure",
    "current_tags",
    "estimate",
    "instrument",
    "limit",
    "metered",
    "propagate",
    "record",
    "records",
    "remove_limit",
    "report",
    "reset",
    "reset_usage",
    "set_limit",
    "top_up",
    "track",
    "uninstrument",
    "usage",
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
    names = [group_by] if isinstance(group_by, str) else list(group_by or ())
    found = _read(since, until, where, names)
    return build_report(found, group_by=group_by, where=where)


def records(
    since: TimeArg = None,
    until: TimeArg = None,
    where: Where | None = None,
    limit: int | None = None,
) -> list[CallRecord]:
    """The :class:`CallRecord` of each call in the configured ledger, oldest first.

    ``since`` / ``until`` and ``where`` select as in :func:`report` (``since`` inclusive,
    ``until`` exclusive, on the time each call started); ``limit`` keeps the latest
    ``limit`` of them (still oldest first). A ``where`` naming a tag that none of the calls
    carries warns, naming the tags they do carry.

    >>> import tollgate
    >>> _ = tollgate.record(provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300,
    ...                     tenant="acme")
    >>> [(r.request_model, r.tags["tenant"]) for r in tollgate.records(since="1h", where={"tenant": "acme"})]
    [('gpt-4o', 'acme')]
    >>> tollgate.records(limit=0)
    Traceback (most recent call last):
    ...
    ValueError: records(limit=0): a whole number above 0, e.g. limit=100, or None for every record
    >>> _ = tollgate.reset()
    """
    if limit is not None:
        fix = "a whole number above 0, e.g. limit=100, or None for every record"
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"records(limit={limit!r}): {fix}")
    found = select(_read(since, until, where, ()), where)
    return found[-limit:] if limit is not None else found


def _read(since: TimeArg, until: TimeArg, where: Where | None, names: Sequence[str]) -> list[CallRecord]:
    """The ledger's records from ``since`` to ``until``; warns when ``names`` (grouping) or
    ``where`` name a tag that no record carries: a typo would otherwise pass unnoticed."""
    start, end = parse_time(since), parse_time(until)
    select([], where)  # a `where` of the wrong kind is refused before the ledger is read
    found = settings().ledger.records(start, end)
    problem = unknown_tag(found, [*names, *(where if isinstance(where, Mapping) else ())])
    if problem is not None:
        warnings.warn(problem, UserWarning, stacklevel=3)
    return found


def __getattr__(name: str) -> Any:
    # HttpSink is imported when first used: it brings urllib.request (~25 ms) with it.
    if name == "HttpSink":
        from tollgate.ledger.http import HttpSink

        return HttpSink
    if name == "Webhook":
        from tollgate.webhook import Webhook

        return Webhook
    raise AttributeError(f"module 'tollgate' has no attribute {name!r}")
