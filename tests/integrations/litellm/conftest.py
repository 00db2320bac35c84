"""A loopback OpenAI-compatible server for LiteLLM to call (any mode: SDK, Router, proxy).

Every request body it receives lands in ``upstream.received``; it answers chat completions
(plain and streamed, with a usage chunk when ``stream_options.include_usage`` is asked for) and
embeddings, naming the model it was asked for.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of LiteLLM's price map
pytest.importorskip("tollgate_litellm")

import litellm

import tollgate

PROMPT_TOKENS = 20
COMPLETION_TOKENS = 5
REPLY = "Paris."


class Upstream:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                upstream.received.append(body)
                upstream.paths.append(self.path)
                if self.path.endswith("/embeddings"):
                    self._json(
                        {
                            "object": "list",
                            "model": body.get("model"),
                            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                            "usage": {"prompt_tokens": 4, "total_tokens": 4},
                        }
                    )
                elif self.path.endswith("/responses"):
                    self._json(
                        {
                            "id": "resp_fake",
                            "object": "response",
                            "created_at": 1700000000,
                            "model": body.get("model"),
                            "status": "completed",
                            "output": [
                                {
                                    "type": "message",
                                    "id": "msg_fake",
                                    "role": "assistant",
                                    "status": "completed",
                                    "content": [{"type": "output_text", "text": REPLY, "annotations": []}],
                                }
                            ],
                            "usage": {
                                "input_tokens": PROMPT_TOKENS,
                                "output_tokens": COMPLETION_TOKENS,
                                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                                "input_tokens_details": {"cached_tokens": 0},
                                "output_tokens_details": {"reasoning_tokens": 0},
                            },
                        }
                    )
                elif body.get("stream"):
                    self._stream(body)
                else:
                    self._json(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion",
                            "created": 1700000000,
                            "model": body.get("model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": REPLY},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": PROMPT_TOKENS,
                                "completion_tokens": COMPLETION_TOKENS,
                                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                            },
                        }
                    )

            def _json(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000}
                base["model"] = body.get("model")
                chunks = [
                    {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p}}]}
                    for p in ("Par", "is.")
                ]
                chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {
                        "prompt_tokens": PROMPT_TOKENS,
                        "completion_tokens": COMPLETION_TOKENS,
                        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                    }
                    chunks.append({**base, "choices": [], "usage": usage})
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[Upstream]:
    server = Upstream()
    server.thread.start()
    yield server
    server.server.shutdown()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Upstream:
    upstream_server.received.clear()
    upstream_server.paths.clear()
    return upstream_server


@pytest.fixture(autouse=True)
def _litellm_callbacks() -> Iterator[None]:
    saved = list(litellm.callbacks)
    yield
    litellm.callbacks = saved


def records() -> list[tollgate.CallRecord]:
    return list(tollgate.settings().ledger.records())


async def settled(count: int = 1, timeout: float = 5.0) -> list[tollgate.CallRecord]:
    """The ledger once it holds ``count`` records (LiteLLM logs success after the call returns)."""
    for _ in range(int(timeout / 0.02)):
        if len(records()) >= count:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # a second record would show up now
    return records()


def settled_sync(count: int = 1, timeout: float = 5.0) -> list[tollgate.CallRecord]:
    import time

    for _ in range(int(timeout / 0.02)):
        if len(records()) >= count:
            break
        time.sleep(0.02)
    time.sleep(0.1)
    return records()
