"""Per-call overhead of tollgate on top of the real OpenAI SDK, over an in-process transport.

Run: python benchmarks/overhead.py [calls]

The SDK talks to ``httpx.MockTransport`` (no network, no server), so what is measured is the
SDK's own work plus tollgate's: estimate, price lookup, ledger record, span (OpenTelemetry API,
no SDK unless --otel-sdk). Prints the median per-call time of interleaved rounds, raw vs
instrumented, sync and async, non-streaming and streaming, and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable

import httpx
import openai

import tollgate

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1763900000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 25, "completion_tokens": 2, "total_tokens": 27},
    }
).encode()
CHUNKS = (
    b"".join(
        b"data: "
        + json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1763900000,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": choices,
                "usage": usage,
            }
        ).encode()
        + b"\n\n"
        for choices, usage in [
            ([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], None),
            ([{"index": 0, "delta": {"content": "Paris"}, "finish_reason": None}], None),
            ([{"index": 0, "delta": {"content": "."}, "finish_reason": "stop"}], None),
            ([], {"prompt_tokens": 25, "completion_tokens": 2, "total_tokens": 27}),
        ]
    )
    + b"data: [DONE]\n\n"
)
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name the capital of France in one word."},
]


def handler(request: httpx.Request) -> httpx.Response:
    if b'"stream":true' in request.content or b'"stream": true' in request.content:
        return httpx.Response(200, content=CHUNKS, headers={"content-type": "text/event-stream"})
    return httpx.Response(200, content=COMPLETION, headers={"content-type": "application/json"})


def sync_client() -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-bench", http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def async_client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-bench", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))
    )


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


async def per_call_async(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await fn()  # type: ignore[misc]
    return (time.perf_counter() - start) / calls


def compare(
    name: str, raw: Callable[[int], float], gated: Callable[[int], float], calls: int, rounds: int
) -> None:
    raw(50), gated(50)  # warm up: imports, tokenizer load, connection set-up
    raws, diffs = [], []
    for i in range(rounds):
        # Short paired batches, alternating which goes first: drift in the machine's load
        # (this is a shared VM) hits both sides of a pair alike and cancels in the difference.
        if i % 2:
            g, r = gated(calls), raw(calls)
        else:
            r, g = raw(calls), gated(calls)
        raws.append(r)
        diffs.append(g - r)
    q1, med, q3 = statistics.quantiles(diffs, n=4)
    print(
        f"{name:<26} raw {statistics.median(raws) * 1e6:7.1f} us   overhead median {med * 1e6:+6.1f} us"
        f"   (interquartile {q1 * 1e6:+.1f} .. {q3 * 1e6:+.1f} us, {rounds} pairs of {calls} calls)"
    )


def gate_only(calls: int) -> None:
    """The gate's own steps, no SDK: estimate, price, record, span."""
    from tollgate import gate
    from tollgate.request import LLMRequest, Usage

    usage = Usage(input_tokens=25, output_tokens=2)

    def one() -> None:
        call = gate.preflight(
            LLMRequest(provider="openai", operation="chat", model="gpt-4o-mini", messages=MESSAGES)
        )
        gate.settle(call, usage, response_model="gpt-4o-mini-2024-07-18", response_id="chatcmpl-bench")

    one()
    best = min(per_call(one, calls // 5) for _ in range(5))
    print(f"{'gate alone (no SDK)':<26} preflight + settle {best * 1e6:.1f} us per call")

    # The whole adapter (request translation, gate, usage extraction) around a create that
    # returns a ready response at once: tollgate's own cost per call, without the SDK's.
    from tollgate.providers.base import gated as gate_method
    from tollgate.providers.openai import ChatSurface

    client = sync_client()
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    surface = ChatSurface("openai", ("api.openai.com", 443))
    gated = gate_method(lambda **kwargs: response, surface, is_async=False)
    gated(model="gpt-4o-mini", messages=MESSAGES)
    best = min(per_call(lambda: gated(model="gpt-4o-mini", messages=MESSAGES), calls // 5) for _ in range(5))
    print(f"{'adapter + gate (no SDK)':<26} chat.completions.create {best * 1e6:.1f} us per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", nargs="?", type=int, default=100, help="calls per batch")
    parser.add_argument("--rounds", type=int, default=60, help="paired batches")
    parser.add_argument("--ledger", default="memory://")
    parser.add_argument(
        "--store",
        action="append",
        help="budget store(s) to compare, repeatable: memory://, sqlite:///..., redis://... (default memory://)",
    )
    parser.add_argument(
        "--budget", action="store_true", help="run the gated calls under one ambient daily budget"
    )
    parser.add_argument("--otel-sdk", action="store_true", help="configure an SDK with a batching exporter")
    args = parser.parse_args()
    args.store = args.store or ["memory://"]
    if args.otel_sdk:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Discard(SpanExporter):
            def export(self, spans: object) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        trace.set_tracer_provider(provider)
    for store_uri in args.store:
        run_store(args, store_uri)


def run_store(args: argparse.Namespace, store_uri: str) -> None:
    """Raw SDK vs instrumented, side by side, with the budgets in ``store_uri``."""
    tollgate.reset()
    tollgate.configure(ledger=args.ledger, store=store_uri)
    tollgate.config.settings().store.clear()
    budget = tollgate.budget(usd=1e9, per="day", name="bench")  # large enough never to refuse
    if args.budget:
        budget.__enter__()
    print(
        f"\nledger {args.ledger}, store {store_uri}, budget: {'one daily' if args.budget else 'none'}, "
        f"OpenTelemetry SDK: {'yes' if args.otel_sdk else 'no (API only)'}"
    )

    raw, gated = sync_client(), tollgate.instrument(sync_client())

    def stream_all(client: openai.OpenAI) -> None:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            pass

    compare(
        "sync create",
        lambda n: per_call(lambda: raw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES), n),  # type: ignore[arg-type]
        lambda n: per_call(lambda: gated.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES), n),  # type: ignore[arg-type]
        args.calls,
        args.rounds,
    )
    compare(
        "sync create stream=True",
        lambda n: per_call(lambda: stream_all(raw), n),
        lambda n: per_call(lambda: stream_all(gated), n),
        args.calls,
        args.rounds,
    )

    araw, agated = async_client(), tollgate.instrument(async_client())
    loop = asyncio.new_event_loop()
    compare(
        "async create",
        lambda n: loop.run_until_complete(
            per_call_async(lambda: araw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES), n)  # type: ignore[arg-type]
        ),
        lambda n: loop.run_until_complete(
            per_call_async(lambda: agated.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES), n)  # type: ignore[arg-type]
        ),
        args.calls,
        args.rounds,
    )
    gate_only(args.calls * args.rounds)
    store = tollgate.config.settings().store
    if hasattr(store, "round_trips"):
        before = store.round_trips
        raw_call = gated.chat.completions.create
        raw_call(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        print(f"Redis round trips for one gated call: {store.round_trips - before}")
    report = tollgate.report()
    print(f"ledger holds {report.total['calls']} records, ${report.total['usd']:.6f}")
    if args.budget:
        budget.__exit__(None, None, None)


if __name__ == "__main__":
    main()
