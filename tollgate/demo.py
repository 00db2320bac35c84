"""The offline demo: an agent-style workload for three tenants, with budgets doing their job.

Run it with ``tollgate demo`` (or ``make demo``, ``python -m tollgate demo``). No API key and
no network: the real ``openai`` SDK, wrapped by :func:`tollgate.instrument`, talks to a
stand-in for api.openai.com that runs inside this process (an ``httpx.MockTransport`` that
answers like the API, usage figures included). The story, one line per event:

- every request runs under a daily cap per tenant; one tenant's agent loops without end and
  is stopped (``block``) while the other tenants carry on;
- a summary that asked for gpt-4o gets gpt-4o-mini (``downgrade``), a long report gets a
  lower ``max_tokens`` (``clamp``), a long chat loses its oldest turns (``truncate``), and a
  stream that runs past its budget is closed mid-way (``cutoff``);
- the report of where the money went, by tenant and feature, read back from the ledger.

``--ledger sqlite:///path.db`` keeps the records there (default: ``tollgate-demo.db`` in the
current folder, emptied at the start of each run); the ``tollgate report`` command that reads
them again is printed at the end, spelled so that it runs as printed. ``--otlp URL`` also sends
the spans and metrics to that OTLP/HTTP endpoint (nothing answering there is an error at once,
and a failed export is reported, not hidden); ``--live`` sends the same calls to the real
OpenAI API (needs ``OPENAI_API_KEY``; spends a few cents: the daily caps bound it at $0.06).

The demo configures tollgate for itself and calls :func:`tollgate.reset` when it ends.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import tollgate
from tollgate.config import settings
from tollgate.pricing.tokens import count_messages, count_text

if TYPE_CHECKING:
    from types import ModuleType

#: Every request of every tenant runs under this cap: one counter per tenant per UTC day.
DAILY_CAP_USD = 0.02
#: The daily cap's alert thresholds: an on-call hook hears of a tenant nearing its cap.
WARN_AT = (0.5, 0.8)
#: A safety stop for the runaway loop, should the cap somehow not stop it.
RUNAWAY_MAX_CALLS = 25
#: Where the records go unless ``--ledger`` says: a file in the current folder, shown to the
#: user and emptied by the next run (a temporary folder per run was left behind every time).
DEFAULT_LEDGER = "sqlite:///tollgate-demo.db"
#: Seconds an OTLP export (and the flush at the end) may take: a demo must not hang on a backend.
OTLP_TIMEOUT = 2.0

_PROSE = (
    "the tide came in over the grey stones and the gulls called out across the harbour while "
    "the old boats rocked at their moorings and the wind carried salt and rain from the open sea"
)
_WORDS = _PROSE.split()


def http_library(sdk: str = "openai") -> ModuleType:
    """The HTTP library the installed ``sdk`` (``"openai"``, ``"anthropic"`` or ``"gemini"``)
    sends through: ``httpx``, or ``httpx2`` for openai 3.x, anthropic 2.x and google-genai 3.x.
    An offline stand-in must be built with it (its ``Client`` and ``MockTransport``); nothing
    here imports the other one."""
    import importlib

    if sdk == "gemini":  # google-genai 3.x picks a backend (GOOGLE_GENAI_HTTP_CLIENT, installed)
        from google.genai import _api_client

        pick = getattr(_api_client, "_get_http_client_backend", None)
        return importlib.import_module(pick() if pick is not None else "httpx")
    default = importlib.import_module(sdk).DefaultHttpxClient
    base = next(c for c in default.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(base.__module__.split(".")[0])


def _filler(tokens: int) -> str:
    """About ``tokens`` tokens of plain prose (one token per word, give or take)."""
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(tokens))


def _within(text: str, cap: int, model: str) -> str:
    """``text`` cut to ``cap`` tokens, as a provider keeps to ``max_tokens``: the most words that
    fit, then one-token words up to the cap (a verbose answer writes all it may)."""
    words = text.split(" ")
    if count_text(text, model) <= cap:
        return text
    low, high = 1, len(words)  # the most words whose count is within the cap
    while low < high:
        middle = (low + high + 1) // 2
        if count_text(" ".join(words[:middle]), model) <= cap:
            low = middle
        else:
            high = middle - 1
    out = " ".join(words[:low])
    while (used := count_text(out, model)) < cap:
        out += " the" * (cap - used)  # " the" is one token in o200k and cl100k
    return out if count_text(out, model) <= cap else " ".join(words[:low])


class StandIn:
    """A stand-in for api.openai.com's ``/v1/chat/completions``, as an httpx MockTransport handler.

    Answers carry exact usage (prompt counted with tiktoken, as OpenAI counts it). The
    agent writes up to its ``max_tokens`` every time (a verbose agent); a stream asked for
    with no ``max_tokens`` writes a long story (:attr:`story_tokens` tokens), so a budget has
    something to cut off.
    """

    story_tokens = 600
    answer_tokens = 60

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._http = http_library("openai")

    def __call__(self, request: Any) -> Any:
        http = self._http
        body: dict[str, Any] = json.loads(request.content)
        self.requests.append(body)
        model, cap = body["model"], body.get("max_tokens") or body.get("max_completion_tokens")
        system = str(body["messages"][0].get("content", ""))
        if body.get("stream"):
            wanted = self.story_tokens if cap is None else min(cap, self.story_tokens)
        elif "agent" in system:
            wanted = cap or 1000
        else:
            wanted = self.answer_tokens if cap is None else min(cap, self.answer_tokens)
        text = _within(_filler(wanted), wanted, model)
        usage = {
            "prompt_tokens": count_messages(body["messages"], model),
            "completion_tokens": count_text(text, model),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        rid, created = f"chatcmpl-demo{os.urandom(6).hex()}", int(time.time())
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            completion = {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
            return http.Response(200, json=completion)
        events: list[dict[str, Any]] = [
            {"choices": [{"index": 0, "delta": {"content": (" " if i else "") + w}, "finish_reason": None}]}
            for i, w in enumerate(text.split(" "))
        ]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"choices": [], "usage": usage})
        head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        sse = "".join(f"data: {json.dumps({**head, **e})}\n\n" for e in events) + "data: [DONE]\n\n"
        return http.Response(200, text=sse, headers={"content-type": "text/event-stream"})


def offline_client() -> Any:
    """An instrumented ``openai.OpenAI`` whose HTTP goes to a :class:`StandIn` in this process."""
    import openai

    http = http_library("openai")
    client = http.Client(transport=http.MockTransport(StandIn()))
    return tollgate.instrument(openai.OpenAI(api_key="sk-offline-demo", http_client=client, max_retries=0))


class Narrator:
    """Prints one aligned line per event: tenant, feature, what happened, the detail."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.events: list[str] = []

    def __call__(self, tenant: str, feature: str, event: str, detail: str) -> None:
        self.events.append(event)
        self.out.write(f"  {tenant:<8} {feature:<10} {event:<10} {detail}\n")
        self.out.flush()

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _money(value: float) -> str:
    return f"${value:.6f}"


def _last_record() -> tollgate.CallRecord:
    return tollgate.records(limit=1)[0]


def tollgate_command() -> str:
    """How to run the ``tollgate`` command from this shell, so that it works as printed: plain
    ``tollgate`` when that is on the PATH and is this installation's; else this environment's
    script by its path (``.venv/bin/tollgate``, the virtual environment need not be active);
    else this interpreter with ``-m tollgate``."""
    scripts = os.path.dirname(sys.executable)  # not resolved: a venv's python is a symlink
    own = shutil.which("tollgate", path=scripts)
    on_path = shutil.which("tollgate")
    if own is not None and on_path is not None and os.path.samefile(own, on_path):
        return "tollgate"
    if own is not None:
        return _as_typed(own)
    return f"{_as_typed(sys.executable)} -m tollgate"


def _as_typed(path: str) -> str:
    """``path`` as a shell command: relative to the current folder when inside it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    shown = absolute if relative.startswith("..") else relative
    return shlex.quote(shown if os.sep in shown else os.path.join(".", shown))


def _otlp_unreachable(url: str) -> str | None:
    """Why nothing can be sent to the OTLP/HTTP endpoint ``url`` (no connection), else None."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not host:
        return "not an http:// or https:// URL"
    try:
        socket.create_connection((host, port), timeout=OTLP_TIMEOUT).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


class _ExportErrors(logging.Handler):
    """Keeps what the OpenTelemetry exporters log while the demo runs (a failed or retried
    export), so that the end can say what happened, in one line, instead of a page of retries."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


@contextmanager
def _request(tenant: str, feature: str) -> Iterator[None]:
    """What a request handler of the app does: tag the request, apply the tenant's daily cap."""
    daily = tollgate.budget(
        usd=DAILY_CAP_USD, per="day", key="tenant", name="daily-cap-per-tenant", warn_at=WARN_AT
    )
    with tollgate.track(tenant=tenant, feature=feature), daily:
        yield


def _chat(tenant: str, feature: str, topic: str, turns: int) -> list[dict[str, str]]:
    history = [
        {"role": "system", "content": f"You are the {feature} assistant of a contracts app for {tenant}."}
    ]
    for turn in range(turns):
        history.append(
            {"role": "user", "content": f"{topic} (question {turn + 1} about case #{1000 + turn})"}
        )
        history.append({"role": "assistant", "content": _filler(40)})
    history.append({"role": "user", "content": f"{topic}: and what should I do next?"})
    return history


def _scene_normal_traffic(client: Any, say: Narrator) -> None:
    for tenant, feature, turns in (("acme", "search", 3), ("globex", "support", 3)):
        history = [{"role": "system", "content": f"You are the {feature} assistant of a contracts app."}]
        spent = 0.0
        with _request(tenant, feature):
            for turn in range(turns):
                history.append({"role": "user", "content": f"Please help with case #{1000 + turn}."})
                response = client.chat.completions.create(
                    model="gpt-4o-mini", messages=history, max_tokens=300
                )
                history.append({"role": "assistant", "content": response.choices[0].message.content or ""})
                spent += _last_record().usd
        say(tenant, feature, "ok", f"{turns} calls to gpt-4o-mini, {_money(spent)}")


def _scene_runaway_agent(client: Any, say: Narrator) -> None:
    task = [
        {"role": "system", "content": "You are a research agent. Write at length; never stop researching."},
        {"role": "user", "content": "Find every clause about liability in our 400 contracts."},
    ]
    spent, left = 0.0, 0.0
    with _request("initech", "agent"):
        for call in range(1, RUNAWAY_MAX_CALLS + 1):  # an agent loop that would run (and bill) all night
            try:
                response = client.chat.completions.create(model="gpt-4o", messages=task, max_tokens=400)
            except tollgate.BudgetExceeded as stopped:
                left = stopped.limit - stopped.spent - stopped.reserved
                say(
                    "initech",
                    "agent",
                    "BLOCK",
                    f"call {call} refused before it was sent: the day's {_money(stopped.limit)} cap has "
                    f"{_money(left)} left, the call could cost {_money(stopped.requested)}",
                )
                break
            spent += _last_record().usd
            say("initech", "agent", "ok", f"call {call} to gpt-4o, {_money(spent)} spent today")
            task = [*task, {"role": "assistant", "content": response.choices[0].message.content or ""}]
            task.append({"role": "user", "content": "Keep going: search deeper."})
        else:
            say("initech", "agent", "NOT STOPPED", f"{RUNAWAY_MAX_CALLS} calls, {_money(spent)}")
    question = [
        {"role": "system", "content": "search assistant"},
        {"role": "user", "content": "Find the NDA."},
    ]
    with _request("initech", "search"):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=question, max_tokens=200)
            say(
                "initech",
                "search",
                "ok",
                f"one counter per tenant, not per loop: a small call fits in the {_money(left)} left "
                f"({_money(_last_record().usd)})",
            )
        except tollgate.BudgetExceeded:
            say("initech", "search", "BLOCK", "the rest of initech's day does not pay for this call either")
    with _request("acme", "search"):
        client.chat.completions.create(model="gpt-4o-mini", messages=question, max_tokens=200)
        say("acme", "search", "ok", f"acme's counter is its own: unaffected ({_money(_last_record().usd)})")


def _scene_downgrade(client: Any, say: Narrator) -> None:
    messages = _chat("globex", "summarize", "Summarise the supplier agreement", 2)
    with (
        _request("globex", "summarize"),
        tollgate.budget(usd=0.003, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
    ):
        response = client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=600)
    say(
        "globex",
        "summarize",
        "DOWNGRADE",
        f"asked for gpt-4o (up to 600 tokens) under a $0.003 budget: {response.model} answered "
        f"for {_money(_last_record().usd)}",
    )


def _scene_clamp(client: Any, say: Narrator) -> None:
    messages = _chat("acme", "reports", "Draft the quarterly compliance report", 2)
    with _request("acme", "reports"), tollgate.budget(tokens=1500, on_exceed="clamp"):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=4000)
    record = _last_record()
    clamp = next(d for d in record.decisions if d.get("action") == "clamp")
    say(
        "acme",
        "reports",
        "CLAMP",
        f"max_tokens 4000 lowered to {clamp['max_output_tokens']:,} to fit a 1,500-token budget "
        f"({record.usage.total_tokens:,} tokens used)",
    )


def _scene_truncate(client: Any, say: Narrator) -> None:
    messages = _chat("globex", "support", "My invoice is wrong", 12)
    with _request("globex", "support"), tollgate.budget(tokens=600, on_exceed="truncate"):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=150)
    record = _last_record()
    cut = next(d for d in record.decisions if d.get("action") == "truncate")
    say(
        "globex",
        "support",
        "TRUNCATE",
        f"a {len(messages)}-message chat over a 600-token budget: the {cut['dropped_messages']} oldest "
        f"turns were dropped, system prompt and question kept ({record.usage.input_tokens:,} input tokens)",
    )


def _scene_cutoff(client: Any, say: Narrator) -> None:
    story = [
        {"role": "system", "content": "You are a storyteller."},
        {"role": "user", "content": "Tell me a very long story about the sea."},
    ]
    budget_usd = 0.00005
    received = 0
    with _request("acme", "stories"), tollgate.budget(usd=budget_usd, on_exceed="raise"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=story, stream=True)
        try:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received += 1
        except tollgate.BudgetExceeded as stopped:
            record = _last_record()
            say(
                "acme",
                "stories",
                "CUTOFF",
                f"a stream with no max_tokens under a {_money(budget_usd)} budget was closed after "
                f"{record.usage.output_tokens} output tokens; "
                f"the reader got BudgetExceeded(action={stopped.action!r})",
            )
            return
    say("acme", "stories", "ok", f"the stream ended by itself after {received} chunks")


def run(
    *,
    ledger: str | None = None,
    otlp: str | None = None,
    live: bool = False,
    out: TextIO | None = None,
    client_factory: Callable[[], Any] | None = None,
) -> int:
    """Run the demo, print its story and report; returns an exit status (0: every step happened).

    ``ledger``: a ``sqlite:///`` URI to keep the records in (default: :data:`DEFAULT_LEDGER`,
    emptied first). ``otlp``: an OTLP/HTTP endpoint for the spans and metrics. ``live``: use the
    real OpenAI API (``OPENAI_API_KEY``). ``client_factory``: an instrumented OpenAI client to
    use instead.
    """
    out = out or sys.stdout
    say = Narrator(out)
    if live and not os.environ.get("OPENAI_API_KEY"):
        return _error("--live needs OPENAI_API_KEY: export OPENAI_API_KEY=sk-..., or leave out --live")
    fresh = ledger is None
    ledger = ledger or DEFAULT_LEDGER
    if not ledger.startswith("sqlite:///") or ledger == "sqlite:///":
        return _error(f"--ledger {ledger!r}: use sqlite:///path.db", status=2)
    if otlp and (why := _otlp_unreachable(otlp)) is not None:
        return _error(
            f"--otlp {otlp}: nothing answers there ({why}); start an OTLP/HTTP collector on it "
            "(e.g. docker run -p 4318:4318 otel/opentelemetry-collector) or leave out --otlp"
        )
    tollgate.reset()
    try:
        tollgate.configure(ledger=ledger, store="memory://")
    except ValueError as exc:
        return _error(f"{exc}; or give --ledger sqlite:///path/in/a/folder/you/can/write.db")
    if fresh:
        settings().ledger.clear()  # the demo's own file: each run starts from nothing
    providers, exporter_log = None, _ExportErrors()
    dropped_before = 0
    if otlp:
        from tollgate import otel

        dropped_before = otel.dropped_spans()
        try:
            providers = otel.setup(
                service_name="tollgate-demo",
                endpoint=otlp,
                export_timeout=OTLP_TIMEOUT,
                shutdown_timeout=OTLP_TIMEOUT,
            )
        except ImportError:
            tollgate.reset()
            return _error('--otlp needs the OpenTelemetry SDK: pip install "tollgate-llm[otel]"')
        logging.getLogger("opentelemetry").addHandler(exporter_log)
    if client_factory is not None:
        client = client_factory()
    elif live:
        import openai

        client = tollgate.instrument(openai.OpenAI())
    else:
        client = offline_client()
    where = (
        "the real OpenAI API (this spends a few cents)"
        if live
        else "a stand-in for api.openai.com in this process"
    )
    say.line("tollgate demo: three tenants, an agent loop, and budgets")
    say.line(f"calls go to {where}; records go to {ledger}")
    say.line(
        f"every request runs under a daily cap of ${DAILY_CAP_USD} per tenant, with alerts at "
        f"{' and '.join(f'{t:.0%}' for t in WARN_AT)}: "
        f'tollgate.budget(usd={DAILY_CAP_USD}, per="day", key="tenant", warn_at={WARN_AT})\n'
    )
    started = time.time()

    def alert(fired: tollgate.Alert) -> None:  # what an on-call hook (or tollgate.Webhook) gets
        share = f"{fired.threshold:.0%}" if fired.threshold is not None else "burn rate"
        say(
            fired.key.get("tenant", ""),
            tollgate.current_tags().get("feature", ""),
            "ALERT",
            f"{share} of the day's cap spent ({_money(fired.spent)} of {_money(fired.limit)}): "
            "on_alert fires before the cap, once per tenant and day",
        )

    tollgate.configure(on_alert=alert)
    try:
        _scene_normal_traffic(client, say)
        _scene_runaway_agent(client, say)
        _scene_downgrade(client, say)
        _scene_clamp(client, say)
        _scene_truncate(client, say)
        _scene_cutoff(client, say)
        report = tollgate.report(group_by=["tenant", "feature"], since=started)
        say.line("\nWhere the money went (read back from the ledger):\n")
        say.line(str(report))
        total = report.total
        rows_usd, total_usd = report.printed_usd()
        adds_up = (  # as printed, to the last digit
            sum(Decimal(cell.strip("$").replace(",", "")) for cell in rows_usd)
            == Decimal(total_usd.strip("$").replace(",", ""))
            and sum(row["calls"] for row in report) == total["calls"]
        )
        say.line(
            f"\n{total['calls']} calls, {total['blocked_calls']} blocked before they were sent, "
            f"{total['input_tokens'] + total['output_tokens']:,} tokens, {total_usd} in all"
            + (" (the rows add up to the total)" if adds_up else " (THE ROWS DO NOT ADD UP)")
        )
    finally:
        tollgate.reset()  # closes the ledger: every record is on disk
        if providers is not None:
            logging.getLogger("tollgate").addHandler(exporter_log)  # "did not take the last spans"
            providers.shutdown()
            for name in ("opentelemetry", "tollgate"):
                logging.getLogger(name).removeHandler(exporter_log)
    sent = True
    if providers is not None:
        from tollgate import otel

        lost = otel.dropped_spans() - dropped_before
        sent = not lost and not exporter_log.messages
        if sent:
            say.line(f"spans and metrics were sent to {otlp}")
        else:
            said = f"; the exporter said: {exporter_log.messages[0][:200]}" if exporter_log.messages else ""
            say.line(
                f"spans and metrics could not all be sent to {otlp} ({lost} spans lost{said}): check "
                "that an OTLP/HTTP collector listens there and accepts /v1/traces and /v1/metrics"
            )
    try:
        page, headline = _write_page(ledger, since=started)
    except (OSError, ValueError) as exc:
        say.line(f"\nthe report page could not be written: {exc}")
        same = False
    else:  # the page's figures are the printed ones, to the digit
        same = headline["usd"] == total_usd and headline["calls"] == f"{total['calls']:,}"
        say.line(
            f"\nthe same report as a page, with charts: {page} (open it in a browser)"
            + ("" if same else " (ITS TOTALS DIFFER FROM THE TABLE'S)")
        )
    kept = f" (kept in {ledger.removeprefix('sqlite:///')}; the next demo run empties it)" if fresh else ""
    command, quoted = tollgate_command(), shlex.quote(ledger)
    say.line(
        f"\nsee it again, grouped as you like{kept}:\n"
        f"  {command} dashboard --ledger {quoted} --group-by tenant,feature   # live, in a browser\n"
        f"  {command} report --ledger {quoted} --group-by tenant,feature"
    )
    wanted = {"ALERT", "BLOCK", "DOWNGRADE", "CLAMP", "TRUNCATE", "CUTOFF"}
    alert_first = "ALERT" in say.events and say.events.index("ALERT") < say.events.index("BLOCK")
    return 0 if wanted <= set(say.events) and alert_first and adds_up and sent and same else 1


def _write_page(ledger: str, *, since: float | None = None) -> tuple[str, dict[str, str]]:
    """Write the report of the ``sqlite:///`` ``ledger``'s calls since ``since`` as an HTML page
    beside it (``tollgate-demo.html`` beside ``tollgate-demo.db``), grouped as the demo prints
    it; returns the page's path, as the ledger's is written, and its headline figures."""
    from pathlib import Path

    from tollgate import html
    from tollgate.ledger.summary import summarize

    path = ledger.removeprefix("sqlite:///")
    page = str(Path(path).with_suffix(".html"))
    if page == path:  # a ledger named *.html: never write over it
        page = f"{path}.report.html"
    summary = summarize(ledger, since=since, group_by=["tenant", "feature"])
    Path(page).write_text(html.render_report(summary, title="tollgate demo: where the money went"), "utf-8")
    return page, html.page_data(summary)["headline"]


def _error(message: str, status: int = 1) -> int:
    """One line on stderr, as the ``tollgate`` command prints its errors; returns ``status``."""
    sys.stdout.flush()
    print(f"tollgate demo: error: {message}", file=sys.stderr)
    return status
