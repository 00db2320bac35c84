"""Store fixtures: a Redis server for the Redis store's tests, and factories for the contract."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tollgate.stores.base import Store
from tollgate.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from tests.redisservers import Cluster, Sentinels

NO_REDIS = "no Redis server: set TOLLGATE_TEST_REDIS_URL or install redis-server"

# The URL the session's `redis_url` fixture found, for factories that cannot take fixtures.
_redis: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``TOLLGATE_TEST_REDIS_URL``, or a private redis-server on loopback for this session."""
    url = os.environ.get("TOLLGATE_TEST_REDIS_URL")
    if url:
        _redis["url"] = url
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(NO_REDIS)
    with tempfile.TemporaryDirectory(prefix="tollgate-redis-") as folder:
        for _ in range(3):  # the free port may be taken between the probe and the server's bind
            port = free_port()
            args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
            server = subprocess.Popen(
                [*args, "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10
            while server.poll() is None and time.monotonic() < deadline and not ping(port):
                time.sleep(0.02)
            if server.poll() is None and ping(port):
                break
            server.kill()
            server.wait()
        else:
            pytest.skip(f"{NO_REDIS} (redis-server {binary} did not start)")
        _redis["url"] = f"redis://127.0.0.1:{port}/0"
        try:
            yield _redis["url"]
        finally:
            _redis.pop("url", None)
            server.terminate()
            server.wait(timeout=10)


ROOT = str(Path(__file__).resolve().parents[2])


def run_child(prelude: str, code: str, **env: str) -> subprocess.Popen[str]:
    """A Python child process running ``prelude`` then ``code``, with ``env`` added (stdin open)."""
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": ROOT, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str]) -> str:
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return out


def unique_prefix() -> str:
    """A key prefix of its own, so tests never meet each other's (or a shared server's) keys."""
    return f"tollgate-test-{uuid.uuid4().hex[:12]}"


def configure_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``tollgate.configure`` with the store ``request.param`` names (memory, sqlite in
    ``tmp_path``, or redis with a prefix of its own); that name back, for a fixture to yield."""
    import tollgate

    if request.param == "sqlite":
        tollgate.configure(store=f"sqlite:///{tmp_path / 'store.db'}")
    elif request.param == "redis":
        from tollgate.stores.redis import RedisStore

        tollgate.configure(store=RedisStore(request.getfixturevalue("redis_url"), prefix=unique_prefix()))
    return str(request.param)


def sqlite_store(tmp: pytest.TempPathFactory) -> Store:
    return SQLiteStore(Path(tmp.mktemp("sqlite-store")) / "store.db")


def redis_store(tmp: pytest.TempPathFactory) -> Store:
    """A RedisStore on the session's server; the `store` fixture requests `redis_url` first."""
    if "url" not in _redis:
        pytest.skip(NO_REDIS)
    from tollgate.stores.redis import RedisStore

    return RedisStore(_redis["url"], prefix=unique_prefix())


# -- managed Redis shapes (tests/redisservers.py imports this module: imported when used) ------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-primary Redis Cluster of the test module's own (skipped without redis-server)."""
    from tests.redisservers import redis_cluster

    with redis_cluster(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sentinels]:
    """A primary, a replica and 3 Sentinels of the test module's own (skipped without redis-server)."""
    from tests.redisservers import redis_sentinels

    with redis_sentinels(tmp_path_factory.mktemp("sentinel")) as group:
        yield group
