"""Per-call cost of tollgate's telemetry: no SDK, SDK + in-memory exporter, SDK + OTLP batching.

Run: python benchmarks/telemetry.py [calls] [--rounds N] [--budget] [--endpoint URL] [--quick] [--json PATH]

Each configuration runs in a fresh process (a process sets its OpenTelemetry providers once):

- no SDK: the OpenTelemetry API alone, what a library user who never set up OpenTelemetry gets;
- SDK + in-memory exporter: tracer provider with a simple span processor and an in-memory
  exporter, meter provider with an in-memory reader;
- SDK + OTLP batching: batching span processor and periodic metric reader (the default 60 s),
  both exporting over OTLP/HTTP to a local sink (a separate process that accepts and discards),
  or to ``--endpoint`` (e.g. a running Phoenix, ``http://127.0.0.1:6006``).

In each, the gate's own steps for one call (pre-flight + settle: estimate, price, ledger record,
span and metrics; no SDK client, no network) run in short paired batches with telemetry on and
with tollgate's two telemetry hooks replaced by no-ops; the median difference is telemetry's
cost per call. A batch with telemetry on ends with a flush of the span processor, so the
batching exporter's work (encoding, the HTTP request) is counted in it, not left to run in the
next batch. Prints microseconds per call.

Then, without an SDK and with the in-memory one, the decision behind tollgate/telemetry.py: the
span and metrics of one finished chat call written by tollgate's own code (what it mirrors of
opentelemetry-util-genai, in the previous and the latest GenAI conventions) against the same call
written through util-genai's ``TelemetryHandler`` (what building on it would cost, before
tollgate's own cost and budget attributes), in paired batches; and what importing util-genai
costs a process that has the OpenTelemetry API loaded already (tollgate imports no more).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_flags, write_json

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]
RESULT = "RESULT "  # a child's machine-readable line
UTIL = "UTIL "  # a child's machine-readable line of the util-genai comparison
MODES = {
    "none": "no SDK (API only)",
    "memory": "SDK + in-memory exporter",
    "otlp": "SDK + OTLP/HTTP batching",
}

SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def configure(mode: str, endpoint: str | None) -> tuple[Callable[[], object], Callable[[], str]]:
    """Install the providers of ``mode``; return a flush of the spans, and what tells, at the
    end, what was exported."""
    if mode == "none":
        return lambda: None, lambda: ""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    if mode == "memory":
        memory = InMemorySpanExporter()
        tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        return tracer_provider.force_flush, lambda: f"{len(memory.get_finished_spans())} spans held"
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    sent = {"spans": 0, "requests": 0, "failed": 0, "metric requests": 0}

    class Counting(OTLPSpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            result = super().export(spans)
            sent["requests"] += 1
            sent["spans" if result is SpanExportResult.SUCCESS else "failed"] += len(spans)
            return result

    class CountingMetrics(OTLPMetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            sent["metric requests"] += 1
            return super().export(metrics_data, timeout_millis, **kwargs)

    assert endpoint is not None
    tracer_provider.add_span_processor(BatchSpanProcessor(Counting(endpoint=f"{endpoint}/v1/traces")))
    reader = PeriodicExportingMetricReader(CountingMetrics(endpoint=f"{endpoint}/v1/metrics"))
    meter_provider = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)

    def summary() -> str:
        tracer_provider.shutdown()
        meter_provider.shutdown()
        return (
            f"{sent['spans']} spans exported in {sent['requests']} requests, {sent['failed']} failed; "
            f"metrics in {sent['metric requests']}"
        )

    return tracer_provider.force_flush, summary


def run(mode: str, calls: int, rounds: int, budget: bool, endpoint: str | None) -> None:
    flush, summary = configure(mode, endpoint)
    from opentelemetry import trace

    import tollgate
    from tollgate import gate, telemetry
    from tollgate.request import LLMRequest, Usage

    usage = Usage(input_tokens=25, output_tokens=2)
    real = (telemetry.start_span, telemetry.end_span)
    off: tuple[Any, Any] = (lambda request, tags: trace.INVALID_SPAN, lambda span, record, call=None: None)

    def batch(hooks: tuple[Any, Any]) -> float:
        telemetry.start_span, telemetry.end_span = hooks  # type: ignore[assignment]
        start = time.perf_counter()
        for _ in range(calls):
            call = gate.preflight(
                LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini", messages=MESSAGES)
            )
            call.finish(gate.Outcome(usage, model="gpt-4o-mini-2024-07-18", id="chatcmpl-bench"))
        if hooks is real:
            flush()
        return (time.perf_counter() - start) / calls

    scope = tollgate.budget(usd=1e9, per="day", name="bench") if budget else None
    if scope is not None:
        scope.__enter__()
    batch(real), batch(off)  # warm up: tokenizer, price table, first span
    bases, diffs = [], []
    for i in range(rounds):
        # Short paired batches, alternating which goes first, so drift in the machine's load
        # hits both sides of a pair alike and cancels in the difference.
        if i % 2:
            on, base = batch(real), batch(off)
        else:
            base, on = batch(off), batch(real)
        bases.append(base)
        diffs.append(on - base)
    telemetry.start_span, telemetry.end_span = real  # type: ignore[assignment]
    if scope is not None:
        scope.__exit__(None, None, None)
    q1, median, q3 = statistics.quantiles(diffs, n=4)
    base, note = statistics.median(bases), summary()
    print(
        f"{MODES[mode]:<26} telemetry {median * 1e6:+7.1f} us per call"
        f"   (interquartile {q1 * 1e6:+.1f} .. {q3 * 1e6:+.1f}; gate without it {base * 1e6:.1f} us)"
        + (f"   {note}" if note else ""),
        flush=True,
    )
    result = {
        "mode": mode,
        "label": MODES[mode],
        "telemetry_us_per_call": median * 1e6,
        "interquartile_us": [q1 * 1e6, q3 * 1e6],
        "gate_without_telemetry_us": base * 1e6,
        "exported": note,
    }
    print(RESULT + json.dumps(result), flush=True)
    if mode != "otlp":
        compare_util_genai(mode, calls, rounds)


def compare_util_genai(mode: str, calls: int, rounds: int) -> None:
    """Per call: one chat call's span and metrics through tollgate's code and through
    opentelemetry-util-genai's handler, in the providers ``mode`` installed (see the module doc)."""
    try:
        from opentelemetry.util.genai.handler import TelemetryHandler
    except ImportError:
        print("util-genai comparison skipped: opentelemetry-util-genai is not installed", flush=True)
        return
    import os

    import tollgate
    from tollgate import telemetry
    from tollgate.request import CallRecord, LLMRequest, Usage

    request = LLMRequest(
        provider="openai",
        operation="chat",
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_output_tokens=50,
        server_address="api.openai.com",
        server_port=443,
    )
    now = time.time()
    record = CallRecord(
        id="bench",
        started_at=now,
        ended_at=now + 0.5,
        provider="openai",
        operation="chat",
        request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        usage=Usage(input_tokens=25, output_tokens=2),
        usd=0.0001,
        response_id="chatcmpl-bench",
    )
    facts = telemetry.Facts("gpt-4o-mini", 50, ("stop",), None, (), (), "api.openai.com", 443, (), (), None)
    handler = TelemetryHandler(instrumentation_scope_name="util-genai")

    def ours() -> None:
        span = telemetry.start_span(request, {})
        telemetry.end_span(span, record, lambda: facts)

    def theirs() -> None:
        call = handler.inference(
            "openai", request_model="gpt-4o-mini", server_address="api.openai.com", server_port=443
        )
        call.max_tokens = 50
        call.response_model_name, call.response_id = "gpt-4o-mini-2024-07-18", "chatcmpl-bench"
        call.finish_reasons = ["stop"]
        call.input_tokens, call.output_tokens = 25, 2
        call.stop()

    def timed(write: Callable[[], None]) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            write()
        return (time.perf_counter() - start) / calls

    for conventions, opt_in in (("previous", ""), ("latest", telemetry.LATEST)):
        os.environ[telemetry.OPT_IN_ENV] = opt_in
        tollgate.reset()  # read once per configuration
        timed(ours), timed(theirs)  # warm up
        mine, util = [], []
        for i in range(rounds):
            pair = (timed(ours), timed(theirs)) if i % 2 else tuple(reversed((timed(theirs), timed(ours))))
            mine.append(pair[0])
            util.append(pair[1])
        a, b = statistics.median(mine) * 1e6, statistics.median(util) * 1e6
        print(
            f"  {MODES[mode]:<26} {conventions:<9} tollgate {a:7.1f} us   util-genai {b:7.1f} us per call"
            f"   (x{b / a:.1f})",
            flush=True,
        )
        row = {"mode": mode, "conventions": conventions, "tollgate_us": a, "util_genai_us": b}
        print(UTIL + json.dumps(row), flush=True)
    os.environ.pop(telemetry.OPT_IN_ENV, None)


IMPORT = """
import time
import tollgate  # loaded already in a process that uses tollgate
start = time.perf_counter()
import opentelemetry.util.genai.handler
print((time.perf_counter() - start) * 1000)
"""


def util_genai_import_ms(runs: int) -> float:
    """Median milliseconds a fresh process that has imported tollgate takes to import util-genai."""
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", IMPORT], check=True, stdout=subprocess.PIPE, text=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", nargs="?", type=int, help="calls per batch (default 200; quick 20)")
    parser.add_argument("--rounds", type=int, help="paired batches (default 40; quick 4)")
    parser.add_argument("--budget", action="store_true", help="run the calls under one daily budget")
    parser.add_argument("--endpoint", help="OTLP/HTTP base URL for the batching run (default: a local sink)")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one configuration, in this process
    add_flags(parser)
    args = parser.parse_args()
    args.calls = args.calls or (20 if args.quick else 200)
    args.rounds = args.rounds or (4 if args.quick else 40)
    if args.mode:
        run(args.mode, args.calls, args.rounds, args.budget, args.endpoint)
        return
    print(
        f"tollgate telemetry, per call: median of {args.rounds} paired batches of {args.calls} calls "
        f"(budget: {'one daily' if args.budget else 'none'}){' [quick]' if args.quick else ''}"
    )
    sink = None
    results: list[dict[str, Any]] = []
    util: list[dict[str, Any]] = []
    endpoint = args.endpoint
    if endpoint is None:
        sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None
        endpoint = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
    try:
        for mode in MODES:
            command = [sys.executable, __file__, str(args.calls), "--rounds", str(args.rounds)]
            command += ["--mode", mode, "--endpoint", endpoint] + (["--budget"] if args.budget else [])
            out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
            for line in out.splitlines():
                if line.startswith(RESULT):
                    results.append(json.loads(line[len(RESULT) :]))
                elif line.startswith(UTIL):
                    util.append(json.loads(line[len(UTIL) :]))
                else:
                    print(line, flush=True)
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()
    imports: float | None = None
    if util:
        runs = 3 if args.quick else 11
        imports = util_genai_import_ms(runs)
        print(
            f"importing opentelemetry.util.genai.handler after tollgate: +{imports:.1f} ms "
            f"(median of {runs} fresh processes)",
            flush=True,
        )
    write_json(
        args,
        "telemetry",
        {
            "calls": args.calls,
            "rounds": args.rounds,
            "budget": args.budget,
            "rows": results,
            "util_genai": util,
            "util_genai_import_ms": imports,
        },
    )


if __name__ == "__main__":
    main()
