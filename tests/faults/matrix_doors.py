"""Helpers of the door x failure matrix for the doors that are not SDK clients
(tests/faults/test_door_matrix_doors.py): ``@tollgate.metered``, ``tollgate.record()``, the
LangChain callback handler, ``guard()`` and agent middleware, the LiteLLM logger and wrappers.

Each cell runs one scenario twice: once *without* tollgate's door (the baseline: the bare
function, the model without tollgate's handler, LiteLLM without tollgate's logger) and once
through the door, under a windowed budget and a standing limit, on a store and ledger this
module injects (the real memory / SQLite / Redis store and memory ledger, wrapped so one method
can be made to fail). :func:`verdict` then lists what broke the door's promise:

- ``OUTCOME``: the caller saw something else than without tollgate (a different value, chunks,
  exception type or message), other than tollgate's own ``BudgetExceeded`` / ``RateLimited`` /
  ``StoreUnavailable`` where a pre-flight decision may give one;
- ``RECORDS``: not exactly one CallRecord (in the ledger, or delivered to the ``on_record`` hook
  when the ledger write fails);
- ``HOLD``: the budget's counter or the standing limit's counter still holds a reservation;
- ``LEAK``: a record's ``error`` carries the prompt or the API key.

Only the public API is used, plus ``tollgate.config.settings()``, the store and ledger classes
this module wraps, and the store's own ``read`` to look at the two counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import itertools
import json
import os
import re
import time
import types
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st

import tollgate
from tests.faults.delegating import DelegatingStore
from tollgate import CallRecord
from tollgate.ledger import Ledger, MemoryLedger
from tollgate.stores import MemoryStore, SQLiteStore
from tollgate.stores.base import Charge, CounterState, Hold, Store
from tollgate.stores.windows import Window
from tollgate.stores.windows import now as store_now

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM: no fetch of its price map

# -- the call every scenario makes ---------------------------------------------------------------

SECRET = "SECRET-PROMPT-7731"
API_KEY = "sk-test-LEAKCHECK-0000"
PROMPT = f"{SECRET}: name the capital of France in one word."
MODEL = "gpt-4o-mini"
PRICEY = "gpt-4o"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
#: A downgrade target no provider serves: the LiteLLM doors cannot send the downgraded call.
UNBUILDABLE = "matrix-unbuildable-model"
MAX_TOKENS = 64
PIECES = ("Par", "is", ".")
USAGE: dict[str, Any] = {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17}
LC_USAGE: dict[str, Any] = {"input_tokens": 14, "output_tokens": 3, "total_tokens": 17}
TENANT = "matrix"
BUDGET_NAME = "matrix-day"
ROOMY_USD = 1.0
#: Between what gpt-4o-mini and gpt-4o reserve for this call (64 output tokens): a downgrade fits.
DOWNGRADE_USD = 0.0005
TINY_USD = 1e-9
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()  # a key left out

TOLLGATE_ERRORS = (tollgate.BudgetExceeded, tollgate.RateLimited, tollgate.StoreUnavailable)

# -- failure points ------------------------------------------------------------------------------

NONE = "none"  # control: nothing fails
UNREADABLE_STR = "unreadable-messages-str"
UNREADABLE_DICT = "unreadable-messages-dict"
UNREADABLE_NONE_ITEM = "unreadable-messages-none-item"
UNREADABLE_NO_CONTENT = "unreadable-message-no-content"
UNREADABLE_MODEL = "unreadable-model-not-str"
UNREADABLE = (UNREADABLE_STR, UNREADABLE_DICT, UNREADABLE_NONE_ITEM, UNREADABLE_NO_CONTENT, UNREADABLE_MODEL)
REFUSED = "refused-preflight"
ACTION = "action-unapplied"
RAISES = "raises-before-send"
PROVIDER = "provider-error"
MALFORMED = "malformed-usage"  # drawn by hypothesis
PRICING = "pricing-fails"
LEDGER = "ledger-write-fails"
STORE = "store-fails-at-settle"
BROKEN = "stream-broken"
ABANDONED = "stream-abandoned"
CANCELLED = "cancelled"

#: Failure points where a pre-flight decision may stand in for the call (tollgate's own error).
DECIDING = frozenset({*UNREADABLE, REFUSED, ACTION})


class ProviderError(Exception):
    """What a provider SDK raises for an HTTP error (with its status, and the key it was sent)."""

    status_code = 401


def provider_error() -> ProviderError:
    return ProviderError(f"Error code: 401 - Incorrect API key provided: {API_KEY}")


class ConnectionReset(Exception):
    """A stream cut mid-way by the network."""


def rejected_before_sending(messages: Any) -> ValueError:
    """What a client's own validation raises before anything is sent (it quotes the input)."""
    return ValueError(f"request rejected before sending: messages={messages!r}")


# -- scenarios -----------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One cell's call: its request, and how the fake provider and the caller behave."""

    failure: str
    messages: Any = field(default_factory=lambda: [{"role": "user", "content": PROMPT}])
    model: Any = MODEL
    #: "ok" | "raise-before" | "provider-error" | "break" (a stream, after two chunks) |
    #: "hang" (forever: before answering, or after two chunks of a stream) | "guardrail"
    #: (LiteLLM: another logger's pre-call hook refuses the call, after tollgate's ran)
    mode: str = "ok"
    usage: Any = field(default_factory=lambda: dict(USAGE))  # OpenAI-shaped (metered, LiteLLM)
    lc_usage: Any = field(default_factory=lambda: dict(LC_USAGE))  # LangChain usage_metadata
    llm_output: Any = MISSING  # LangChain ChatResult.llm_output (MISSING: the default one)
    response_model: Any = RESPONSE_MODEL
    #: metered's extract_usage (None: not given)
    extract: Callable[[Any], Any] | None = None
    #: "all" | "two-then-close" | "cancel"
    read: str = "all"
    #: The action cell: the model cannot be swapped (LangChain), the function has no model
    #: parameter (metered), and where a downgrade goes.
    fixed_model: bool = False
    downgrade_to: str = MODEL
    entered: asyncio.Event | None = None
    tenant: str = TENANT  # the tag the standing limit matches (one of its own per cell)

    def arm(self) -> None:
        """A fresh "the fake is hanging now" signal, in the running loop (async doors)."""
        self.entered = asyncio.Event() if self.mode == "hang" else None

    async def hang(self) -> None:
        assert self.entered is not None
        self.entered.set()
        await asyncio.Event().wait()

    def body(self) -> dict[str, Any]:
        """An OpenAI chat completion, as JSON."""
        body: dict[str, Any] = {
            "id": "chatcmpl-matrix",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": self.response_model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
            ],
        }
        if self.usage is not MISSING:
            body["usage"] = self.usage
        return body

    def chunks(self) -> list[dict[str, Any]]:
        """An OpenAI chat completion stream, as JSON chunks (the last one with the usage)."""
        base = {
            "id": "chatcmpl-matrix",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": self.response_model,
        }
        out: list[dict[str, Any]] = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p}}]} for p in PIECES
        ]
        out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if self.usage is not MISSING:
            out.append({**base, "choices": [], "usage": self.usage})
        return out


def scenario(failure: str) -> Scenario:
    sc = Scenario(failure)
    if failure == UNREADABLE_STR:
        sc.messages = PROMPT
    elif failure == UNREADABLE_DICT:
        sc.messages = {"role": "user", "content": PROMPT}
    elif failure == UNREADABLE_NONE_ITEM:
        sc.messages = [None]
    elif failure == UNREADABLE_NO_CONTENT:
        sc.messages = [{"role": "user"}]
    elif failure == UNREADABLE_MODEL:
        sc.model = 42
    elif failure == ACTION:
        sc.model = PRICEY
    elif failure == RAISES:
        sc.mode = "raise-before"
    elif failure == PROVIDER:
        sc.mode = "provider-error"
    elif failure == PRICING:
        sc.response_model = 42
    elif failure == BROKEN:
        sc.mode = "break"
    elif failure == ABANDONED:
        sc.read = "two-then-close"
    elif failure == CANCELLED:
        sc.mode, sc.read = "hang", "cancel"
    return sc


# -- what the caller saw -------------------------------------------------------------------------

_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]{6,}")


def _plain(text: str) -> str:
    """Without what differs from run to run: uuids, object addresses, and the traceback some
    libraries (LiteLLM) paste into their messages, whose frames name the caller's own code."""
    return _IDS.sub("<id>", text.split("Traceback (most recent call last)")[0])


@dataclass
class Outcome:
    """What the caller saw: a value (normalised) and/or an exception, and whether the call
    reached the hook point a hook door plugs into (observed in the baseline run)."""

    value: Any = None
    error: type[BaseException] | None = None
    message: str = ""
    reached: bool = True
    returned: Any = None  # the raw value (record(): the CallRecord)
    action: str | None = None  # a BudgetExceeded's action

    def same(self, other: Outcome) -> bool:
        return (self.value, self.error, self.message) == (other.value, other.error, other.message)

    def describe(self) -> str:
        if self.error is None:
            return f"returned {self.value!r}"[:400]
        shown = f"raised {self.error.__name__}: {self.message}"[:400]
        return shown + (f" after {self.value!r}"[:200] if self.value else "")


def failed(exc: BaseException, value: Any = None) -> Outcome:
    action = exc.action if isinstance(exc, tollgate.BudgetExceeded) else None
    return Outcome(value=value, error=type(exc), message=_plain(str(exc)), action=action)


def capture(run: Callable[[], Any], norm: Callable[[Any], Any]) -> Outcome:
    try:
        result = run()
    except BaseException as exc:  # the caller's view, whatever it is
        return failed(exc)
    return Outcome(value=norm(result), returned=result)


async def acapture(run: Callable[[], Awaitable[Any]], norm: Callable[[Any], Any]) -> Outcome:
    try:
        result = await run()
    except BaseException as exc:
        return failed(exc)
    return Outcome(value=norm(result), returned=result)


def read_stream(open_stream: Callable[[], Any], sc: Scenario, norm: Callable[[Any], Any]) -> Outcome:
    """Open a sync stream and read it as the scenario says (all of it, or two chunks then close)."""
    seen: list[Any] = []
    try:
        stream = open_stream()
        for chunk in stream:
            seen.append(norm(chunk))
            if sc.read == "two-then-close" and len(seen) == 2:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
                else:  # a stream with no close(): the caller drops it
                    del stream
                    gc.collect()
                break
    except BaseException as exc:
        return failed(exc, seen)
    return Outcome(value=seen)


async def aread_stream(open_stream: Callable[[], Any], sc: Scenario, norm: Callable[[Any], Any]) -> Outcome:
    """The async twin of :func:`read_stream` (``open_stream`` may return an awaitable)."""
    seen: list[Any] = []

    async def consume() -> None:
        stream = open_stream()
        if asyncio.iscoroutine(stream):
            stream = await stream
        async for chunk in stream:
            seen.append(norm(chunk))
            if sc.read == "two-then-close" and len(seen) == 2:
                await aclose(stream)
                break

    if sc.read == "cancel":
        return await cancelled(consume, sc, lambda: list(seen))
    try:
        await consume()
    except BaseException as exc:
        return failed(exc, seen)
    return Outcome(value=seen)


async def aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None) or getattr(stream, "close", None)
    if close is None:
        del stream
        gc.collect()
        return
    result = close()
    if asyncio.iscoroutine(result):
        await result


async def cancelled(
    start: Callable[[], Awaitable[Any]], sc: Scenario, value: Callable[[], Any] | None = None
) -> Outcome:
    """Run ``start()`` in a task, cancel it once the fake provider hangs; what the caller saw."""
    assert sc.entered is not None
    task = asyncio.ensure_future(start())
    waiter = asyncio.ensure_future(sc.entered.wait())
    await asyncio.wait({task, waiter}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not task.done():
        task.cancel()
    try:
        result = await task
    except BaseException as exc:
        return failed(exc, value() if value else None)
    return Outcome(value=value() if value else repr(result))


# -- the store, ledger and budgets of a cell -----------------------------------------------------


class FaultyStore(DelegatingStore):
    """A real store, with ``settle`` made to fail (the store went away after the call was sent)."""

    def __init__(self, inner: Store, *, fail_settle: bool = False, owned: bool = True) -> None:
        self.inner = inner
        self.fail_settle = fail_settle
        self.owned = owned  # a shared store is closed by its owner, not by tollgate.reset()

    def _settle_fails(self) -> None:
        if self.fail_settle:
            raise tollgate.StoreUnavailable("the budget store went away (injected by the matrix test)")

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        self._settle_fails()
        return self.inner.settle(holds, actuals)

    def close(self) -> None:
        if self.owned:
            self.inner.close()

    async def asettle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        self._settle_fails()
        return await self.inner.asettle(holds, actuals)


class FailingLedger(Ledger):
    """A ledger whose every write fails (a full disk)."""

    def write(self, record: CallRecord) -> None:
        raise OSError(28, "No space left on device (injected by the matrix test)")

    def records(self, since: float | None = None, until: float | None = None) -> list[CallRecord]:
        return []

    def dropped(self) -> int:
        return 0

    def clear(self) -> None:
        pass


#: The SQLite store of a session, by folder: creating a store file costs tens of milliseconds,
#: so cells share one, cleared for each; each cell also counts under names of its own.
_SHARED_SQLITE: dict[Path, SQLiteStore] = {}
_CELLS = itertools.count(1)


def make_store(kind: str, folder: Path) -> tuple[Store, bool]:
    """A real store of ``kind``, empty, and whether the cell owns it (closes it with tollgate)."""
    if kind == "memory":
        return MemoryStore(), True
    if kind == "sqlite":
        store = _SHARED_SQLITE.get(folder)
        if store is None:
            store = _SHARED_SQLITE[folder] = SQLiteStore(folder / "matrix-store.db")
        store.clear()
        return store, False
    url = os.environ["TOLLGATE_TEST_REDIS_URL"]
    from tollgate.stores.redis import RedisStore

    return RedisStore(url, prefix=f"tollgate-matrix-{uuid.uuid4().hex[:12]}"), True


def close_shared_stores() -> None:
    while _SHARED_SQLITE:
        _SHARED_SQLITE.popitem()[1].close()


@dataclass
class Harness:
    """tollgate configured for one cell: the store (real, wrapped), the ledger, the hook, the
    standing limit (for calls tagged ``tenant``); :meth:`budget` is the windowed budget the
    call runs under."""

    failure: str
    inner: Store
    delivered: list[CallRecord]
    limit_id: str
    ledger_fails: bool
    tenant: str
    budget_name: str

    def budget(self, sc: Scenario) -> tollgate.budget:
        if self.failure == REFUSED:
            return tollgate.budget(usd=TINY_USD, per="day", name=self.budget_name)
        if self.failure == ACTION:
            return tollgate.budget(
                usd=DOWNGRADE_USD,
                per="day",
                name=self.budget_name,
                on_exceed="downgrade",
                downgrade={PRICEY: sc.downgrade_to},
            )
        return tollgate.budget(usd=ROOMY_USD, per="day", name=self.budget_name)

    def counters(self) -> dict[str, CounterState]:
        window: Window = tollgate.budget(usd=ROOMY_USD, per="day").spec.window
        keys = {"budget": f"budget:{self.budget_name}:usd", "standing limit": f"budget:{self.limit_id}:usd"}
        states = self.inner.read([Charge(k, window, None, 0.0) for k in keys.values()], store_now())
        return dict(zip(keys, states, strict=True))

    def held(self) -> dict[str, float]:
        return {name: s.reserved for name, s in self.counters().items() if abs(s.reserved) > 1e-12}

    def records(self) -> list[CallRecord]:
        if self.ledger_fails:
            return list(self.delivered)
        return list(tollgate.config.settings().ledger.records())


def open_harness(store_kind: str, failure: str, folder: Path) -> Harness:
    tollgate.reset()
    inner, owned = make_store(store_kind, folder)
    delivered: list[CallRecord] = []
    ledger: Ledger = FailingLedger() if failure == LEDGER else MemoryLedger()
    tollgate.configure(
        store=FaultyStore(inner, fail_settle=failure == STORE, owned=owned),
        ledger=ledger,
        on_record=delivered.append,
        on_unpriced="ignore",
        # A downgrade map names only models tollgate can price; the provider still cannot serve it.
        prices={UNBUILDABLE: {"input": 0.15e-6, "output": 0.6e-6}},
    )
    cell = next(_CELLS)
    tenant = f"{TENANT}-{cell}"
    limit_id = tollgate.set_limit(usd=ROOMY_USD, per="day", tenant=tenant)
    return Harness(failure, inner, delivered, limit_id, failure == LEDGER, tenant, f"{BUDGET_NAME}-{cell}")


# -- doors ---------------------------------------------------------------------------------------


class Door:
    """One door of tollgate: how a scenario is run through it, and without it (the baseline)."""

    name: str = ""
    family: str = ""
    is_async: bool = False
    streams: bool = False
    #: tollgate makes the call itself (every call is its own); a hook door records what the
    #: framework lets reach its hook (``Outcome.reached`` in the baseline run).
    wraps: bool = True
    #: a budget that blocks stops the call before it is made
    can_refuse: bool = True
    #: the door names a model it can be asked a non-string for
    takes_model: bool = True
    #: records and settlement arrive after the call returned (LiteLLM's logging runs apart)
    settles_later: bool = False

    def failures(self) -> list[str]:
        points = [NONE, *UNREADABLE, REFUSED, ACTION, RAISES, PROVIDER, MALFORMED, PRICING, LEDGER, STORE]
        if not self.takes_model:
            points.remove(UNREADABLE_MODEL)
        if self.streams:
            points += [BROKEN, ABANDONED]
        if self.is_async:
            points.append(CANCELLED)
        return points

    def prepare(self, sc: Scenario) -> None:
        """Door-specific shape of a scenario (the action cell above all)."""

    def run(self, sc: Scenario, gated: bool) -> Outcome:
        raise NotImplementedError

    async def arun(self, sc: Scenario, gated: bool) -> Outcome:
        raise NotImplementedError

    def draw(self, sc: Scenario, data: st.DataObject) -> None:
        """Malformed usage as this door sees it (hypothesis)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


# -- junk, drawn by hypothesis -------------------------------------------------------------------

COUNT_JUNK: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=-3, max_value=40),
    st.sampled_from([10**18, -(10**18), 2**63]),
    st.sampled_from(["7", "-1", "abc", "", " 12 ", "1e3", "NaN"]),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(min_value=0, max_value=9), max_size=2),
    st.dictionaries(st.sampled_from(["n", "value"]), st.integers(0, 9), max_size=1),
)
JSON_JUNK: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.floats(), st.text(max_size=4)),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4,
)
MODEL_JSON_JUNK: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([RESPONSE_MODEL, MODEL, "", "no-such-model", PRICEY]),
    st.integers(-2, 10**6),
    st.none(),
    st.booleans(),
    st.floats(),
    st.lists(st.sampled_from([MODEL, "x"]), max_size=2),
    st.dictionaries(st.sampled_from(["name", "id"]), st.sampled_from([MODEL, "x"]), max_size=2),
)


class _ModelObject:
    """A response model that is an object, as a loosely typed client might hand over."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"_ModelObject({self.name!r})"


MODEL_JUNK: st.SearchStrategy[Any] = st.one_of(
    MODEL_JSON_JUNK, st.builds(_ModelObject, st.sampled_from([MODEL, "x"])), st.just(object())
)


def openai_usage(counts: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """OpenAI ``usage``: absent, junk of any shape, or its fields junk."""
    fields = st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": counts,
            "completion_tokens": counts,
            "total_tokens": counts,
            "prompt_tokens_details": st.one_of(
                st.none(), st.fixed_dictionaries({}, optional={"cached_tokens": counts})
            ),
            "completion_tokens_details": st.one_of(
                st.none(), st.fixed_dictionaries({}, optional={"reasoning_tokens": counts})
            ),
        },
    )
    return st.one_of(st.just(MISSING), st.none(), JSON_JUNK, fields)


def langchain_usage(counts: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """LangChain ``usage_metadata``: absent, junk, or its counts junk."""
    fields = st.fixed_dictionaries(
        {},
        optional={
            "input_tokens": counts,
            "output_tokens": counts,
            "total_tokens": counts,
            "input_token_details": st.one_of(
                st.none(), counts, st.fixed_dictionaries({}, optional={"cache_read": counts})
            ),
            "output_token_details": st.one_of(
                st.none(), st.fixed_dictionaries({}, optional={"reasoning": counts})
            ),
        },
    )
    return st.one_of(st.just(MISSING), st.none(), st.integers(), st.text(max_size=3), fields)


# -- @tollgate.metered ---------------------------------------------------------------------------


def as_seen(value: Any) -> Any:
    """What the function returned, as the caller reads it (the same objects in both runs, junk too)."""
    return repr(value)


class MeteredDoor(Door):
    """``@tollgate.metered`` on a function of one kind, with or without a model."""

    family = "metered"
    KINDS: ClassVar[tuple[str, ...]] = ("sync", "async", "gen", "agen", "stream", "astream")

    def __init__(self, kind: str, with_model: bool) -> None:
        self.kind = kind
        self.with_model = with_model
        self.name = f"metered-{kind}-{'model' if with_model else 'nomodel'}"
        self.is_async = kind in ("async", "agen", "astream")
        self.streams = kind in ("gen", "agen", "stream", "astream")
        self.takes_model = with_model

    def prepare(self, sc: Scenario) -> None:
        if sc.failure == ACTION:
            # Known: a downgrade cannot reach a function that has no model parameter.
            sc.fixed_model = True

    # The function, as its author wrote it: (messages, model=..., max_tokens=...).
    def _inner(self, sc: Scenario) -> Callable[..., Any]:
        def answer(messages: Any) -> dict[str, Any]:
            if sc.mode == "raise-before":
                raise rejected_before_sending(messages)
            if sc.mode == "provider-error":
                raise provider_error()
            return sc.body()

        def chunks(messages: Any) -> Iterator[dict[str, Any]]:
            if sc.mode == "raise-before":
                raise rejected_before_sending(messages)
            if sc.mode == "provider-error":
                raise provider_error()
            for i, chunk in enumerate(sc.chunks()):
                if i == 2 and sc.mode == "break":
                    raise ConnectionReset("connection reset by peer")
                yield chunk

        async def achunks(messages: Any) -> AsyncIterator[dict[str, Any]]:
            if sc.mode == "raise-before":
                raise rejected_before_sending(messages)
            if sc.mode == "provider-error":
                raise provider_error()
            for i, chunk in enumerate(sc.chunks()):
                if i == 2 and sc.mode == "break":
                    raise ConnectionReset("connection reset by peer")
                if i == 2 and sc.mode == "hang":
                    await sc.hang()
                await asyncio.sleep(0)
                yield chunk

        kind = self.kind
        if kind == "sync":

            def sync_fn(messages: Any, model: Any = MODEL, max_tokens: int = MAX_TOKENS) -> Any:
                return answer(messages)

            return sync_fn
        if kind == "async":

            async def async_fn(messages: Any, model: Any = MODEL, max_tokens: int = MAX_TOKENS) -> Any:
                await asyncio.sleep(0)
                if sc.mode == "hang":
                    await sc.hang()
                return answer(messages)

            return async_fn
        if kind == "gen":

            def gen_fn(messages: Any, model: Any = MODEL, max_tokens: int = MAX_TOKENS) -> Iterator[Any]:
                yield from chunks(messages)

            return gen_fn
        if kind == "agen":

            async def agen_fn(
                messages: Any, model: Any = MODEL, max_tokens: int = MAX_TOKENS
            ) -> AsyncIterator[Any]:
                async for chunk in achunks(messages):
                    yield chunk

            return agen_fn
        if kind == "stream":

            def stream_fn(messages: Any, model: Any = MODEL, max_tokens: int = MAX_TOKENS) -> Any:
                if sc.mode in ("raise-before", "provider-error"):  # before the stream is handed back
                    next(chunks(messages))
                return chunks(messages)

            return stream_fn

        async def astream_fn(messages: Any, model: Any = MODEL, max_tokens: int = MAX_TOKENS) -> Any:
            await asyncio.sleep(0)
            if sc.mode in ("raise-before", "provider-error"):
                await anext(achunks(messages))
            return achunks(messages)

        return astream_fn

    def _shaped(self, sc: Scenario) -> Callable[..., Any]:
        """The function with the door's signature: ``model`` as a parameter, or not at all."""
        inner = self._inner(sc)
        if self.with_model and not sc.fixed_model:
            return inner
        kind = self.kind
        if kind in ("sync", "stream"):

            def plain(messages: Any, max_tokens: int = MAX_TOKENS) -> Any:
                return inner(messages, max_tokens=max_tokens)

            return plain
        if kind in ("async", "astream"):

            async def aplain(messages: Any, max_tokens: int = MAX_TOKENS) -> Any:
                return await inner(messages, max_tokens=max_tokens)

            return aplain
        if kind == "gen":

            def gen(messages: Any, max_tokens: int = MAX_TOKENS) -> Iterator[Any]:
                yield from inner(messages, max_tokens=max_tokens)

            return gen

        async def agen(messages: Any, max_tokens: int = MAX_TOKENS) -> AsyncIterator[Any]:
            async for chunk in inner(messages, max_tokens=max_tokens):
                yield chunk

        return agen

    def function(self, sc: Scenario, gated: bool) -> Callable[..., Any]:
        fn = self._shaped(sc)
        if not gated:
            return fn
        model = (PRICEY if sc.fixed_model else MODEL) if self.with_model else None
        decorated: Callable[..., Any] = tollgate.metered(model=model, extract_usage=sc.extract)(fn)
        return decorated

    def _call(self, sc: Scenario, gated: bool) -> Any:
        fn = self.function(sc, gated)
        if self.with_model and not sc.fixed_model:
            return fn(sc.messages, model=sc.model)
        return fn(sc.messages)

    def run(self, sc: Scenario, gated: bool) -> Outcome:
        if self.streams:
            return read_stream(lambda: self._call(sc, gated), sc, as_seen)
        return capture(lambda: self._call(sc, gated), as_seen)

    async def arun(self, sc: Scenario, gated: bool) -> Outcome:
        if self.streams:
            return await aread_stream(lambda: self._call(sc, gated), sc, as_seen)
        if sc.read == "cancel":
            return await cancelled(lambda: self._call(sc, gated), sc)
        return await acapture(lambda: self._call(sc, gated), as_seen)

    def draw(self, sc: Scenario, data: st.DataObject) -> None:
        sc.usage = data.draw(openai_usage(COUNT_JUNK), label="usage")
        sc.response_model = data.draw(MODEL_JUNK, label="response model")
        how = data.draw(st.sampled_from(["none", "junk", "raises"]), label="extract_usage")
        if how == "junk":
            junk = data.draw(
                st.one_of(
                    st.tuples(MODEL_JUNK, COUNT_JUNK, COUNT_JUNK),
                    st.tuples(COUNT_JUNK),
                    JSON_JUNK,
                    st.just(object()),
                ),
                label="extract_usage returns",
            )
            sc.extract = lambda result: junk
        elif how == "raises":

            def broken(result: Any) -> Any:
                raise KeyError("usage")

            sc.extract = broken


# -- tollgate.record() ---------------------------------------------------------------------------


class RecordDoor(Door):
    """``tollgate.record(...)``: usage learned elsewhere. There is no call to compare with: it
    returns the CallRecord it wrote, or refuses bad arguments with ValueError (and writes none)."""

    name = "record"
    family = "record"

    def failures(self) -> list[str]:
        return [NONE, UNREADABLE_MODEL, REFUSED, MALFORMED, PRICING, LEDGER, STORE]

    def arguments(self, sc: Scenario) -> dict[str, Any]:
        counts = sc.usage if isinstance(sc.usage, dict) else {}
        return {
            "provider": "openai",
            "model": sc.model,
            "input_tokens": counts.get("prompt_tokens", 14),
            "output_tokens": counts.get("completion_tokens", 3),
            "response_model": sc.response_model,
            "feature": "batch",
        }

    def run(self, sc: Scenario, gated: bool) -> Outcome:
        if not gated:
            return Outcome()
        kwargs = self.arguments(sc)
        return capture(lambda: tollgate.record(**kwargs), lambda r: "CallRecord")

    def draw(self, sc: Scenario, data: st.DataObject) -> None:
        sc.model = data.draw(st.one_of(st.just(PRICEY), MODEL_JUNK), label="model")
        sc.usage = {
            "prompt_tokens": data.draw(COUNT_JUNK, label="input_tokens"),
            "completion_tokens": data.draw(COUNT_JUNK, label="output_tokens"),
        }
        sc.response_model = data.draw(st.one_of(st.none(), MODEL_JUNK), label="response_model")


# -- LangChain -----------------------------------------------------------------------------------


def integration(name: str) -> Any:
    """An integration module (or LiteLLM), imported when its door first runs."""
    pytest.importorskip(name.split(".")[0])
    return importlib.import_module(name)


def langchain() -> Any:
    """The fake chat models (built on first use: LangChain is imported only by its doors)."""
    pytest.importorskip("tollgate_langchain")
    global _LANGCHAIN
    if _LANGCHAIN is None:
        _LANGCHAIN = _build_langchain()
    return _LANGCHAIN


_LANGCHAIN: Any = None


def _build_langchain() -> Any:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

    def reply(sc: Scenario) -> ChatResult:
        message = AIMessage(
            content="Paris.", response_metadata={"model_name": sc.response_model, "finish_reason": "stop"}
        )
        if sc.lc_usage is not MISSING:
            message.usage_metadata = sc.lc_usage  # as a loose integration hands it over, unchecked
        llm_output = (
            {"token_usage": sc.usage, "model_name": sc.response_model}
            if sc.llm_output is MISSING
            else sc.llm_output
        )
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=llm_output)

    def before(sc: Scenario, messages: list[BaseMessage]) -> None:
        if sc.mode == "raise-before":
            raise rejected_before_sending([m.content for m in messages])
        if sc.mode == "provider-error":
            raise provider_error()

    def pieces(sc: Scenario) -> list[ChatGenerationChunk]:
        out = [ChatGenerationChunk(message=AIMessageChunk(content=p)) for p in PIECES]
        last = AIMessageChunk(
            content="", response_metadata={"model_name": sc.response_model, "finish_reason": "stop"}
        )
        if sc.lc_usage is not MISSING:
            last.usage_metadata = sc.lc_usage
        out.append(ChatGenerationChunk(message=last))
        return out

    class _Scripted(BaseChatModel):
        """A chat model that does what its scenario says (no network)."""

        script: Any = None
        max_tokens: int | None = MAX_TOKENS

        @property
        def _llm_type(self) -> str:
            return "matrix-fake"

        def _name(self) -> Any:
            raise NotImplementedError

        @property
        def _identifying_params(self) -> dict[str, Any]:
            return {"model_name": self._name(), "max_tokens": self.max_tokens}

        def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
            return {
                "ls_provider": "openai",
                "ls_model_name": kwargs.get("model") or self._name(),
                "ls_model_type": "chat",
                "ls_max_tokens": self.max_tokens,
            }

        def _generate(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            before(self.script, messages)
            return reply(self.script)

        async def _agenerate(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            await asyncio.sleep(0)
            before(self.script, messages)
            if self.script.mode == "hang":
                await self.script.hang()
            return reply(self.script)

        def _stream(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> Iterator[ChatGenerationChunk]:
            before(self.script, messages)
            for i, chunk in enumerate(pieces(self.script)):
                if i == 2 and self.script.mode == "break":
                    raise ConnectionReset("connection reset by peer")
                yield chunk

        async def _astream(
            self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> AsyncIterator[ChatGenerationChunk]:
            before(self.script, messages)
            for i, chunk in enumerate(pieces(self.script)):
                if i == 2 and self.script.mode == "break":
                    raise ConnectionReset("connection reset by peer")
                if i == 2 and self.script.mode == "hang":
                    await self.script.hang()
                await asyncio.sleep(0)
                yield chunk

    class FakeChat(_Scripted):
        """Its model name in ``model_name``, as ChatOpenAI keeps it (a guard can swap it)."""

        model_name: Any = MODEL

        def _name(self) -> Any:
            return self.model_name

    class FixedChat(_Scripted):
        """Its model name in a field a guard does not know: the model cannot be swapped."""

        deployment: Any = PRICEY

        def _name(self) -> Any:
            return self.deployment

    class Observer(BaseCallbackHandler):
        """Notes that the chat model run started (the hook point TollgateCallbackHandler uses)."""

        def __init__(self) -> None:
            self.started = False

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            self.started = True

    return types.SimpleNamespace(FakeChat=FakeChat, FixedChat=FixedChat, Observer=Observer)


def message_view(message: Any) -> Any:
    """A LangChain message as the caller reads it (without its run id)."""
    if isinstance(message, dict):
        return {k: message_view(v) for k, v in message.items()}
    if isinstance(message, (list, tuple)):
        return [message_view(m) for m in message]
    if not hasattr(message, "content"):
        return repr(message)
    return (
        type(message).__name__,
        message.content,
        repr(getattr(message, "usage_metadata", None)),
        repr(getattr(message, "response_metadata", None)),
    )


def lc_messages(sc: Scenario) -> Any:
    """The scenario's messages as a LangChain caller passes them."""
    if sc.failure == UNREADABLE_NO_CONTENT:
        return [{"role": "user", "content": None}]  # LangChain's own parser needs the key
    return sc.messages


def chat_model(sc: Scenario, callbacks: list[Any] | None = None) -> Any:
    kit = langchain()
    if sc.fixed_model:
        return kit.FixedChat(script=sc, deployment=sc.model, callbacks=callbacks)
    return kit.FakeChat(script=sc, model_name=sc.model, callbacks=callbacks)


class CallbackDoor(Door):
    """``TollgateCallbackHandler`` on a chat model (``callbacks=[...]``)."""

    family = "langchain"
    wraps = False

    def __init__(self, method: str) -> None:
        self.method = method
        self.name = f"langchain-callback-{method}"
        self.is_async = method.startswith("a")
        self.streams = method.endswith("stream")

    def _model(self, sc: Scenario, gated: bool) -> tuple[Any, Any]:
        observer = langchain().Observer()
        handler = integration("tollgate_langchain").TollgateCallbackHandler() if gated else observer
        return chat_model(sc, [handler]), observer

    def run(self, sc: Scenario, gated: bool) -> Outcome:
        model, observer = self._model(sc, gated)
        call = getattr(model, self.method)
        if self.streams:
            got = read_stream(lambda: call(lc_messages(sc)), sc, message_view)
        else:
            got = capture(lambda: call(lc_messages(sc)), message_view)
        got.reached = observer.started
        return got

    async def arun(self, sc: Scenario, gated: bool) -> Outcome:
        model, observer = self._model(sc, gated)
        call = getattr(model, self.method)
        if self.streams:
            got = await aread_stream(lambda: call(lc_messages(sc)), sc, message_view)
        elif sc.read == "cancel":
            got = await cancelled(lambda: call(lc_messages(sc)), sc)
        else:
            got = await acapture(lambda: call(lc_messages(sc)), message_view)
        got.reached = observer.started
        return got

    def draw(self, sc: Scenario, data: st.DataObject) -> None:
        draw_langchain(sc, data)


def draw_langchain(sc: Scenario, data: st.DataObject) -> None:
    sc.lc_usage = data.draw(langchain_usage(COUNT_JUNK), label="usage_metadata")
    sc.llm_output = data.draw(
        st.one_of(
            st.none(),
            JSON_JUNK,
            st.fixed_dictionaries(
                {},
                optional={
                    "token_usage": openai_usage(COUNT_JUNK),
                    "usage": openai_usage(COUNT_JUNK),
                    "model_name": MODEL_JUNK,
                },
            ),
        ),
        label="llm_output",
    )
    sc.response_model = data.draw(MODEL_JUNK, label="response model")


class GuardDoor(Door):
    """``guard(chat_model)``, a Runnable that applies every action."""

    family = "langchain"

    def __init__(self, method: str) -> None:
        self.method = method
        self.name = f"langchain-guard-{method}"
        self.is_async = method.startswith("a")
        self.streams = method.endswith("stream")

    def prepare(self, sc: Scenario) -> None:
        if sc.failure == ACTION:
            sc.fixed_model = True  # known: a chat model whose model field cannot be swapped

    def _runnable(self, sc: Scenario, gated: bool) -> Any:
        if gated:
            return integration("tollgate_langchain").guard(chat_model(sc))
        return chat_model(sc)

    def run(self, sc: Scenario, gated: bool) -> Outcome:
        call = getattr(self._runnable(sc, gated), self.method)
        if self.streams:
            return read_stream(lambda: call(lc_messages(sc)), sc, message_view)
        return capture(lambda: call(lc_messages(sc)), message_view)

    async def arun(self, sc: Scenario, gated: bool) -> Outcome:
        call = getattr(self._runnable(sc, gated), self.method)
        if self.streams:
            return await aread_stream(lambda: call(lc_messages(sc)), sc, message_view)
        if sc.read == "cancel":
            return await cancelled(lambda: call(lc_messages(sc)), sc)
        return await acapture(lambda: call(lc_messages(sc)), message_view)

    def draw(self, sc: Scenario, data: st.DataObject) -> None:
        draw_langchain(sc, data)


class AgentDoor(Door):
    """``TollgateMiddleware`` in a LangChain v1 agent (``create_agent``)."""

    family = "langchain"
    wraps = False

    def __init__(self, method: str) -> None:
        self.method = method
        self.name = f"langchain-agent-{method}"
        self.is_async = method == "ainvoke"

    def prepare(self, sc: Scenario) -> None:
        if sc.failure == ACTION:
            sc.fixed_model = True  # the middleware swaps models as guard() does

    def _agent(self, sc: Scenario, gated: bool) -> tuple[Any, list[bool]]:
        pytest.importorskip("langchain.agents")
        from langchain.agents import create_agent
        from langchain.agents.middleware import AgentMiddleware

        reached: list[bool] = []

        class Observer(AgentMiddleware):
            """Notes that the agent made a model call (the hook point TollgateMiddleware uses)."""

            def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
                reached.append(True)
                return handler(request)

            async def awrap_model_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
                reached.append(True)
                return await handler(request)

        if gated:
            middleware: Any = integration("tollgate_langchain.middleware").TollgateMiddleware()
        else:
            middleware = Observer()
        return create_agent(chat_model(sc), middleware=[middleware]), reached

    def _input(self, sc: Scenario) -> dict[str, Any]:
        return {"messages": lc_messages(sc)}

    def run(self, sc: Scenario, gated: bool) -> Outcome:
        agent, reached = self._agent(sc, gated)
        got = capture(lambda: agent.invoke(self._input(sc)), message_view)
        got.reached = bool(reached)
        return got

    async def arun(self, sc: Scenario, gated: bool) -> Outcome:
        agent, reached = self._agent(sc, gated)
        if sc.read == "cancel":
            got = await cancelled(lambda: agent.ainvoke(self._input(sc)), sc)
        else:
            got = await acapture(lambda: agent.ainvoke(self._input(sc)), message_view)
        got.reached = bool(reached)
        return got

    def draw(self, sc: Scenario, data: st.DataObject) -> None:
        draw_langchain(sc, data)


# -- LiteLLM -------------------------------------------------------------------------------------


def _sse(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]


class Upstream:
    """An OpenAI-compatible provider behind ``httpx.MockTransport``, doing what the scenario says."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.received: list[dict[str, Any]] = []

    def _early(self, request: Any) -> Any:
        import httpx

        body = json.loads(request.content or b"{}")
        self.received.append(body)
        sc = self.sc
        if sc.mode == "raise-before":
            raise httpx.ConnectError(
                f"connection refused, not sent: {body.get('messages')!r}", request=request
            )
        if sc.mode == "provider-error":
            return httpx.Response(
                401,
                json={
                    "error": {
                        "message": f"Incorrect API key provided: {API_KEY}",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        if body.get("model") not in (MODEL, PRICEY):
            return httpx.Response(
                404,
                json={
                    "error": {
                        "message": f"The model `{body.get('model')}` does not exist",
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                },
            )
        return body

    def respond(self, request: Any) -> Any:
        import httpx

        body = self._early(request)
        if isinstance(body, httpx.Response):
            return body
        if not body.get("stream"):
            return httpx.Response(200, content=json.dumps(self.sc.body()).encode(), headers=_JSON)
        return httpx.Response(200, headers=_SSE, stream=_SyncEvents(_sse(self.sc.chunks()), self.sc))

    async def arespond(self, request: Any) -> Any:
        import httpx

        body = self._early(request)
        if isinstance(body, httpx.Response):
            return body
        if not body.get("stream"):
            if self.sc.mode == "hang":
                await self.sc.hang()
            return httpx.Response(200, content=json.dumps(self.sc.body()).encode(), headers=_JSON)
        return httpx.Response(200, headers=_SSE, stream=_AsyncEvents(_sse(self.sc.chunks()), self.sc))


_JSON = {"content-type": "application/json"}
_SSE = {"content-type": "text/event-stream"}


@functools.cache
def _events_classes() -> tuple[type[Any], type[Any]]:
    import httpx

    class SyncEvents(httpx.SyncByteStream):
        def __init__(self, events: list[bytes], sc: Scenario) -> None:
            self.events, self.sc = events, sc

        def __iter__(self) -> Iterator[bytes]:
            for i, event in enumerate(self.events):
                if i == 2 and self.sc.mode == "break":
                    raise httpx.ReadError("connection reset by peer")
                yield event

    class AsyncEvents(httpx.AsyncByteStream):
        def __init__(self, events: list[bytes], sc: Scenario) -> None:
            self.events, self.sc = events, sc

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for i, event in enumerate(self.events):
                if i == 2 and self.sc.mode == "break":
                    raise httpx.ReadError("connection reset by peer")
                if i == 2 and self.sc.mode == "hang":
                    await self.sc.hang()
                await asyncio.sleep(0)
                yield event

    return SyncEvents, AsyncEvents


def _SyncEvents(events: list[bytes], sc: Scenario) -> Any:  # a class, built on first use
    return _events_classes()[0](events, sc)


def _AsyncEvents(events: list[bytes], sc: Scenario) -> Any:
    return _events_classes()[1](events, sc)


def litellm_view(response: Any) -> Any:
    """A LiteLLM response or chunk as the caller reads it."""
    choices = getattr(response, "choices", None) or []
    texts = []
    for choice in choices:
        message = getattr(choice, "message", None) or getattr(choice, "delta", None)
        texts.append(getattr(message, "content", None))
    usage: Any = getattr(response, "usage", None)
    dump = getattr(usage, "model_dump", None)
    return (
        type(response).__name__,
        texts,
        repr(getattr(response, "model", None)),
        repr(dump() if dump is not None else usage),
    )


def litellm_chunk_view(chunk: Any) -> Any:
    """A stream chunk by its text: the usage chunk tollgate asks the provider for is its own
    documented addition (``stream_options.include_usage``), not compared here."""
    choices = getattr(chunk, "choices", None) or []
    return tuple(getattr(getattr(c, "delta", None), "content", None) for c in choices)


def litellm_observer(call_id: str, asynchronous: bool) -> Any:
    """A LiteLLM logger noting the events LiteLLM sends about the call ``call_id`` (TollgateLogger
    hears the same ones): reached at all, and ended (a success or failure event of the call's
    own kind: a sync call's sync event, an async call's async one). LiteLLM hands a late event
    to the loggers installed when it is sent, so events of other calls are told apart by id."""
    from litellm.integrations.custom_logger import CustomLogger

    class Observer(CustomLogger):
        reached = False
        ended = False

        async def async_pre_call_deployment_hook(self, kwargs: Any, call_type: Any) -> Any:
            Observer.reached = True
            return None

        def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
            Observer.reached = True

        def _end(self, is_async: bool, kwargs: Any) -> None:
            if isinstance(kwargs, dict) and kwargs.get("litellm_call_id") == call_id:
                Observer.reached = True
                Observer.ended = Observer.ended or is_async == asynchronous

        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self._end(False, kwargs)

        def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self._end(False, kwargs)

        async def async_log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self._end(True, kwargs)

        async def async_log_failure_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self._end(True, kwargs)

    return Observer()


def ended(observer: Any) -> Callable[[], bool]:
    return lambda: bool(observer.ended)


_litellm_warm: set[str] = set()


class LiteLLMDoor(Door):
    """LiteLLM through ``TollgateLogger`` (``litellm.callbacks``) or through tollgate_litellm's
    ``completion`` / ``acompletion`` wrappers; sync or async, plain or streamed."""

    family = "litellm"
    settles_later = True

    def __init__(self, via: str, method: str) -> None:
        self.observer: Any = None  # the last run's
        self.via = via  # "logger" | "wrapper"
        self.method = method  # "completion" | "acompletion" | "stream" | "astream"
        self.name = f"litellm-{via}-{method}"
        self.is_async = method.startswith("a")
        self.streams = method.endswith("stream")
        self.wraps = via == "wrapper"
        # A sync litellm.completion is observe-only through the logger: no hook can stop it.
        self.can_refuse = via == "wrapper" or self.is_async

    def prepare(self, sc: Scenario) -> None:
        if sc.failure == ACTION:
            sc.downgrade_to = UNBUILDABLE  # known: a downgrade to a model the provider cannot serve
        if sc.failure == RAISES and self.is_async:
            sc.mode = "guardrail"  # another callback's pre-call hook refuses, after tollgate's ran

    def _callbacks(self, sc: Scenario, gated: bool, call_id: str) -> tuple[list[Any], Any]:
        from litellm.integrations.custom_logger import CustomLogger

        observer = litellm_observer(call_id, self.is_async)

        class Guardrail(CustomLogger):
            async def async_pre_call_deployment_hook(self, kwargs: Any, call_type: Any) -> Any:
                raise rejected_before_sending(kwargs.get("messages"))

        callbacks: list[Any] = []
        if gated:  # the wrappers use an installed TollgateLogger (they pass one per call without)
            callbacks.append(integration("tollgate_litellm").TollgateLogger())
        # After tollgate's: it hears an event once tollgate has settled the call. (A wrapper's
        # per-call logger would run after it, and a slow store could still be settling.)
        callbacks.append(observer)
        if sc.mode == "guardrail":
            callbacks.append(Guardrail())
        return callbacks, observer

    def _kwargs(self, sc: Scenario, call_id: str) -> dict[str, Any]:
        import httpx
        import openai

        upstream = Upstream(sc)
        if self.is_async:
            client: Any = openai.AsyncOpenAI(
                api_key="sk-test",
                max_retries=0,
                http_client=httpx.AsyncClient(transport=httpx.MockTransport(upstream.arespond)),
            )
        else:
            client = openai.OpenAI(
                api_key="sk-test",
                max_retries=0,
                http_client=httpx.Client(transport=httpx.MockTransport(upstream.respond)),
            )
        kwargs: dict[str, Any] = {
            "model": sc.model,
            "messages": sc.messages,
            "max_tokens": MAX_TOKENS,
            "max_retries": 0,
            "client": client,
            "metadata": {"tollgate": {"tenant": sc.tenant}},
            "litellm_call_id": call_id,
        }
        if self.streams:
            kwargs["stream"] = True
        return kwargs

    def _function(self, gated: bool) -> Callable[..., Any]:
        module = integration("tollgate_litellm" if gated and self.via == "wrapper" else "litellm")
        fn: Callable[..., Any] = module.acompletion if self.is_async else module.completion
        return fn

    def _setup(self, sc: Scenario, gated: bool) -> tuple[Any, dict[str, Any]]:
        pytest.importorskip("tollgate_litellm")
        import litellm

        litellm.suppress_debug_info = True
        call_id = str(uuid.uuid4())
        callbacks, observer = self._callbacks(sc, gated, call_id)
        reset_litellm_callbacks()
        litellm.callbacks = callbacks
        return observer, self._kwargs(sc, call_id)

    def run(self, sc: Scenario, gated: bool) -> Outcome:
        warm_litellm(sync=True)
        observer, kwargs = self._setup(sc, gated)
        fn = self._function(gated)
        if self.streams:
            got = read_stream(lambda: fn(**kwargs), sc, litellm_chunk_view)
        else:
            got = capture(lambda: fn(**kwargs), litellm_view)
        if not gated:  # its events, before tollgate's logger is installed: they are not for it
            wait_until(lambda: observer.ended, patience(sc))
        got.reached = observer.reached
        self.observer = observer
        return got

    async def arun(self, sc: Scenario, gated: bool) -> Outcome:
        await awarm_litellm()
        observer, kwargs = self._setup(sc, gated)
        fn = self._function(gated)
        if self.streams:
            got = await aread_stream(lambda: fn(**kwargs), sc, litellm_chunk_view)
        elif sc.read == "cancel":
            got = await cancelled(lambda: fn(**kwargs), sc)
        else:
            got = await acapture(lambda: fn(**kwargs), litellm_view)
        if not gated:
            await await_until(lambda: observer.ended, patience(sc))
        got.reached = observer.reached
        self.observer = observer
        return got

    def draw(self, sc: Scenario, data: st.DataObject) -> None:
        sc.usage = data.draw(openai_usage(COUNT_JUNK), label="usage")
        sc.response_model = data.draw(MODEL_JSON_JUNK, label="response model")


def reset_litellm_callbacks() -> None:
    """LiteLLM copies ``litellm.callbacks`` into lists of its own when a call is made: cleared,
    so a logger of an earlier run does not hear this run's calls."""
    import litellm

    litellm.input_callback = []
    litellm.success_callback = []
    litellm.failure_callback = []
    litellm._async_success_callback = []
    litellm._async_failure_callback = []
    litellm.callbacks = []


def warm_litellm(*, sync: bool) -> None:
    """LiteLLM's first call in a process takes seconds (imports, cost map): made once, unmeasured,
    so that waiting for a cell's record is not waiting for LiteLLM to start."""
    if "sync" in _litellm_warm:
        return
    _litellm_warm.add("sync")
    import litellm

    litellm.suppress_debug_info = True
    saved = list(litellm.callbacks)
    try:
        for stream in (False, True):
            door = LiteLLMDoor("logger", "stream" if stream else "completion")
            call_id = str(uuid.uuid4())
            observer = litellm_observer(call_id, False)
            reset_litellm_callbacks()
            litellm.callbacks = [observer]
            result = litellm.completion(**door._kwargs(Scenario(NONE), call_id))
            if stream:
                list(result)
            wait_until(ended(observer), 10)
    finally:
        reset_litellm_callbacks()
        litellm.callbacks = saved


async def awarm_litellm() -> None:
    if "async" in _litellm_warm:
        return
    _litellm_warm.add("async")
    import litellm

    litellm.suppress_debug_info = True
    saved = list(litellm.callbacks)
    try:
        for stream in (False, True):
            door = LiteLLMDoor("logger", "astream" if stream else "acompletion")
            call_id = str(uuid.uuid4())
            observer = litellm_observer(call_id, True)
            reset_litellm_callbacks()
            litellm.callbacks = [observer]
            result = await litellm.acompletion(**door._kwargs(Scenario(NONE), call_id))
            if stream:
                async for _ in result:
                    pass
            await await_until(ended(observer), 10)
    finally:
        reset_litellm_callbacks()
        litellm.callbacks = saved


# -- the matrix ----------------------------------------------------------------------------------

DOORS: list[Door] = [
    *(MeteredDoor(kind, with_model) for kind in MeteredDoor.KINDS for with_model in (True, False)),
    RecordDoor(),
    *(CallbackDoor(m) for m in ("invoke", "ainvoke", "stream", "astream")),
    *(GuardDoor(m) for m in ("invoke", "ainvoke", "stream", "astream")),
    *(AgentDoor(m) for m in ("invoke", "ainvoke")),
    *(
        LiteLLMDoor(via, m)
        for via in ("logger", "wrapper")
        for m in ("completion", "acompletion", "stream", "astream")
    ),
]
BY_NAME = {door.name: door for door in DOORS}


def stores() -> list[str]:
    kinds = ["memory", "sqlite"]
    if os.environ.get("TOLLGATE_TEST_REDIS_URL"):
        kinds.append("redis")
    return kinds


def cells(*, is_async: bool, malformed: bool) -> list[tuple[str, str]]:
    """(door, failure point) pairs of the matrix: the hypothesis ones, or all the others."""
    out = []
    for door in DOORS:
        if door.is_async != is_async:
            continue
        for failure in door.failures():
            if (failure == MALFORMED) == malformed:
                out.append((door.name, failure))
    return out


# -- running a cell, and what it must show ------------------------------------------------------


def scenario_for(door: Door, failure: str) -> Scenario:
    """The cell's scenario, shaped for the door (its action cell above all)."""
    sc = scenario(failure)
    door.prepare(sc)
    return sc


def wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)


async def await_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


#: How long a LiteLLM cell waits for the end event LiteLLM sends apart from the call (its
#: success or failure event, which TollgateLogger settles on). A stream left early or a
#: cancelled call gets no event from LiteLLM: tollgate has to settle it itself, so the wait
#: for it is short.
LITELLM_PATIENCE = 2.0
LITELLM_PATIENCE_NO_EVENT = 0.1
#: Once the observer (the last logger) heard the end event, a little for the loggers still busy
#: with it (a record twice would show up now).
LITELLM_AFTER_EVENT = 0.01
LITELLM_AFTER_REFUSAL = 0.05


def patience(sc: Scenario) -> float:
    return LITELLM_PATIENCE if sc.read == "all" else LITELLM_PATIENCE_NO_EVENT


def expected_records(door: Door, base: Outcome, got: Outcome) -> int:
    if door.family == "record":
        return 0 if got.error is ValueError else 1
    if door.wraps:
        return 1
    return 1 if base.reached else 0


class _Settling:
    """Whether a LiteLLM cell's bookkeeping had its chance: a little after the end event
    reached the observer, or once the patience ran out (soon, when tollgate refused the call
    before LiteLLM heard of it: then LiteLLM has nothing to tell)."""

    def __init__(self, door: Door, sc: Scenario, got: Outcome) -> None:
        self.door = door
        self.deadline = time.monotonic() + patience(sc)
        observer = getattr(door, "observer", None)
        refused = got.error is not None and issubclass(got.error, TOLLGATE_ERRORS)
        if refused and observer is not None and not observer.reached:
            self.deadline = time.monotonic() + LITELLM_AFTER_REFUSAL
        self.ended_at: float | None = None

    def __call__(self) -> bool:
        now = time.monotonic()
        observer = getattr(self.door, "observer", None)
        if observer is not None and observer.ended:
            self.ended_at = self.ended_at or now
            return now - self.ended_at >= LITELLM_AFTER_EVENT
        return now >= self.deadline


#: Baseline outcomes by (door, failure point): a run without tollgate does not depend on the
#: store, so the memory and SQLite cells of a scenario share it (hypothesis cells do not).
_BASELINES: dict[tuple[str, str], Outcome] = {}


def run_cell(door: Door, sc: Scenario, store_kind: str, folder: Path) -> list[str]:
    """Run a sync door's cell; the list of broken promises (empty: the cell holds)."""
    key = (door.name, sc.failure)
    base = _BASELINES.get(key) if sc.failure != MALFORMED else None
    if base is None:
        base = door.run(sc, gated=False)
        if sc.failure != MALFORMED:
            _BASELINES[key] = base
    h = open_harness(store_kind, sc.failure, folder)
    sc.tenant = h.tenant
    with tollgate.track(tenant=h.tenant), h.budget(sc):
        got = door.run(sc, gated=True)
    if door.settles_later:
        wait_until(_Settling(door, sc, got), 60)
    settle_what_the_framework_never_ended(door)
    return verdict(door, sc, base, got, h)


async def arun_cell(door: Door, sc: Scenario, store_kind: str, folder: Path) -> list[str]:
    """Run an async door's cell; the list of broken promises."""
    key = (door.name, sc.failure)
    base = _BASELINES.get(key) if sc.failure != MALFORMED else None
    if base is None:
        sc.arm()
        base = await door.arun(sc, gated=False)
        if sc.failure != MALFORMED:
            _BASELINES[key] = base
    h = open_harness(store_kind, sc.failure, folder)
    sc.arm()
    sc.tenant = h.tenant
    async with h.budget(sc):
        with tollgate.track(tenant=h.tenant):
            got = await door.arun(sc, gated=True)
    if door.settles_later:
        await await_until(_Settling(door, sc, got), 60)
    settle_what_the_framework_never_ended(door)
    return verdict(door, sc, base, got, h)


def settle_what_the_framework_never_ended(door: Door) -> None:
    """A hook door hears of a call's end only if its framework says so, and LangChain and
    LiteLLM sometimes do not (a LangChain stream whose chunks it cannot add up, a task cancelled
    in flight; a sync LiteLLM stream dropped by its reader). Such calls are settled as
    abandoned by the integration's stale sweep (after STALE_AFTER seconds, and at exit): run it
    now, as if that time had passed. Wrapping doors see every end themselves: no sweep."""
    if door.wraps or door.family == "record":
        return
    from tollgate_langchain.callbacks import settle_stale
    from tollgate_litellm.logger import registry

    settle_stale(0.0)
    registry.settle_stale(0.0)


def verdict(door: Door, sc: Scenario, base: Outcome, got: Outcome, h: Harness) -> list[str]:
    problems: list[str] = []
    # 1. What the caller saw.
    if door.family == "record":
        valid = sc.failure in (NONE, REFUSED, LEDGER, STORE)
        if got.error is not None and (valid or got.error is not ValueError):
            problems.append(f"OUTCOME: record() {got.describe()} (expected its CallRecord, or ValueError)")
    elif sc.failure == REFUSED and door.can_refuse:
        if got.error is not tollgate.BudgetExceeded:
            problems.append(f"OUTCOME: a blocking budget let the call through: {got.describe()}")
    elif not got.same(base):
        # tollgate's own error where a pre-flight decision stands in for the call; anywhere, a
        # budget crossed after the call ran (on_exceed="raise", a metered call without a model)
        # or a stream cut off at its budget.
        deciding = sc.failure in DECIDING and got.error is not None and issubclass(got.error, TOLLGATE_ERRORS)
        overrun = got.error is tollgate.BudgetExceeded and got.action in ("raise", "cutoff")
        if not (deciding or overrun):
            problems.append(f"OUTCOME: caller {got.describe()}; without tollgate it {base.describe()}")
    # 2. Exactly one record.
    want = expected_records(door, base, got)
    records = h.records()
    if len(records) != want:
        where = "delivered to on_record (the ledger write fails)" if h.ledger_fails else "in the ledger"
        statuses = [(r.status, (r.error or "")[:80]) for r in records]
        problems.append(f"RECORDS: {len(records)} records {where}, expected {want}: {statuses}")
    # 3. Nothing left held.
    held = h.held()
    if held:
        problems.append(f"HOLD: reservations left after the call: {held}")
    # 4. No prompt text nor key in a record's error.
    for record in [*records, *h.delivered]:
        error = record.error or ""
        for secret, what in ((SECRET, "prompt text"), (API_KEY, "API key")):
            if secret in error:
                problems.append(f"LEAK: a record's error carries the {what}: {error[:160]!r}")
    return sorted(set(problems), key=problems.index)


def explain(door: Door, sc: Scenario, store_kind: str, problems: list[str]) -> str:
    return f"{door.name} x {sc.failure} x {store_kind}:\n  " + "\n  ".join(problems)


@contextlib.contextmanager
def quiet_litellm() -> Iterator[None]:
    """LiteLLM's callbacks as they were, after a cell changed them."""
    try:
        import litellm
    except ImportError:
        yield
        return
    saved = list(litellm.callbacks)
    try:
        yield
    finally:
        reset_litellm_callbacks()
        litellm.callbacks = saved
