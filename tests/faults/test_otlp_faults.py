"""An OTLP backend that is down or never answers: the application's calls do not notice.

``tollgate.otel.setup()`` installs process-wide providers, so each scenario runs in a fresh
Python process that makes gated calls (the real OpenAI SDK over ``httpx.MockTransport``,
wrapped by ``tollgate.instrument``, under a budget) while its spans are exported to a closed
port or to a socket that accepts connections and never answers. The child reports what it
saw as JSON; the parent also times how long the child takes to exit, since the SDK flushes
at interpreter exit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import ROOT

pytest.importorskip("openai")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")

CALLS = 400
#: What the tests allow for one call (the backend takes 10 s or forever), or for the child to
#: exit after its last call (the SDK's own shutdown waited 30 s for spans, then ~10 s for metrics).
CALL_BOUND = 1.0
EXIT_BOUND = 6.0

CHILD = textwrap.dedent(
    """
    import atexit, json, sys, time
    import httpx, openai, tollgate, tollgate.otel

    options = json.loads(sys.argv[1])
    calls = options.pop("calls")
    settle_for = options.pop("settle_for")
    # Registered first, so it runs last at exit: what was dropped once everything shut down.
    atexit.register(lambda: print(json.dumps({"final_dropped": tollgate.otel.dropped_spans()}), flush=True))
    providers = tollgate.otel.setup(service_name="faults", **options)
    assert providers.span_processor is not None
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 25, "completion_tokens": 2, "total_tokens": 27},
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    client = tollgate.instrument(
        openai.OpenAI(api_key="sk-test", max_retries=0, http_client=httpx.Client(transport=transport))
    )

    def ask():
        return client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "Capital of France?"}]
        )

    errors, worst, most_queued = [], 0.0, 0
    with tollgate.budget(usd=100):
        ask()  # warm-up: tokenizer files, SDK imports
        began = time.monotonic()
        for _ in range(calls):
            started = time.monotonic()
            try:
                answer = ask()
                assert answer.choices[0].message.content == "Paris."
            except BaseException as exc:
                errors.append(repr(exc))
            worst = max(worst, time.monotonic() - started)
            most_queued = max(most_queued, providers.span_processor.queued)
        elapsed = time.monotonic() - began
    time.sleep(settle_for)
    records = tollgate.config.settings().ledger.records()
    print(json.dumps({
        "errors": errors,
        "worst": worst,
        "elapsed": elapsed,
        "most_queued": most_queued,
        "max_queue_size": providers.span_processor.max_queue_size,
        "records": len(records),
        "ok": sum(r.status == "ok" for r in records),
        "dropped": {r: tollgate.otel.dropped_spans(r) for r in ("queue_full", "export_failed", "shutdown")},
    }), flush=True)
    """
)


@contextmanager
def never_answers() -> Iterator[str]:
    """A loopback address that accepts TCP connections (the kernel's backlog) and never replies."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def closed_port() -> str:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_child(options: dict[str, Any], **env: str) -> tuple[dict[str, Any], int, float]:
    """Run the app; its report, its final dropped count, and the seconds it took to exit."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(options)],
        cwd=ROOT,
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        last_call = time.monotonic()
        out, err = child.communicate(timeout=60)
        exited = time.monotonic() - last_call
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert "Traceback" not in err, err
    assert line, err
    final = json.loads(out.strip().splitlines()[-1])["final_dropped"]
    return json.loads(line), final, exited


def check_calls_unaffected(report: dict[str, Any], queue: int) -> None:
    assert report["errors"] == []
    assert report["records"] == CALLS + 1 and report["ok"] == CALLS + 1
    assert report["worst"] < CALL_BOUND, report["worst"]
    assert report["max_queue_size"] == queue
    assert report["most_queued"] <= queue


def test_backend_that_never_answers_costs_the_calls_nothing_and_drops_are_counted() -> None:
    with never_answers() as url:
        report, final, exited = run_child(
            {
                "endpoint": url,
                "calls": CALLS,
                "max_queue_size": 50,
                "export_timeout": 0.5,
                "shutdown_timeout": 1.0,
                "settle_for": 1.5,  # long enough for the first export to time out
            }
        )
    check_calls_unaffected(report, queue=50)
    dropped = report["dropped"]
    # The first batch (at most 50 spans) is stuck in an export and 50 more fill the queue; every
    # other span is refused at the door, and counted, instead of piling up in memory. Each
    # export that times out (every 0.5 s) lets one more batch of 50 leave the queue while the
    # calls run (a slow machine runs the 400 calls in more than 0.5 s).
    batches = 2 + int(report["elapsed"] // 0.5)
    assert dropped["queue_full"] >= CALLS + 1 - batches * 50, (dropped, report["elapsed"])
    # export_timeout=0.5 s: the stuck export gave up (the exporter's default is 10 s) and its
    # spans were counted as lost.
    assert dropped["export_failed"] >= 1
    assert exited < EXIT_BOUND, exited
    # Nothing reached the backend: at most the spans of one export still in flight at exit are
    # not counted yet.
    assert CALLS + 1 - 50 <= final <= CALLS + 1


def test_closed_port_with_limits_from_the_environment() -> None:
    report, final, exited = run_child(
        {"endpoint": closed_port(), "calls": CALLS, "settle_for": 0.0, "shutdown_timeout": 1.0},
        OTEL_BSP_MAX_QUEUE_SIZE="64",
        OTEL_BSP_EXPORT_TIMEOUT="1500",  # the SDK's processor ignores it; tollgate.otel does not
        OTEL_METRIC_EXPORT_TIMEOUT="1500",
    )
    check_calls_unaffected(report, queue=64)
    # Nothing is delivered: every span is queued, in an export, refused at the door or in a
    # batch that failed (each export gives up after 1.5 s, so several fail during the run).
    dropped = report["dropped"]
    assert dropped["queue_full"] + dropped["export_failed"] >= CALLS + 1 - 2 * 64
    assert dropped["export_failed"] % 64 == 0  # whole batches
    assert exited < EXIT_BOUND, exited
    assert CALLS + 1 - 64 <= final <= CALLS + 1


def test_exit_with_a_dead_backend_and_default_settings_is_bounded() -> None:
    # Defaults: a 2048-span queue, the exporter's 10 s timeout, 5 s per signal at exit (the
    # SDK alone waits up to 30 s for the spans; the metrics' bound is tested above).
    report, final, exited = run_child(
        {"endpoint": closed_port(), "calls": 50, "settle_for": 0.0, "metrics": False}
    )
    assert report["errors"] == [] and report["records"] == 51
    assert report["max_queue_size"] == 2048
    assert report["dropped"]["queue_full"] == 0
    assert exited < 5.0 + 3.0, exited
    assert final == 51  # the backend never took a span: all of them are counted
