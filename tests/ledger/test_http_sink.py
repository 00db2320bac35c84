"""HttpSink against a real local HTTP server: batching, wire format, retries, losses, flush/close."""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tollgate
import tollgate.ledger
from tollgate.config import settings
from tollgate.ledger import HttpSink, MemoryLedger, open_ledger
from tollgate.request import CallRecord, Usage

ROOT = str(Path(tollgate.ledger.__file__).parents[2])
TOKEN = "Bearer s3cr3t-t0ken"
FAST = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 2.0}


def rec(id: str, started_at: float = 0.0, **kw: Any) -> CallRecord:
    fields: dict[str, Any] = {"provider": "openai", "operation": "chat", "request_model": "gpt-4o", **kw}
    return CallRecord(id=id, started_at=started_at, ended_at=started_at + 1, **fields)


class Server:
    """A scriptable ingest endpoint. ``script`` holds what the next requests get: a status
    (int), ``(status, headers)``, or ``"hang"`` (no answer until :meth:`release`); once it is
    empty, every request gets 200. ``requests`` has every request; ``batches`` the accepted ones."""

    def __init__(self) -> None:
        self.script: deque[int | tuple[int, dict[str, str]] | str] = deque()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = (
                    json.loads(gzip.decompress(raw)) if self.headers["Content-Encoding"] == "gzip" else None
                )
                with outer.lock:
                    action = outer.script.popleft() if outer.script else 200
                    entry = {
                        "time": time.monotonic(),
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "action": action,
                    }
                    outer.requests.append(entry)
                if action == "hang":
                    outer.released.wait(10)
                    action = 200
                status, headers = action if isinstance(action, tuple) else (int(action), {})
                entry["status"] = status
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/ingest"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def batches(self) -> list[dict[str, Any]]:
        """Bodies of the requests answered 2xx."""
        with self.lock:
            return [r["body"] for r in self.requests if 200 <= r.get("status", 0) < 300]

    def ids(self) -> list[str]:
        return [r["id"] for b in self.batches for r in b["records"]]

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TOLLGATE_SINK_HEADERS", raising=False)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def make_sink() -> Iterator[Callable[..., HttpSink]]:
    made: list[HttpSink] = []

    def make(url: str, headers: dict[str, str] | None = None, **options: Any) -> HttpSink:
        sink = HttpSink(url, headers, **{**FAST, **options})
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close(timeout=2)


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- wire format and batching -----------------------------------------------------------------


def test_batches_are_gzip_json_with_headers(server: Server, make_sink: Callable[..., HttpSink]) -> None:
    sink = make_sink(server.url, {"Authorization": TOKEN, "X-Team": "ml"}, batch_size=10, flush_interval=30)
    written = [
        rec(
            f"c{i}",
            float(i),
            usd=0.001 * i,
            usage=Usage(input_tokens=i, output_tokens=2 * i),
            tool_calls=i % 3,
        )
        for i in range(25)
    ]
    for r in written:
        sink.write(r)
    wait_for(lambda: len(server.batches) == 2)  # two full batches go without waiting
    time.sleep(0.1)
    assert len(server.batches) == 2  # the 5 left wait for flush_interval (30 s) or flush()
    sink.flush()
    assert [len(b["records"]) for b in server.batches] == [10, 10, 5]
    for req in server.requests:
        body, headers = req["body"], req["headers"]
        assert req["path"] == "/ingest"
        assert set(body) == {"records", "sent_at", "batch_id"}
        assert abs(body["sent_at"] - time.time()) < 60
        assert headers["content-type"] == "application/json"
        assert headers["content-encoding"] == "gzip"
        assert headers["user-agent"] == f"tollgate/{tollgate.__version__}"
        assert headers["idempotency-key"] == body["batch_id"]
        assert headers["authorization"] == TOKEN
        assert headers["x-team"] == "ml"
    assert len({b["batch_id"] for b in server.batches}) == 3
    assert [r["tool_calls"] for b in server.batches for r in b["records"]] == [i % 3 for i in range(25)]
    received = [CallRecord.from_dict(r) for b in server.batches for r in b["records"]]
    assert [r.to_dict() for r in received] == [r.to_dict() for r in written]
    assert sink.sent() == 25
    stats = sink.stats()
    assert stats["batches"] == 3 and stats["dropped"] == 0 and stats["retries"] == 0 and stats["queued"] == 0


def test_a_partial_batch_goes_after_flush_interval(
    server: Server, make_sink: Callable[..., HttpSink]
) -> None:
    sink = make_sink(server.url, batch_size=100, flush_interval=0.1)
    for i in range(3):
        sink(rec(f"c{i}"))  # calling the sink is write()
    wait_for(lambda: sink.sent() == 3)  # no flush() needed
    assert server.ids() == ["c0", "c1", "c2"]


def test_a_record_that_cannot_be_made_json_is_dropped_and_counted_by_the_sender(
    server: Server, make_sink: Callable[..., HttpSink]
) -> None:
    sink = make_sink(server.url, batch_size=10)
    broken = rec("broken", usage=None)  # to_dict() fails on it: made JSON in the sender, not in write()
    for r in (rec("c0"), broken, rec("c1")):
        sink.write(r)  # never raises
    sink.flush()
    assert server.ids() == ["c0", "c1"]
    stats = sink.stats()
    assert (stats["sent"], stats["dropped_invalid"], stats["dropped"]) == (2, 1, 1)


# -- retries ----------------------------------------------------------------------------------


def test_retry_then_success_delivers_once_with_a_stable_idempotency_key(
    server: Server, make_sink: Callable[..., HttpSink]
) -> None:
    server.script.extend([500, 502, 408])
    sink = make_sink(server.url, {"Authorization": TOKEN})
    for i in range(5):
        sink.write(rec(f"c{i}"))
    sink.flush()
    assert len(server.requests) == 4
    keys = {r["headers"]["idempotency-key"] for r in server.requests}
    batch_ids = {r["body"]["batch_id"] for r in server.requests}
    assert len(keys) == 1 and keys == batch_ids
    assert server.ids() == [f"c{i}" for i in range(5)]  # accepted exactly once
    assert sink.stats()["retries"] == 3
    assert (sink.sent(), sink.dropped()) == (5, 0)


def test_retry_after_is_honoured(server: Server, make_sink: Callable[..., HttpSink]) -> None:
    server.script.extend([(429, {"Retry-After": "1"}), (503, {"Retry-After": "0"})])
    sink = make_sink(server.url, max_backoff=5)
    sink.write(rec("c0"))
    sink.flush()
    first, second, third = (r["time"] for r in server.requests)
    assert second - first >= 0.9  # waited as told, not the 10 ms backoff
    assert third - second < 0.9
    assert sink.sent() == 1


def test_retry_after_is_capped(server: Server, make_sink: Callable[..., HttpSink]) -> None:
    server.script.append((429, {"Retry-After": "3600"}))
    sink = make_sink(server.url, max_backoff=0.05)
    sink.write(rec("c0"))
    sink.flush(timeout=5)
    assert sink.sent() == 1 and len(server.requests) == 2


def test_a_timeout_is_retried(server: Server, make_sink: Callable[..., HttpSink]) -> None:
    server.script.append("hang")
    sink = make_sink(server.url, timeout=0.2)
    sink.write(rec("c0"))
    sink.flush()
    assert sink.sent() == 1 and sink.stats()["retries"] == 1
    assert len({r["headers"]["idempotency-key"] for r in server.requests}) == 1


# -- losses -----------------------------------------------------------------------------------


def test_a_4xx_drops_the_batch_without_retry(
    server: Server, make_sink: Callable[..., HttpSink], caplog: pytest.LogCaptureFixture
) -> None:
    server.script.append(400)
    sink = make_sink(server.url, {"Authorization": TOKEN})
    with caplog.at_level(logging.ERROR, logger="tollgate"):
        for i in range(4):
            sink.write(rec(f"secret-record-{i}", tags={"tenant": "acme-private"}))
        sink.flush()
    assert len(server.requests) == 1
    assert sink.dropped() == 4 and sink.stats()["dropped_rejected"] == 4 and sink.sent() == 0
    assert "400" in caplog.text and "lost 4 record(s)" in caplog.text
    for secret in ("s3cr3t", "secret-record", "acme-private"):
        assert secret not in caplog.text


def test_a_redirect_is_not_followed(server: Server, make_sink: Callable[..., HttpSink]) -> None:
    server.script.append((302, {"Location": "http://127.0.0.1:1/elsewhere"}))
    sink = make_sink(server.url, {"Authorization": TOKEN})
    sink.write(rec("c0"))
    sink.flush()
    assert len(server.requests) == 1 and sink.stats()["dropped_rejected"] == 1


def test_exhausted_retries_drop_the_batch(
    server: Server, make_sink: Callable[..., HttpSink], caplog: pytest.LogCaptureFixture
) -> None:
    server.script.extend([500] * 10)
    sink = make_sink(server.url, max_retries=2)
    with caplog.at_level(logging.ERROR, logger="tollgate"):
        for i in range(3):
            sink.write(rec(f"c{i}"))
        sink.flush()
    assert len(server.requests) == 3  # one attempt and two retries
    assert sink.dropped() == 3 and sink.stats()["dropped_retries_exhausted"] == 3
    assert "3 attempt(s)" in caplog.text and "HTTP 500" in caplog.text
    # The next batch starts afresh.
    server.script.clear()
    sink.write(rec("c3"))
    sink.flush()
    assert server.ids() == ["c3"] and sink.sent() == 1


def test_a_server_that_is_down(make_sink: Callable[..., HttpSink]) -> None:
    sink = make_sink(f"http://127.0.0.1:{free_port()}/ingest", max_retries=1)
    for i in range(3):
        sink.write(rec(f"c{i}"))
    sink.flush()
    assert sink.stats()["dropped_retries_exhausted"] == 3 and sink.stats()["retries"] == 1


def test_writes_do_not_block_on_a_hung_server_and_a_full_queue_drops(
    server: Server, make_sink: Callable[..., HttpSink], caplog: pytest.LogCaptureFixture
) -> None:
    server.script.append("hang")
    sink = make_sink(server.url, batch_size=5, max_queue=10, flush_interval=0.01, timeout=5)
    with caplog.at_level(logging.ERROR, logger="tollgate"):
        sink.write(rec("first"))
        wait_for(lambda: len(server.requests) == 1)  # the first batch is now stuck on the server
        for i in range(1000):
            sink.write(rec(f"c{i}"))
        # Every write returned while the server still holds the first batch unanswered.
        with server.lock:
            assert "status" not in server.requests[0]
    stats = sink.stats()
    # 10 wait in the queue while the sender is stuck on the first batch; the rest is dropped.
    assert stats["dropped_queue_full"] == sink.dropped() == 990 and stats["queued"] == 10
    assert caplog.text.count("the queue is full") == 1  # logged once, not per record
    server.release()
    sink.flush()
    assert sink.sent() == 11
    assert server.ids() == ["first"] + [f"c{i}" for i in range(10)]


def test_concurrent_writers_lose_nothing(server: Server, make_sink: Callable[..., HttpSink]) -> None:
    sink = make_sink(server.url, batch_size=50, flush_interval=0.05)
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(250):
            sink.write(rec(f"t{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    sink.flush()
    ids = server.ids()
    assert len(ids) == len(set(ids)) == 2000
    assert all(len(b["records"]) <= 50 for b in server.batches)
    assert (sink.sent(), sink.dropped()) == (2000, 0)
    assert len(sink.records()) == 2000


# -- flush, close, the local copy -------------------------------------------------------------


def test_close_delivers_everything_and_is_idempotent(server: Server) -> None:
    sink = HttpSink(server.url, batch_size=100, flush_interval=30, **FAST)
    for i in range(7):
        sink.write(rec(f"c{i}"))
    sink.close()
    assert server.ids() == [f"c{i}" for i in range(7)]
    sink.close()
    sink.write(rec("late"))  # dropped and counted, never raised
    assert sink.dropped() == 1 and sink.stats()["dropped_closed"] == 1
    assert "closed" in repr(sink)
    sink.flush()  # a no-op


def test_close_gives_up_on_a_hung_server_and_counts(server: Server) -> None:
    server.script.append("hang")
    sink = HttpSink(server.url, batch_size=2, flush_interval=30, timeout=0.3, backoff=0.01)
    for i in range(5):
        sink.write(rec(f"c{i}"))
    wait_for(lambda: len(server.requests) == 1)  # the first batch is stuck on the server
    sink.close(timeout=0.1)
    with server.lock:  # close() returned while the server still holds the batch unanswered
        assert "status" not in server.requests[0]
    wait_for(lambda: sink.stats()["dropped"] == 5)
    assert sink.stats()["dropped_closed"] == 5 and sink.sent() == 0


def test_records_are_served_locally_and_clear_resets(
    server: Server, make_sink: Callable[..., HttpSink]
) -> None:
    sink = make_sink(server.url, keep=3)
    for i in range(5):
        sink.write(rec(f"c{i}", float(i)))
    assert [r.id for r in sink.records()] == ["c2", "c3", "c4"]
    assert [r.id for r in sink.records(since=3.0, until=4.0)] == ["c3"]
    sink.flush()
    assert len(server.ids()) == 5 and sink.dropped() == 0  # leaving the local window is no loss
    sink.clear()
    assert sink.records() == [] and sink.sent() == 0 and sink.stats()["batches"] == 0
    assert make_sink(server.url, keep=0).records() == []


# -- tollgate integration ---------------------------------------------------------------------


def _chat() -> CallRecord:
    from tollgate.demo import offline_client

    pytest.importorskip("openai")
    client = offline_client()
    with tollgate.track(feature="sink-test"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return settings().ledger.records()[-1]


def test_configure_ledger_by_uri_end_to_end(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_SINK_HEADERS", json.dumps({"Authorization": TOKEN}))
    tollgate.configure(ledger=server.url)
    sink = settings().ledger
    assert isinstance(sink, HttpSink) and sink.url == server.url
    record = _chat()
    sink.flush()
    [batch] = server.batches
    [sent] = batch["records"]
    assert sent["id"] == record.id and sent["usd"] == record.usd > 0
    assert sent["usage"]["input_tokens"] == record.usage.input_tokens > 0
    assert sent["usage"]["output_tokens"] == record.usage.output_tokens > 0
    assert sent["tags"] == {"feature": "sink-test"} and sent["request_model"] == "gpt-4o-mini"
    assert server.requests[0]["headers"]["authorization"] == TOKEN
    report = tollgate.report(group_by="feature")
    assert report.total["calls"] == 1 and report.total["usd"] == pytest.approx(record.usd)
    tollgate.reset()  # closes the sink
    assert "closed" in repr(sink)


def test_as_an_on_record_hook_next_to_the_memory_ledger(
    server: Server, make_sink: Callable[..., HttpSink]
) -> None:
    sink = make_sink(server.url, {"Authorization": TOKEN})
    tollgate.configure(on_record=sink)
    assert isinstance(settings().ledger, MemoryLedger)
    record = _chat()
    sink.flush()
    assert server.ids() == [record.id]
    assert server.batches[0]["records"][0]["usd"] == record.usd
    assert tollgate.report().total["calls"] == 1


def test_open_ledger_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = open_ledger("https://ingest.example.com/v1/records?team=ml")
    assert isinstance(sink, HttpSink) and sink.url == "https://ingest.example.com/v1/records?team=ml"
    sink.close()
    monkeypatch.setenv("TOLLGATE_SINK_HEADERS", "Bearer oops")
    with pytest.raises(ValueError, match="TOLLGATE_SINK_HEADERS is not valid JSON") as info:
        open_ledger("http://127.0.0.1:1/x")
    assert "oops" not in str(info.value)
    monkeypatch.setenv("TOLLGATE_SINK_HEADERS", '["a"]')
    with pytest.raises(ValueError, match="must be a JSON object"):
        open_ledger("http://127.0.0.1:1/x")
    with pytest.raises(ValueError, match="'https://' / 'http://'"):
        open_ledger("ftp://x")


@pytest.mark.parametrize(
    ("url", "headers", "options", "message"),
    [
        ("ftp://x.example/a", None, {}, "scheme must be http or https"),
        ("ingest.example.com/a", None, {}, "scheme must be http or https"),
        ("https:///a", None, {}, "has no host"),
        ("https://u:p@x.example/a", None, {}, "must not carry credentials"),
        ("https://x.example:port/a", None, {}, "not a valid URL"),
        (42, None, {}, "url must be a string"),
        ("https://x.example", ["Authorization"], {}, "headers must be a mapping"),
        ("https://x.example", {"Authorization": 1}, {}, "must be a str, got int"),
        ("https://x.example", {"Bad Name": "v"}, {}, "not a valid header name"),
        ("https://x.example", {"X-A": "v\r\nX-B: w"}, {}, "line break"),
        ("https://x.example", {"Content-Encoding": "br"}, {}, "set by the sink"),
        ("https://x.example", {"idempotency-key": "k"}, {}, "set by the sink"),
        ("https://x.example", None, {"batch_size": 0}, "batch_size must be a positive int"),
        ("https://x.example", None, {"batch_size": 2.5}, "batch_size must be a positive int"),
        ("https://x.example", None, {"max_queue": 0}, "max_queue must be a positive int"),
        ("https://x.example", None, {"max_retries": -1}, "max_retries must be an int >= 0"),
        ("https://x.example", None, {"keep": -1}, "keep must be an int >= 0"),
        ("https://x.example", None, {"timeout": -1}, "timeout must be a number of seconds > 0"),
        ("https://x.example", None, {"timeout": 0}, "timeout must be a number of seconds > 0"),
        ("https://x.example", None, {"flush_interval": float("nan")}, "flush_interval must be"),
        ("https://x.example", None, {"backoff": -0.1}, "backoff must be a number of seconds >= 0"),
        ("https://x.example", None, {"max_backoff": True}, "max_backoff must be"),
    ],
)
def test_bad_arguments_are_named(url: Any, headers: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        HttpSink(url, headers, **options)
    assert "s3cr3t" not in str(info.value)


def test_a_secret_header_value_is_never_echoed() -> None:
    with pytest.raises(ValueError) as info:
        HttpSink("https://x.example", {"Authorization": "Bearer s3cr3t\n"})
    assert "s3cr3t" not in str(info.value)
    sink = HttpSink("https://x.example/p?token=s3cr3t", {"Authorization": TOKEN})
    assert "s3cr3t" not in repr(sink)
    sink.close()


def test_records_queued_at_exit_are_sent(server: Server) -> None:
    code = (
        "import tollgate\n"
        "from tollgate.request import CallRecord\n"
        f"tollgate.configure(on_record=tollgate.ledger.HttpSink({server.url!r}, flush_interval=60))\n"
        "from tollgate.config import settings\n"
        "for i in range(3):\n"
        "    settings().on_record[0](CallRecord(id=f'exit{i}', started_at=0.0, ended_at=1.0,\n"
        "        provider='openai', operation='chat', request_model='gpt-4o'))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )
    assert server.ids() == ["exit0", "exit1", "exit2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_its_own_records(server: Server, make_sink: Callable[..., HttpSink]) -> None:
    sink = make_sink(server.url, flush_interval=60)
    sink.write(rec("parent"))
    pid = os.fork()
    if pid == 0:  # the child: the parent's sender thread is gone; the sink starts a new one
        try:
            sink.write(rec("child"))
            sink.close(timeout=5)
            os._exit(0 if sink.sent() == 1 else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sink.flush()
    assert sorted(server.ids()) == ["child", "parent"]
