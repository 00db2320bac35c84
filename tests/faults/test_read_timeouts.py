"""A call whose client gave up waiting for the answer is charged what it reserved.

The provider has the whole request and answers it, and bills it, whether or not the client
still reads: a read timeout is the caller letting go, like a cancelled task or an abandoned
stream. A real local server (a socket, a thread) answers after ``DELAY`` seconds; the real
SDKs time out after ``TIMEOUT`` with no retries. A call that never reached the provider (no
server listening) costs nothing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import tollgate

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

DELAY, TIMEOUT = 1.0, 0.3
CAP = 400
ASK = [{"role": "user", "content": "What is the capital of France? One word."}]
CHAT = {
    "id": "chatcmpl-slow",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
}
MESSAGE = {
    "id": "msg_slow",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Paris."}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 20, "output_tokens": 2},
}


class Slow(BaseHTTPRequestHandler):
    """Answers after ``DELAY`` seconds: the provider works on the request meanwhile."""

    answered: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        time.sleep(DELAY)
        body = json.dumps(MESSAGE if self.path.endswith("/messages") else CHAT).encode()
        try:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client had gone: the answer was generated (and billed) all the same
            pass
        Slow.answered.append(self.path)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    return f"http://127.0.0.1:{port}"


def openai_call(base: str) -> None:
    client = tollgate.instrument(
        openai.OpenAI(api_key="sk-test", base_url=f"{base}/v1", max_retries=0, timeout=TIMEOUT)
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=CAP)


def anthropic_call(base: str) -> None:
    raw = anthropic.Anthropic(api_key="sk-ant-test", base_url=base, max_retries=0, timeout=TIMEOUT)
    tollgate.instrument(raw).messages.create(model="claude-sonnet-4-6", messages=ASK, max_tokens=CAP)


def openai_async_call(base: str) -> None:
    async def run() -> None:
        raw = openai.AsyncOpenAI(api_key="sk-test", base_url=f"{base}/v1", max_retries=0, timeout=TIMEOUT)
        await tollgate.instrument(raw).chat.completions.create(
            model="gpt-4o-mini", messages=ASK, max_tokens=CAP
        )

    asyncio.run(run())


CALLS = {"openai": openai_call, "anthropic": anthropic_call, "openai-async": openai_async_call}
TIMEOUTS = (openai.APITimeoutError, anthropic.APITimeoutError)
UNREACHABLE = (openai.APIConnectionError, anthropic.APIConnectionError)


def reserved(provider: str) -> float:
    """What one call reserves (its USD hold), from a call that reaches no provider."""
    model = "claude-sonnet-4-6" if provider == "anthropic" else "gpt-4o-mini"
    request = tollgate.LLMRequest(provider, "chat", model, messages=ASK, max_output_tokens=CAP)
    call = tollgate.gate.preflight(request)
    call.fail(RuntimeError("not sent"))
    tollgate.reset()  # a clean ledger for the test
    return call.estimate.usd


@pytest.mark.parametrize("name", CALLS)
def test_a_read_timeout_is_charged_the_reservation(slow_url: str, name: str) -> None:
    need = reserved("anthropic" if name == "anthropic" else "openai")
    with tollgate.budget(usd=need * 1.5, name="tight"):
        with pytest.raises(TIMEOUTS):
            CALLS[name](slow_url)
        (record,) = tollgate.config.settings().ledger.records()
        assert record.status == "error" and "APITimeoutError" in (record.error or "")
        assert record.estimated and record.decisions[-1]["abandoned"] == "reservation"
        assert record.usd == pytest.approx(
            need, rel=0.05
        )  # the reservation (the prompt as this call framed it)
        # The provider answered all the same; the budget paid for it, so there is no room for another.
        deadline = time.monotonic() + 5
        while len(Slow.answered) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(tollgate.BudgetExceeded):
            CALLS[name](slow_url)
    Slow.answered.clear()


@pytest.mark.parametrize("name", CALLS)
def test_a_call_that_never_reached_a_provider_costs_nothing(name: str) -> None:
    need = reserved("anthropic" if name == "anthropic" else "openai")
    with tollgate.budget(usd=need * 1.5, name="tight"):
        with pytest.raises(UNREACHABLE):
            CALLS[name](closed_url())
        (record,) = tollgate.config.settings().ledger.records()
        assert record.status == "error" and record.usd == 0 and not record.estimated
