"""A ledger that ships call records to an HTTP endpoint, in gzip-compressed JSON batches.

``write()`` only appends to a bounded in-memory queue; a daemon thread POSTs the queue in
batches, so no LLM call ever waits on the network. The server keeps the full history; this
process keeps only the latest ``keep`` records, so :func:`tollgate.report` still works here.

Wire format (see ``docs/http_sink.md``): one ``POST <url>`` per batch, body
``gzip(json({"records": [CallRecord.to_dict(), ...], "sent_at": <epoch seconds>,
"batch_id": "<32 hex>"}))``, headers ``Content-Type: application/json``,
``Content-Encoding: gzip``, ``User-Agent: tollgate/<version>``, ``Idempotency-Key: <batch_id>``
(the same on every retry of a batch, so a server can de-duplicate) plus the caller's headers.
Any 2xx acknowledges the batch.

**Retries.** Connection errors, timeouts, 408, 429 and 5xx are retried ``max_retries`` times
with exponential backoff and jitter (``backoff`` doubling up to ``max_backoff`` seconds); a
``Retry-After`` (seconds or HTTP date) on 429/503 is honoured, capped at ``max_backoff``.
Any other status (3xx: redirects are not followed; 4xx) drops the batch at once.

**Losses** are never raised: they are counted in ``dropped()`` (and by cause in ``stats()``)
and logged on the ``"tollgate"`` logger at most once per 10 seconds per cause, with counts and
statuses only: never record contents nor header values. A record is lost when the queue is
full (``max_queue``), when the server rejects its batch, when its batch exhausts its retries,
when it is written after ``close()``, or when ``close()`` gives up waiting for it.

**URI form.** ``open_ledger("https://host/path")`` (and so ``configure(ledger="https://...")``)
builds an ``HttpSink`` for that exact URL with headers read from the environment variable
``TOLLGATE_SINK_HEADERS``: a JSON object of header names to values, e.g.
``{"Authorization": "Bearer <token>"}``.

Proxies follow the usual ``HTTP(S)_PROXY`` / ``NO_PROXY`` environment variables (as
:mod:`urllib.request` does). Standard library only.
"""

from __future__ import annotations

import atexit
import email.utils
import gzip
import json
import math
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from tollgate.ledger.base import Ledger, logger
from tollgate.ledger.memory import MemoryLedger
from tollgate.request import CallRecord

#: The environment variable holding the headers (a JSON object) of an ``HttpSink`` opened by URI.
HEADERS_ENV = "TOLLGATE_SINK_HEADERS"

_LOG_EVERY = 10.0  # seconds between two log lines of the same cause
_RETRY_STATUSES = frozenset({408, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Headers the sink sets itself (lower case): a caller may not override them.
_RESERVED = frozenset(
    {"content-type", "content-encoding", "content-length", "transfer-encoding", "host", "idempotency-key"}
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header name (RFC 9110 token)


class Payload(Protocol):
    """What the sink sends: a :class:`~tollgate.CallRecord`, or anything else with a JSON form."""

    def to_dict(self) -> dict[str, Any]: ...


_OPEN: weakref.WeakSet[HttpSink] = weakref.WeakSet()  # closed (so flushed) at interpreter exit
_OPEN_LOCK = threading.Lock()


class HttpSink(Ledger):
    """Sends every record to ``url`` in batches from a background thread; keeps the latest locally.

    Use it as the ledger (``configure(ledger=HttpSink(url, headers))``) or as a hook next to
    another ledger (``configure(on_record=HttpSink(url, headers))``): calling the sink is
    :meth:`write`. ``write()`` never blocks on the network and never raises.

    - ``batch_size``: most records per POST; a smaller batch goes once its oldest record has
      waited ``flush_interval`` seconds (or at :meth:`flush` / :meth:`close`).
    - ``max_queue``: records waiting to be sent; beyond that, writes are dropped and counted.
    - ``max_retries``, ``backoff``, ``max_backoff``: see the module doc; ``timeout``: seconds
      per socket operation of one attempt.
    - ``keep``: how many of the latest records :meth:`records` serves locally (0: none). The
      server holds the full history; records falling out of this window are not "dropped".

    :meth:`close` (also run at interpreter exit, and by ``configure``/``reset`` when this is
    the configured ledger) sends what is queued, waiting up to ``timeout`` seconds; a sink used
    as an ``on_record`` hook is closed at exit only, or by you. A write after ``close()`` is
    dropped and counted (``stats()["dropped_closed"]``), not raised.

    >>> sink = HttpSink("https://ingest.example.com/v1/records", {"Authorization": "Bearer x"})
    >>> sink
    HttpSink('https://ingest.example.com/v1/records', queued=0, sent=0, dropped=0)
    >>> sink.close()
    >>> HttpSink("ftp://example.com")
    Traceback (most recent call last):
    ...
    ValueError: HttpSink url 'ftp://example.com': the scheme must be http or https, got 'ftp'
    """

    #: Headers describing the body :meth:`encode` makes.
    content_headers: ClassVar[dict[str, str]] = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        max_retries: int = 5,
        timeout: float = 10.0,
        keep: int = 10_000,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.url = _check_url(url)
        self._headers = _check_headers(headers)
        for name, count, least in (
            ("batch_size", batch_size, 1),
            ("max_queue", max_queue, 1),
            ("max_retries", max_retries, 0),
            ("keep", keep, 0),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < least:
                kind = "a positive int" if least else "an int >= 0"
                raise ValueError(f"HttpSink {name} must be {kind}, got {count!r}")
        for name, value, positive in (
            ("flush_interval", flush_interval, True),
            ("timeout", timeout, True),
            ("backoff", backoff, False),
            ("max_backoff", max_backoff, False),
        ):
            number = not isinstance(value, bool) and isinstance(value, (int, float))
            if not number or not math.isfinite(value) or value < 0 or (positive and value == 0):
                kind = "a number of seconds > 0" if positive else "a number of seconds >= 0"
                raise ValueError(f"HttpSink {name} must be {kind}, got {value!r}")
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.max_queue = max_queue
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.keep = keep
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._user_agent = _user_agent()
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._local = MemoryLedger(maxlen=keep) if keep else None
        self._init_state()
        with _OPEN_LOCK:
            _OPEN.add(self)

    def _init_state(self, *, closed: bool = False) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[float, Payload]] = deque()
        self._closed = self._stopping = closed
        self._abort = threading.Event()
        self._flushers = 0
        self._accepted = 0  # records ever put on the queue
        self._done = 0  # of those, records sent or dropped (the worker takes them in order)
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._last_log: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="tollgate-http-sink", daemon=True)
        if closed:
            self._abort.set()
        else:
            self._thread.start()

    # -- the hot path -------------------------------------------------------------------------

    def write(self, record: CallRecord) -> None:
        """Queue ``record`` for sending (and keep it locally). Never blocks on I/O, never raises."""
        if self._local is not None:
            self._local.write(record)
        self.enqueue(record)

    def enqueue(self, payload: Payload) -> None:
        """Queue anything with a ``to_dict()`` (a record; an alert, for a webhook) for sending."""
        item = (time.monotonic(), payload)  # made JSON by the sender thread, off the call's path
        with self._cond:
            if self._closed:
                cause = "dropped_closed"
            elif len(self._queue) >= self.max_queue:
                cause = "dropped_queue_full"
            else:
                self._queue.append(item)
                self._accepted += 1
                if len(self._queue) == 1 or len(self._queue) == self.batch_size:
                    self._cond.notify_all()
                return
        reason = (
            "written after close()" if cause == "dropped_closed" else f"the queue is full ({self.max_queue})"
        )
        self._lose(cause, 1, reason)

    __call__ = write

    # -- reading and housekeeping -------------------------------------------------------------

    def records(self, since: float | None = None, until: float | None = None) -> list[CallRecord]:
        """The latest ``keep`` records written in this process (the server has the full history)."""
        if self._local is None:
            return []
        return self._local.records(since, until)

    def dropped(self) -> int:
        """Records lost, whatever the cause (see :meth:`stats`)."""
        with self._cond:
            return sum(self._counts[k] for k in _COUNTERS if k.startswith("dropped_"))

    def sent(self) -> int:
        """Records acknowledged by the server (a 2xx answer to their batch)."""
        with self._cond:
            return self._counts["sent"]

    def stats(self) -> dict[str, int]:
        """Counters: ``sent``, ``batches`` (acknowledged), ``retries``, ``queued`` (waiting now),
        ``dropped`` (total) and its causes ``dropped_queue_full``, ``dropped_rejected`` (a 3xx or
        4xx answer), ``dropped_retries_exhausted``, ``dropped_closed``, ``dropped_invalid``.

        >>> sink = HttpSink("http://127.0.0.1:9/records")
        >>> sink.stats()["sent"], sink.stats()["dropped"]
        (0, 0)
        >>> sink.close()
        """
        with self._cond:
            out = dict(self._counts)
            out["queued"] = len(self._queue)
        out["dropped"] = sum(v for k, v in out.items() if k.startswith("dropped_"))
        return out

    def clear(self) -> None:
        """Forget the local records and reset the counters; queued records are still sent."""
        if self._local is not None:
            self._local.clear()
        with self._cond:
            self._counts = dict.fromkeys(_COUNTERS, 0)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout`` seconds) until every record written before is sent or dropped.

        Sends a partial batch at once instead of waiting for ``flush_interval``. Returns early
        (the records stay queued, and a warning is logged) if the server is too slow.
        """
        if threading.current_thread() is self._thread:
            return
        if not self._wait_done(timeout):
            logger.warning(
                "tollgate HttpSink %s: flush() gave up after %.1f s with records still queued",
                _safe_url(self.url),
                timeout,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting up to ``timeout`` seconds), then stop. Idempotent.

        Records still unsent when the wait ends are dropped and counted (``dropped_closed``).
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._wait_done(timeout)
        self._abort.set()  # no more retries nor backoff sleeps
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(self.timeout + 1.0)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self._done += left
            self._cond.notify_all()
        if left:
            self._lose("dropped_closed", left, "still queued when close() stopped waiting")
        with _OPEN_LOCK:
            _OPEN.discard(self)

    def __repr__(self) -> str:
        s = self.stats()
        state = "closed" if self._closed else f"queued={s['queued']}"
        return f"HttpSink({_safe_url(self.url)!r}, {state}, sent={s['sent']}, dropped={s['dropped']})"

    @classmethod
    def from_env(cls, url: str, **options: Any) -> HttpSink:
        """A sink for ``url`` with the headers in ``$TOLLGATE_SINK_HEADERS`` (a JSON object).

        >>> import os
        >>> os.environ["TOLLGATE_SINK_HEADERS"] = "Bearer t0ken"
        >>> HttpSink.from_env("https://ingest.example.com/v1/records")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: $TOLLGATE_SINK_HEADERS is not valid JSON: it must be an object of header names to ...
        >>> os.environ["TOLLGATE_SINK_HEADERS"] = '{"Authorization": "Bearer t0ken"}'
        >>> sink = HttpSink.from_env("https://ingest.example.com/v1/records")
        >>> sink.close(); del os.environ["TOLLGATE_SINK_HEADERS"]
        """
        raw = os.environ.get(HEADERS_ENV, "").strip()
        headers: Any = None
        if raw:
            try:
                headers = json.loads(raw)
            except ValueError:
                raise ValueError(
                    f"${HEADERS_ENV} is not valid JSON: it must be an object of header names to "
                    'values, like {"Authorization": "Bearer <token>"}'
                ) from None
            if not isinstance(headers, dict):
                raise ValueError(f"${HEADERS_ENV} must be a JSON object of header names to values")
        return cls(url, headers, **options)

    # -- the sender thread --------------------------------------------------------------------

    def _wait_done(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            target = self._accepted
            self._flushers += 1
            self._cond.notify_all()
            try:
                while self._done < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(min(remaining, 0.5))
                return True
            finally:
                self._flushers -= 1

    def _run(self) -> None:
        while True:
            try:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._send(batch)
                finally:
                    with self._cond:
                        self._done += len(batch)
                        self._cond.notify_all()
            except Exception:  # the sender must survive anything
                logger.exception("tollgate HttpSink %s: unexpected error in the sender", _safe_url(self.url))

    def _next_batch(self) -> list[Payload] | None:
        """The next batch to send, once one is due; None when the sink is stopping."""
        with self._cond:
            while True:
                if self._abort.is_set() or (self._stopping and not self._queue):
                    return None
                if self._queue:
                    hurry = self._closed or self._flushers > 0 or len(self._queue) >= self.batch_size
                    wait = self.flush_interval - (time.monotonic() - self._queue[0][0])
                    if hurry or wait <= 0:
                        count = min(self.batch_size, len(self._queue))
                        return [self._queue.popleft()[1] for _ in range(count)]
                    self._cond.wait(wait)
                else:
                    self._cond.wait(max(self.flush_interval, 1.0))

    def _send(self, batch: list[Payload]) -> None:
        records = []
        for record in batch:
            try:
                records.append(record.to_dict())
            except Exception as exc:
                reason = f"a record could not be converted to a dict ({type(exc).__name__})"
                self._lose("dropped_invalid", 1, reason)
        if not records:
            return
        batch_id = uuid.uuid4().hex
        body = self.encode(records, batch_id)
        if body is None:
            return
        headers = {
            **self.content_headers,
            "User-Agent": self._user_agent,
            **self._headers,
            "Idempotency-Key": batch_id,
        }
        n = len(records)
        attempt = 0
        while True:
            status, retry_after, problem = self._post(body, headers)
            if status is not None and 200 <= status < 300:
                with self._cond:
                    self._counts["sent"] += n
                    self._counts["batches"] += 1
                return
            retriable = status is None or status in _RETRY_STATUSES or status >= 500
            if not retriable:
                self._lose("dropped_rejected", n, f"the server rejected a batch with {problem}")
                return
            if self._abort.is_set():
                self._lose("dropped_closed", n, f"close() stopped retrying after {problem}")
                return
            if attempt >= self.max_retries:
                self._lose(
                    "dropped_retries_exhausted",
                    n,
                    f"a batch failed {attempt + 1} attempt(s), last: {problem}",
                )
                return
            delay = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = min(self.max_backoff, retry_after)
            attempt += 1
            with self._cond:
                self._counts["retries"] += 1
            if self._abort.wait(delay):
                self._lose("dropped_closed", n, f"close() stopped retrying after {problem}")
                return

    def encode(self, records: list[dict[str, Any]], batch_id: str) -> bytes | None:
        """The body of one POST (a subclass may shape it otherwise, with its ``content_headers``)."""
        payload: dict[str, Any] = {"records": records, "sent_at": time.time(), "batch_id": batch_id}
        try:
            text = json.dumps(payload, default=str, separators=(",", ":"))
        except (TypeError, ValueError):  # a circular structure in some record's tags or decisions
            good = []
            for r in records:
                try:
                    json.dumps(r, default=str)
                    good.append(r)
                except (TypeError, ValueError):
                    self._lose("dropped_invalid", 1, "a record could not be encoded as JSON")
            if not good:
                return None
            payload["records"] = good
            text = json.dumps(payload, default=str, separators=(",", ":"))
        return gzip.compress(text.encode("utf-8"), compresslevel=6)

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, float | None, str]:
        """One attempt: (HTTP status or None, Retry-After seconds or None, what happened)."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
                status = int(response.status)
                return status, None, f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            with exc:
                status = int(exc.code)
                retry_after = None
                if status in _RETRY_AFTER_STATUSES:
                    retry_after = _retry_after(exc.headers.get("Retry-After"))
                return status, retry_after, f"HTTP {status} {exc.reason}"
        except urllib.error.URLError as exc:
            reason = exc.reason
            what = type(reason).__name__ if isinstance(reason, BaseException) else str(reason)
            return None, None, f"a connection error ({what})"
        except TimeoutError:
            return None, None, f"a timeout ({self.timeout:g} s)"
        except Exception as exc:  # http.client.HTTPException, OSError, ssl errors...
            return None, None, f"a connection error ({type(exc).__name__})"

    def _lose(self, cause: str, count: int, reason: str) -> None:
        now = time.monotonic()
        with self._cond:
            self._counts[cause] += count
            total = sum(v for k, v in self._counts.items() if k.startswith("dropped_"))
            should_log = now - self._last_log.get(cause, -_LOG_EVERY) >= _LOG_EVERY
            if should_log:
                self._last_log[cause] = now
        if should_log:
            logger.error(
                "tollgate HttpSink %s lost %d record(s): %s (%d lost so far; further losses of this "
                "kind are logged at most every %d s)",
                _safe_url(self.url),
                count,
                reason,
                total,
                _LOG_EVERY,
            )

    def _after_fork(self) -> None:
        # The parent's sender thread did not survive the fork, and its lock may be held forever.
        # The queued records are the parent's to send; the child starts afresh.
        self._init_state(closed=self._closed)


_COUNTERS = (
    "sent",
    "batches",
    "retries",
    "dropped_queue_full",
    "dropped_rejected",
    "dropped_retries_exhausted",
    "dropped_closed",
    "dropped_invalid",
)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed (the caller's headers, a token maybe, must not go elsewhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> urllib.request.Request | None:
        return None


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise ValueError(f"HttpSink url must be a string, got {url!r}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"HttpSink url {_safe_url(url)!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"HttpSink url {_safe_url(url)!r}: the scheme must be http or https, got {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ValueError(f"HttpSink url {_safe_url(url)!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "HttpSink url must not carry credentials (user:password@): pass them in headers, "
            'e.g. {"Authorization": "Basic ..."}'
        )
    if any(c in url for c in " \r\n\t"):
        raise ValueError(f"HttpSink url {_safe_url(url)!r} contains whitespace")
    return url


def _check_headers(headers: object) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValueError(f"HttpSink headers must be a mapping of str to str, got {type(headers).__name__}")
    out: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"HttpSink headers: {name!r} is not a valid header name")
        if not isinstance(value, str):
            # The value may be a secret: name its type only.
            raise ValueError(
                f"HttpSink headers: the value of {name!r} must be a str, got {type(value).__name__}"
            )
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"HttpSink headers: the value of {name!r} contains a line break or NUL")
        if name.lower() in _RESERVED:
            raise ValueError(f"HttpSink headers: {name!r} is set by the sink and cannot be overridden")
        if name.lower() in seen:
            raise ValueError(f"HttpSink headers: {name!r} is given twice (header names ignore case)")
        seen.add(name.lower())
        out[name] = value
    return out


def _safe_url(url: str) -> str:
    """The URL without credentials, query nor fragment (which may hold a token), for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if not parts.scheme:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None.

    >>> _retry_after("3"), _retry_after("soon"), _retry_after(None)
    (3.0, None, None)
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _user_agent() -> str:
    try:
        from tollgate import __version__ as version
    except ImportError:  # tollgate itself still importing
        version = "unknown"
    return f"tollgate/{version}"


def _close_all() -> None:
    with _OPEN_LOCK:
        sinks = list(_OPEN)
    for sink in sinks:
        try:
            sink.close()
        except Exception:
            logger.exception("tollgate could not close %r at exit", sink)


def _after_fork_in_child() -> None:
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()
    for sink in list(_OPEN):
        sink._after_fork()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
