"""The tool calls a LiteLLM response asks for (``CallRecord.tool_calls``), counted by the logger
(async SDK calls) and by the sync wrapper, plain and streamed.

LiteLLM calls a loopback server (as in conftest.py) that answers with the response bodies of
the constructed OpenAI cassettes in cassettes/openai/, byte for byte.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from tests.conftest import CASSETTES
from tests.integrations.litellm.conftest import settled, settled_sync

tollgate_litellm = pytest.importorskip("tollgate_litellm")

import litellm  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the weather in Paris and in London?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Recorded:
    """A loopback server answering every POST with the response body of ``cassette``."""

    def __init__(self) -> None:
        self.cassette = ""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorded = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                data = yaml.safe_load((CASSETTES / recorded.cassette).read_text())
                response = data["interactions"][0]["response"]
                body = response["body"]["string"].encode()
                self.send_response(200)
                self.send_header("content-type", response["headers"]["Content-Type"][0])
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[Recorded]:
    recorded = Recorded()
    yield recorded
    recorded.server.shutdown()


@pytest.fixture
def logger() -> Any:
    handler = tollgate_litellm.TollgateLogger()
    litellm.callbacks = [handler]
    return handler


def _args(server: Recorded, cassette: str, stream: bool) -> dict[str, Any]:
    server.cassette = cassette
    return {
        "model": "openai/gpt-4o-mini",
        "messages": QUESTION,
        "tools": [WEATHER],
        "api_base": server.url,
        "api_key": "sk-test",
        "max_tokens": 200,
        "stream": stream,
    }


CASES = [(False, "openai/chat_tool_calls.yaml", 2), (True, "openai/chat_tool_calls_stream.yaml", 3)]


@pytest.mark.parametrize(("stream", "cassette", "expected"), CASES)
async def test_the_logger_counts_the_tool_calls(logger, server, stream, cassette, expected) -> None:  # type: ignore[no-untyped-def]
    response = await litellm.acompletion(**_args(server, cassette, stream))
    if stream:
        chunks = [chunk async for chunk in response]
        calls = {d.index for c in chunks for ch in c.choices for d in ch.delta.tool_calls or ()}
        assert len(calls) == expected
    else:
        assert len(response.choices[0].message.tool_calls) == expected
    [record] = await settled()
    assert record.status == "ok" and record.stream == stream and record.tool_calls == expected


@pytest.mark.parametrize(("stream", "cassette", "expected"), CASES)
def test_the_sync_wrapper_counts_the_tool_calls(server, stream, cassette, expected) -> None:  # type: ignore[no-untyped-def]
    response = tollgate_litellm.completion(**_args(server, cassette, stream))
    if stream:
        for _ in response:
            pass
    else:
        assert len(response.choices[0].message.tool_calls) == expected
    [record] = settled_sync()
    assert record.status == "ok" and record.stream == stream and record.tool_calls == expected


async def test_a_reply_without_tool_calls_counts_none(logger, server) -> None:  # type: ignore[no-untyped-def]
    await litellm.acompletion(**_args(server, "openai/chat_basic.yaml", False))
    [record] = await settled()
    assert record.status == "ok" and record.tool_calls == 0
