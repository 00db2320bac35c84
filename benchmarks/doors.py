"""The cost of the doors that are not clients: @metered, record(), on_record hooks, HttpSink.

Run: python benchmarks/doors.py [--quick] [--json PATH]

What is measured, per call, in a hot loop of this process (median of repeated batches):

- a plain function returning an OpenAI-shaped dict (the baseline), the same function under
  ``@tollgate.metered(model=...)`` (observe: no budget) and under one daily USD budget, the
  same with ``extract_usage``, and a metered generator of 5 text chunks;
- ``tollgate.record(...)`` with no budget and with one daily budget;
- what a call pays for an ``on_record`` hook that does nothing, and for an ``HttpSink`` as
  ``on_record`` (queueing the record: the POST is off the call's path);
- the sink's throughput: records delivered per second to a local HTTP server that decodes
  each gzip'd batch, and the compressed bytes per record.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tollgate
from benchmarks._common import COMPLETION, add_flags, write_json


def per_call(fn: Callable[[], Any], calls: int, repeats: int) -> float:
    """Median microseconds per call over ``repeats`` batches of ``calls`` calls."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


class _Ingest(http.server.BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        body = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received += body.count(b'"id"')
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def sink_throughput(records: int) -> tuple[float, float, int]:
    """Records per second an HttpSink delivers to a local server, and gzip'd bytes per record
    (distinct records, as real traffic: ids, times and counts differ)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/ingest"
    sink = tollgate.HttpSink(url, batch_size=500, max_queue=records + 1, keep=0)
    tollgate.reset()
    written = [
        tollgate.record(
            provider="openai",
            model="gpt-4o",
            input_tokens=1000 + i % 997,
            output_tokens=100 + i % 389,
            tenant=f"t{i % 50}",
            feature="search",
        )
        for i in range(records)
    ]
    tollgate.reset()
    start = time.perf_counter()
    for record in written:
        sink.write(record)
    sink.close(timeout=120)
    seconds = time.perf_counter() - start
    server.shutdown()
    batch = [r.to_dict() for r in written[:500]]
    body = gzip.compress(json.dumps({"records": batch}, separators=(",", ":")).encode(), compresslevel=6)
    return sink.sent() / seconds, len(body) / len(batch), sink.sent()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_flags(parser)
    args = parser.parse_args()
    calls, repeats, sink_records = (200, 5, 2_000) if args.quick else (2_000, 15, 50_000)

    def plain(prompt: str) -> dict[str, Any]:
        return COMPLETION

    metered = tollgate.metered(model="gpt-4o-mini")(plain)
    extracted = tollgate.metered(
        model="gpt-4o-mini",
        extract_usage=lambda r: (r["model"], r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]),
    )(plain)

    @tollgate.metered(model="gpt-4o-mini")
    def chunks(prompt: str) -> Iterator[str]:
        yield from ("One", ",", " two", ",", " three.")

    daily = tollgate.budget(usd=1e9, per="day", name="bench")
    prompt = "Name the capital of France in one word."
    rows: list[dict[str, Any]] = []

    def row(name: str, fn: Callable[[], Any]) -> None:
        tollgate.reset()
        fn()  # warm: caches, the first price lookup
        rows.append({"door": name, "us_per_call": round(per_call(fn, calls, repeats), 2)})

    def under_budget(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with daily:
                return fn()

        return run

    def record() -> Any:
        return tollgate.record(provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300)

    row("plain function (baseline)", lambda: plain(prompt))
    row("@metered(model=...), no budget", lambda: metered(prompt))
    row("@metered(model=...), 1 daily budget", under_budget(lambda: metered(prompt)))
    row("@metered with extract_usage, no budget", lambda: extracted(prompt))
    row("@metered generator, 5 text chunks", lambda: "".join(chunks(prompt)))
    row("record(), no budget", record)
    row("record(), 1 daily budget", under_budget(record))

    tollgate.reset()
    tollgate.configure(on_record=lambda rec: None)
    rows.append(
        {
            "door": "@metered + a no-op on_record hook",
            "us_per_call": round(per_call(lambda: metered(prompt), calls, repeats), 2),
        }
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = tollgate.HttpSink(f"http://127.0.0.1:{server.server_address[1]}/ingest", max_queue=10**7)
    tollgate.reset()
    tollgate.configure(on_record=sink)
    rows.append(
        {
            "door": "@metered + HttpSink as on_record",
            "us_per_call": round(per_call(lambda: metered(prompt), calls, repeats), 2),
        }
    )
    sink.close(timeout=60)
    server.shutdown()
    tollgate.reset()

    base = rows[0]["us_per_call"]
    print(f"{'door':<42} {'us/call':>9} {'over baseline':>14}")
    print("-" * 67)
    for r in rows:
        r["over_baseline_us"] = round(r["us_per_call"] - base, 2)
        print(f"{r['door']:<42} {r['us_per_call']:>9.2f} {r['over_baseline_us']:>+14.2f}")
    rate, size, delivered = sink_throughput(sink_records)
    print(
        f"\nHttpSink to a local server: {delivered:,} of {sink_records:,} records delivered, "
        f"{rate:,.0f} records/s, {size:.0f} gzip'd bytes per record"
    )
    write_json(
        args,
        "doors",
        {
            "rows": rows,
            "sink": {
                "records": sink_records,
                "delivered": delivered,
                "records_per_second": round(rate),
                "bytes_per_record": round(size),
            },
        },
    )


if __name__ == "__main__":
    main()
