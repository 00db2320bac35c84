"""OpenTelemetry in one line, for applications that have not set it up themselves::

    import tollgate.otel

    tollgate.otel.setup(service_name="my-app")  # spans and metrics of every call, over OTLP

It installs an SDK tracer provider (batching span processor) and meter provider (periodic
reader), each exporting over OTLP, as the process-wide providers. It needs the ``otel`` extra
(``pip install 'tollgate[otel]'``: opentelemetry-sdk and opentelemetry-exporter-otlp), imported
only when :func:`setup` runs. The standard environment variables apply: the exporters read
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``, ``_COMPRESSION``, the certificate
variables and their ``_TRACES_`` / ``_METRICS_`` variants; ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or
its per-signal variant) picks ``http/protobuf`` (the default) or ``grpc``;
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` describe the service;
``OTEL_TRACES_SAMPLER`` and ``OTEL_METRIC_EXPORT_INTERVAL`` work as usual. Arguments given to
:func:`setup` win over the environment. ``OTEL_SEMCONV_STABILITY_OPT_IN`` and the GenAI
content variables are read again when :func:`setup` runs (see :mod:`tollgate.telemetry`).

A backend that is down or slow never slows the application's calls down: a span is queued in
memory and exported by a background thread. The queue is bounded (``max_queue_size``, else
``OTEL_BSP_MAX_QUEUE_SIZE``, else 2048 spans): while it is full, new spans are dropped, and so
are the spans of a batch the backend did not take. Each lost span is counted:
:func:`dropped_spans` (and the ``tollgate.otel.spans.dropped`` counter, by ``reason``) says
how many. One export, its retries included, gives up after ``export_timeout`` seconds (else
``OTEL_BSP_EXPORT_TIMEOUT`` / ``OTEL_METRIC_EXPORT_TIMEOUT``, or the exporter's own
``OTEL_EXPORTER_OTLP_*TIMEOUT``, whichever is shorter; the exporter's default is 10 s), and
flushing at shutdown, or at interpreter exit, takes at most ``shutdown_timeout`` seconds per
signal (5 s by default) even when the backend never answers.

An application that configured OpenTelemetry itself needs none of this: tollgate uses the
API only, so its spans and metrics go wherever the application's providers send them.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("tollgate")

#: Spans waiting for export at most, unless ``max_queue_size`` or ``OTEL_BSP_MAX_QUEUE_SIZE`` says.
DEFAULT_MAX_QUEUE_SIZE = 2048
#: Seconds a shutdown (or the interpreter's exit) may spend flushing one signal.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
#: Why a span was dropped: the queue was full, the backend did not take its batch, or it was
#: still queued (or ended) when the processor shut down.
DropReason = Literal["queue_full", "export_failed", "shutdown"]
DROPPED_SPANS_METRIC = "tollgate.otel.spans.dropped"

_drops_lock = threading.Lock()
_drops: dict[DropReason, int] = {"queue_full": 0, "export_failed": 0, "shutdown": 0}


def dropped_spans(reason: DropReason | None = None) -> int:
    """How many spans the processors :func:`setup` installed have dropped in this process
    (for one ``reason``, or all): spans that never reached the backend."""
    with _drops_lock:
        return _drops[reason] if reason is not None else sum(_drops.values())


def _dropped(reason: DropReason, count: int = 1) -> None:
    if count > 0:
        with _drops_lock:
            _drops[reason] += count


class _Provider(Protocol):
    def shutdown(self) -> Any: ...


P = TypeVar("P", bound=_Provider)

#: (signal, protocol) -> (module, class) of the OTLP exporter.
_OTLP = "opentelemetry.exporter.otlp.proto."
_EXPORTERS = {
    ("traces", "http/protobuf"): (_OTLP + "http.trace_exporter", "OTLPSpanExporter"),
    ("traces", "grpc"): (_OTLP + "grpc.trace_exporter", "OTLPSpanExporter"),
    ("metrics", "http/protobuf"): (_OTLP + "http.metric_exporter", "OTLPMetricExporter"),
    ("metrics", "grpc"): (_OTLP + "grpc.metric_exporter", "OTLPMetricExporter"),
}


@dataclass(frozen=True)
class Providers:
    """What :func:`setup` installed (None for a signal it left to providers already in force)."""

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None
    #: The span processor exporting the spans (None when traces were not set up).
    span_processor: BoundedSpanProcessor | None = None

    def force_flush(self) -> None:
        """Export what is buffered now (e.g. before a short-lived process or a test reads it)."""
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()

    def shutdown(self) -> None:
        """Flush and stop (also done at interpreter exit)."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def setup(
    service_name: str | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    traces: bool = True,
    metrics: bool = True,
    max_queue_size: int | None = None,
    export_timeout: float | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> Providers:
    """Export spans and metrics over OTLP, through process-wide SDK providers.

    ``endpoint`` is the collector's base address (``http://localhost:4318``; for gRPC
    ``http://localhost:4317``), the signal paths are added for OTLP/HTTP; without it the
    ``OTEL_EXPORTER_OTLP_*`` variables decide, else the OTLP default on localhost. ``protocol``
    is ``"http/protobuf"`` or ``"grpc"``. A signal whose provider the application has set
    already is left alone, with a warning. ``max_queue_size`` (spans waiting for export),
    ``export_timeout`` (seconds one export may take, retries included) and
    ``shutdown_timeout`` (seconds a shutdown may spend flushing a signal) bound what a backend
    that is down or slow can cost; see the module documentation.
    """
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from tollgate import telemetry

    telemetry.refresh()  # the conventions and content switches, as set up now
    if max_queue_size is None:
        max_queue_size = _env_number("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE_SIZE)
    if max_queue_size < 1 or (export_timeout is not None and export_timeout <= 0) or shutdown_timeout < 0:
        raise ValueError("max_queue_size and export_timeout must be positive, shutdown_timeout not negative")
    resource = Resource.create({"service.name": service_name} if service_name else {})
    tracer_provider = meter_provider = span_processor = None
    if traces:
        timeout = _export_timeout("traces", export_timeout, "OTEL_BSP_EXPORT_TIMEOUT")
        span_processor = BoundedSpanProcessor(
            _exporter("traces", endpoint, protocol, timeout=timeout),
            max_queue_size=int(max_queue_size),
            shutdown_timeout=shutdown_timeout,
        )
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(cast("SpanProcessor", span_processor))
        tracer_provider = _install(tracer_provider, trace.set_tracer_provider, trace.get_tracer_provider)
        if tracer_provider is None:
            span_processor = None
    if metrics:
        timeout = _export_timeout("metrics", export_timeout, "OTEL_METRIC_EXPORT_TIMEOUT")
        reader = _reader(_exporter("metrics", endpoint, protocol, timeout=timeout), shutdown_timeout)
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter_provider = _install(
            meter_provider, otel_metrics.set_meter_provider, otel_metrics.get_meter_provider
        )
    if span_processor is not None:
        _observe_drops()
    return Providers(tracer_provider, meter_provider, span_processor)


class BoundedSpanProcessor:
    """A batching span processor whose memory, export time and shutdown time are bounded, and
    which counts every span it loses (:func:`dropped_spans`).

    It hands spans to the SDK's ``BatchSpanProcessor`` (which exports them from a background
    thread), but admits at most ``max_queue_size`` spans that are waiting for export: the
    SDK's own queue would silently push out its oldest span instead. A batch the exporter
    fails to deliver (a backend that is down, or slower than the export timeout) is counted
    as dropped too. :meth:`shutdown` gives the final flush ``shutdown_timeout`` seconds, then
    gives up on the backend: what is still queued is counted, and the process can exit.
    """

    def __init__(self, exporter: SpanExporter, *, max_queue_size: int, shutdown_timeout: float) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.max_queue_size = max_queue_size
        self.shutdown_timeout = shutdown_timeout
        self._lock = threading.Lock()
        self._queued = 0
        self._closed = False
        self._exporter = _CountingExporter(exporter, self._taken)
        batch_size = min(_env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), max_queue_size)
        self._batch = BatchSpanProcessor(
            cast("SpanExporter", self._exporter),
            max_queue_size=max_queue_size,
            max_export_batch_size=batch_size,
        )
        if hasattr(os, "register_at_fork"):  # the SDK empties its queue in a forked child
            reset = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (m := reset()) is not None and m())

    @property
    def queued(self) -> int:
        """Spans waiting for export now (never more than ``max_queue_size``)."""
        return self._queued

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        with self._lock:
            if self._closed:
                reason: DropReason | None = "shutdown"
            elif self._queued >= self.max_queue_size:
                reason = "queue_full"
            else:
                reason = None
                self._queued += 1
        if reason is not None:
            _dropped(reason)
            return
        self._batch.on_end(span)

    def _taken(self, count: int) -> None:
        """``count`` spans left the queue for the exporter."""
        with self._lock:
            self._queued = max(0, self._queued - count)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._queued = 0

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._batch.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Flush what is queued for at most ``shutdown_timeout`` seconds, then stop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # The SDK's shutdown waits up to 30 s for an export to a backend that does not answer:
        # run it aside and stop waiting at our bound (its thread is a daemon: exit is not held).
        stopping = threading.Thread(target=self._batch.shutdown, name="tollgate-otel-shutdown", daemon=True)
        stopping.start()
        stopping.join(self.shutdown_timeout)
        if stopping.is_alive():
            with self._lock:
                lost, self._queued = self._queued, 0
            lost += self._exporter.abandon()  # no more exports; the one in flight stops retrying
            _dropped("shutdown", lost)
            log.warning(
                "tollgate.otel: the OTLP backend did not take the last spans within %ss; %d dropped",
                self.shutdown_timeout,
                lost,
            )


class _CountingExporter:
    """Wraps a span exporter: tells the processor when spans leave its queue, counts the spans
    of batches that failed, and after :meth:`abandon` drops batches without a network attempt.
    (Spans of an export still in flight when the processor gives up are counted as lost then,
    even should that export still succeed.)"""

    def __init__(self, exporter: SpanExporter, taken: Callable[[int], None]) -> None:
        self._exporter = exporter
        self._taken = taken
        self._abandoned = False
        self._in_flight = 0
        self._lock = threading.Lock()
        self._shut = threading.Lock()
        self._is_shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self._lock:
            if self._abandoned:  # these spans were counted when the processor gave up
                return SpanExportResult.FAILURE
            self._in_flight = len(spans)
        self._taken(len(spans))
        try:
            result = self._exporter.export(spans)
        except Exception:
            log.exception("tollgate.otel: the span exporter failed")
            result = SpanExportResult.FAILURE
        with self._lock:
            counted, self._in_flight = self._abandoned, 0
        if result is not SpanExportResult.SUCCESS and not counted:
            _dropped("export_failed", len(spans))
        return result

    def abandon(self) -> int:
        """Stop exporting: later batches fail at once, and the export in flight stops retrying.
        Returns how many spans that export holds (counted as lost by the caller)."""
        with self._lock:
            self._abandoned = True
            in_flight = self._in_flight
        self.shutdown()
        return in_flight

    def shutdown(self) -> None:
        with self._shut:
            if self._is_shut:
                return
            self._is_shut = True
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._exporter.force_flush(timeout_millis))


def _reader(exporter: MetricExporter, shutdown_timeout: float) -> Any:
    """A periodic metric reader whose shutdown (also at interpreter exit) is bounded."""
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    class Reader(PeriodicExportingMetricReader):
        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            super().shutdown(timeout_millis=min(timeout_millis, shutdown_timeout * 1000), **kwargs)

    return Reader(exporter)


_observing = False


def _observe_drops() -> None:
    """Publish :func:`dropped_spans` as a counter on the ``tollgate`` meter (once a process)."""
    global _observing
    if _observing:
        return
    _observing = True
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import Observation

    def observe(options: CallbackOptions) -> list[Observation]:
        with _drops_lock:
            return [Observation(n, {"reason": r}) for r, n in _drops.items()]

    otel_metrics.get_meter("tollgate").create_observable_counter(
        DROPPED_SPANS_METRIC,
        callbacks=[observe],
        unit="{span}",
        description="Spans tollgate.otel dropped before they reached the backend, by reason.",
    )


def _env_number(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(float(raw)) if raw else default
    except ValueError:
        log.warning("tollgate.otel: %s=%r is not a number; using %s", name, raw, default)
        return default
    return value if value > 0 else default


def _export_timeout(signal: str, given: float | None, processor_variable: str) -> float | None:
    """Seconds one export may take: ``given``, else the shorter of the processor's variable
    (milliseconds) and the exporter's (seconds) when the former is set, else None (the
    exporter decides from its own variables, 10 s by default)."""
    if given is not None:
        return given
    processor = _env_number(processor_variable, 0)
    if not processor:
        return None
    exporter = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TIMEOUT"
    )
    try:
        own = float(exporter) if exporter else None
    except ValueError:
        own = None
    return min(processor / 1000, own) if own and own > 0 else processor / 1000


def _exporter(
    signal: str, endpoint: str | None, protocol: str | None, *, timeout: float | None = None
) -> Any:
    env = os.environ.get
    chosen = (
        protocol
        or env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or env("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if (signal, chosen) not in _EXPORTERS:
        raise ValueError(f"OTLP protocol {chosen!r}: tollgate.otel supports 'http/protobuf' and 'grpc'")
    module, name = _EXPORTERS[signal, chosen]
    exporter = getattr(importlib.import_module(module), name)
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if endpoint is not None:
        options["endpoint"] = f"{endpoint.rstrip('/')}/v1/{signal}" if chosen == "http/protobuf" else endpoint
    return exporter(**options)


def _install(provider: P, set_global: Callable[[P], None], get_global: Callable[[], object]) -> P | None:
    """Make ``provider`` the process-wide one; None (and a warning) if one was set already."""
    set_global(provider)
    if get_global() is provider:
        return provider
    provider.shutdown()
    warnings.warn(
        f"OpenTelemetry already has a {type(get_global()).__name__} in this process; "
        "tollgate.otel.setup() left it in place",
        stacklevel=3,
    )
    return None
