"""Helpers for the fault tests: a Redis server that can be killed, paused and restarted with its
data, a socket that accepts connections and never answers, and a stand-in OpenAI endpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stores.conftest import free_port, ping

NO_REDIS = "no redis-server on the PATH: the Redis fault tests start their own"


class RedisServer:
    """A private redis-server on loopback, persisting every write (``appendfsync always``), so
    that a SIGKILL loses nothing it acknowledged and a restart on the same port and folder
    comes back with every counter."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip(NO_REDIS)
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        for attempt in range(3):
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while self.process.poll() is None and time.monotonic() < deadline and not ping(self.port):
                time.sleep(0.02)
            if self.process.poll() is None and ping(self.port):
                return
            self.process.kill()
            self.process.wait()
            if attempt == 0 and not any(self.folder.iterdir()):
                self.port = free_port()  # taken between the probe and the bind: try another
        pytest.fail(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; only what was fsynced to the AOF survives."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port stays open and connections are accepted, but nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            self.resume()
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def black_hole() -> Iterator[str]:
    """A ``redis://`` URL whose port accepts TCP connections (into the backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def chat_response(request: httpx.Request, output_tokens: int = 7) -> httpx.Response:
    """OpenAI's /v1/chat/completions answer: 10 prompt tokens and ``output_tokens`` out (fewer
    than the call's cap, so a settled call spends less than it reserved)."""
    body: dict[str, Any] = json.loads(request.content)
    assert body["model"] == "gpt-4o-mini"
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-fault",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": output_tokens,
                "total_tokens": 10 + output_tokens,
            },
        },
    )


@contextmanager
def tmpfs(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A small tmpfs mounted on ``folder`` (root only; the test is skipped when it cannot mount)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def make_read_only(folder: Path) -> None:
    """Make ``folder`` and what it holds read-only for this process: a read-only remount when it
    is a tmpfs mounted by :func:`tmpfs` (root ignores permission bits), else permission bits."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        return
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)
