"""``redis://``: counters in Redis, shared by every process of every machine.

Each operation (reserve, settle, claim, acquire, ...) is one round trip: one ``EVALSHA`` of a
Lua script kept in ``lua/`` (loaded with ``SCRIPT LOAD`` at first use, reloaded once on
``NOSCRIPT``), so the check-and-hold of all of a call's counters is atomic on the server.

Key layout, for ``prefix="tollgate"`` (the braces are a Redis Cluster hash tag: every key lands
on one cluster slot, so one script may touch any of them; on a cluster, each store lives on the
primary that serves its prefix's slot, and stores with other prefixes spread over the others):

- ``{tollgate}:slot:<slot>``: a hash ``{spent, reserved, expires}`` per counter slot (slot names
  come from :mod:`tollgate.stores.windows`). ``expires`` is on the store clock, as in the other
  stores; the key's TTL (set to the hold's ttl when written, never shortened) frees the memory
  of finished windows with no cron.
- ``{tollgate}:limits``: standing limits, a hash of id -> JSON document;
  ``{tollgate}:limits:version``: an integer bumped by every put / delete / clear.

- ``{tollgate}:flag:<flag>``: a flag set by :meth:`RedisStore.claim`, holding its expiry on the
  store clock; ``{tollgate}:lease:<key>``: a key's concurrency leases, a sorted set of lease ->
  expiry on the store clock. Both keys' TTLs outlive those expiries by :data:`_KEEP_MS`.

- ``{tollgate}:slices:<slot>``: a slot's live escrow slices, a sorted set of slice id -> expiry
  on the store clock (reaped by every slice operation on the slot, see ``lua/slices.lua``);
  ``{tollgate}:sliced:<slot>``: their records, a hash of slice id -> ``"held reported given
  state"``. Both live as long as their slot; a slice's hold is part of the slot's ``reserved``.
- ``{tollgate}:hold:<token>``: one per reservation in flight, a hash ``{charge index -> amount}``
  (``token`` is random, carried by each :class:`~tollgate.stores.base.Hold` as ``ref``). Settle
  and release delete a field before touching its slot, so each hold is undone at most once;
  the key is gone once every hold is undone, and expires with its longest slot otherwise.

Floats travel as text both ways: amounts as Python's shortest exact ``repr``, added with
``HINCRBYFLOAT``; sums come back as ``"%.17g"`` strings, which round-trip every double.

When Redis is down, slow or unreachable (what this store guarantees):

- **Bounded waits.** Every operation fails with :class:`~tollgate.StoreUnavailable` within
  about ``socket_connect_timeout`` / ``socket_timeout`` (2 s each by default) once it holds a
  connection: a refused connection fails at once, a server that accepts but never answers (a
  stopped process, a black hole) after 2 s. A dropped pooled connection is retried once; a
  timeout is not retried (it would double the wait). A caller that first has to queue for one
  of the pool's ``max_connections`` (50) waits at most the pool's ``timeout`` (10 s) more.
- **No leaked holds once Redis is back.** A settle, release or forget that fails is kept, in
  order, in a bounded in-process queue (:data:`MAX_PENDING` operations; beyond that the oldest
  are dropped, logged, and counted in :attr:`RedisStore.lost`) and replayed, in one pipelined
  round trip per 500, before the store's next operation (of any kind, from any thread or
  event loop) and at :meth:`RedisStore.close`; while the replay fails, that operation fails
  too. A reserve whose reply was lost (the server may or may not have applied it) is queued
  as a *cancel* of its token: replayed, it releases whatever the reservation holds and marks
  it cancelled for an hour, so that reservation cannot hold anything afterwards either.
  Each hold is undone at most once (see the key layout), so replaying an operation the server
  did apply before its reply was lost, or a redis-py retry of a command that got through,
  never counts twice. So once Redis is back (with its data: run it with ``appendonly yes``
  and ``appendfsync always`` to keep every acknowledged hold and spend across a restart) and
  this process has made one more operation, its counters hold exactly what the calls that
  ran left: nothing reserved by finished calls, and their actual costs spent.
- **Error replies.** A server that answers but refuses (out of memory, a read-only replica
  after a failover, a database index it does not have, a key under this store's prefix that
  holds another type) fails the operation the same way, with a StoreUnavailable that names
  the reply and what to change; so ``configure(on_store_error=...)`` applies as for an
  outage. A replayed operation refused by a reply that can pass (out of memory, read-only,
  loading) stays queued; one refused for good (a wrong type) is logged and dropped.
- **Cluster and Sentinel.** The same holds when a cluster primary or a Sentinel-managed
  primary goes away: calls fail (closed or open) until its slot answers again, on the node
  restarted or on the replica promoted, and the queued operations replay there. On a cluster,
  a failed command is retried once after a topology refresh (a timeout too: the slot may have
  moved), so a node that stops answering fails an operation in about twice the socket timeout.
  A failover keeps what the replica had received (replication is asynchronous).
- What this cannot cover: a process that dies with operations queued (or in flight) leaves
  their holds until the slots expire (the window plus an hour, a week for a lifetime
  counter), as for any process that dies mid-call; and a Redis that restarts *without* its
  data starts every counter from zero.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import logging
import math
import os
import re
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.cluster
import redis.connection
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry

from tollgate.errors import StoreUnavailable
from tollgate.ids import random_hex
from tollgate.stores.base import Charge, CounterState, Hold, Reservation, SliceOp, SliceState, Store
from tollgate.stores.windows import Slots

T = TypeVar("T")

log = logging.getLogger("tollgate")

#: Failed settles, releases, forgets and cancels kept for replay, per store instance.
MAX_PENDING = 10_000
_REPLAY_BATCH = 500  # operations per pipelined replay round trip
_CANCEL_TTL = 3_600  # seconds a cancelled reservation stays marked (see cancel.lua)
_LOG_EVERY = 10.0  # seconds between two "operations lost" log lines

# Errors that mean "the server cannot be used now": down, unreachable, timed out (BusyLoading,
# Authentication and pool exhaustion are ConnectionErrors), or an error reply: out of memory, a
# replica after a failover, a database index the server does not have, a key of this store's
# that holds another type. NoScriptError, also an error reply, is handled where scripts run.
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    TimeoutError,
    redis.exceptions.InvalidResponse,
    ResponseError,
    redis.exceptions.RedisClusterException,  # no node reachable, a slot no node serves
)
# The error replies a replayed operation may succeed after: it is kept, not dropped.
_TRANSIENT = (OutOfMemoryError, ReadOnlyError, BusyLoadingError, ClusterDownError, TryAgainError)

# For clients made from a URL: a budget check must fail fast rather than hang, and retry once
# only, on a connection error (a pooled connection the server dropped), never on a timeout
# (a server that does not answer would just be waited for twice); redis-py's default retries
# for seconds. Every script is idempotent per reservation token, so a retry never counts twice.
# The pools block: a burst of concurrent calls (1,000 asyncio tasks) waits up to `timeout`
# seconds for one of `max_connections`, where a plain pool fails past its size. URL query
# options (``?socket_timeout=5&max_connections=200``) override these.
_POOL_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 2.0,
    "max_connections": 50,
    "timeout": 10.0,
}


def _whole(least: int) -> Callable[[str], bool]:
    return lambda text: text.isascii() and text.isdigit() and int(text) >= least


def _seconds(*, zero: bool) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            value = float(text)
        except ValueError:
            return False
        return math.isfinite(value) and (value >= 0 if zero else value > 0)

    return check


def _flag(text: str) -> bool:
    return text.lower() in ("1", "0", "true", "false", "yes", "no", "y", "n", "t", "f")


def _verify_flags(text: str) -> bool:
    try:
        redis.connection.parse_ssl_verify_flags(text)  # type: ignore[no-untyped-call]
    except ValueError:
        return False
    return True


_TEXT = (lambda text: True, "text, e.g. ?{name}=...")
_BOOL = (_flag, "true or false, e.g. ?{name}=true")
_FLAGS = (_verify_flags, "ssl.VerifyFlags names, e.g. ?{name}=VERIFY_X509_STRICT")
# The query options a store URL may carry: how to check each value, and what to write instead.
# Others (unknown names, and options a URL cannot express, such as retry_on_error) are
# refused: redis-py would pass them on and fail at the first connection, or ignore them.
_URL_OPTIONS: dict[str, tuple[Callable[[str], bool], str]] = {
    "db": (_whole(0), "a database number, 0 or more, e.g. redis://host:6379/0"),
    "socket_timeout": (_seconds(zero=False), "seconds, a number above 0, e.g. ?socket_timeout=2"),
    "socket_connect_timeout": (_seconds(zero=False), "seconds, a number above 0, e.g. ?{name}=2"),
    "timeout": (_seconds(zero=True), "seconds to wait for a free connection, 0 or more, e.g. ?timeout=10"),
    "max_connections": (_whole(1), "a whole number, 1 or more, e.g. ?max_connections=50"),
    "socket_read_size": (_whole(1), "bytes, a whole number, 1 or more, e.g. ?socket_read_size=65536"),
    "health_check_interval": (_whole(0), "seconds, a whole number, e.g. ?health_check_interval=30"),
    "protocol": (lambda text: text in ("2", "3"), "2 or 3, e.g. ?protocol=3"),
    "ssl_min_version": (_whole(0), "a TLS version number, e.g. ?ssl_min_version=771"),
    **dict.fromkeys(("ssl_include_verify_flags", "ssl_exclude_verify_flags"), _FLAGS),
    **dict.fromkeys(
        ("socket_keepalive", "retry_on_timeout", "ssl_check_hostname", "legacy_responses"), _BOOL
    ),
    **dict.fromkeys(("username", "password", "client_name", "lib_name", "lib_version"), _TEXT),
    **dict.fromkeys(("ssl_keyfile", "ssl_certfile", "ssl_password", "ssl_ciphers"), _TEXT),
    **dict.fromkeys(("ssl_ca_certs", "ssl_ca_path", "ssl_ca_data"), _TEXT),
    "ssl_cert_reqs": (
        lambda text: text in ("none", "optional", "required"),
        "none, optional or required, e.g. ?ssl_cert_reqs=required",
    ),
    # redis+sentinel:// only: credentials for the Sentinels themselves, when they ask for any.
    **dict.fromkeys(("sentinel_username", "sentinel_password"), _TEXT),
}
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


_CLUSTER = ("redis+cluster", "rediss+cluster")
_SENTINEL = ("redis+sentinel", "rediss+sentinel")
_SCHEMES = ("redis", "rediss", "unix", *_CLUSTER, *_SENTINEL)
_EXAMPLES = {
    "redis": "redis://host:6379/0",
    "rediss": "rediss://host:6380/0?ssl_ca_certs=/etc/ssl/redis-ca.pem",
    "unix": "unix:///run/redis/redis.sock?db=0",
    "redis+cluster": "redis+cluster://node1:6379,node2:6379",
    "redis+sentinel": "redis+sentinel://sentinel1:26379,sentinel2:26379/mymaster/0",
}


@functools.cache
def _url_options(scheme: str) -> tuple[str, ...]:
    """The options of ``_URL_OPTIONS`` that the redis-py clients (sync and async) take for a
    URL of this scheme (``ssl_*`` only for ``rediss``, no ``socket_keepalive`` for ``unix://``;
    for a cluster, those the asyncio cluster client takes too; Sentinel's own credentials)."""
    pool = {"max_connections", "timeout"}  # the store bounds every client's connections itself
    taken = set(_URL_OPTIONS) - set(_SENTINEL_OPTIONS)
    base, _, topology = scheme.partition("+")
    for module in (redis.connection, redis.asyncio.connection):
        kind = {"redis": "Connection", "rediss": "SSLConnection", "unix": "UnixDomainSocketConnection"}
        names = {n for c in getattr(module, kind[base]).__mro__ for n in _init_parameters(c)}
        taken &= names | pool
    if topology == "cluster":
        taken &= set(_init_parameters(redis.asyncio.cluster.RedisCluster)) | pool
    if topology == "sentinel":
        taken |= set(_SENTINEL_OPTIONS)
    return tuple(sorted(taken))


def _init_parameters(cls: type) -> list[str]:
    init = vars(cls).get("__init__")
    return list(inspect.signature(init).parameters) if init is not None else []


def _check_url(url: str) -> None:
    """Refuse, naming it, what redis-py would misread or fail on only at the first connection:
    a bad host list, port or database number, an unknown query option, an option value it
    cannot use, a TLS file it cannot load."""
    where = f"Redis URL {_redact(url)!r}"
    scheme = url.partition("://")[0].lower()
    if scheme not in _SCHEMES:
        forms = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ValueError(f"{where}: use a {forms} URL (e.g. {_EXAMPLES['redis']})")
    base, _, topology = scheme.partition("+")
    example = _EXAMPLES["redis+" + topology if topology else base]
    try:
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2].split(",") if topology else [parts.netloc]
        for host in hosts:
            if topology and not host.partition(":")[0]:
                raise ValueError(f"host {host!r} has no name")
            urlsplit("//" + host).port  # noqa: B018  (a ValueError for a port that is not a number in range)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}; use e.g. {example}") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    path = unquote(parts.path).strip("/")
    if base == "unix" and not path:
        raise ValueError(f"{where}: give the socket's path, e.g. {example}")
    if topology == "sentinel":
        service, _, path = path.partition("/")
        if not service:
            raise ValueError(f"{where}: give the Sentinel service (the primary's name), e.g. {example}")
    if base != "unix" and path:
        if not _whole(0)(path):
            raise ValueError(f"{where}: the database {path!r} is not a number: use e.g. {example}")
        if "db" in query:
            raise ValueError(f"{where}: the database is given twice (path and ?db=): give it once")
    if topology == "cluster" and (path or query.get("db", ["0"]) != ["0"]):
        raise ValueError(f"{where}: a Redis Cluster has database 0 only: drop the database, e.g. {example}")
    allowed = _url_options(scheme)
    for name, values in query.items():
        if name not in allowed:
            raise ValueError(
                f"{where}: unknown option {name!r} for a {scheme}:// URL; use {', '.join(allowed)}"
            )
        check, fix = _URL_OPTIONS[name]
        if len(values) > 1:
            raise ValueError(f"{where}: option {name!r} is given {len(values)} times: give it once")
        value = values[0]
        if not value or not check(value):
            shown = "***" if "password" in name and value else repr(value)
            raise ValueError(f"{where}: {name}={shown}: use {fix.format(name=name)}")
    if base == "rediss":
        _check_tls(where, {name: values[0] for name, values in query.items()})


_TLS_FILES = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")


def _check_tls(where: str, query: dict[str, str]) -> None:
    """Load the TLS files a ``rediss`` URL names, as the connection will: one that is not PEM,
    or a key that does not match its certificate, is refused now. A file that is not there yet
    (a secret mounted after start-up) is left to the first connection, which names it."""
    if any(not os.path.exists(query[n]) for n in _TLS_FILES if n in query):
        return
    context = ssl.create_default_context()
    authorities = {n: query[n] for n in ("ssl_ca_certs", "ssl_ca_path", "ssl_ca_data") if n in query}
    try:
        context.load_verify_locations(
            cafile=authorities.get("ssl_ca_certs"),
            capath=authorities.get("ssl_ca_path"),
            cadata=authorities.get("ssl_ca_data"),
        )
    except TypeError:  # none given: the system's authorities are used
        pass
    except (OSError, ssl.SSLError) as exc:
        given = " ".join(f"{n}={v!r}" for n, v in authorities.items() if n != "ssl_ca_data")
        raise ValueError(
            f"{where}: cannot load the certificate authority {given or 'ssl_ca_data'} "
            f"({exc}): give a readable PEM file of the CA that signed the server's certificate"
        ) from None
    if "ssl_keyfile" in query and "ssl_certfile" not in query:
        raise ValueError(f"{where}: ssl_keyfile without ssl_certfile: give the client certificate too")
    if "ssl_certfile" in query:
        certfile, keyfile = query["ssl_certfile"], query.get("ssl_keyfile")
        try:
            context.load_cert_chain(certfile, keyfile, query.get("ssl_password"))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"{where}: cannot load the client certificate ssl_certfile={certfile!r} "
                f"ssl_keyfile={keyfile!r} ({exc}): give readable PEM files, the key matching "
                "the certificate (and ssl_password= if the key is encrypted)"
            ) from None


class _Script:
    """A Lua script from ``lua/``, called by SHA."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


_RESERVE, _SETTLE, _RELEASE, _CANCEL, _LIMIT = (
    _Script(n) for n in ("reserve", "settle", "release", "cancel", "limit")
)
_RESET, _CLAIM, _ACQUIRE, _RENEW, _SWAP_LIMIT = (
    _Script(n) for n in ("reset", "claim", "acquire", "renew", "swap_limit")
)
_SLICES = _Script("slices")
# Flags and leases expire on the store clock (the caller's `now`); their keys' TTLs, on the
# server's clock, only free the memory, and last this much longer so clocks a little apart
# across machines cannot drop a flag or a lease before its time.
_KEEP_MS = 60_000


@dataclass(frozen=True, slots=True)
class _Pending:
    """An operation that failed while Redis was unavailable, kept to be replayed."""

    operation: str
    script: _Script | None  # None: DEL the keys (forget)
    keys: list[str]
    args: list[str]


_Client = redis.Redis | redis.cluster.RedisCluster
_AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class _SentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """The primary's pool, found through Sentinel, that waits for a free connection as the
    others do (redis-py's Sentinel pool fails past its size)."""


class _AsyncSentinelPool(redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """The asyncio twin of :class:`_SentinelPool`."""


@dataclass(frozen=True, slots=True)
class _Topology:
    """What a ``redis+cluster://`` or ``redis+sentinel://`` URL names."""

    hosts: list[tuple[str, int]]  # the cluster's startup nodes, or the Sentinels
    service: str  # the Sentinel service ("" for a cluster)
    options: dict[str, Any]  # redis-py's keyword arguments for the data servers' connections
    sentinel: dict[str, Any]  # ... and for the Sentinels'


def _topology(url: str) -> _Topology:
    parts = urlsplit(url)
    base, _, topology = parts.scheme.partition("+")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    default = 26379 if topology == "sentinel" else 6379
    nodes = []
    for host in hosts.split(","):
        one = urlsplit("//" + host)
        nodes.append((one.hostname or "localhost", one.port or default))
    service, _, db = unquote(parts.path).strip("/").partition("/")
    if topology == "cluster":
        service, db = "", ""
    # redis-py reads the options (credentials, database, query) as for a one-server URL.
    one_server = urlunsplit((base, f"{userinfo}{at}localhost", f"/{db}", parts.query, ""))
    options = {**_POOL_OPTIONS, **redis.connection.parse_url(one_server)}  # type: ignore[no-untyped-call]
    for name in ("host", "port", "connection_class"):
        options.pop(name, None)
    if topology == "cluster":
        options.pop("db", None)  # 0, checked by _check_url: the cluster clients take no db
    if base == "rediss":
        options["ssl"] = True
    # The Sentinels: the same timeouts and TLS settings, their own credentials.
    sentinel = {n: v for n, v in options.items() if n.startswith(("socket_", "ssl"))}
    for name in _SENTINEL_OPTIONS:
        if name in options:
            sentinel[name.removeprefix("sentinel_")] = options.pop(name)
    return _Topology(nodes, service, options, sentinel)


def _open(url: str) -> _Client:
    """The sync client for a store URL."""
    scheme = urlsplit(url).scheme
    if scheme in _CLUSTER:
        where = _topology(url)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in where.hosts]  # type: ignore[no-untyped-call]
        # Cluster-level retry: once, after a topology refresh (a timeout too: the slot may have
        # moved to a replica promoted meanwhile); the nodes' own connections never retry.
        return redis.cluster.RedisCluster(
            startup_nodes=nodes,
            retry=Retry(NoBackoff(), 1),
            connection_pool_class=redis.BlockingConnectionPool,
            **where.options,
        )
    if scheme in _SENTINEL:
        where = _topology(url)
        sentinels = redis.sentinel.Sentinel(where.hosts, sentinel_kwargs=where.sentinel)
        primary: redis.Redis = sentinels.master_for(
            where.service, connection_pool_class=_SentinelPool, retry=_retry(), **where.options
        )
        return primary
    return redis.Redis.from_pool(redis.BlockingConnectionPool.from_url(url, retry=_retry(), **_POOL_OPTIONS))


def _aopen(url: str) -> tuple[_AsyncClient, asyncio.Semaphore | None, float]:
    """The asyncio client for a store URL; for a cluster, a semaphore of its size too, and how
    long to wait for it (the asyncio cluster client fails past its size, where pools wait)."""
    scheme = urlsplit(url).scheme
    if scheme in _CLUSTER:
        where = _topology(url)
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in where.hosts]
        taken = set(_init_parameters(redis.asyncio.cluster.RedisCluster))
        options = {n: v for n, v in where.options.items() if n in taken}
        client = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, retry=_aretry_cluster(), **options)
        size = int(where.options["max_connections"])
        return client, asyncio.Semaphore(size), float(where.options["timeout"])
    if scheme in _SENTINEL:
        where = _topology(url)
        sentinels = redis.asyncio.sentinel.Sentinel(where.hosts, sentinel_kwargs=where.sentinel)
        primary = sentinels.master_for(
            where.service, connection_pool_class=_AsyncSentinelPool, retry=_aretry(), **where.options
        )
        return primary, None, 0.0
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, retry=_aretry(), **_POOL_OPTIONS)
    return redis.asyncio.Redis.from_pool(pool), None, 0.0


def _aretry_cluster() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 1)


def _retry() -> Retry:
    return Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))


def _aretry() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))


class RedisStore(Store):
    """Counters in Redis: exact across machines, one round trip per reserve / settle / release.

    ``url_or_client``: a ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS) or
    ``unix:///path.sock`` URL; ``redis+cluster://host:port[,host:port...]`` (Redis Cluster);
    ``redis+sentinel://host:port[,host:port...]/service[/db]`` (the primary Sentinel names);
    ``rediss+cluster://`` / ``rediss+sentinel://`` with TLS; or a ``redis.Redis`` or
    ``redis.cluster.RedisCluster`` client. With a URL, the async twins use the asyncio client
    made from the same URL (one per event loop); with a client, pass ``async_client=`` too, or
    the async twins run the sync client in a worker thread.
    ``prefix`` names this store's keys (``{prefix}:...``), so several stores can share a server.
    A URL is checked here (port, database number, query options and their values: see
    ``_URL_OPTIONS``); a bad one is a ValueError naming it, not an error at the first call.
    ``round_trips`` counts the commands sent, for tests and benchmarks. ``pending`` is the
    number of failed operations waiting to be replayed, ``lost`` how many were dropped because
    the queue was full (see the module's documentation for what happens when Redis is down).

    >>> from tollgate.stores.windows import Calendar
    >>> store = RedisStore("redis://localhost:6379/0")  # no connection until first use
    >>> daily = Charge("team=ml", Calendar("day"), limit=5.0, amount=0.02)
    >>> r = store.reserve([daily], now=0.0)  # doctest: +SKIP
    >>> r.ok, r.states[0].limit  # doctest: +SKIP
    (True, 5.0)
    >>> store.settle(r.holds, [0.015])  # doctest: +SKIP
    [0.015]
    """

    replays = True

    def __init__(
        self,
        url_or_client: str | redis.Redis | redis.cluster.RedisCluster,
        *,
        prefix: str = "tollgate",
        async_client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster | None = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"RedisStore prefix {prefix!r} must not contain braces: they are added")
        self._url: str | None = None
        self._client: _Client | None = None
        if isinstance(url_or_client, str):
            _check_url(url_or_client)
            self._url = url_or_client
            self.location = _redact(url_or_client)
        elif isinstance(url_or_client, redis.Redis | redis.cluster.RedisCluster):
            self._client = url_or_client
            self.location = _describe(url_or_client)
        else:
            raise ValueError(
                "RedisStore needs a redis:// URL, a redis.Redis or a redis.cluster.RedisCluster "
                f"client, got {url_or_client!r}"
            )
        self._own_client = self._client is None
        self._async_client = async_client
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        # An asyncio cluster client's bound on commands in flight, per loop, and the wait for it.
        self._async_bounds: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[asyncio.Semaphore, float]
        ] = weakref.WeakKeyDictionary()
        self.prefix = prefix
        self._keys = "{" + prefix + "}:"
        self._limits_key = self._keys + "limits"
        self._version_key = self._keys + "limits:version"
        self._loaded: set[str] = set()  # scripts loaded on the server, by SHA
        self._lock = threading.Lock()  # guards the lazy creation of the sync client
        self.round_trips = 0
        self._pending: deque[_Pending] = deque()
        self._pending_lock = threading.Lock()  # guards the queue's bound and put-backs
        self._replaying = threading.Lock()  # one replay at a time (never waited for)
        self.lost = 0
        self._last_log = -_LOG_EVERY

    def __repr__(self) -> str:
        return f"RedisStore({self.location!r}, prefix={self.prefix!r})"

    # -- the store interface: build arguments, do one round trip, parse the answer ------------

    def reserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        token = random_hex(72)
        slots, keys, args = self._reserve_args("reserve", charges, now, token)
        self._replay("reserve")  # first, so a failure here leaves nothing to cancel
        try:
            result = self._eval("reserve", _RESERVE, keys, args)
            version = self._version(result[2], "reserve")
        except StoreUnavailable:
            self._queue(self._cancel(charges, slots, token))
            raise
        return _reservation(result, charges, slots, token, version)

    def settle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> list[float | None]:
        if not holds:
            return []
        # A settle that fails is queued for replay and raises StoreUnavailable (the gate relies
        # on the error to know the settle is pending), so it never answers "cannot say".
        op = _Pending("settle", _SETTLE, *self._settle_args(holds, actuals))
        return _spent(self._eval_or_queue(op))

    def release(self, holds: Sequence[Hold]) -> None:
        if holds:
            self._eval_or_queue(_Pending("release", _RELEASE, *self._release_args(holds)))

    def forget(self, slots: Sequence[str]) -> None:
        if slots:
            keys = [self._key(slot) for slot in slots]
            try:
                self._call("forget", lambda client: client.delete(*keys))
            except StoreUnavailable:
                self._queue(_Pending("forget", None, keys, []))
                raise

    def read(self, charges: Sequence[Charge], now: float) -> tuple[CounterState, ...]:
        slots, keys, args = self._reserve_args("read", charges, now, "read")
        result = self._eval("read", _RESERVE, keys, args)
        return _reservation(result, charges, slots, "", self._version(result[2], "read")).states

    async def areserve(self, charges: Sequence[Charge], now: float) -> Reservation:
        if self._async() is None:  # only a sync client was given
            return await asyncio.to_thread(self.reserve, charges, now)
        token = random_hex(72)
        slots, keys, args = self._reserve_args("reserve", charges, now, token)
        await self._areplay("reserve")
        try:
            result = await self._aeval("reserve", _RESERVE, keys, args)
            version = self._version(result[2], "reserve")
        except StoreUnavailable:
            self._queue(self._cancel(charges, slots, token))
            raise
        return _reservation(result, charges, slots, token, version)

    async def asettle(self, holds: Sequence[Hold], actuals: Sequence[float]) -> list[float | None]:
        if not holds:
            return []
        op = _Pending("settle", _SETTLE, *self._settle_args(holds, actuals))
        return _spent(await self._aeval_or_queue(op))

    async def arelease(self, holds: Sequence[Hold]) -> None:
        if holds:
            await self._aeval_or_queue(_Pending("release", _RELEASE, *self._release_args(holds)))

    def reset(self, charges: Sequence[Charge], now: float) -> None:
        keys = [self._key(slot) for c in charges for slot in c.window.slots(c.key, now).read]
        if keys:
            self._eval("reset", _RESET, keys, [repr(float(now))])

    def claim(self, flag: str, ttl: float, now: float) -> bool:
        args = [repr(float(now)), repr(float(now + ttl)), _keep_ms(ttl)]
        return bool(self._eval("claim", _CLAIM, [self._keys + "flag:" + flag], args))

    def acquire(self, key: str, lease: str, most: int, ttl: float, now: float) -> bool:
        return bool(self._eval("acquire", _ACQUIRE, *self._acquire_args(key, lease, most, ttl, now)))

    async def aacquire(self, key: str, lease: str, most: int, ttl: float, now: float) -> bool:
        return bool(await self._aeval("acquire", _ACQUIRE, *self._acquire_args(key, lease, most, ttl, now)))

    def renew(self, leases: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        if leases:
            keys = [self._lease_key(key) for key, _ in leases]
            args = [repr(float(now)), repr(float(now + ttl)), _keep_ms(ttl), *(lease for _, lease in leases)]
            self._eval("renew", _RENEW, keys, args)

    def let_go(self, key: str, lease: str) -> None:
        # One command, atomic by itself. Not queued when Redis is down: the lease expires anyway.
        self._call("let_go", lambda client: client.zrem(self._lease_key(key), lease))

    async def alet_go(self, key: str, lease: str) -> None:
        if self._async() is None:  # only a sync client was given
            await asyncio.to_thread(self.let_go, key, lease)
        else:
            await self._acall("let_go", lambda client: client.zrem(self._lease_key(key), lease))

    def take_slices(self, ops: Sequence[SliceOp], ttl: float, now: float) -> list[SliceState]:
        return self._slices("take_slices", "take", ops, ttl, now) if ops else []

    def return_slices(self, ops: Sequence[SliceOp], now: float) -> list[SliceState]:
        # Not queued for replay when Redis is down: SlicedStore keeps the slice and tries again.
        return self._slices("return_slices", "return", ops, 0.0, now) if ops else []

    def _slices(
        self, operation: str, mode: str, ops: Sequence[SliceOp], ttl: float, now: float
    ) -> list[SliceState]:
        """slices.lua: one round trip for every op (see the script for KEYS and ARGV)."""
        keys: list[str] = []
        args = [mode, repr(float(now)), repr(float(ttl))]
        for op in ops:
            keys += [self._key(op.slot), self._keys + "slices:" + op.slot, self._keys + "sliced:" + op.slot]
            numbers = (op.limit, op.slot_ttl, op.spent, op.given, op.want, op.least, op.floor)
            args += [op.slice, *(repr(float(n)) for n in numbers)]
        result = self._eval(operation, _SLICES, keys, args)
        return [
            SliceState(float(g), float(h), float(s), float(r), int(n), bool(alive))
            for g, h, s, r, n, alive in result
        ]

    def swap_limit(self, limit_id: str, expected: str | None, document: str | None) -> bool:
        # Presence travels as its own flag: "" is a document like any other.
        args = [limit_id, "0" if expected is None else "1", expected or "", "0" if document is None else "1"]
        args.append(document or "")
        return bool(self._eval("swap_limit", _SWAP_LIMIT, [self._limits_key, self._version_key], args))

    @property
    def pending(self) -> int:
        """Failed operations waiting to be replayed."""
        return len(self._pending)

    def put_limit(self, limit_id: str, document: str) -> None:
        self._eval("put_limit", _LIMIT, [self._limits_key, self._version_key], [limit_id, document])

    def delete_limit(self, limit_id: str) -> bool:
        return bool(self._eval("delete_limit", _LIMIT, [self._limits_key, self._version_key], [limit_id]))

    def limits(self) -> tuple[int, dict[str, str]]:
        def both(client: _Client) -> list[Any]:
            pipe = client.pipeline(transaction=True)  # MULTI/EXEC: a consistent pair, one round trip
            pipe.get(self._version_key)
            pipe.hgetall(self._limits_key)
            return pipe.execute()

        version, documents = self._call("limits", both)
        return self._version(version, "limits"), {_text(k): _text(v) for k, v in documents.items()}

    def limits_version(self) -> int:
        raw = self._call("limits_version", lambda client: client.get(self._version_key))
        return self._version(raw, "limits_version")

    def clear(self) -> None:
        def clear(client: _Client) -> None:
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
        """Replay what failed (once, best effort), then close the connections this store opened
        (a client passed in is left to its owner)."""
        if self._pending and (self._client is not None or self._url is not None):
            try:
                self._replay("close")
            except StoreUnavailable as exc:
                log.warning(
                    "tollgate: %d operation(s) on the Redis store %s could not be replayed before "
                    "closing; their holds expire with their slots: %s",
                    len(self._pending),
                    self.location,
                    exc,
                )
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None
        for loop, client in list(self._async_clients.items()):
            # An async client can only be closed on its own loop, and only if that loop is idle.
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(client.aclose())
        self._async_clients.clear()
        self._async_bounds.clear()

    async def aclose(self) -> None:
        """Close the async connections of the running event loop (call before the loop ends)."""
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        self._async_bounds.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # -- the shared, I/O-free part ------------------------------------------------------------

    def _key(self, slot: str) -> str:
        return self._keys + "slot:" + slot

    def _reserve_args(
        self, mode: str, charges: Sequence[Charge], now: float, token: str
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
        keys.append(self._version_key)  # the script reports the standing limits' version
        keys.append(self._keys + "hold:" + token)  # last: this reservation's hold record
        return every, keys, args

    def _lease_key(self, key: str) -> str:
        return self._keys + "lease:" + key

    def _acquire_args(
        self, key: str, lease: str, most: int, ttl: float, now: float
    ) -> tuple[list[str], list[str]]:
        """acquire.lua's KEYS and ARGV (see the script)."""
        args = [lease, str(most), repr(float(now)), repr(float(now + ttl)), _keep_ms(ttl)]
        return [self._lease_key(key)], args

    def _hold_keys(self, holds: Sequence[Hold]) -> tuple[list[str], list[str]]:
        """Each hold's slot and hold record (KEYS), and its field in the record."""
        keys: list[str] = []
        fields: list[str] = []
        for hold in holds:
            token, _, field = hold.ref.rpartition(":")
            keys += [self._key(hold.slot), self._keys + "hold:" + token]
            fields.append(field if token else "")
        return keys, fields

    def _settle_args(self, holds: Sequence[Hold], actuals: Sequence[float]) -> tuple[list[str], list[str]]:
        keys, fields = self._hold_keys(holds)
        args: list[str] = []
        for hold, field, actual in zip(holds, fields, actuals, strict=True):
            args += [field, repr(-float(hold.amount)), repr(float(actual))]
        return keys, args

    def _release_args(self, holds: Sequence[Hold]) -> tuple[list[str], list[str]]:
        keys, fields = self._hold_keys(holds)
        args: list[str] = []
        for hold, field in zip(holds, fields, strict=True):
            args += [field, repr(-float(hold.amount))]
        return keys, args

    def _cancel(self, charges: Sequence[Charge], slots: Sequence[Slots], token: str) -> _Pending:
        """The operation undoing a reservation whose outcome is unknown (cancel.lua)."""
        keys = [self._key(s.write) for s in slots]
        keys.append(self._keys + "hold:" + token)
        args = [str(_CANCEL_TTL), *(repr(-float(c.amount)) for c in charges)]
        return _Pending("cancel", _CANCEL, keys, args)

    # -- failed operations: queued, replayed before the next operation --------------------------

    def _queue(self, op: _Pending) -> None:
        with self._pending_lock:
            self._pending.append(op)
            overflow = len(self._pending) - MAX_PENDING
            for _ in range(max(0, overflow)):
                self._pending.popleft()
            if overflow > 0:
                self.lost += overflow
                now = time.monotonic()
                if now - self._last_log < _LOG_EVERY:
                    return
                self._last_log = now
        if overflow > 0:
            log.error(
                "tollgate: the Redis store %s has been unavailable for %d queued operations; "
                "dropped the oldest (%d so far): their holds expire with their slots",
                self.location,
                MAX_PENDING,
                self.lost,
            )

    def _take(self) -> list[_Pending]:
        with self._pending_lock:
            batch: list[_Pending] = []
            while self._pending and len(batch) < _REPLAY_BATCH:
                batch.append(self._pending.popleft())
            return batch

    def _put_back(self, batch: list[_Pending]) -> None:
        with self._pending_lock:
            self._pending.extendleft(reversed(batch))  # in front, in their order
            while len(self._pending) > MAX_PENDING:
                self._pending.pop()
                self.lost += 1

    def _replayed(self, operation: str, batch: list[_Pending], results: list[Any]) -> None:
        """Log what the replay did; put back, and raise for, what an error reply the server may
        stop giving refused (out of memory, a read-only replica, loading)."""
        again = [op for op, result in zip(batch, results, strict=True) if isinstance(result, _TRANSIENT)]
        for op, result in zip(batch, results, strict=True):
            if isinstance(result, Exception) and not isinstance(result, _TRANSIENT):  # a bug: dropped
                log.error(
                    "tollgate: replaying a failed %s on %s failed: %r", op.operation, self.location, result
                )
        log.info(
            "tollgate: replayed %d operation(s) that failed on the Redis store %s",
            len(batch) - len(again),
            self.location,
        )
        if again:
            self._put_back(again)
            refused = next(r for r in results if isinstance(r, _TRANSIENT))
            raise self._unavailable(operation, refused)

    def _replay(self, operation: str) -> None:
        """Send the queued operations, in order; raise StoreUnavailable if Redis still fails."""
        if not self._pending or not self._replaying.acquire(blocking=False):
            return
        try:
            while self._pending:
                batch = self._take()
                pipe = self._sync().pipeline(transaction=False)
                for op in batch:
                    if op.script is None:
                        pipe.delete(*op.keys)
                    else:  # EVAL, not EVALSHA: the server may have restarted without its scripts
                        pipe.eval(op.script.source, len(op.keys), *op.keys, *op.args)
                self.round_trips += 1
                try:
                    results = pipe.execute(raise_on_error=False)
                except _UNAVAILABLE as exc:
                    self._put_back(batch)
                    raise self._unavailable(operation, exc) from exc
                self._replayed(operation, batch, results)
        finally:
            self._replaying.release()

    async def _areplay(self, operation: str) -> None:
        if not self._pending or not self._replaying.acquire(blocking=False):
            return
        try:
            client = self._async()
            assert client is not None
            while self._pending:
                batch = self._take()
                pipe = client.pipeline(transaction=False)
                for op in batch:
                    if op.script is None:
                        pipe.delete(*op.keys)
                    else:
                        pipe.eval(op.script.source, len(op.keys), *op.keys, *op.args)
                self.round_trips += 1
                try:
                    results = await pipe.execute(raise_on_error=False)
                except _UNAVAILABLE as exc:
                    self._put_back(batch)
                    raise self._unavailable(operation, exc) from exc
                except BaseException:  # cancelled mid-way: keep them for the next replay
                    self._put_back(batch)
                    raise
                self._replayed(operation, batch, results)
        finally:
            self._replaying.release()

    def _eval_or_queue(self, op: _Pending) -> Any:
        assert op.script is not None
        try:
            return self._eval(op.operation, op.script, op.keys, op.args)
        except StoreUnavailable:
            self._queue(op)
            raise

    async def _aeval_or_queue(self, op: _Pending) -> Any:
        assert op.script is not None
        try:
            return await self._aeval(op.operation, op.script, op.keys, op.args)
        except StoreUnavailable:
            self._queue(op)
            raise

    def _unavailable(self, operation: str, exc: BaseException) -> StoreUnavailable:
        if not isinstance(exc, ResponseError):
            return StoreUnavailable(f"Redis store {self.location} unreachable during {operation}: {exc}")
        # An error reply: the server is there but refuses. Name the reason, and what to do.
        reply = str(exc)
        code = getattr(exc, "status_code", None)
        if code and not reply.startswith(code):
            reply = f"{code} {reply}"
        if isinstance(exc, OutOfMemoryError):
            hint = "the server is out of memory: raise its maxmemory or free memory"
        elif isinstance(exc, ReadOnlyError):
            hint = "the server is a read-only replica: point the store at the primary"
        elif "DB index" in reply:
            hint = "the URL's database number is beyond the server's 'databases' setting"
        elif "WRONGTYPE" in reply:
            hint = (
                f"a key under {self._keys}* holds another type: something else writes there; "
                "give this store its own prefix= or database"
            )
        else:
            hint = "the server refused the command"
        return StoreUnavailable(f"Redis store {self.location} refused {operation} ({hint}): {reply}")

    def _version(self, raw: Any, operation: str) -> int:
        """The standing limits' version from its key, as an int (0 when never set)."""
        try:
            return int(raw or 0)
        except ValueError:
            raise StoreUnavailable(
                f"Redis store {self.location} refused {operation} (the key {self._version_key} holds "
                f"{_text(raw)!r}, not a number: something else writes there; give this store its own "
                "prefix= or database)"
            ) from None

    # -- sync I/O -----------------------------------------------------------------------------

    def _sync(self) -> _Client:
        client = self._client
        if client is None:
            with self._lock:  # two threads' first calls must not open two pools
                if self._client is None:
                    assert self._url is not None
                    self._client = _open(self._url)  # a cluster client connects here
                client = self._client
        return client

    def _call(self, operation: str, do: Callable[[_Client], T]) -> T:
        if self._pending:
            self._replay(operation)
        self.round_trips += 1
        try:
            return do(self._sync())
        except NoScriptError:
            raise
        except _UNAVAILABLE as exc:
            raise self._unavailable(operation, exc) from exc

    def _eval(self, operation: str, script: _Script, keys: list[str], args: list[str]) -> Any:
        def load(client: _Client) -> Any:
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

    def _async(self) -> _AsyncClient | None:
        if self._async_client is not None:
            return self._async_client
        if self._url is None:
            return None
        # An asyncio connection belongs to the loop that opened it: one client per loop.
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client, bound, wait = _aopen(self._url)
            self._async_clients[loop] = client
            if bound is not None:
                self._async_bounds[loop] = (bound, wait)
        return client

    async def _acall(self, operation: str, do: Callable[[_AsyncClient], Awaitable[T]]) -> T:
        client = self._async()
        assert client is not None
        if self._pending:
            await self._areplay(operation)
        bound = self._async_bounds.get(asyncio.get_running_loop())
        if bound is not None:  # a cluster: wait for a free connection, as the pools do
            try:
                await asyncio.wait_for(bound[0].acquire(), bound[1])
            except TimeoutError:
                raise StoreUnavailable(
                    f"Redis store {self.location} unavailable during {operation}: no free "
                    f"connection in {bound[1]} s (raise ?max_connections= or ?timeout=)"
                ) from None
        self.round_trips += 1
        try:
            return await do(client)
        except NoScriptError:
            raise
        except _UNAVAILABLE as exc:
            raise self._unavailable(operation, exc) from exc
        finally:
            if bound is not None:
                bound[0].release()

    async def _aeval(self, operation: str, script: _Script, keys: list[str], args: list[str]) -> Any:
        if self._async() is None:  # only a sync client was given
            return await asyncio.to_thread(self._eval, operation, script, keys, args)

        async def load(client: _AsyncClient) -> Any:
            return await client.script_load(script.source)

        async def run(client: _AsyncClient) -> Any:
            return await client.evalsha(script.sha, len(keys), *keys, *args)

        if script.sha not in self._loaded:
            await self._acall(operation, load)
            self._loaded.add(script.sha)
        try:
            return await self._acall(operation, run)
        except NoScriptError:
            await self._acall(operation, load)
            return await self._acall(operation, run)


def _reservation(
    result: Any, charges: Sequence[Charge], slots: Sequence[Slots], token: str, limits_version: int
) -> Reservation:
    """Turn reserve.lua's ``{states, refused, limits version}`` into a :class:`Reservation`."""
    numbers, refused, _ = result
    states = tuple(
        CounterState(float(numbers[2 * i]), float(numbers[2 * i + 1]), charge.limit)
        for i, charge in enumerate(charges)
    )
    if refused:
        return Reservation(
            False, states, refused=tuple(int(i) for i in refused), limits_version=limits_version
        )
    holds = (
        Hold(s.write, c.amount, s.ttl, f"{token}:{i}")
        for i, (c, s) in enumerate(zip(charges, slots, strict=True), start=1)
    )
    return Reservation(True, states, tuple(holds), limits_version=limits_version)


def _spent(result: Any) -> list[float | None]:
    """settle.lua's answer: each hold's slot's spent, as full-precision text ("" when skipped)."""
    return [float(value) if value else None for value in result]


def _keep_ms(ttl: float) -> str:
    """How long a flag's or lease's key lives on the server (ms): the ttl, and a margin."""
    return str(max(0, math.ceil(ttl * 1000)) + _KEEP_MS)


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
    return re.sub(r"([?&][a-z_]*password=)[^&#]*", r"\1***", url)


def _describe(client: redis.Redis | redis.cluster.RedisCluster) -> str:
    if isinstance(client, redis.cluster.RedisCluster):
        nodes = ",".join(f"{node.host}:{node.port}" for node in client.get_primaries())  # type: ignore[no-untyped-call]
        return f"redis+cluster://{nodes}"
    service = getattr(client.connection_pool, "service_name", None)
    if service is not None:
        return f"redis+sentinel://.../{service}"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
