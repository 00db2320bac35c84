"""A stand-in provider on a real socket that streams as fast as it can (or paced) and bills
what it wrote: for the abandoned-stream tests and ``benchmarks/abandoned_streams.py``.

It answers OpenAI chat completions, Anthropic messages and Gemini ``streamGenerateContent``
requests in each provider's documented server-sent-events format, one output token per
content event, up to the request's output cap. Like a real provider it generates whether or not
the client reads, and bills every token it wrote before it saw the client's connection close
(``sendall`` failing): :attr:`Served.output_tokens` is that count, the provider-side truth a
cap must hold against. Each connection runs on a thread of its own; nothing is mocked on the
client side, so the SDK's own HTTP stack (httpx, or httpx2) reads from a real socket.

    with StreamingProvider(pace=0.0) as provider:
        client = openai.OpenAI(base_url=provider.url("openai"), api_key="sk-test")
        ...
        provider.served  # one Served per request, once its connection ended
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: One token in every tokenizer tollgate uses (o200k, cl100k): the provider's count and tollgate's agree.
WORD = " the"
#: Output cap of a request that sets none (a model's maximum output, for the stand-in).
DEFAULT_CAP = 4096


@dataclass
class Served:
    """What the provider did for one request: its bill is ``prompt_tokens`` and ``output_tokens``."""

    kind: str
    model: str
    prompt_tokens: int
    cap: int
    output_tokens: int = 0  # written before the client went away (or the cap was reached)
    finished: bool = False  # the final usage event was written
    closed_early: bool = False  # the client closed the connection before the end
    seconds: float = 0.0

    def usd(self, input_price: float, output_price: float) -> float:
        return self.prompt_tokens * input_price + self.output_tokens * output_price


@dataclass
class StreamingProvider:
    """A threaded HTTP/1.1 server on 127.0.0.1 that streams SSE.

    ``pace``: seconds between two tokens (0: as fast as the socket takes them). ``prompt_tokens``:
    what it bills for the prompt (a callable of the request body and kind, or a number).
    ``send_buffer``: SO_SNDBUF of its sockets (None: the system's; small values keep the provider
    from getting far ahead of a reader that stopped reading, like a slow link). ``length``: the
    answer's natural length (None: it runs to the output cap). ``send_usage``: an OpenAI-style
    provider sends the usage chunk when asked for it (False: it never does).
    """

    pace: float = 0.0
    prompt_tokens: Any = 20
    send_buffer: int | None = None
    length: int | None = None
    send_usage: bool = True
    served: list[Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self.requests = 0  # requests received (served or not yet)
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> StreamingProvider:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            lingering = list(self._open)
        for conn in lingering:  # kept open for a keep-alive client: let their threads end
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(timeout=5)

    def url(self, kind: str) -> str:
        """The base URL an SDK client of ``kind`` ("openai", "anthropic", "gemini") takes."""
        return f"http://127.0.0.1:{self.port}" + ("/v1" if kind == "openai" else "")

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[Served]:
        """The requests served, once ``count`` of them have ended (written to the end, or cut
        short by the client closing the connection)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.served) >= count:
                    return list(self.served)
            time.sleep(0.005)
        raise AssertionError(f"{len(self.served)} of {count} streams ended within {timeout} s")

    # -- serving -------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.send_buffer is not None:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        try:
            with conn:
                request = _read_request(conn)
                if request is None:
                    return
                path, body = request
                with self._lock:
                    self.requests += 1
                self._stream(conn, path, body)
        except OSError:
            pass

    def _stream(self, conn: socket.socket, path: str, body: dict[str, Any]) -> None:
        kind = (
            "gemini" if ":streamGenerateContent" in path else "anthropic" if "/messages" in path else "openai"
        )
        model = body.get("model") or path.split("/models/")[-1].split(":")[0]
        cap = _cap(kind, body)
        length = cap if self.length is None else min(cap, self.length)
        prompt = self.prompt_tokens(body, kind) if callable(self.prompt_tokens) else int(self.prompt_tokens)
        served = Served(kind, model, prompt, cap)
        started = time.monotonic()
        usage = kind != "openai" or (
            self.send_usage and bool((body.get("stream_options") or {}).get("include_usage"))
        )
        events = _EVENTS[kind]
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        try:
            conn.sendall(head)
            for payload in events.start(model, prompt):
                _send(conn, payload)
            for i in range(length):
                if self.pace:
                    time.sleep(self.pace)
                _send(conn, events.token(model, prompt, i + 1))
                served.output_tokens += 1
            for payload in events.end(model, prompt, length, usage, length < cap):
                _send(conn, payload)
            conn.sendall(b"0\r\n\r\n")
            served.finished = True
        except OSError:
            served.closed_early = True
        served.seconds = time.monotonic() - started
        with self._lock:
            self.served.append(served)
        if served.finished:
            with self._lock:
                self._open.add(conn)
            _linger(conn)
            with self._lock:
                self._open.discard(conn)


def _send(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(b"%x\r\n%s\r\n" % (len(payload), payload))


def _linger(conn: socket.socket) -> None:
    """Keep the connection open until the client closes it, as a keep-alive server would."""
    conn.settimeout(5)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def _read_request(conn: socket.socket) -> tuple[str, dict[str, Any]] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return None
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    headers = {
        k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
    }
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        more = conn.recv(65536)
        if not more:
            return None
        rest += more
    body = json.loads(rest[:length] or b"{}")
    return urlsplit(target).path, body


def _cap(kind: str, body: dict[str, Any]) -> int:
    if kind == "gemini":
        config = body.get("generationConfig") or {}
        value = config.get("maxOutputTokens")
    else:
        value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_CAP


def _data(obj: dict[str, Any], event: str | None = None) -> bytes:
    line = f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"
    return ((f"event: {event}\n" if event else "") + line).encode()


class _OpenAI:
    @staticmethod
    def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-abandon",
            "object": "chat.completion.chunk",
            "created": 1763900000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def start(self, model: str, prompt: int) -> list[bytes]:
        return [_data(self._chunk(model, {"role": "assistant", "content": ""}))]

    def token(self, model: str, prompt: int, n: int) -> bytes:
        return _data(self._chunk(model, {"content": WORD}))

    def end(self, model: str, prompt: int, output: int, usage: bool, stop: bool) -> list[bytes]:
        out = [_data(self._chunk(model, {}, "stop" if stop else "length"))]
        if usage:
            totals = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
            out.append(_data({**self._chunk(model, {}), "choices": [], "usage": totals}))
        return [*out, b"data: [DONE]\n\n"]


class _Anthropic:
    def start(self, model: str, prompt: int) -> list[bytes]:
        message = {
            "id": "msg_abandon", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": 1},
        }  # fmt: skip
        return [
            _data({"type": "message_start", "message": message}, "message_start"),
            _data(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            ),
        ]

    def token(self, model: str, prompt: int, n: int) -> bytes:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": WORD}}
        return _data(delta, "content_block_delta")

    def end(self, model: str, prompt: int, output: int, usage: bool, stop: bool) -> list[bytes]:
        return [
            _data({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _data(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn" if stop else "max_tokens", "stop_sequence": None},
                    "usage": {"output_tokens": output},
                },
                "message_delta",
            ),
            _data({"type": "message_stop"}, "message_stop"),
        ]


class _Gemini:
    @staticmethod
    def _chunk(model: str, prompt: int, n: int, text: str, finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": n,
                "totalTokenCount": prompt + n,
            },
            "modelVersion": model,
            "responseId": "abandon",
        }

    def start(self, model: str, prompt: int) -> list[bytes]:
        return []

    def token(self, model: str, prompt: int, n: int) -> bytes:
        return _data(self._chunk(model, prompt, n, WORD))

    def end(self, model: str, prompt: int, output: int, usage: bool, stop: bool) -> list[bytes]:
        return [_data(self._chunk(model, prompt, output, "", "STOP" if stop else "MAX_TOKENS"))]


_EVENTS: dict[str, Any] = {"openai": _OpenAI(), "anthropic": _Anthropic(), "gemini": _Gemini()}
