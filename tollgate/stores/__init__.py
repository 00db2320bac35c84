"""Budget and rate-limit state behind one small interface; the backend is chosen by URI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tollgate.stores.base import Charge, CounterState, Hold, Reservation, Store
from tollgate.stores.memory import MemoryStore
from tollgate.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from tollgate.stores.redis import RedisStore

__all__ = [
    "Charge",
    "CounterState",
    "Hold",
    "MemoryStore",
    "RedisStore",
    "Reservation",
    "SQLiteStore",
    "Store",
    "open_store",
]

_SCHEMES = (
    "'memory://', 'sqlite:///relative/path.db' ('sqlite:////absolute/path.db'), "
    "'redis://[[user]:password@]host:port/db', 'rediss://...' (TLS), 'unix:///path/to/redis.sock', "
    "'redis+cluster://host:port,host:port' or 'redis+sentinel://host:port,host:port/service/db'"
)

_REDIS_SCHEMES = tuple(f"{s}://" for s in ("redis", "rediss", "unix")) + tuple(
    f"{s}+{t}://" for s in ("redis", "rediss") for t in ("cluster", "sentinel")
)


def open_store(uri: str) -> Store:
    """The store a URI names.

    ``memory://`` (this process); ``sqlite:///rel/path.db`` for a file relative to the working
    directory, ``sqlite:////abs/path.db`` for an absolute one (the processes of one machine);
    ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs as redis-py reads them, and
    ``redis+cluster://`` (Redis Cluster) or ``redis+sentinel://`` (a primary found through
    Sentinel), ``rediss+...`` with TLS (many machines; needs the ``redis`` extra). Nothing
    connects to Redis until the store is first used.

    >>> type(open_store("memory://")).__name__
    'MemoryStore'
    >>> open_store("redis://:secret@cache:6379/0")
    RedisStore('redis://:***@cache:6379/0', prefix='tollgate')
    >>> open_store("mysql://db")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown store URI 'mysql://db': use 'memory://', 'sqlite:///relative/path.db' ...
    """
    if not isinstance(uri, str):
        raise ValueError(f"store URI must be a string like {_SCHEMES}, got {uri!r}")
    if uri == "memory://":
        return MemoryStore()
    if uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"):
        return SQLiteStore(uri[len("sqlite:///") :])
    if uri.startswith(_REDIS_SCHEMES):
        try:
            from tollgate.stores.redis import RedisStore
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] != "redis":
                raise
            where = uri.split("@")[-1]  # no password in the message
            fix = 'pip install "tollgate-llm[redis]"'
            message = f"the store {where!r} needs the redis package: {fix}"
            raise ModuleNotFoundError(message, name="redis") from None
        return RedisStore(uri)
    raise ValueError(f"unknown store URI {uri!r}: use {_SCHEMES}")


def __getattr__(name: str) -> Any:
    # RedisStore is imported on first use, so `import tollgate` never imports the redis package.
    if name == "RedisStore":
        from tollgate.stores.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
