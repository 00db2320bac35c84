"""``redis://``: counters in Redis, shared by every process of every machine.

Each reserve / settle / release is one round trip: one ``EVALSHA`` of a Lua script kept in
``lua/`` (loaded with ``SCRIPT LOAD`` at first use, reloaded once on ``NOSCRIPT``), so the
check-and-hold of all of a call's counters is atomic on the server.

Key layout, for ``prefix="tollgate"`` (the braces are a Redis Cluster hash tag: every key lands
on one cluster slot, so one script may touch any of them):

- ``{tollgate}:slot:<slot>``: a hash ``{spent, reserved, expires}`` per counter slot (slot names
  come from :mod:`tollgate.stores.windows`). ``expires`` is on the store clock, as in the other
  stores; the key's TTL (set to the hold's ttl when written, never shortened) frees the memory
  of finished windows with no cron.
- ``{tollgate}:limits``: standing limits, a hash of id -> JSON document;
  ``{tollgate}:limits:version``: an integer bumped by every put / delete / clear.

Floats travel as text both ways: amounts as Python's shortest exact ``repr``, added with
``HINCRBYFLOAT``; sums come back as ``"%.17g"`` strings, which round-trip every double.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError
from redis.retry import Retry

from tollgate.errors import StoreUnavailable
from tollgate.stores.base import Charge, CounterState, Hold, Reservation, Store
from tollgate.stores.windows import Slots

T = TypeVar("T")

# Errors that mean "the server cannot be used now" (down, unreachable, timed out, out of memory,
# or a replica after a failover), as opposed to a bug. BusyLoading, Authentication and pool
# exhaustion are ConnectionErrors.
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    TimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
)

# For clients made from a URL: a budget check must fail fast rather than hang, and retry once
# only (for a pooled connection the server dropped); redis-py's default retries for seconds.
# The pools block: a burst of concurrent calls (1,000 asyncio tasks) waits up to `timeout`
# seconds for one of `max_connections`, where a plain pool fails past its size. URL query
# options (``?socket_timeout=5&max_connections=200``) override these.
_POOL_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 2.0,
    "max_connections": 50,
    "timeout": 10.0,
}


class _Script:
    """A Lua script from ``lua/``, called by SHA."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


_RESERVE, _SETTLE, _RELEASE, _LIMIT = (_Script(n) for n in ("reserve", "settle", "release", "limit"))


class RedisStore(Store):
    """Counters in Redis: exact across machines, one round trip per reserve / settle / release.

    ``url_or_client``: a ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS) or
    ``unix:///path.sock`` URL, or a ``redis.Redis`` client. With a URL, the async twins use a
    ``redis.asyncio.Redis`` made from the same URL (one per event loop); with a client, pass
    ``async_client=`` too, or the async twins run the sync client in a worker thread.
    ``prefix`` names this store's keys (``{prefix}:...``), so several stores can share a server.
    ``round_trips`` counts the commands sent, for tests and benchmarks.

    >>> from tollgate.stores.windows import Calendar
    >>> store = RedisStore("redis://localhost:6379/0")  # no connection until first use
    >>> daily = Charge("team=ml", Calendar("day"), limit=5.0, amount=0.02)
    >>> r = store.reserve([daily], now=0.0)  # doctest: +SKIP
    >>> r.ok, r.states[0].limit  # doctest: +SKIP
    (True, 5.0)
    >>> store.settle(r.holds, [0.015])  # doctest: +SKIP
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        prefix: str = "tollgate",
        async_client: redis.asyncio.Redis | None = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"RedisStore prefix {prefix!r} must not contain braces: they are added")
        self._url: str | None = None
        self._client: redis.Redis | None = None
        if isinstance(url_or_client, str):
            self._url = url_or_client
            self.location = _redact(url_or_client)
        elif isinstance(url_or_client, redis.Redis):
            self._client = url_or_client
            self.location = _describe(url_or_client)
        else:
            raise ValueError(
                f"RedisStore needs a redis:// URL or a redis.Redis client, got {url_or_client!r}"
            )
        self._own_client = self._client is None
        self._async_client = async_client
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self.prefix = prefix
        self._keys = "{" + prefix + "}:"
        self._limits_key = self._keys + "limits"
        self._version_key = self._keys + "limits:version"
        self._loaded: set[str] = set()  # scripts loaded on the server, by SHA
        self._lock = threading.Lock()  # guards the lazy creation of the sync client
        self.round_trips = 0

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r}, prefix={self.prefix!r})"

    # -- the store interface: build arguments, do one round trip, parse the answer ------------

    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        slots, keys, args = self._reserve_args("reserve", charges, now)
        return _reservation(self._eval("reserve", _RESERVE, keys, args), charges, slots)

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> None:
        if holds:
            self._eval("settle", _SETTLE, *self._settle_args(holds, actuals))

    def release(self, holds: Sequence[Hold]) -> None:
        if holds:
            self._eval("release", _RELEASE, *self._release_args(holds))

    def forget(self, slots: Sequence[str]) -> None:
        if slots:
            keys = [self._key(slot) for slot in slots]
            self._call("forget", lambda client: client.delete(*keys))

    def read(self, charges: Sequence[Charge], now: float) -> tuple[CounterState, ...]:
        slots, keys, args = self._reserve_args("read", charges, now)
        return _reservation(self._eval("read", _RESERVE, keys, args), charges, slots).states

    async def areserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        slots, keys, args = self._reserve_args("reserve", charges, now)
        return _reservation(await self._aeval("reserve", _RESERVE, keys, args), charges, slots)

    async def asettle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> None:
        if holds:
            await self._aeval("settle", _SETTLE, *self._settle_args(holds, actuals))

    async def arelease(self, holds: Sequence[Hold]) -> None:
        if holds:
            await self._aeval("release", _RELEASE, *self._release_args(holds))

    def put_limit(self, limit_id: str, document: str) -> None:
        self._eval("put_limit", _LIMIT, [self._limits_key, self._version_key], [limit_id, document])

    def delete_limit(self, limit_id: str) -> bool:
        return bool(self._eval("delete_limit", _LIMIT, [self._limits_key, self._version_key], [limit_id]))

    def limits(self) -> tuple[int, dict[str, str]]:
        def both(client: redis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=True)  # MULTI/EXEC: a consistent pair, one round trip
            pipe.get(self._version_key)
            pipe.hgetall(self._limits_key)
            return pipe.execute()

        version, documents = self._call("limits", both)
        return int(version or 0), {_text(k): _text(v) for k, v in documents.items()}

    def limits_version(self) -> int:
        return int(self._call("limits_version", lambda client: client.get(self._version_key)) or 0)

    def clear(self) -> None:
        def clear(client: redis.Redis) -> None:
            # The version survives (and moves on), so a reader's cached version cannot come back.
            doomed = [
                key
                for key in client.scan_iter(match=_glob_escape(self._keys) + "*", count=1000)
                if _text(key) != self._version_key
            ]
            for start in range(0, len(doomed), 1000):
                client.delete(*doomed[start : start + 1000])
            client.incr(self._version_key)

        self._call("clear", clear)

    def close(self) -> None:
        """Close the connections this store opened (a client passed in is left to its owner)."""
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None
        for loop, client in list(self._async_clients.items()):
            # An async client can only be closed on its own loop, and only if that loop is idle.
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(client.aclose())
        self._async_clients.clear()

    async def aclose(self) -> None:
        """Close the async connections of the running event loop (call before the loop ends)."""
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # -- the shared, I/O-free part ------------------------------------------------------------

    def _key(self, slot: str) -> str:
        return self._keys + "slot:" + slot

    def _reserve_args(
        self, mode: str, charges: Sequence[Charge], now: float
    ) -> tuple[list[Slots], list[str], list[str]]:
        """reserve.lua's KEYS and ARGV (see the script), and each charge's slots."""
        every = [charge.window.slots(charge.key, now) for charge in charges]
        keys: list[str] = []
        args = [mode, repr(float(now))]
        for charge, slots in zip(charges, every, strict=True):
            keys.extend(self._key(slot) for slot in slots.read)
            keys.append(self._key(slots.write))
            # "" is unlimited; so is +inf, which Lua's tonumber() cannot read.
            limit = "" if charge.limit is None or math.isinf(charge.limit) else repr(float(charge.limit))
            args += [str(len(slots.read)), limit, repr(float(charge.amount)), str(slots.ttl)]
        keys.append(self._version_key)  # last: the script reports the standing limits' version
        return every, keys, args

    def _settle_args(self, holds: Sequence[Hold], actuals: Sequence[float]) -> tuple[list[str], list[str]]:
        args: list[str] = []
        for hold, actual in zip(holds, actuals, strict=True):
            args += [repr(-float(hold.amount)), repr(float(actual))]
        return [self._key(hold.slot) for hold in holds], args

    def _release_args(self, holds: Sequence[Hold]) -> tuple[list[str], list[str]]:
        return [self._key(hold.slot) for hold in holds], [repr(-float(hold.amount)) for hold in holds]

    def _unavailable(self, operation: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"Redis store {self.location} unreachable during {operation}: {exc}")

    # -- sync I/O -----------------------------------------------------------------------------

    def _sync(self) -> redis.Redis:
        client = self._client
        if client is None:
            with self._lock:  # two threads' first calls must not open two pools
                if self._client is None:
                    assert self._url is not None
                    options = {"retry": Retry(NoBackoff(), 1), **_POOL_OPTIONS}
                    self._client = redis.Redis.from_pool(
                        redis.BlockingConnectionPool.from_url(self._url, **options)
                    )
                client = self._client
        return client

    def _call(self, operation: str, do: Callable[[redis.Redis], T]) -> T:
        self.round_trips += 1
        try:
            return do(self._sync())
        except _UNAVAILABLE as exc:
            raise self._unavailable(operation, exc) from exc

    def _eval(self, operation: str, script: _Script, keys: list[str], args: list[str]) -> Any:
        def load(client: redis.Redis) -> Any:
            return client.script_load(script.source)

        if script.sha not in self._loaded:
            self._call(operation, load)
            self._loaded.add(script.sha)
        try:
            return self._call(operation, lambda client: client.evalsha(script.sha, len(keys), *keys, *args))
        except NoScriptError:  # the server lost its scripts (SCRIPT FLUSH, restart, failover)
            self._call(operation, load)
            return self._call(operation, lambda client: client.evalsha(script.sha, len(keys), *keys, *args))

    # -- async I/O ----------------------------------------------------------------------------

    def _async(self) -> redis.asyncio.Redis | None:
        if self._async_client is not None:
            return self._async_client
        if self._url is None:
            return None
        # An asyncio connection belongs to the loop that opened it: one client per loop.
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self._url, retry=AsyncRetry(NoBackoff(), 1), **_POOL_OPTIONS
            )
            client = redis.asyncio.Redis.from_pool(pool)
            self._async_clients[loop] = client
        return client

    async def _acall(self, operation: str, do: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        client = self._async()
        assert client is not None
        self.round_trips += 1
        try:
            return await do(client)
        except _UNAVAILABLE as exc:
            raise self._unavailable(operation, exc) from exc

    async def _aeval(self, operation: str, script: _Script, keys: list[str], args: list[str]) -> Any:
        if self._async() is None:  # only a sync client was given
            return await asyncio.to_thread(self._eval, operation, script, keys, args)

        async def load(client: redis.asyncio.Redis) -> Any:
            return await client.script_load(script.source)

        async def run(client: redis.asyncio.Redis) -> Any:
            return await client.evalsha(script.sha, len(keys), *keys, *args)

        if script.sha not in self._loaded:
            await self._acall(operation, load)
            self._loaded.add(script.sha)
        try:
            return await self._acall(operation, run)
        except NoScriptError:
            await self._acall(operation, load)
            return await self._acall(operation, run)


def _reservation(result: Any, charges: Sequence[Charge], slots: Sequence[Slots]) -> Reservation:
    """Turn reserve.lua's ``{states, refused, limits version}`` into a :class:`Reservation`."""
    numbers, refused, version = result
    limits_version = int(version or 0)
    states = tuple(
        CounterState(float(numbers[2 * i]), float(numbers[2 * i + 1]), charge.limit)
        for i, charge in enumerate(charges)
    )
    if refused:
        return Reservation(
            False, states, refused=tuple(int(i) for i in refused), limits_version=limits_version
        )
    holds = (Hold(s.write, c.amount, s.ttl) for c, s in zip(charges, slots, strict=True))
    return Reservation(True, states, tuple(holds), limits_version=limits_version)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _redact(url: str) -> str:
    """The URL without its password (in the userinfo or a ``password=`` query option).

    >>> _redact("redis://user:s3cret@cache:6379/0?password=s3cret&db=1")
    'redis://user:***@cache:6379/0?password=***&db=1'
    """
    netloc = urlsplit(url).netloc
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        url = url.replace(netloc, f"{user.partition(':')[0]}:***@{host}", 1)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def _describe(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
