"""Cancellation: an asyncio task cancelled mid-call gives its reservation back.

The real async SDK clients (OpenAI, Anthropic, google-genai ``client.aio``) talk to a
stand-in provider (``httpx.MockTransport`` with an async handler) that can hang forever,
before the response or in the middle of a stream. Each call runs under a windowed budget
sized so that a call's hold leaves no room for a second call: after the cancelled call, a
call that needs that room is admitted only if the hold was released. The cancelled call's
``CancelledError`` (or ``wait_for``'s ``TimeoutError``) reaches the caller unchanged, and
the call is recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
genai = pytest.importorskip("google.genai")
httpx2 = pytest.importorskip("httpx2")

from google.genai import types as genai_types  # noqa: E402

import tollgate  # noqa: E402
from tollgate.budgets.scope import active_budgets  # noqa: E402
from tollgate.request import CallRecord  # noqa: E402
from tollgate.stores.base import Charge, Reservation  # noqa: E402
from tollgate.stores.memory import MemoryStore  # noqa: E402
from tollgate.stores.windows import now as store_clock  # noqa: E402

#: An SDK call: ``await call(client, stream=False)``.
Caller = Callable[..., Coroutine[Any, Any, Any]]
ASK = [{"role": "user", "content": "What is the capital of France? One word."}]
CAP = 400  # max output tokens of every call: its hold is the prompt plus this
#: Float noise a store may keep after many holds are added and taken away (USD).
NOISE = 1e-12
#: Wait at most this long for anything the test expects to happen (never reached when it works).
PATIENCE = 5.0


@dataclass
class Provider:
    """A stand-in provider: answers at once, hangs before answering, or streams ``chunks``
    pieces of the body and then hangs. ``entered`` is set when a request reaches it (so the
    call is past pre-flight), ``streamed`` when the chunks before the hang are sent."""

    body: bytes
    stream_body: Sequence[bytes]
    content_type: str = "application/json"
    mode: str = "answer"  # "answer" | "hang" | "hang-mid-stream"
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    streamed: asyncio.Event = field(default_factory=asyncio.Event)

    async def respond(self, request: Any, response: Any) -> Any:
        self.entered.set()
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "hang-mid-stream":
            return response(
                200, content=self._hanging_stream(), headers={"content-type": "text/event-stream"}
            )
        streaming = json.loads(request.content or b"{}").get("stream") or "stream" in str(request.url).lower()
        if streaming:
            return response(
                200, content=b"".join(self.stream_body), headers={"content-type": "text/event-stream"}
            )
        return response(200, content=self.body, headers={"content-type": self.content_type})

    async def _hanging_stream(self) -> AsyncIterator[bytes]:
        for piece in self.stream_body[:-1]:
            yield piece
        self.streamed.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover - never reached


# -- the three SDKs ----------------------------------------------------------------------------------


def openai_provider() -> Provider:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
    }

    def chunk(content: str) -> bytes:
        data = {**answer, "object": "chat.completion.chunk"}
        data["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
        del data["usage"]
        return f"data: {json.dumps(data)}\n\n".encode()

    pieces = [chunk("Pa"), chunk("ri"), chunk("s."), b"data: [DONE]\n\n"]
    return Provider(json.dumps(answer).encode(), pieces)


def openai_client(provider: Provider) -> Any:
    async def handler(request: Any) -> Any:
        return await provider.respond(request, httpx.Response)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return tollgate.instrument(openai.AsyncOpenAI(api_key="sk-test", max_retries=0, http_client=http))


async def openai_call(client: Any, stream: bool = False) -> Any:
    options = {"stream": True} if stream else {}
    return await client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=CAP, **options)


def anthropic_provider() -> Provider:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Paris."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 2},
    }

    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 20, "output_tokens": 1}}
    pieces = [
        event("message_start", message=start),
        event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Pa"}),
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": "ris."}),
        event("content_block_stop", index=0),
        event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 2}),
        event("message_stop"),
    ]
    return Provider(json.dumps(message).encode(), pieces)


def anthropic_client(provider: Provider) -> Any:
    async def handler(request: Any) -> Any:
        return await provider.respond(request, httpx2.Response)

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    raw = anthropic.AsyncAnthropic(api_key="sk-ant-test", max_retries=0, http_client=http)
    return tollgate.instrument(raw)


async def anthropic_call(client: Any, stream: bool = False) -> Any:
    options = {"stream": True} if stream else {}
    return await client.messages.create(model="claude-sonnet-4-6", max_tokens=CAP, messages=ASK, **options)


def gemini_provider() -> Provider:
    def response(text: str, finish: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        usage = {"promptTokenCount": 20, "candidatesTokenCount": 2, "totalTokenCount": 22}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash"}

    pieces = [
        f"data: {json.dumps(response('Pa', False))}\r\n\r\n".encode(),
        f"data: {json.dumps(response('ri', False))}\r\n\r\n".encode(),
        f"data: {json.dumps(response('s.', True))}\r\n\r\n".encode(),
    ]
    return Provider(json.dumps(response("Paris.", True)).encode(), pieces)


def gemini_client(provider: Provider) -> Any:
    async def handler(request: Any) -> Any:
        return await provider.respond(request, httpx.Response)

    http = genai_types.HttpOptions(
        httpx_async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))
    )
    return tollgate.instrument(genai.Client(api_key="test", http_options=http)).aio


async def gemini_call(client: Any, stream: bool = False) -> Any:
    config = {"max_output_tokens": CAP}
    if stream:
        return await client.models.generate_content_stream(
            model="gemini-2.0-flash", contents=ASK[0]["content"], config=config
        )
    return await client.models.generate_content(
        model="gemini-2.0-flash", contents=ASK[0]["content"], config=config
    )


SDKS: dict[str, tuple[Callable[[], Provider], Callable[[Provider], Any], Caller]] = {
    "openai": (openai_provider, openai_client, openai_call),
    "anthropic": (anthropic_provider, anthropic_client, anthropic_call),
    "gemini": (gemini_provider, gemini_client, gemini_call),
}


# -- helpers -----------------------------------------------------------------------------------------


def records() -> list[CallRecord]:
    return list(tollgate.config.settings().ledger.records())


def held() -> float:
    """What the active budgets hold for calls in flight now."""
    store = tollgate.config.settings().store
    charges = [Charge(f.counter({}) + ":usd", f.spec.window, None, 0.0) for f in active_budgets()]
    assert charges
    return sum(s.reserved for s in store.read(charges, store_clock()))


def tight_budget(call_usd: float) -> tollgate.budget:
    """A persistent budget with room for one call's hold and a bit: not for two."""
    return tollgate.budget(usd=call_usd * 1.5, per="day", name="tight")


async def one_hold(provider: Provider, client: Any, call: Caller) -> float:
    """How much one call holds while in flight (measured on a call that hangs, then cancelled)."""
    provider.mode = "hang"
    with tollgate.budget(usd=1000, per="day", name="measure"):
        task = asyncio.create_task(call(client))
        await asyncio.wait_for(provider.entered.wait(), PATIENCE)
        amount = held()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    provider.entered.clear()
    tollgate.reset()
    assert amount > 0
    return amount


async def admitted_after(provider: Provider, client: Any, call: Caller) -> None:
    """The budget's room is whole again: a call that needs it goes through, and then it is spent."""
    provider.mode = "answer"
    assert held() == 0.0
    await call(client)
    assert held() == 0.0


# -- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sdk", list(SDKS))
async def test_cancel_while_waiting_for_the_response_charges_the_reservation(sdk: str) -> None:
    # The request reached the provider, which answers (and bills) it whether or not the caller
    # still waits: the call is abandoned and charged what it reserved, so the cap holds.
    make_provider, make_client, call = SDKS[sdk]
    provider = make_provider()
    client = make_client(provider)
    need = await one_hold(provider, client, call)
    provider.mode = "hang"
    with tight_budget(need):
        task = asyncio.create_task(call(client))
        await asyncio.wait_for(provider.entered.wait(), PATIENCE)  # pre-flight done, request sent
        assert held() == pytest.approx(need)
        with pytest.raises(tollgate.BudgetExceeded):  # no room for a second call meanwhile
            await call(client)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert held() == 0.0  # settled: no hold left behind
        cancelled = [r for r in records() if r.error and "CancelledError" in r.error]
        assert len(cancelled) == 1 and cancelled[0].status == "abandoned" and cancelled[0].estimated
        assert cancelled[0].decisions[-1]["abandoned"] == "reservation"
        assert cancelled[0].usd == pytest.approx(need)
        provider.mode = "answer"
        with pytest.raises(tollgate.BudgetExceeded):  # the budget paid for the cancelled call
            await call(client)
    assert [r.status for r in records()] == ["abandoned", "blocked", "blocked"]  # by start time


@pytest.mark.parametrize("sdk", list(SDKS))
async def test_cancel_while_reading_a_stream_releases_the_hold(sdk: str) -> None:
    make_provider, make_client, call = SDKS[sdk]
    provider = make_provider()
    client = make_client(provider)
    need = await one_hold(provider, client, call)
    provider.mode = "hang-mid-stream"
    got: list[Any] = []

    async def read() -> None:
        stream = await call(client, stream=True)
        async for chunk in stream:
            got.append(chunk)

    with tight_budget(need * 1.05):  # a stream may reserve a little more (usage options)
        task = asyncio.create_task(read())
        await asyncio.wait_for(provider.streamed.wait(), PATIENCE)
        await asyncio.sleep(0.05)  # let the reader take the chunks that arrived
        assert got, "the stream delivered nothing before it hung"
        assert held() > 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert held() == 0.0
        (record,) = records()
        assert record.stream
        if sdk == "anthropic":  # its final usage (message_delta) had arrived: billed as reported
            assert record.status == "ok" and not record.estimated and record.usage.output_tokens == 2
            await admitted_after(provider, client, call)
            return
        assert record.status == "abandoned" and record.estimated
        # The provider may have generated up to the output cap before it saw the cancelled
        # stream close: it is charged what it reserved (a stream hold may be a little more than
        # the plain call's: usage options), so the budget has no room for a second call.
        assert record.decisions[-1]["abandoned"] == "reservation"
        assert record.decisions[-1]["output_tokens_counted"] > 0  # what streamed was counted
        assert need * 0.95 <= record.usd <= need * 1.05
        provider.mode = "answer"
        with pytest.raises(tollgate.BudgetExceeded):
            await call(client)


@pytest.mark.parametrize("sdk", list(SDKS))
async def test_wait_for_timeout_charges_the_reservation(sdk: str) -> None:
    make_provider, make_client, call = SDKS[sdk]
    provider = make_provider()
    client = make_client(provider)
    need = await one_hold(provider, client, call)
    provider.mode = "hang"
    with tight_budget(need):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call(client), 0.2)
        assert held() == 0.0
        (record,) = records()
        assert record.status == "abandoned" and record.error is not None and "CancelledError" in record.error
        assert record.usd == pytest.approx(need)


@pytest.mark.parametrize("sdk", list(SDKS))
async def test_many_cancelled_calls_leave_nothing_held(sdk: str) -> None:
    make_provider, make_client, call = SDKS[sdk]
    provider = make_provider()
    client = make_client(provider)
    provider.mode = "hang"
    with tollgate.budget(usd=1000, per="day", name="many"):
        tasks = [asyncio.create_task(call(client)) for _ in range(20)]
        await asyncio.sleep(0.2)
        assert held() > 0
        for task in tasks[::2]:
            task.cancel()
        for task in tasks[1::2]:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
        assert held() == pytest.approx(0.0, abs=NOISE)
    assert len(records()) == 20


class SlowStore(MemoryStore):
    """A store whose async reserve takes forever once ``slow`` is set (a Redis that stalls)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = False
        self.waiting = asyncio.Event()

    async def areserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        if self.slow:
            self.waiting.set()
            await asyncio.Event().wait()
        return self.reserve(charges, now)


async def test_cancel_during_preflight_on_a_slow_store() -> None:
    store = SlowStore()
    tollgate.configure(store=store)
    provider = openai_provider()
    client = openai_client(provider)
    with tollgate.budget(usd=1, per="day", name="slow-store"):
        store.slow = True
        task = asyncio.create_task(openai_call(client))
        await asyncio.wait_for(store.waiting.wait(), PATIENCE)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not provider.entered.is_set()  # never sent
        assert held() == 0.0
        store.slow = False
        await openai_call(client)
        assert held() == 0.0
    # Every call produces one record (README: "Nothing is lost"), the cancelled one too.
    assert [r.status for r in records()] == ["error", "ok"]
