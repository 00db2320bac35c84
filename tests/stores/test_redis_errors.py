"""RedisStore: a bad URL is refused when the store is created; an error reply from the server
(a database index it does not have, a key of the wrong type, out of memory, a read-only replica)
is StoreUnavailable naming the reason, under the same fail-closed / fail-open rule as an outage."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

pytest.importorskip("redis")

import redis

import tollgate
from tests.budgets.helpers import request, run
from tests.stores.conftest import free_port, ping, unique_prefix
from tollgate.config import settings
from tollgate.errors import StoreUnavailable
from tollgate.stores import open_store
from tollgate.stores.base import Charge
from tollgate.stores.redis import RedisStore
from tollgate.stores.windows import Lifetime

T0 = 1_795_000_000.0


def charge(amount: float = 0.1, key: str = "b") -> Charge:
    return Charge(key, Lifetime(), 1.0, amount)


# -- URLs: refused when the store is created, never at the first call ----------------------------


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("redis://cache:6379/0?socket_timeout=abc", "socket_timeout='abc'"),
        ("redis://cache:6379/0?socket_timeout=nan", "socket_timeout='nan'"),
        ("redis://cache:6379/0?socket_connect_timeout=-1", "socket_connect_timeout='-1'"),
        ("redis://cache:6379/0?socket_timeout=", "socket_timeout=''"),
        ("redis://cache:6379/0?max_connections=-1", "max_connections='-1'"),
        ("redis://cache:6379/0?max_connections=0", "max_connections='0'"),
        ("redis://cache:6379/0?max_connections=ten", "max_connections='ten'"),
        ("redis://cache:6379/0?timeout=soon", "timeout='soon'"),
        ("redis://cache:6379/0?health_check_interval=1.5", "health_check_interval='1.5'"),
        ("redis://cache:6379/0?protocol=4", "protocol='4'"),
        ("redis://cache:6379/0?socket_keepalive=maybe", "socket_keepalive='maybe'"),
        ("redis://cache:6379/0?sockettimeout=5", "unknown option 'sockettimeout'"),
        ("redis://cache:6379/0?retry_on_error=x", "unknown option 'retry_on_error'"),
        ("redis://cache:6379/0?ssl_certfile=c.pem", "unknown option 'ssl_certfile' for a redis://"),
        ("unix:///run/redis.sock?socket_keepalive=1", "unknown option 'socket_keepalive' for a unix://"),
        ("redis://cache:6379/0?socket_timeout=1&socket_timeout=2", "'socket_timeout' is given 2 times"),
        ("redis://cache:6379/one", "the database 'one' is not a number"),
        ("redis://cache:6379/-1", "the database '-1' is not a number"),
        ("redis://cache:6379/0/1", "the database '0/1' is not a number"),
        ("redis://cache:6379?db=abc", "db='abc'"),
        ("redis://cache:6379/1?db=2", "the database is given twice"),
        ("redis://cache:port/0", "'port'"),
        ("redis://cache:70000/0", "Port out of range"),
        ("unix://", "give the socket's path"),
    ],
)
def test_a_bad_url_is_refused_when_the_store_is_created(url: str, needle: str) -> None:
    for create in (open_store, RedisStore):
        with pytest.raises(ValueError) as e:
            create(url)
        assert needle in str(e.value) and urlsplit(url).netloc in str(e.value), str(e.value)
    before = settings()
    with pytest.raises(ValueError, match="Redis URL"):
        tollgate.configure(store=url)
    assert settings() is before


def test_a_refused_url_never_shows_its_password() -> None:
    for url in ("redis://:hunter2@cache:6379/0?bogus=1", "redis://cache:6379/0?password=hunter2&timeout=x"):
        with pytest.raises(ValueError) as e:
            open_store(url)
        assert "hunter2" not in str(e.value) and "***" in str(e.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379",
        "redis://cache:6379/",
        "redis://:pw@cache:6379/15?socket_timeout=0.5&socket_connect_timeout=1&max_connections=200",
        "redis://cache/0?timeout=0&health_check_interval=30&protocol=3&client_name=api&retry_on_timeout=no",
        "rediss://user:pw@cache:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=true",
        "unix:///run/redis.sock?db=2&socket_timeout=3",
    ],
)
def test_good_urls_are_taken_and_connect_lazily(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, RedisStore) and store.round_trips == 0


def test_url_options_reach_the_client(redis_url: str) -> None:
    options = ("&" if "?" in redis_url else "?") + "socket_timeout=1.5&max_connections=7"
    store = RedisStore(redis_url + options, prefix=unique_prefix())
    try:
        assert store.reserve([charge()], T0).ok
        pool = store._sync().connection_pool
        assert pool.max_connections == 7 and pool.connection_kwargs["socket_timeout"] == 1.5
    finally:
        store.clear()
        store.close()


# -- error replies: StoreUnavailable naming the reason -------------------------------------------


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def test_a_database_the_server_does_not_have(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        databases = int(client.config_get("databases")["databases"])
    except redis.exceptions.ResponseError:
        pytest.skip("CONFIG GET is disabled on this Redis server")
    finally:
        client.close()
    store = RedisStore(with_db(redis_url, databases))  # 0 .. databases - 1 exist
    try:
        for operation, call in [
            ("reserve", lambda: store.reserve([charge()], T0)),
            ("read", lambda: store.read([charge()], T0)),
            ("limits", store.limits),
            ("put_limit", lambda: store.put_limit("x", "{}")),
        ]:
            with pytest.raises(StoreUnavailable) as e:
                call()
            message = str(e.value)
            assert f"refused {operation}" in message and "DB index is out of range" in message, message
            assert "database number" in message  # what to change
    finally:
        store.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore(redis_url, prefix=unique_prefix())
    yield s
    s.close()
    with redis.Redis.from_url(redis_url) as c:  # not s.clear(): the tests break its keys
        keys = list(c.scan_iter(match="{" + s.prefix + "}:*"))
        if keys:
            c.delete(*keys)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def test_a_key_of_the_wrong_type(store: RedisStore, client: redis.Redis) -> None:
    version = f"{{{store.prefix}}}:limits:version"
    client.hset(version, "not", "a counter")
    for operation, call in [
        ("reserve", lambda: store.reserve([charge(0.25)], T0)),
        ("limits_version", store.limits_version),
        ("limits", store.limits),
    ]:
        with pytest.raises(StoreUnavailable) as e:
            call()
        message = str(e.value)
        assert f"refused {operation}" in message and "WRONGTYPE" in message, message
        assert f"{{{store.prefix}}}:*" in message and "prefix=" in message  # where, and what to do
    # The reserve had written its hold when the script failed (on reading the version last), so
    # its cancel was queued, and the next operation replayed it: nothing stays reserved.
    assert store.pending == 0
    client.delete(version)
    assert store.read([charge(0)], T0)[0].reserved == 0.0


def test_a_limits_hash_of_the_wrong_type(store: RedisStore, client: redis.Redis) -> None:
    client.set(f"{{{store.prefix}}}:limits", "a string")
    with pytest.raises(StoreUnavailable, match=r"refused put_limit .*WRONGTYPE"):
        store.put_limit("limit[tenant=acme]", "{}")
    with pytest.raises(StoreUnavailable, match=r"refused limits .*WRONGTYPE"):
        store.limits()


def test_a_version_that_is_not_a_number(store: RedisStore, client: redis.Redis) -> None:
    client.set(f"{{{store.prefix}}}:limits:version", "seven")
    for call in (store.limits_version, store.limits, lambda: store.reserve([charge()], T0)):
        with pytest.raises(StoreUnavailable, match="holds 'seven', not a number"):
            call()


async def test_async_error_replies_are_store_unavailable(store: RedisStore, client: redis.Redis) -> None:
    client.hset(f"{{{store.prefix}}}:limits:version", "not", "a counter")
    try:
        with pytest.raises(StoreUnavailable, match=r"refused reserve .*WRONGTYPE"):
            await store.areserve([charge()], T0)
    finally:
        await store.aclose()


@pytest.mark.parametrize("on_store_error", ["closed", "open"])
def test_error_replies_fail_closed_or_open_like_an_outage(
    store: RedisStore, client: redis.Redis, on_store_error: str
) -> None:
    client.hset(f"{{{store.prefix}}}:limits:version", "not", "a counter")
    tollgate.configure(store=store, on_store_error=on_store_error)  # type: ignore[arg-type]
    if on_store_error == "closed":
        with tollgate.budget(usd=1), pytest.raises(tollgate.StoreUnavailable, match="WRONGTYPE"):
            run(request())
        (record,) = settings().ledger.records()
        assert record.status == "error" and "WRONGTYPE" in (record.error or "")
    else:
        with tollgate.budget(usd=1):
            _, record = run(request())
        assert record.status == "ok"
        assert [d["store"] for d in record.decisions] == ["unavailable"]
        assert "WRONGTYPE" in record.decisions[0]["error"]


# -- out of memory and read-only replicas: private servers ---------------------------------------


@contextmanager
def redis_server(*args: str) -> Iterator[int]:
    """A private redis-server on loopback (never a shared one: these tests reconfigure it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on the PATH for a private server")
    with tempfile.TemporaryDirectory(prefix="tollgate-redis-") as folder:
        port = free_port()
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", folder, *args]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not ping(port):
                assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
            yield port
        finally:
            server.terminate()
            server.wait(timeout=10)


def test_out_of_memory() -> None:
    with redis_server() as port:
        admin = redis.Redis(port=port)
        store = RedisStore(f"redis://127.0.0.1:{port}/0")
        try:
            warm = store.reserve([charge(0.1, key="warm")], T0)  # scripts loaded, server fine
            admin.config_set("maxmemory", 1)
            for operation, call in [
                ("reserve", lambda: store.reserve([charge(0.2)], T0)),
                ("put_limit", lambda: store.put_limit("x", "{}")),
            ]:
                with pytest.raises(StoreUnavailable) as e:
                    call()
                message = str(e.value)
                assert f"refused {operation}" in message and "OOM command not allowed" in message, message
                assert "out of memory" in message and "maxmemory" in message
            # What frees memory still works on a full server: the refused reserve's cancel was
            # replayed (before put_limit), and a settle goes through.
            assert store.pending == 0
            store.settle(warm.holds, [0.05])
            assert store.read([charge(0, key="warm")], T0)[0].spent == pytest.approx(0.05)
            admin.config_set("maxmemory", 0)
            store.put_limit("x", "{}")
            assert store.limits() == (1, {"x": "{}"})
            assert store.read([charge(0)], T0)[0].reserved == 0.0
        finally:
            store.close()
            admin.close()


def test_a_read_only_replica(caplog: pytest.LogCaptureFixture) -> None:
    with redis_server() as primary, redis_server("--replicaof", "127.0.0.1", str(primary)) as port:
        replica = redis.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 10
        while replica.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        store = RedisStore(f"redis://127.0.0.1:{port}/0")
        try:
            assert store.read([charge(0)], T0)[0].reserved == 0.0  # reads work on a replica
            assert store.limits() == (0, {})
            for operation, call in [
                ("reserve", lambda: store.reserve([charge()], T0)),
                ("put_limit", lambda: store.put_limit("x", "{}")),
            ]:
                with pytest.raises(StoreUnavailable) as e:
                    call()
                message = str(e.value)
                assert f"refused {operation}" in message and "READONLY" in message, message
                assert "read-only replica" in message and "primary" in message
            # The refused reserve's cancel is refused too, and kept (not dropped as a bug) until
            # the server takes writes again: here, a failover promotes the replica.
            assert store.pending == 1
            replica.execute_command("REPLICAOF", "NO", "ONE")
            assert store.limits() == (0, {})  # replays the cancel first
            assert store.pending == 0 and "replaying a failed" not in caplog.text
            assert store.reserve([charge()], T0).ok
        finally:
            store.close()
            replica.close()


def test_a_redis_store_without_the_redis_package_says_how_to_get_it() -> None:
    # Child processes where `import redis` fails, as on a machine without the extra.
    import subprocess
    import sys

    # No password in the message:
    said = "the store 'cache:6379/0' needs the redis package: pip install \"tollgate-llm[redis]\""
    probe = (
        "import sys; sys.modules['redis'] = None\n"
        "from tollgate.stores import open_store\n"
        "try:\n    open_store('redis://:hunter2secret@cache:6379/0')\n"
        "except ModuleNotFoundError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == said
    command = (
        "import sys; sys.modules['redis'] = None\nfrom tollgate.cli import main\n"
        "sys.exit(main(['limits', '--store', 'redis://:hunter2secret@cache:6379/0']))"
    )
    cli = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True)
    assert cli.returncode == 1 and cli.stderr.strip() == f"tollgate limits: error: {said}"  # one line
