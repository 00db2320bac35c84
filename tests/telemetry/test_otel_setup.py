"""``tollgate.otel.setup()`` in a fresh process: spans and metrics reach an OTLP/HTTP receiver
named only by the standard ``OTEL_EXPORTER_OTLP_*`` variables, and are flushed at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest

import tollgate.otel
from tests.conftest import ROOT
from tests.telemetry.conftest import OTel
from tests.telemetry.otlp_sink import attributes, otlp_sink

pytest.importorskip("openai")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")

APP = textwrap.dedent(
    """
    import httpx, openai, tollgate, tollgate.otel

    tollgate.otel.setup(service_name="tollgate-test")
    body = (
        '{"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",'
        ' "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},'
        ' "finish_reason": "stop"}], "usage": {"prompt_tokens": 25, "completion_tokens": 2}}'
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=body))
    raw = openai.OpenAI(api_key="sk-test", http_client=httpx.Client(transport=transport))
    client = tollgate.instrument(raw)
    with tollgate.track(tenant="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    # No flush, no shutdown: the SDK exports what is left when the interpreter exits.
    """
)


def test_setup_exports_spans_and_metrics_over_otlp_http() -> None:
    with otlp_sink() as sink:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.url,
            OTEL_EXPORTER_OTLP_HEADERS="x-team=payments",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
        )
        done = subprocess.run(
            [sys.executable, "-c", APP], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert {r.path for r in sink.received} == {"/v1/traces", "/v1/metrics"}
    assert all(r.headers["x-team"] == "payments" for r in sink.received)
    (request,) = sink.traces()
    (resource_spans,) = request.resource_spans
    resource = attributes(resource_spans.resource.attributes)
    assert resource["service.name"] == "tollgate-test" and resource["deployment.environment"] == "test"
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "tollgate"
    (span,) = scope_spans.spans
    a = attributes(span.attributes)
    assert span.name == "chat gpt-4o-mini"
    assert a["gen_ai.usage.input_tokens"] == 25 and a["tollgate.tag.tenant"] == "acme"
    assert a["tollgate.cost.usd"] > 0
    names = {
        m.name
        for r in sink.metrics()
        for rm in r.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "tollgate.cost"} <= names


def test_setup_leaves_providers_the_application_set(otel: OTel) -> None:
    with otlp_sink() as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        providers = tollgate.otel.setup(endpoint=sink.url)
    assert providers.tracer_provider is None and providers.meter_provider is None
    assert len(caught) == 2 and all("left it in place" in str(w.message) for w in caught)
    providers.force_flush()
    providers.shutdown()  # nothing to do


def test_setup_rejects_an_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="http/json"):
        tollgate.otel.setup(protocol="http/json")


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_protocol_from_the_environment(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    for signal in ("traces", "metrics"):
        exporter = tollgate.otel._exporter(signal, "http://127.0.0.1:4317", None)
        assert type(exporter).__module__.split(".")[4] == protocol.split("/")[0]
        exporter.shutdown()


class Gate:
    """A span exporter that holds every export until released (a backend that hangs)."""

    def __init__(self, succeed: bool = True) -> None:
        import threading

        self.open = threading.Event()
        self.succeed = succeed
        self.exported = 0
        self.shut = False

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.open.wait(10)
        if not self.succeed:
            return SpanExportResult.FAILURE
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True
        self.open.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def emit(processor: tollgate.otel.BoundedSpanProcessor, count: int) -> int:
    """End ``count`` sampled spans on a private provider feeding ``processor``; the most queued."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)  # type: ignore[arg-type]
    tracer = provider.get_tracer("test")
    most = 0
    for i in range(count):
        tracer.start_span(f"s{i}").end()
        most = max(most, processor.queued)
    return most


@pytest.mark.parametrize("succeed", [True, False])
def test_bounded_processor_counts_every_span_it_loses(succeed: bool) -> None:
    reasons: tuple[tollgate.otel.DropReason, ...] = ("queue_full", "export_failed", "shutdown")
    before = {r: tollgate.otel.dropped_spans(r) for r in reasons}
    backend = Gate(succeed)
    processor = tollgate.otel.BoundedSpanProcessor(backend, max_queue_size=20, shutdown_timeout=5)  # type: ignore[arg-type]
    most = emit(processor, 500)
    assert most <= 20
    backend.open.set()  # the backend comes back
    assert processor.force_flush()
    after = {r: tollgate.otel.dropped_spans(r) - before[r] for r in before}
    # The first batch was stuck in the exporter, 20 more waited: the rest were refused and counted.
    assert after["queue_full"] >= 500 - 2 * 20
    assert after["shutdown"] == 0
    # Exact accounting: every span was exported or counted as dropped, none silently lost.
    assert backend.exported + after["queue_full"] + after["export_failed"] == 500
    assert (backend.exported == 0) is not succeed
    processor.shutdown()
    assert backend.shut


def test_bounded_processor_shutdown_gives_up_on_a_hung_backend() -> None:
    import time

    backend = Gate()
    backend.open = type(backend.open)()  # never set by the test: the backend hangs
    backend.shutdown = lambda: None  # type: ignore[method-assign]  # and ignores shutdown
    processor = tollgate.otel.BoundedSpanProcessor(backend, max_queue_size=50, shutdown_timeout=0.5)  # type: ignore[arg-type]
    before = tollgate.otel.dropped_spans()
    emit(processor, 30)
    started = time.monotonic()
    processor.shutdown()
    assert time.monotonic() - started < 2.0  # the SDK alone waits 30 s
    assert tollgate.otel.dropped_spans() - before == 30  # queued or in the hung export: all counted
    emit(processor, 5)  # spans ended after shutdown are dropped and counted too
    assert tollgate.otel.dropped_spans("shutdown") >= 5
    assert tollgate.otel.dropped_spans() - before == 35
    backend.open.set()


@pytest.mark.parametrize(
    ("env", "given", "expected"),
    [
        ({}, None, None),
        ({}, 2.0, 2.0),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "1500"}, None, 1.5),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "1500"}, 4.0, 4.0),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "30000", "OTEL_EXPORTER_OTLP_TIMEOUT": "3"}, None, 3.0),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "500", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3"}, None, 0.5),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "soon"}, None, None),
    ],
)
def test_export_timeout_from_the_environment(
    env: dict[str, str], given: float | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "OTEL_BSP_EXPORT_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tollgate.otel._export_timeout("traces", given, "OTEL_BSP_EXPORT_TIMEOUT") == expected
    exporter = tollgate.otel._exporter("traces", "http://127.0.0.1:4318", "http/protobuf", timeout=expected)
    sender = getattr(exporter, "_client", exporter)  # the exporter itself before opentelemetry 1.4x
    assert sender._timeout == (expected if expected is not None else 10.0)
    exporter.shutdown()
