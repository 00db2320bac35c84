"""OpenTelemetry export: one GenAI span per call, with cost and budget decisions on it.

Run: python examples/otel_export.py                               (offline: spans kept in memory)
     python examples/otel_export.py --endpoint http://localhost:4318  (to any OTLP/HTTP backend)

With ``--endpoint`` (or OTEL_EXPORTER_OTLP_ENDPOINT set), ``tollgate.otel.setup()`` installs
OTLP exporters in one line. Without one, this example sets up the OpenTelemetry SDK itself with
an in-memory exporter and prints the spans: tollgate uses whatever providers the app set up.
Offline, the OpenAI SDK talks to ``tollgate.demo.StandIn`` running in this process.
"""

from __future__ import annotations

import argparse
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tollgate
import tollgate.otel
from tollgate.demo import offline_client

SHOWN = (
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "tollgate.cost.usd",
    "tollgate.tag.tenant",
    "tollgate.budget.action",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    endpoint = parser.parse_args().endpoint

    memory = None
    if endpoint:
        providers = tollgate.otel.setup(service_name="tollgate-example", endpoint=endpoint)
    else:
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(provider)

    client = offline_client()
    question = [{"role": "user", "content": "Summarise the NDA."}]
    with tollgate.track(tenant="acme", feature="search"):
        client.chat.completions.create(model="gpt-4o-mini", messages=question, max_tokens=100)
        with tollgate.budget(usd=0.001, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}):
            client.chat.completions.create(model="gpt-4o", messages=question, max_tokens=500)
        try:
            with tollgate.budget(usd=0.000001):
                client.chat.completions.create(model="gpt-4o", messages=question, max_tokens=500)
        except tollgate.BudgetExceeded:
            pass  # a blocked call still has its span (status ERROR), so refused spending shows up

    if memory is None:
        providers.shutdown()  # flushes
        print(f"3 spans sent to {endpoint}")
        return
    for span in memory.get_finished_spans():
        attributes = span.attributes or {}
        shown = ", ".join(f"{k.split('.', 1)[1]}={attributes[k]}" for k in SHOWN if k in attributes)
        print(f"span {span.name!r} [{span.status.status_code.name}]: {shown}")


if __name__ == "__main__":
    main()
