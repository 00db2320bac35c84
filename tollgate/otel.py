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
:func:`setup` win over the environment.

An application that configured OpenTelemetry itself needs none of this: tollgate uses the
API only, so its spans and metrics go wherever the application's providers send them.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider


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
) -> Providers:
    """Export spans and metrics over OTLP, through process-wide SDK providers.

    ``endpoint`` is the collector's base address (``http://localhost:4318``; for gRPC
    ``http://localhost:4317``), the signal paths are added for OTLP/HTTP; without it the
    ``OTEL_EXPORTER_OTLP_*`` variables decide, else the OTLP default on localhost. ``protocol``
    is ``"http/protobuf"`` or ``"grpc"``. A signal whose provider the application has set
    already is left alone, with a warning.
    """
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name} if service_name else {})
    tracer_provider = meter_provider = None
    if traces:
        span_processor = BatchSpanProcessor(_exporter("traces", endpoint, protocol))
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(span_processor)
        tracer_provider = _install(tracer_provider, trace.set_tracer_provider, trace.get_tracer_provider)
    if metrics:
        reader = PeriodicExportingMetricReader(_exporter("metrics", endpoint, protocol))
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter_provider = _install(
            meter_provider, otel_metrics.set_meter_provider, otel_metrics.get_meter_provider
        )
    return Providers(tracer_provider, meter_provider)


def _exporter(signal: str, endpoint: str | None, protocol: str | None) -> Any:
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
    if endpoint is None:
        return exporter()
    return exporter(endpoint=f"{endpoint.rstrip('/')}/v1/{signal}" if chosen == "http/protobuf" else endpoint)


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
