"""The door x failure matrix for the provider SDKs (issue 16, item 5): doors, faults, the
stand-in provider, and the checks. ``test_door_matrix_sdk.py`` runs every cell.

One *cell* is one door (an SDK method, sync or async), one failure point and one store. It
runs the same scenario twice: through the un-instrumented client, then through
``tollgate.instrument(client)`` under a windowed budget (``budget(usd=..., per="day")``), a
standing limit (``set_limit(..., tenant=...)``) and a rate limit (``limit(rpm=..., tpm=...)``),
and :func:`problems` lists every way the gated call broke tollgate's promise:

- exactly one ``CallRecord`` (in the ledger, or through ``configure(on_record=...)`` when the
  ledger's write is made to fail) and exactly one ended span;
- nothing left reserved on any counter the call reserved on (the budget's, the limit's, the
  rate limit's), read back from the store after the call;
- the caller sees what it saw without tollgate (the same value or chunks, or the same exception
  type and message, and the provider saw as many requests), or tollgate's own error where the
  cell calls for one: ``BudgetExceeded`` for a block (and, allowed, for a request tollgate
  cannot read), ``StoreUnavailable`` when the store cannot reserve;
- neither a record's ``error`` nor the span (status, attributes, events) carries the API key
  or the prompt's text.

Failure points (:data:`FAILURES`): the request unreadable (the prompt argument a string, a
dict, ``[None]``, ``[{"role": "user"}]``; the model an int), a block, an action the door cannot
apply, an argument the SDK rejects before sending, HTTP 400 (quoting the prompt) / 401
(quoting the key) / 429 / 500 with retries off, a malformed reply (drawn by hypothesis), the
ledger's write failing, the store failing to reserve or (once) to settle, pricing failing (a
reply whose token count overflows a float: the reply is the public way in, nothing is
patched), and for streams: the connection broken after two chunks, the stream left after two
chunks (closed, or dropped and garbage-collected), the reading task cancelled.

Only public API is used, plus ``tollgate.config.settings()`` and the Store / Ledger objects
this module injects with ``configure(store=..., ledger=...)``. The one exception is the span
capture (see ``spans`` in the test module).

The stand-in provider is ``MockTransport`` of the HTTP library each SDK sends through (read from
the SDK's own default client class), answering bodies taken from the constructed cassettes in
``cassettes/`` (each written to its provider's documented wire format).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import gc
import inspect
import itertools
import json
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anthropic
import openai
import yaml  # type: ignore[import-untyped]
from google import genai
from google.genai import types as genai_types
from hypothesis import strategies as st

import tollgate
from tests.conftest import http_module as conftest_http_module
from tests.faults.delegating import DelegatingStore
from tollgate.ledger import Ledger, MemoryLedger
from tollgate.request import CallRecord
from tollgate.stores import Charge, Hold, MemoryStore, Reservation, SQLiteStore, Store

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"

API_KEY = "sk-test-LEAKCHECK-0000"
SECRET = "SECRET-PROMPT-7731"
PROMPT = f"{SECRET}: name the capital of France in one word."
TENANT = "matrix"
WINDOW = "matrix-day"
#: Room enough for any answer the cells serve (malformed counts stay far below it too).
AMPLE_USD = 1000.0
#: Too little for any call: the windowed budget refuses, its action is tried, then a block.
TINY_USD = 1e-9
COMPAT_URL = "https://llm.internal.example/v1"


# -- the HTTP library each SDK sends through ------------------------------------------------------------


#: One lookup per SDK (it runs for every response the fake provider sends).
http_module = functools.cache(conftest_http_module)


# -- wire bodies ----------------------------------------------------------------------------------------

MISSING: Any = object()  # a key left out of the body altogether


@dataclass(frozen=True)
class Event:
    """One server-sent event: its ``event:`` name (None when the stream has none) and data."""

    name: str | None
    data: Any  # parsed JSON, or the raw text of a data line that is not JSON ("[DONE]")

    def encode(self) -> bytes:
        text = self.data if isinstance(self.data, str) else json.dumps(self.data)
        head = f"event: {self.name}\n" if self.name is not None else ""
        return f"{head}data: {text}\n\n".encode()


@dataclass(frozen=True, repr=False)
class Wire:
    """A body as a provider sends it: one JSON document, or server-sent events."""

    content_type: str
    document: Any = None  # the JSON body (non-stream)
    events: tuple[Event, ...] = ()  # the SSE body (stream)
    raw: bytes | None = None  # a body that is neither (not JSON, cut short, garbage inserted)
    note: str = "valid"  # what was changed, for hypothesis to print

    def __repr__(self) -> str:
        return f"<reply: {self.note}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis prints it
        printer.text(repr(self))

    @property
    def sse(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def chunks(self) -> list[bytes]:
        """The body in the pieces the transport sends: one per event for a stream."""
        if self.raw is not None:
            if not self.sse:
                return [self.raw]
            parts = self.raw.split(b"\n\n")
            return [p + b"\n\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        if self.sse:
            return [e.encode() for e in self.events]
        return [json.dumps(self.document).encode()]


@functools.cache
def _cassette(name: str) -> tuple[str, str]:
    data = yaml.safe_load((CASSETTES / name).read_text())
    response = data["interactions"][0]["response"]
    headers = {k.lower(): v[0] for k, v in response["headers"].items()}
    return headers.get("content-type", "application/json"), response["body"]["string"]


def _events(text: str) -> tuple[Event, ...]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = None, ""
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data = line[len("data:") :].strip()
        try:
            events.append(Event(name, json.loads(data)))
        except ValueError:
            events.append(Event(name, data))
    return tuple(events)


def _text_delta(event: Event) -> bool:
    data = event.data
    if not isinstance(data, dict):
        return False
    if data.get("type") in ("response.output_text.delta", "content_block_delta"):
        return True
    choices: Any = data.get("choices")
    return bool(choices) and bool(choices[0].get("delta", {}).get("content"))


@functools.cache
def wire(cassette: str) -> Wire:
    """The (valid) response body of a constructed cassette; a stream keeps its first two
    text deltas (enough to break or leave it in the middle, and quick to parse)."""
    content_type, text = _cassette(cassette)
    if not content_type.startswith("text/event-stream"):
        return Wire("application/json", document=json.loads(text))
    events, deltas = [], 0
    for event in _events(text):
        deltas += _text_delta(event)
        if not _text_delta(event) or deltas <= 2:
            events.append(event)
    return Wire("text/event-stream", events=tuple(events))


#: Counts that, priced, overflow a float: the usual way pricing can fail on a reply.
_INPUT_COUNTS = ("prompt_tokens", "input_tokens", "promptTokenCount")


def overflowing(body: Wire) -> Wire:
    """``body`` with every input-token count made 10**400: the reply is well-formed JSON
    the SDK accepts, but what it costs cannot be computed as a float."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: 10**400 if k in _INPUT_COUNTS and type(v) is int else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    if body.sse:
        return dataclasses.replace(body, events=tuple(Event(e.name, walk(e.data)) for e in body.events))
    return dataclasses.replace(body, document=walk(body.document))


# -- what the stand-in provider does --------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """The stand-in provider's answer: a status and body, and what happens after ``cut``
    pieces of the body: "end" (nothing more), "break" (the connection fails) or "hang"
    (nothing more, ever: for cancellation)."""

    status: int
    body: Wire
    headers: tuple[tuple[str, str], ...] = ()
    after: str = "end"
    cut: int | None = None


@dataclass
class Provider:
    """The stand-in provider behind one client: serves ``reply`` and counts the requests."""

    sdk: str
    reply: Reply | None = None
    requests: int = 0
    entered: asyncio.Event | None = None  # a request arrived (async runs)
    streamed: asyncio.Event | None = None  # the pieces before a hang were sent (async runs)

    def load(self, reply: Reply) -> None:
        self.reply, self.requests = reply, 0
        self.entered = self.streamed = None

    def _response(self, content: Any) -> Any:
        assert self.reply is not None
        headers = {"content-type": self.reply.body.content_type, **dict(self.reply.headers)}
        return http_module(self.sdk).Response(self.reply.status, headers=headers, content=content)

    def handler(self, request: Any) -> Any:
        request.read()
        self.requests += 1
        assert self.reply is not None
        chunks = self.reply.body.chunks()
        if self.reply.after == "end":
            return self._response(b"".join(chunks))
        return self._response(self._pieces(chunks, self.reply.cut or 0))

    def _pieces(self, chunks: list[bytes], cut: int) -> Iterator[bytes]:
        yield from chunks[:cut]
        raise http_module(self.sdk).RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )

    async def ahandler(self, request: Any) -> Any:
        await request.aread()
        self.requests += 1
        assert self.reply is not None
        if self.entered is not None:
            self.entered.set()
        chunks = self.reply.body.chunks()
        if self.reply.after == "end":
            return self._response(b"".join(chunks))
        if self.reply.after == "hang" and self.reply.cut is None:
            await asyncio.Event().wait()  # never answers
        return self._response(self._apieces(chunks, self.reply.cut or 0))

    async def _apieces(self, chunks: list[bytes], cut: int) -> AsyncIterator[bytes]:
        assert self.reply is not None
        for chunk in chunks[:cut]:
            yield chunk
        if self.reply.after == "hang":
            if self.streamed is not None:
                self.streamed.set()
            await asyncio.Event().wait()
        raise http_module(self.sdk).RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )


# -- injected store and ledger ---------------------------------------------------------------------------


class FaultyStore(DelegatingStore):
    """A real store (memory, SQLite, Redis) that remembers every counter a call reserved on, and
    fails on demand: every reserve (``fail_reserve``), or the first settle (``fail_settle``)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.fail_reserve = False
        self.fail_settle = False
        self.settle_failures = 0
        self.reserved_on: dict[str, tuple[Charge, float]] = {}

    def _seen(self, charges: Sequence[Charge], now: float) -> None:
        for c in charges:
            self.reserved_on.setdefault(c.key, (Charge(c.key, c.window, c.limit, 0.0), now))
        if self.fail_reserve:
            raise tollgate.StoreUnavailable("injected fault: the store cannot be reached (reserve)")

    def _settling(self) -> None:
        if self.fail_settle and not self.settle_failures:
            self.settle_failures += 1
            raise tollgate.StoreUnavailable("injected fault: the store cannot be reached (settle)")

    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        self._seen(charges, now)
        return self.inner.reserve(charges, now)

    async def areserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        self._seen(charges, now)
        return await self.inner.areserve(charges, now)

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        self._settling()
        return self.inner.settle(holds, actuals)

    async def asettle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> Sequence[float | None] | None:
        self._settling()
        return await self.inner.asettle(holds, actuals)

    def close(self) -> None:
        """Nothing: the inner store is the test module's, reused by every cell (cleared first)."""

    def still_reserved(self) -> dict[str, float]:
        """What each counter the call reserved on still holds (the counters holding anything)."""
        held = {}
        for key, (charge, now) in self.reserved_on.items():
            (state,) = self.inner.read([charge], now)
            if abs(state.reserved) > 1e-12:
                held[key] = state.reserved
        return held


class FaultyLedger(Ledger):
    """The in-memory ledger, whose ``write`` raises on demand (``fail_write``)."""

    def __init__(self) -> None:
        self.inner = MemoryLedger()
        self.fail_write = False

    def write(self, record: CallRecord) -> None:
        if self.fail_write:
            raise OSError("injected fault: the ledger cannot be written")
        self.inner.write(record)

    def records(self, since: float | None = None, until: float | None = None) -> list[CallRecord]:
        return self.inner.records(since, until)

    def dropped(self) -> int:
        return self.inner.dropped()

    def clear(self) -> None:
        self.inner.clear()


# -- doors ---------------------------------------------------------------------------------------------


def dump(obj: Any) -> Any:
    """What the caller got, as data to compare (pydantic models dumped)."""
    model_dump = getattr(obj, "model_dump", None)
    return model_dump(mode="python", warnings=False) if callable(model_dump) else obj


def _wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    frames = int(seconds * rate)
    data = b"\x00\x00" * frames
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + fmt + b"data" + struct.pack("<I", len(data)) + data


CLIP = _wav()
CHAT = [{"role": "user", "content": PROMPT}]
INCLUDE_USAGE = {"include_usage": True}  # asked by the caller, so tollgate hides no chunk


@dataclass(frozen=True, repr=False)
class Door:
    """One way into an SDK. ``kind``: "value" (a call returns the answer), "stream" (it returns
    an iterable of chunks) or "manager" (a context manager that yields what to iterate)."""

    name: str
    sdk: str
    is_async: bool
    kind: str
    cassette: str
    kwargs: Callable[[], dict[str, Any]]
    open: Callable[[Any, dict[str, Any]], Any]
    content_arg: str
    #: An ``on_exceed`` action this door cannot apply (under a tiny budget: a block).
    inapplicable: Literal["clamp", "truncate"] = "truncate"
    iterate: Callable[[Any], Any] = lambda s: s
    value: Callable[[Any], Any] = dump
    compat: bool = False
    #: Some SDKs' own typed parameters this door's "SDK rejects it" cell passes.
    rejected: dict[str, Any] = field(default_factory=lambda: {"extra_body": 7731})

    @property
    def id(self) -> str:
        return f"{self.name}-{'async' if self.is_async else 'sync'}"

    def __repr__(self) -> str:
        return f"<door {self.id}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis prints it
        printer.text(repr(self))

    @property
    def streaming(self) -> bool:
        return self.kind != "value"

    def body(self) -> Wire:
        return wire(self.cassette)


def _chat(stream: bool = False) -> Callable[[], dict[str, Any]]:
    def kwargs() -> dict[str, Any]:
        base: dict[str, Any] = {"model": "gpt-4o-mini", "messages": copy.deepcopy(CHAT), "max_tokens": 50}
        return {**base, "stream": True, "stream_options": dict(INCLUDE_USAGE)} if stream else base

    return kwargs


def _responses(stream: bool = False) -> Callable[[], dict[str, Any]]:
    def kwargs() -> dict[str, Any]:
        base: dict[str, Any] = {"model": "gpt-4o-mini", "input": PROMPT, "max_output_tokens": 50}
        return {**base, "stream": True} if stream else base

    return kwargs


def _claude(stream: bool = False) -> Callable[[], dict[str, Any]]:
    def kwargs() -> dict[str, Any]:
        base: dict[str, Any] = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "messages": copy.deepcopy(CHAT),
        }
        return {**base, "stream": True} if stream else base

    return kwargs


def _gemini() -> dict[str, Any]:
    return {"model": "gemini-2.5-flash", "contents": PROMPT, "config": {"max_output_tokens": 50}}


GEMINI_REJECTED = {"config": {"max_output_tokens": "fifty"}}  # the SDK's pydantic model refuses it


def _text_doors(is_async: bool) -> list[Door]:
    def chat_stream_manager(c: Any, kw: dict[str, Any]) -> Any:
        return c.chat.completions.stream(**kw)

    def aio(c: Any) -> Any:
        return c.aio if is_async else c

    async def lines(response: Any) -> AsyncIterator[str]:
        async for line in response.iter_lines():
            yield line

    chat_stream = _chat(stream=True)

    def manager_kwargs() -> dict[str, Any]:
        kw = chat_stream()
        del kw["stream"]  # .stream() streams by itself
        return kw

    return [
        Door("openai-chat", "openai", is_async, "value", "openai/chat_basic.yaml", _chat(),
             lambda c, kw: c.chat.completions.create(**kw), "messages"),
        Door("openai-chat-stream", "openai", is_async, "stream", "openai/chat_stream.yaml", chat_stream,
             lambda c, kw: c.chat.completions.create(**kw), "messages"),
        Door("openai-chat-raw", "openai", is_async, "value", "openai/chat_basic.yaml", _chat(),
             lambda c, kw: c.chat.completions.with_raw_response.create(**kw), "messages",
             value=lambda r: (r.http_response.status_code, dump(r.parse()))),
        Door("openai-chat-streaming-response", "openai", is_async, "manager", "openai/chat_stream.yaml",
             chat_stream, lambda c, kw: c.chat.completions.with_streaming_response.create(**kw), "messages",
             iterate=(lambda r: lines(r)) if is_async else (lambda r: r.iter_lines())),
        Door("openai-chat-stream-manager", "openai", is_async, "manager", "openai/chat_stream.yaml",
             manager_kwargs, chat_stream_manager, "messages"),
        Door("openai-responses", "openai", is_async, "value", "openai/responses_basic.yaml", _responses(),
             lambda c, kw: c.responses.create(**kw), "input"),
        Door("openai-responses-stream", "openai", is_async, "stream", "openai/responses_stream.yaml",
             _responses(stream=True), lambda c, kw: c.responses.create(**kw), "input"),
        Door("openai-embeddings", "openai", is_async, "value", "openai/embeddings.yaml",
             lambda: {"model": "text-embedding-3-small", "input": [PROMPT]},
             lambda c, kw: c.embeddings.create(**kw), "input", inapplicable="clamp"),
        Door("compatible-chat", "openai", is_async, "value", "openai/chat_basic.yaml", _chat(),
             lambda c, kw: c.chat.completions.create(**kw), "messages", compat=True),
        Door("anthropic-messages", "anthropic", is_async, "value", "anthropic/messages_basic.yaml",
             _claude(), lambda c, kw: c.messages.create(**kw), "messages"),
        Door("anthropic-messages-stream", "anthropic", is_async, "stream", "anthropic/messages_stream.yaml",
             _claude(stream=True), lambda c, kw: c.messages.create(**kw), "messages"),
        Door("anthropic-stream-manager", "anthropic", is_async, "manager", "anthropic/messages_stream.yaml",
             _claude(), lambda c, kw: c.messages.stream(**kw), "messages"),
        Door("gemini-generate", "gemini", is_async, "value", "gemini/generate_basic.yaml", _gemini,
             lambda c, kw: aio(c).models.generate_content(**kw), "contents", rejected=GEMINI_REJECTED),
        Door("gemini-generate-stream", "gemini", is_async, "stream", "gemini/stream_basic.yaml", _gemini,
             lambda c, kw: aio(c).models.generate_content_stream(**kw), "contents",
             rejected=GEMINI_REJECTED),
    ]  # fmt: skip


def _media_doors() -> list[Door]:
    return [
        Door("openai-transcription", "openai", False, "value", "openai/audio_transcription_tokens.yaml",
             lambda: {"model": "gpt-4o-transcribe", "file": ("clip.wav", CLIP, "audio/wav")},
             lambda c, kw: c.audio.transcriptions.create(**kw), "file", inapplicable="clamp"),
        Door("openai-images", "openai", False, "value", "openai/images_generate_gpt_image.yaml",
             lambda: {"model": "gpt-image-1", "prompt": PROMPT, "quality": "high", "size": "1024x1024"},
             lambda c, kw: c.images.generate(**kw), "prompt", inapplicable="clamp"),
    ]  # fmt: skip


DOORS: list[Door] = [*_text_doors(False), *_text_doors(True), *_media_doors()]


@dataclass
class Clients:
    provider: Provider
    raw: Any
    gated: Any


@functools.cache
def clients(sdk: str, is_async: bool, compat: bool) -> Clients:
    """One raw client per SDK flavour (google-genai's are slow to build), its instrumented
    twin (``instrument`` wraps, it patches nothing: the raw one stays ungated) and its
    stand-in provider, reused by every cell."""
    provider = Provider(sdk)
    http = http_module(sdk)
    transport = http.MockTransport(provider.ahandler if is_async else provider.handler)
    http_client = http.AsyncClient(transport=transport) if is_async else http.Client(transport=transport)
    raw: Any
    if sdk == "openai":
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        base_url = COMPAT_URL if compat else None
        raw = cls(api_key=API_KEY, max_retries=0, http_client=http_client, base_url=base_url)
    elif sdk == "anthropic":
        cls2 = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        raw = cls2(api_key=API_KEY, max_retries=0, http_client=http_client)
    else:
        options = genai_types.HttpOptions(
            retry_options=genai_types.HttpRetryOptions(attempts=1),
            **({"httpx_async_client": http_client} if is_async else {"httpx_client": http_client}),
        )
        raw = genai.Client(api_key=API_KEY, http_options=options)
    return Clients(provider, raw, tollgate.instrument(raw))


# -- failure points -------------------------------------------------------------------------------------

#: The request-argument shapes the gate cannot read, put in the door's prompt argument.
UNREADABLE: dict[str, Any] = {
    "unreadable-str": PROMPT,
    "unreadable-dict": {"role": "user", "content": PROMPT},
    "unreadable-none-item": [None],
    "unreadable-no-content": [{"role": "user"}],
}
HTTP_STATUS = {"http-400": 400, "http-401": 401, "http-429": 429, "http-500": 500}

FAILURES = [
    "ok",  # the control: nothing fails
    *UNREADABLE,
    "unreadable-model-int",
    "block",
    "action-inapplicable",
    "sdk-rejects",
    *HTTP_STATUS,
    "ledger-write-fails",
    "store-reserve-fails",
    "store-settle-fails",
    "pricing-fails",
    "stream-broken",
    "stream-abandoned",
    "stream-dropped",
    "cancelled",
]


def applies(door: Door, failure: str) -> bool:
    if failure in ("stream-broken", "stream-abandoned"):
        return door.streaming
    if failure == "stream-dropped":
        return door.kind == "stream"  # a manager closes its stream when its block ends
    if failure == "cancelled":
        return door.is_async
    return True


def error_body(sdk: str, status: int) -> dict[str, Any]:
    """An error body in the provider's documented shape; a 400 quotes the prompt and a 401 the
    key, as real APIs do."""
    message = {
        400: f"Invalid value for 'content': {PROMPT!r} is not supported with this model.",
        401: f"Incorrect API key provided: {API_KEY}. You can find your API key in your dashboard.",
        429: "Rate limit reached for requests. Please try again in 1s.",
        500: "The server had an error while processing your request.",
    }[status]
    if sdk == "anthropic":
        kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
        return {"type": "error", "error": {"type": kind.get(status, "api_error"), "message": message}}
    if sdk == "gemini":
        state = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}
        return {"error": {"code": status, "message": message, "status": state.get(status, "INTERNAL")}}
    kind2 = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return {
        "error": {"message": message, "type": kind2.get(status, "server_error"), "param": None, "code": code}
    }


def reply_for(door: Door, failure: str, body: Wire | None = None) -> Reply:
    """What the stand-in provider answers in this cell (``body``: a malformed one)."""
    if failure in HTTP_STATUS:
        status = HTTP_STATUS[failure]
        headers = (("retry-after", "1"),) if status == 429 else ()
        return Reply(status, Wire("application/json", document=error_body(door.sdk, status)), headers)
    valid = body or door.body()
    if failure == "pricing-fails":
        return Reply(200, overflowing(valid))
    if failure == "stream-broken":
        return Reply(200, valid, after="break", cut=2)
    if failure == "cancelled":
        return Reply(200, valid, after="hang", cut=2 if door.streaming else None)
    return Reply(200, valid)


def kwargs_for(door: Door, failure: str) -> dict[str, Any]:
    kw = door.kwargs()
    if failure in UNREADABLE:
        kw[door.content_arg] = copy.deepcopy(UNREADABLE[failure])
    elif failure == "unreadable-model-int":
        kw["model"] = 7731
    elif failure == "sdk-rejects":
        kw.update(copy.deepcopy(door.rejected))
    return kw


# -- running one call ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the caller got: a value (or a stream's chunks), or an exception after some chunks."""

    value: Any = None
    error: BaseException | None = None


def _close(stream: Any) -> Any:
    closer = getattr(stream, "aclose", None) or getattr(stream, "close", None)
    return closer() if closer is not None else None


def _take(failure: str) -> int | None:
    return 2 if failure in ("stream-abandoned", "stream-dropped") else None


def call_sync(door: Door, client: Any, kwargs: dict[str, Any], failure: str) -> Outcome:
    take, chunks = _take(failure), []
    try:
        result = door.open(client, kwargs)
        if not door.streaming:
            return Outcome(door.value(result))
        if door.kind == "manager":
            with result as stream:
                for chunk in door.iterate(stream):
                    chunks.append(dump(chunk))
                    if take is not None and len(chunks) >= take:
                        break
            return Outcome(chunks)
        iterator = iter(door.iterate(result))
        for chunk in iterator:
            chunks.append(dump(chunk))
            if take is not None and len(chunks) >= take:
                break
        if failure == "stream-abandoned":
            _close(result)
        del result, iterator  # "stream-dropped": the last references go
        if failure == "stream-dropped":
            gc.collect()
        return Outcome(chunks)
    except Exception as exc:
        return Outcome(chunks, exc)


async def call_async(
    door: Door, client: Any, kwargs: dict[str, Any], failure: str, provider: Provider
) -> Outcome:
    take, chunks = _take(failure), []

    async def read() -> Any:
        result = door.open(client, kwargs)
        if door.kind != "manager":
            result = await result
        if not door.streaming:
            value = door.value(result)
            return await value if inspect.isawaitable(value) else value
        if door.kind == "manager":
            async with result as stream:
                async for chunk in door.iterate(stream):
                    chunks.append(dump(chunk))
                    if take is not None and len(chunks) >= take:
                        break
            return chunks
        iterator = aiter(door.iterate(result))
        async for chunk in iterator:
            chunks.append(dump(chunk))
            if take is not None and len(chunks) >= take:
                break
        if failure == "stream-abandoned":
            closed = _close(result)
            if inspect.isawaitable(closed):
                await closed
        del result, iterator  # "stream-dropped": the last references go
        if failure == "stream-dropped":
            gc.collect()
            for _ in range(3):
                await asyncio.sleep(0)
        return chunks

    if failure != "cancelled":
        try:
            return Outcome(await read())
        except Exception as exc:
            return Outcome(chunks, exc)
    provider.entered, provider.streamed = asyncio.Event(), asyncio.Event()
    task = asyncio.ensure_future(read())
    waiting = asyncio.ensure_future((provider.streamed if door.streaming else provider.entered).wait())
    await asyncio.wait([task, waiting], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    for _ in range(5):  # let the reader take what was sent before the hang
        await asyncio.sleep(0)
    task.cancel()
    try:
        return Outcome(await task)
    except BaseException as exc:  # the CancelledError is what the caller sees
        return Outcome(chunks, exc)


def call(door: Door, client: Any, kwargs: dict[str, Any], failure: str, provider: Provider) -> Outcome:
    if not door.is_async:
        return call_sync(door, client, kwargs, failure)
    return asyncio.run(call_async(door, client, kwargs, failure, provider))


# -- one cell --------------------------------------------------------------------------------------------


@dataclass
class Cell:
    """Everything one cell saw: both outcomes, what reached the provider, and tollgate's books."""

    door: Door
    failure: str
    plain: Outcome
    gated: Outcome
    plain_requests: int
    gated_requests: int
    ledger: list[CallRecord]
    hooked: list[CallRecord]
    held: dict[str, float]
    reserved_on: list[str]
    spans: list[Any]


def open_store(kind: str, folder: Path, redis_url: str | None) -> Store:
    """A store the cells of one module share (opening an SQLite file takes ~40 ms)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(str(folder / "store.db"))
    from tollgate.stores import RedisStore

    assert redis_url is not None
    return RedisStore(redis_url, prefix=f"tollgate-matrix-{time.time_ns()}")


_cells = itertools.count()


def run_cell(door: Door, failure: str, inner: Store, *, exporter: Any, body: Wire | None = None) -> Cell:
    """Run ``door`` raw, then gated on ``inner`` (cleared first), with ``failure`` injected;
    what each saw."""
    pair = clients(door.sdk, door.is_async, door.compat)
    provider, reply = pair.provider, reply_for(door, failure, body)
    # Counters of this cell's own, and only records and spans that start after the cell did:
    # a stream an earlier cell left to the garbage collector cannot end in this one's books.
    n = next(_cells)
    tenant, window = f"{TENANT}-{n}", f"{WINDOW}-{n}"

    tollgate.reset()
    provider.load(reply)
    since = time.time()
    plain = call(door, pair.raw, kwargs_for(door, failure), failure, provider)
    plain_requests = provider.requests
    assert tollgate.config.settings().ledger.records(since) == [], "the raw client is gated"

    inner.clear()
    store = FaultyStore(inner)
    ledger = FaultyLedger()
    hooked: list[CallRecord] = []
    tollgate.configure(store=store, ledger=ledger, on_record=hooked.append)
    tollgate.set_limit(usd=AMPLE_USD, per="day", tenant=tenant)
    tollgate.limit(rpm=100_000, tpm=10**9, wait=False)  # its token hold is refunded at settle too
    store.fail_reserve = failure == "store-reserve-fails"
    store.fail_settle = failure == "store-settle-fails"
    ledger.fail_write = failure == "ledger-write-fails"
    tight = failure in ("block", "action-inapplicable")
    action: Literal["block", "clamp", "truncate"] = (
        door.inapplicable if failure == "action-inapplicable" else "block"
    )
    exporter.clear()
    provider.load(reply)
    since = time.time()
    with (
        tollgate.track(tenant=tenant),
        tollgate.budget(usd=TINY_USD if tight else AMPLE_USD, per="day", name=window, on_exceed=action),
    ):
        gated = call(door, pair.gated, kwargs_for(door, failure), failure, provider)
    if failure == "stream-dropped":
        gc.collect()
    store.fail_reserve = store.fail_settle = ledger.fail_write = False
    cell = Cell(
        door=door,
        failure=failure,
        plain=plain,
        gated=gated,
        plain_requests=plain_requests,
        gated_requests=provider.requests,
        ledger=tollgate.config.settings().ledger.records(since),
        hooked=[r for r in hooked if r.started_at >= since],
        held=store.still_reserved(),
        reserved_on=sorted(store.reserved_on),
        spans=[s for s in exporter.get_finished_spans() if s.start_time >= since * 1e9 - 1e3],
    )
    tollgate.reset()
    return cell


# -- the promise -----------------------------------------------------------------------------------------

#: Cells where tollgate must refuse the call itself, with this exception, before sending it.
REFUSED = {"block": tollgate.BudgetExceeded, "action-inapplicable": tollgate.BudgetExceeded}
REFUSED_BY_STORE = {"store-reserve-fails": tollgate.StoreUnavailable}


def _describe(outcome: Outcome) -> str:
    if outcome.error is None:
        return "returned normally"
    kind = type(outcome.error)
    return f"raised {kind.__module__}.{kind.__name__}({str(outcome.error)[:160]!r})"


def _leaks(text: str) -> list[str]:
    return [name for name, secret in (("the API key", API_KEY), ("the prompt", SECRET)) if secret in text]


def _span_texts(span: Any) -> list[tuple[str, str]]:
    texts = [("status", span.status.description or "")]
    texts += [(f"attribute {k}", str(v)) for k, v in (span.attributes or {}).items()]
    for event in span.events:
        texts += [(f"event {event.name} {k}", str(v)) for k, v in (event.attributes or {}).items()]
    return texts


def problems(cell: Cell) -> list[str]:
    """Every way the gated call broke the promise (empty: the cell holds)."""
    found: list[str] = []
    plain, gated, failure = cell.plain, cell.gated, cell.failure
    refused = REFUSED.get(failure) or REFUSED_BY_STORE.get(failure)

    # -- what the caller sees
    if refused is not None:
        if not isinstance(gated.error, refused):
            found.append(
                f"OUTCOME: expected tollgate's {refused.__name__}; the gated call {_describe(gated)}"
            )
        if cell.gated_requests:
            found.append(f"SENT: a refused call reached the provider ({cell.gated_requests} requests)")
    elif isinstance(gated.error, tollgate.TollgateError) and not (
        failure.startswith("unreadable") and isinstance(gated.error, tollgate.BudgetExceeded)
    ):
        found.append(
            f"OUTCOME: tollgate raised its own error; raw {_describe(plain)}, gated {_describe(gated)}"
        )
    elif not isinstance(gated.error, tollgate.TollgateError):
        if type(gated.error) is not type(plain.error) or str(gated.error) != str(plain.error):
            found.append(f"OUTCOME: raw {_describe(plain)}, gated {_describe(gated)}")
        elif gated.value != plain.value:
            found.append(f"OUTCOME: a different value: raw {plain.value!r:.300}, gated {gated.value!r:.300}")
        if cell.gated_requests != cell.plain_requests:
            found.append(f"SENT: {cell.gated_requests} requests gated, {cell.plain_requests} raw")

    # -- exactly one record (through on_record when the ledger cannot be written)
    want_ledger = 0 if failure == "ledger-write-fails" else 1
    if len(cell.ledger) != want_ledger or len(cell.hooked) != 1:
        found.append(
            f"RECORDS: {len(cell.ledger)} in the ledger (want {want_ledger}), "
            f"{len(cell.hooked)} through on_record (want 1)"
        )
    records = cell.hooked or cell.ledger
    if len(records) == 1:
        status = records[0].status
        if failure in REFUSED and status != "blocked":
            found.append(f"STATUS: a refused call recorded as {status!r}, not 'blocked'")
        if failure == "ok" and status != "ok":
            found.append(f"STATUS: a good call recorded as {status!r} ({records[0].error})")
        if refused is None and gated.error is not None and status == "ok":
            found.append(f"STATUS: a call that raised {type(gated.error).__name__} recorded as 'ok'")

    # -- no hold left
    if cell.held:
        found.append(f"HOLD: still reserved after the call: {cell.held}")
    if failure == "ok" and len(cell.reserved_on) < 2:  # the windowed budget's and the limit's
        found.append(f"HARNESS: a good call did not reserve on two counters: {cell.reserved_on}")

    # -- one span
    if len(cell.spans) != 1:
        found.append(f"SPANS: {len(cell.spans)} ended (want 1)")

    # -- nothing secret in a record's error or on a span
    for record in {id(r): r for r in [*cell.ledger, *cell.hooked]}.values():
        for leaked in _leaks(record.error or ""):
            found.append(f"LEAK: the record's error carries {leaked}: {record.error!r:.200}")
    for span in cell.spans:
        for where, text in _span_texts(span):
            for leaked in _leaks(text):
                found.append(f"LEAK: the span's {where} carries {leaked}: {text!r:.200}")
    return found


# -- malformed replies, drawn by hypothesis -------------------------------------------------------------

_SCALAR_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**31), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.text(max_size=8),
    st.sampled_from(["7", "-1", "1e3", "", "gpt-4o", "null"]),
)
JUNK: st.SearchStrategy[Any] = st.one_of(
    st.just(MISSING),
    _SCALAR_JUNK,
    st.lists(_SCALAR_JUNK, max_size=2),
    st.dictionaries(st.text(max_size=5), _SCALAR_JUNK, max_size=2),
)
GARBAGE = st.one_of(
    st.sampled_from([b"", b"<html><body>502 Bad Gateway</body></html>", b"{", b'{"id": ', b"null", b"[]"]),
    st.binary(max_size=40),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    node = copy.deepcopy(node)
    parent = node
    for step in path[:-1]:
        parent = parent[step]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return node


def _where(path: tuple[Any, ...]) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")


@st.composite
def _changed_document(draw: st.DrawFn, document: Any) -> tuple[Any, str]:
    """``document`` with one field (at any depth) replaced by junk or left out, and a note."""
    path = draw(st.sampled_from(_paths(document)))
    value = draw(JUNK)
    note = f"{_where(path)} left out" if value is MISSING else f"{_where(path)} = {value!r}"
    return _replace(document, path, value), note


_malformed: dict[str, st.SearchStrategy[Wire]] = {}


def malformed(door: Door) -> st.SearchStrategy[Wire]:
    """The door's valid reply with one thing wrong: any field replaced by junk or left out;
    the body not JSON; for a stream, one event's field, the stream cut at any byte, or a
    garbage line between events."""
    if door.id not in _malformed:  # built once: making composite strategies reads source code
        _malformed[door.id] = _malformed_reply(door)
    return _malformed[door.id]


def _malformed_reply(door: Door) -> st.SearchStrategy[Wire]:
    valid = door.body()
    if not valid.sse:

        @st.composite
        def changed(draw: st.DrawFn) -> Wire:
            document, note = draw(_changed_document(valid.document))
            return dataclasses.replace(valid, document=document, note=note)

        @st.composite
        def not_json(draw: st.DrawFn) -> Wire:
            raw = draw(GARBAGE)
            return dataclasses.replace(valid, raw=raw, note=f"the body is {raw!r}")

        return st.one_of(changed(), not_json())
    events = valid.events
    json_at = [i for i, e in enumerate(events) if isinstance(e.data, dict | list)]

    @st.composite
    def changed_event(draw: st.DrawFn) -> Wire:
        i = draw(st.sampled_from(json_at))
        data, note = draw(_changed_document(events[i].data))
        changed = (*events[:i], Event(events[i].name, data), *events[i + 1 :])
        return dataclasses.replace(valid, events=changed, note=f"event {i}: {note}")

    @st.composite
    def cut(draw: st.DrawFn) -> Wire:
        whole = b"".join(e.encode() for e in events)
        at = draw(st.integers(0, len(whole) - 1))
        return dataclasses.replace(valid, raw=whole[:at], note=f"cut at byte {at} of {len(whole)}")

    @st.composite
    def garbage_line(draw: st.DrawFn) -> Wire:
        i = draw(st.integers(0, len(events)))
        junk = draw(
            st.sampled_from(
                [b"data: {not json\n\n", b"data: \n\n", b"event: error\ndata: {}\n\n", b"\x00\xff\n\n"]
            )
            | GARBAGE.map(lambda b: b + b"\n\n")
        )
        encoded = [e.encode() for e in events]
        raw = b"".join([*encoded[:i], junk, *encoded[i:]])
        return dataclasses.replace(valid, raw=raw, note=f"{junk!r} before event {i}")

    return st.one_of(changed_event(), cut(), garbage_line())
