"""``tollgate.otel.setup()`` in a fresh process: spans and metrics reach an OTLP/HTTP receiver
named only by the standard ``OTEL_EXPORTER_OTLP_*`` variables, and are flushed at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

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
