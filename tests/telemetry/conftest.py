"""OpenTelemetry for the telemetry tests: one process-wide SDK, as an application would have.

The API lets a process set its tracer, meter and logger providers once, so the session sets them
once: spans go to an in-memory exporter (and to whatever processor a test adds, e.g. an OTLP
exporter to Phoenix), metrics to an in-memory reader with delta temporality, so each test reads
only what it recorded, and log records (the GenAI details events) to an in-memory exporter.
``semconv`` switches the GenAI conventions tollgate emits (``OTEL_SEMCONV_STABILITY_OPT_IN``).
The ``phoenix`` fixture runs a real Arize Phoenix server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tests.conftest import ROOT

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
sdk_logs = pytest.importorskip("opentelemetry.sdk._logs")
from opentelemetry import _logs, context, metrics, trace  # noqa: E402
from opentelemetry.sdk._logs import export as logs_export  # noqa: E402
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor  # noqa: E402
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

# The SDK's in-memory log exporter (InMemoryLogExporter in older SDKs).
InMemoryLogRecordExporter = (
    getattr(logs_export, "InMemoryLogRecordExporter", None) or logs_export.InMemoryLogExporter
)


class Processors(SpanProcessor):
    """Hands spans to the processors in ``active``, so one provider serves every test."""

    def __init__(self, *processors: SpanProcessor) -> None:
        self.active = list(processors)

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        for p in self.active:
            p.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for p in self.active:
            p.on_end(span)

    def shutdown(self) -> None:
        for p in self.active:
            p.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.active)

    @contextmanager
    def using(self, processor: SpanProcessor) -> Iterator[SpanProcessor]:
        """Add ``processor`` for the block; it is shut down (flushed) when the block ends."""
        self.active.append(processor)
        try:
            yield processor
        finally:
            self.active.remove(processor)
            processor.shutdown()


@dataclass
class OTel:
    spans: InMemorySpanExporter
    processors: Processors
    reader: InMemoryMetricReader
    logs: InMemoryLogRecordExporter


@pytest.fixture(scope="session")
def otel() -> OTel:
    exporter = InMemorySpanExporter()
    processors = Processors(SimpleSpanProcessor(exporter))
    tracer_provider = sdk_trace.TracerProvider()
    tracer_provider.add_span_processor(processors)
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(
        preferred_temporality={sdk_metrics.Counter: delta, sdk_metrics.Histogram: delta}
    )
    meter_provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    logs = InMemoryLogRecordExporter()
    logger_provider = sdk_logs.LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    _logs.set_logger_provider(logger_provider)
    if (
        trace.get_tracer_provider() is not tracer_provider
        or metrics.get_meter_provider() is not meter_provider
        or _logs.get_logger_provider() is not logger_provider
    ):
        pytest.skip("another OpenTelemetry SDK was configured in this process first")
    return OTel(exporter, processors, reader, logs)


@pytest.fixture
def spans(otel: OTel) -> InMemorySpanExporter:
    otel.spans.clear()
    return otel.spans


@pytest.fixture
def logs(otel: OTel) -> InMemoryLogRecordExporter:
    otel.logs.clear()
    return otel.logs


@pytest.fixture
def semconv(monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None], None]:
    """``semconv("gen_ai_latest_experimental")``: emit those conventions from now on (the
    variable is read once per configuration, so tollgate is reset after setting it)."""

    def use(opt_in: str | None) -> None:
        if opt_in is None:
            monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
        else:
            monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
        tollgate.reset()

    return use


@dataclass
class Measured:
    """What was recorded during one test, by metric name (every meter, not only tollgate's)."""

    reader: InMemoryMetricReader
    seen: dict[str, list[Any]] = field(default_factory=dict)
    #: (meter name, metric name) -> the metric (its unit, description and instrument kind).
    metrics: dict[tuple[str, str], Any] = field(default_factory=dict)
    scopes: dict[int, str] = field(default_factory=dict)  # id(data point) -> meter name

    def collect(self) -> None:
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    self.metrics[scope_metrics.scope.name, metric.name] = metric
                    for point in metric.data.data_points:
                        self.scopes[id(point)] = scope_metrics.scope.name
                    self.seen.setdefault(metric.name, []).extend(metric.data.data_points)

    def points(self, name: str, scope: str | None = None, **attributes: Any) -> list[Any]:
        """Data points of ``name`` (from meter ``scope``) whose attributes include ``attributes``."""
        self.collect()
        return [
            p
            for p in self.seen.get(name, [])
            if (scope is None or self.scopes[id(p)] == scope)
            and all((p.attributes or {}).get(k) == v for k, v in attributes.items())
        ]

    def names(self, scope: str = "tollgate") -> set[str]:
        """The metrics meter ``scope`` recorded."""
        self.collect()
        return {name for meter, name in self.metrics if meter == scope}


@pytest.fixture
def measured(otel: OTel) -> Measured:
    otel.reader.get_metrics_data()  # delta temporality: drop what earlier tests recorded
    return Measured(otel.reader)


# -- Arize Phoenix, a real OTLP backend --------------------------------------------------------------

PHOENIX_ENV = "TOLLGATE_PHOENIX"
#: Where .ci/run installs Phoenix: its own virtual environment, as its dependencies are its own.
PHOENIX_DEFAULT = ROOT / ".venv" / "phoenix" / "bin" / "phoenix"


def phoenix_executable() -> str | None:
    given = os.environ.get(PHOENIX_ENV)
    if given:
        if not os.access(given, os.X_OK):
            pytest.fail(f"{PHOENIX_ENV}={given}: not an executable")
        return given
    if PHOENIX_DEFAULT.exists():
        return str(PHOENIX_DEFAULT)
    return shutil.which("phoenix")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a Phoenix server started for this session on free loopback ports."""
    executable = phoenix_executable()
    if executable is None:
        pytest.skip(
            f"Arize Phoenix is not installed: `python -m venv .venv/phoenix && .venv/phoenix/bin/pip "
            f"install arize-phoenix` (as .ci/run does), or set {PHOENIX_ENV} to a `phoenix` executable"
        )
    workdir: Path = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))},
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": str(workdir),
    }
    log_path = workdir / "phoenix.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [executable, "serve"], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # ~15 s on an idle 2-core machine
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"Phoenix ({executable}) did not start (exit {server.poll()}):\n{tail}")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
