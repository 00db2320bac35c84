"""The gate: the one place a call's life is written, whatever door it came in by.

A door (a provider surface, ``@metered``, ``record()``, the LangChain and LiteLLM integrations)
only translates: its native request into an :class:`~tollgate.request.LLMRequest`, the
:class:`Decision` into edits of the native request, the native response or stream into an
:class:`Outcome`. The rest is here, once::

    with gate.flight(read_request) as call:    # pre-flight: estimate, price, reserve, decide;
                                                # may raise (with a record) before any traffic
        edited = call.edit(apply, native)       # downgrade / clamp / truncate on the wire; a
                                                # decision that cannot be applied blocks the call
        with call.sending():                    # span current; inner doors do not count it again
            response = send(edited)
        call.finish(outcome_of(response))       # price, settle the holds, one CallRecord, one
                                                # span, hooks; raises an on_exceed="raise" overrun

Leaving the ``with`` by an exception closes the call as failed (its holds released, its record
written) and lets the exception through unchanged. A stream hands its call to
:class:`~tollgate.streams.GatedStream`, which finishes it however the stream ends. Doors whose
framework splits a call over hooks (LangChain callbacks, LiteLLM's logger) use
:func:`preflight` / :func:`apreflight` and the same :class:`Call` methods.

Nothing here raises into the caller's code path but tollgate's own errors
(:class:`~tollgate.BudgetExceeded`, :class:`~tollgate.RateLimited`,
:class:`~tollgate.StoreUnavailable`, :class:`~tollgate.UnpricedModelError`): a request tollgate
cannot read is sent as given, a response it cannot read is estimated, and trouble with pricing,
the store, the ledger or the span is logged, never turned into a failed LLM call.

This module is the interface doors use. Where each part lives: :mod:`tollgate.call` (the
:class:`Call`, and how a call ends), :mod:`tollgate.preflight` (reading, estimating, budgeting,
deciding), :mod:`tollgate.streams` (streams and their cut-off), :mod:`tollgate.decisions` (the
steps a record lists).
"""

from __future__ import annotations

from tollgate.call import Call, Decision, Outcome, covered
from tollgate.preflight import Reader, account, apreflight, flight, observe, preflight, probe

__all__ = [
    "Call",
    "Decision",
    "Outcome",
    "Reader",
    "account",
    "apreflight",
    "covered",
    "flight",
    "observe",
    "preflight",
    "probe",
]
