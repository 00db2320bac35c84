"""What every benchmark row shares: the stand-in OpenAI API, the clients, and the run's metadata.

The stand-in is ``httpx.MockTransport`` under the real ``openai`` SDK: no network, no server, so
what a row measures is the SDK's own work plus the wrapping library's.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
from _common import cpu_model  # benchmarks/ is on the path: the scripts run from there

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
BENCH_PYTHON = ".venv/bench/bin/python"
NOT_INSTALLED = "not installed: run benchmarks/peers/setup.sh then .venv/bench/bin/python benchmarks/{script}"

PACKAGES = [
    "tollgate-llm",
    "openai",
    "httpx",
    "tiktoken",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "redis",
    "cendor-tokenguard",
    "llm-toll",
    "opentelemetry-instrumentation-openai-v2",
    "token-limit",
    "litellm",
]

MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]


def _completion(prompt_tokens: int, completion_tokens: int, content: str = "Paris.") -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1763900000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


COMPLETION = json.dumps(_completion(25, 2)).encode()


def _chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1763900000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": choices,
        "usage": usage,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


CHUNKS = (
    _chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], None)
    + _chunk([{"index": 0, "delta": {"content": "Paris"}, "finish_reason": None}], None)
    + _chunk([{"index": 0, "delta": {"content": "."}, "finish_reason": "stop"}], None)
    + _chunk([], {"prompt_tokens": 25, "completion_tokens": 2, "total_tokens": 27})
    + b"data: [DONE]\n\n"
)


def handler(request: httpx.Request) -> httpx.Response:
    """The stand-in for ``POST /chat/completions``: a fixed answer, streamed or not."""
    if b'"stream":true' in request.content or b'"stream": true' in request.content:
        return httpx.Response(200, content=CHUNKS, headers={"content-type": "text/event-stream"})
    return httpx.Response(200, content=COMPLETION, headers={"content-type": "application/json"})


def sync_client() -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-bench", http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def async_client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-bench", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))
    )


class BillingProvider:
    """A stand-in provider that bills every call that reaches it, for the cap scenario.

    Each answer reports ``prompt_tokens`` and ``completion_tokens`` fixed by the caller (so every
    call costs the same), after ``delay`` seconds (so concurrent calls overlap).
    """

    def __init__(self, prompt_tokens: int, completion_tokens: int, cost: float, delay: float) -> None:
        self.body = _completion(prompt_tokens, completion_tokens, "OK")
        self.cost = cost
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def billed(self) -> float:
        return self.calls * self.cost

    def _count(self) -> httpx.Response:
        with self._lock:
            self.calls += 1
        return httpx.Response(200, json=self.body)

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.delay)
        return self._count()

    def handle(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.delay)
        return self._count()

    def async_client(self) -> openai.AsyncOpenAI:
        transport = httpx.MockTransport(self.ahandle)
        # max_retries=0: a refused call must not be retried into the provider.
        return openai.AsyncOpenAI(
            api_key="sk-bench", max_retries=0, http_client=httpx.AsyncClient(transport=transport)
        )

    def sync_client(self) -> openai.OpenAI:
        transport = httpx.MockTransport(self.handle)
        return openai.OpenAI(api_key="sk-bench", max_retries=0, http_client=httpx.Client(transport=transport))


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
    }


def metadata(benchmark: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "packages": versions(),
        "settings": settings,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
