"""One adapter per library compared, each used the way its own README shows.

Overhead: ``SUITES[name]`` names a suite's library, the OpenTelemetry SDK parts it runs under
(none, spans, metrics, or both: measured apart) and its builder, which makes a :class:`Gated`
(the gated calls, plus hooks run around each gated batch for libraries that patch the SDK
process-wide, so that the raw baseline measured in the same process stays raw). Cap:
``CAPS[name](provider, cap, n)`` makes ``n`` concurrent async calls under a ``cap`` USD limit
and returns what the library let through and what it thinks it spent. Peers are imported inside
the functions: a missing one fails only its own rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from peers.common import MESSAGES, MODEL, BillingProvider, async_client, sync_client

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM: no cost-map download


def _tiktoken_offline() -> None:
    """tiktoken downloads its BPE files on first use, and this machine has no network: seed its
    cache with the copies tollgate ships (the same files, checked by tiktoken's own hashes)."""
    from importlib import resources

    folder = os.environ.setdefault(
        "TIKTOKEN_CACHE_DIR", os.path.join(tempfile.gettempdir(), "bench-tiktoken")
    )
    os.makedirs(folder, exist_ok=True)
    for name in ("o200k_base", "cl100k_base"):
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        target = os.path.join(folder, hashlib.sha1(url.encode()).hexdigest())
        if not os.path.exists(target):
            source = resources.files("tollgate.pricing") / "encodings" / f"{name}.tiktoken"
            with source.open("rb") as src, open(target + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(target + ".part", target)


_tiktoken_offline()

#: The distribution each suite needs (None: tollgate, always there).
REQUIRES = {
    "tokenguard": "cendor-tokenguard",
    "llm-toll": "llm-toll",
    "otel-openai-v2": "opentelemetry-instrumentation-openai-v2",
    "token-limit": "token-limit",
    "litellm": "litellm",
}


def _noop() -> None:
    return None


@dataclass
class Gated:
    """The gated twin of the raw calls; ``None`` where the library cannot do it (``why`` says)."""

    sync: Callable[[], object] | None
    aio: Callable[[], Awaitable[object]] | None
    stream: Callable[[], object] | None
    before_batch: Callable[[], None] = _noop
    after_batch: Callable[[], None] = _noop
    why: dict[str, str] = field(default_factory=dict)
    close: Callable[[], None] = _noop


def otel_sdk(parts: str) -> Callable[[], None]:
    """The global OpenTelemetry SDK providers ``parts`` names ("spans", "metrics" or both, as
    "spans+metrics"): a TracerProvider + BatchSpanProcessor, a MeterProvider + periodic reader,
    each exporting to an exporter that discards; a part not named stays the API's no-op.
    Returns the shutdown."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DiscardSpans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            _ = list[ReadableSpan](spans)
            return SpanExportResult.SUCCESS

    class DiscardMetrics(MetricExporter):
        def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    shutdowns: list[Callable[[], object]] = []
    if "spans" in parts:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(DiscardSpans()))
        trace.set_tracer_provider(tracer_provider)
        shutdowns.append(tracer_provider.shutdown)
    if "metrics" in parts:
        reader = PeriodicExportingMetricReader(DiscardMetrics(), export_interval_millis=5_000)
        meter_provider = MeterProvider(metric_readers=[reader])
        metrics.set_meter_provider(meter_provider)
        shutdowns.append(meter_provider.shutdown)

    def shutdown() -> None:
        for stop in shutdowns:
            stop()

    return shutdown


def _calls(sync: Any, aio: Any) -> tuple[Callable[[], object], Callable[[], Awaitable[object]], Any]:
    def one() -> object:
        return sync.chat.completions.create(model=MODEL, messages=MESSAGES)

    def aone() -> Awaitable[object]:
        return aio.chat.completions.create(model=MODEL, messages=MESSAGES)

    def stream() -> None:
        for _ in sync.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass

    return one, aone, stream


# --------------------------------------------------------------------------------------------
# Overhead suites
# --------------------------------------------------------------------------------------------


def tollgate_suite(budget: bool, slices: bool = False) -> Callable[[str | None], Gated]:
    def build(store: str | None) -> Gated:
        import tollgate

        tollgate.reset()
        tollgate.configure(store=store or "memory://", slices=slices)
        tollgate.config.settings().store.clear()
        if budget:
            # One ambient daily budget, large enough never to refuse: every call reserves,
            # settles and records against it. Left open for the whole process.
            tollgate.budget(usd=1e9, per="day", name="bench").__enter__()
        one, aone, stream = _calls(tollgate.instrument(sync_client()), tollgate.instrument(async_client()))
        return Gated(one, aone, stream, close=tollgate.reset)

    return build


def tokenguard_suite(budget: bool) -> Callable[[str | None], Gated]:
    def build(store: str | None) -> Gated:
        from cendor.core import instrument
        from cendor.tokenguard import budget as tg_budget
        from cendor.tokenguard import configure

        # The README's usage: wrap the client once; observe-only records every call in the
        # in-memory buffer (bounded here so a long run does not grow it without end).
        configure(max_records=10_000)
        if budget:
            tg_budget(usd=1e9, on_exceed="block").__enter__()  # the pre-flight mode
        one, aone, stream = _calls(instrument(sync_client()), instrument(async_client()))
        return Gated(one, aone, stream)

    return build


def llm_toll_suite(budget: bool) -> Callable[[str | None], Gated]:
    def build(store: str | None) -> Gated:
        from llm_toll import CostReporter, create_store, set_reporter, set_store, track_costs

        folder = tempfile.mkdtemp(prefix="llm-toll-bench-")
        set_store(create_store(os.path.join(folder, "usage.db")))
        # Its default reporter prints a line per call to stderr; silenced (in its favour).
        set_reporter(CostReporter(enabled=False))
        options: dict[str, Any] = {"project": "bench"}
        if budget:
            options["max_budget"] = 1e9
        sync, aio = sync_client(), async_client()

        @track_costs(**options)
        def one() -> object:
            return sync.chat.completions.create(model=MODEL, messages=MESSAGES)

        @track_costs(**options)
        async def aone() -> object:
            return await aio.chat.completions.create(model=MODEL, messages=MESSAGES)

        @track_costs(**options)
        def make_stream() -> Any:
            # The README's streaming form: the decorated function returns the stream.
            return sync.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )

        def stream() -> None:
            for _ in make_stream():
                pass

        return Gated(one, aone, stream)

    return build


def otel_openai_v2_suite() -> Callable[[str | None], Gated]:
    def build(store: str | None) -> Gated:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        instrumentor = OpenAIInstrumentor()
        one, aone, stream = _calls(sync_client(), async_client())
        # It patches the openai module for every client: on for the gated batch, off for the
        # raw one (the patching itself is outside the timed part).
        return Gated(
            one, aone, stream, before_batch=instrumentor.instrument, after_batch=instrumentor.uninstrument
        )

    return build


def litellm_suite(max_budget: bool) -> Callable[[str | None], Gated]:
    def build(store: str | None) -> Gated:
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        if max_budget:
            litellm.max_budget = 1e9
        sync, aio = sync_client(), async_client()

        # litellm.completion with the same SDK client (its `client=` argument), so both sides
        # go through one transport.
        def one() -> object:
            return litellm.completion(model=MODEL, messages=MESSAGES, client=sync)

        def aone() -> Awaitable[object]:
            return litellm.acompletion(model=MODEL, messages=MESSAGES, client=aio)

        def stream() -> None:
            for _ in litellm.completion(model=MODEL, messages=MESSAGES, client=sync, stream=True):
                pass

        return Gated(one, aone, stream)

    return build


#: suite name -> (library, configuration label, builder(store URL), the OTel SDK parts it runs
#: under: "" none, "spans", "metrics" or "spans+metrics"). The sqlite and redis suites are told
#: their store URL by overhead.py.
SUITES: dict[str, tuple[str, str, Callable[[str | None], Gated], str]] = {
    "tollgate-observe": ("tollgate", "observe-only (no budget), memory store", tollgate_suite(False), ""),
    "tollgate-memory": ("tollgate", "full gate, 1 daily budget, memory store", tollgate_suite(True), ""),
    "tollgate-sqlite": ("tollgate", "full gate, 1 daily budget, sqlite store", tollgate_suite(True), ""),
    "tollgate-redis": ("tollgate", "full gate, 1 daily budget, redis store", tollgate_suite(True), ""),
    "tollgate-redis-slices": (
        "tollgate",
        "full gate, 1 daily budget, redis store, escrow slices on",
        tollgate_suite(True, slices=True),
        "",
    ),
    "tollgate-otel-spans": (
        "tollgate",
        "full gate, 1 daily budget, memory store, OTel SDK spans only (batch, discard)",
        tollgate_suite(True),
        "spans",
    ),
    "tollgate-otel-metrics": (
        "tollgate",
        "full gate, 1 daily budget, memory store, OTel SDK metrics only (discard)",
        tollgate_suite(True),
        "metrics",
    ),
    "tollgate-otel": (
        "tollgate",
        "full gate, 1 daily budget, memory store, OTel SDK (batch, discard)",
        tollgate_suite(True),
        "spans+metrics",
    ),
    "tokenguard-observe": ("tokenguard", "instrument(client), observe-only", tokenguard_suite(False), ""),
    "tokenguard-budget": ("tokenguard", "budget(usd, on_exceed='block')", tokenguard_suite(True), ""),
    "tokenguard-otel": (
        "tokenguard",
        "budget(usd, on_exceed='block'), OTel SDK (batch, discard)",
        tokenguard_suite(True),
        "spans+metrics",
    ),
    "llm-toll-observe": (
        "llm-toll",
        "@track_costs, sqlite (its only local store)",
        llm_toll_suite(False),
        "",
    ),
    "llm-toll-budget": ("llm-toll", "@track_costs(max_budget=...)", llm_toll_suite(True), ""),
    "otel-openai-v2-api": (
        "otel-openai-v2",
        "OpenAIInstrumentor, API only (no SDK)",
        otel_openai_v2_suite(),
        "",
    ),
    "otel-openai-v2-spans": (
        "otel-openai-v2",
        "OpenAIInstrumentor, OTel SDK spans only (batch, discard)",
        otel_openai_v2_suite(),
        "spans",
    ),
    "otel-openai-v2-metrics": (
        "otel-openai-v2",
        "OpenAIInstrumentor, OTel SDK metrics only (discard)",
        otel_openai_v2_suite(),
        "metrics",
    ),
    "otel-openai-v2-sdk": (
        "otel-openai-v2",
        "OpenAIInstrumentor, OTel SDK (batch, discard)",
        otel_openai_v2_suite(),
        "spans+metrics",
    ),
    "litellm": ("litellm", "litellm.completion(client=same SDK client)", litellm_suite(False), ""),
    "litellm-budget": ("litellm", "litellm.completion, litellm.max_budget set", litellm_suite(True), ""),
}

TOLLGATE_SUITES = [name for name, (library, *_) in SUITES.items() if library == "tollgate"]
PEERS = ["tokenguard", "llm-toll", "otel-openai-v2", "litellm"]


# --------------------------------------------------------------------------------------------
# Cap scenario: n concurrent async calls against a cap
# --------------------------------------------------------------------------------------------


@dataclass
class CapResult:
    reached: int  # calls that reached the provider (it bills each)
    refused_before: int  # calls the library refused before sending
    failed_after: int  # calls that reached the provider and then raised to the caller
    peer_spend: float | None  # what the library itself thinks was spent
    note: str = ""


def _ask(client: Any) -> Awaitable[object]:
    return client.chat.completions.create(model=MODEL, messages=CAP_MESSAGES, max_tokens=60)


#: 40 prompt tokens by tollgate's count (tiktoken o200k + chat framing), checked at run time.
CAP_MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {
        "role": "user",
        "content": "Summarise this note in one sentence: the quarterly report is late because "
        "the data team is waiting for invoices.",
    },
]


async def _gather(n: int, one: Callable[[], Awaitable[object]], refused: type[BaseException]) -> list[str]:
    async def attempt() -> str:
        try:
            await one()
            return "ok"
        except refused:
            return "refused"

    return await asyncio.gather(*(attempt() for _ in range(n)))


def _split(outcomes: list[str], provider: BillingProvider) -> tuple[int, int]:
    refused = outcomes.count("refused")
    # A refusal raised after the provider answered is a call that was billed anyway.
    after = provider.calls - outcomes.count("ok")
    return refused - after, after


def cap_tokenguard(provider: BillingProvider, cap: float, n: int) -> CapResult:
    from cendor.core import instrument
    from cendor.tokenguard import BudgetExceeded, budget

    client = instrument(provider.async_client())

    async def run() -> tuple[list[str], float]:
        with budget(usd=cap, on_exceed="block") as guard:  # its pre-flight mode
            outcomes = await _gather(n, lambda: _ask(client), BudgetExceeded)
            return outcomes, float(guard.spent.amount)

    outcomes, spent = asyncio.run(run())
    before, after = _split(outcomes, provider)
    return CapResult(provider.calls, before, after, spent)


def cap_llm_toll(provider: BillingProvider, cap: float, n: int) -> CapResult:
    from llm_toll import BudgetExceededError, CostReporter, create_store, set_reporter, set_store, track_costs

    folder = tempfile.mkdtemp(prefix="llm-toll-cap-")
    store = create_store(os.path.join(folder, "usage.db"))
    set_store(store)
    set_reporter(CostReporter(enabled=False))
    client = provider.async_client()

    @track_costs(project="cap", max_budget=cap)
    async def one() -> object:
        return await _ask(client)

    outcomes = asyncio.run(_gather(n, one, BudgetExceededError))
    before, after = _split(outcomes, provider)
    return CapResult(
        provider.calls,
        before,
        after,
        store.get_total_cost("cap"),
        "its post-call check raises BudgetExceededError after the provider billed" if after else "",
    )


class _FakeTokenLimitBackend(ThreadingHTTPServer):
    """token-limit's backend is a hosted service; this stand-in answers its limit check from
    what the stand-in provider actually billed, at once (the best case for the library)."""

    def __init__(self, provider: BillingProvider, cap: float) -> None:
        self.provider, self.cap, self.checks, self.events = provider, cap, 0, 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _reply(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                backend.checks += 1
                exceeded = backend.provider.billed >= backend.cap
                self._reply(b'{"limit_exceeded": %s}' % (b"true" if exceeded else b"false"))

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self._reply(b"{}")

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def cap_token_limit(provider: BillingProvider, cap: float, n: int) -> CapResult:
    import token_limit.meter
    from token_limit import Meter, MeterConfig
    from token_limit.exceptions import LimitExceededException

    backend = _FakeTokenLimitBackend(provider, cap)
    captured: list[Any] = []
    meter = Meter(MeterConfig(api_key="bench", url=backend.url + "/ingest", on_event=captured.append))
    # Its limit-check URL is a module constant for the hosted service: point it at the stand-in.
    token_limit.meter.CHECK_LIMIT_URL = backend.url + "/check-tenant-limit"  # type: ignore[attr-defined]
    meter._limit_check_http._url = backend.url + "/check-tenant-limit"
    meter.patch("openai")
    client = provider.async_client()

    async def run() -> list[str]:
        with meter.for_tenant("cap"):
            return await _gather(n, lambda: _ask(client), LimitExceededException)

    try:
        outcomes = asyncio.run(run())
    finally:
        meter.unpatch_all()
        backend.shutdown()
    before, after = _split(outcomes, provider)
    return CapResult(
        provider.calls,
        before,
        after,
        None,
        f"limit set on a stand-in backend that knows the billed spend at once; {backend.checks} "
        f"limit checks; {len(captured)} usage events captured (priced by its backend, not locally)",
    )


def cap_litellm(provider: BillingProvider, cap: float, n: int) -> CapResult:
    import litellm
    from litellm import BudgetExceededError

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.max_budget = cap  # the SDK-wide budget (the proxy's budgets are a separate server)
    client = provider.async_client()

    def one() -> Awaitable[object]:
        return litellm.acompletion(model=MODEL, messages=CAP_MESSAGES, max_tokens=60, client=client)

    outcomes = asyncio.run(_gather(n, one, BudgetExceededError))
    before, after = _split(outcomes, provider)
    return CapResult(provider.calls, before, after, float(litellm._current_cost))


CAPS: dict[str, Callable[[BillingProvider, float, int], CapResult]] = {
    "tokenguard": cap_tokenguard,
    "llm-toll": cap_llm_toll,
    "token-limit": cap_token_limit,
    "litellm": cap_litellm,
}
