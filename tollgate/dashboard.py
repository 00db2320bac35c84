"""``tollgate dashboard``: a ledger's spend and a store's standing limits on a local web page,
kept up to date while the application runs.

    tollgate dashboard --ledger sqlite:///tollgate.db --store sqlite:///tollgate.db
    tollgate dashboard: http://127.0.0.1:8765/ (read-only; Ctrl-C stops it)

A :class:`Dashboard` answers three GETs: ``/``, the report page of :mod:`tollgate.html` with
``refresh="data.json"`` and the standing limits below it; ``/data.json``, the page's data
(:func:`tollgate.html.page_data`), which the page fetches every few seconds and updates itself
from; and ``/limits.json``, the store's standing limits with what each has spent, reserved and
has left, as ``tollgate limits`` shows them. :func:`make_server` serves it with the standard
library's threading HTTP server.

It only reads: the summary is one read-only SQL aggregation of the ledger, made again at most
once a second however many pages poll, and the limits are read from the store as
``tollgate limits`` reads them. Windowed budgets made in code (``tollgate.budget(usd=5,
per="day")``) keep their definition in the process that made them, so the dashboard shows the
store's standing limits (``tollgate limits set``, ``tollgate.set_limit``) only.

There is no authentication: it listens on 127.0.0.1 unless told otherwise, and then answers
only requests addressed to a loopback name, so a web page elsewhere cannot read it by pointing
its own host name at 127.0.0.1 (DNS rebinding).

>>> board = Dashboard(lambda: {"total": {"calls": 2, "usd": 0.5}}, ledger="sqlite:///t.db")
>>> status, kind, body = board.answer("GET", "/data.json")
>>> status, kind, json.loads(body)["headline"]["usd"]
(200, 'application/json', '$0.500000')
>>> board.answer("POST", "/data.json")[0], board.answer("GET", "/nope")[0]
(405, 404)
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import urlsplit

from tollgate import html

#: Seconds one summary (and one reading of the limits) serves every request that follows it.
CACHE_SECONDS = 1.0
#: The address the dashboard listens on unless told otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

#: A summary to show: what :func:`tollgate.ledger.summary.summarize` returns, made afresh.
Summary = Callable[[], Mapping[str, Any]]
#: The standing limits to show, as ``/limits.json`` serves them: ``{"store": URI, "limits":
#: [rows as tollgate limits --format json lists them], "table": the text tollgate limits prints}``.
Limits = Callable[[], Mapping[str, Any]]


class _Recent:
    """The value ``make()`` returned, made again once it is ``seconds`` old, or four times as old
    as it took to make (a ledger of millions of calls takes seconds to summarise: the dashboard
    then spends at most a fifth of its time on it). Requests wait for the one being made rather
    than each making their own: ten open tabs cost one query."""

    def __init__(self, make: Callable[[], Any], seconds: float = CACHE_SECONDS) -> None:
        self._make = make
        self._seconds = seconds
        self._lock = threading.Lock()
        self._value: Any = None
        self._made_at: float | None = None
        self._fresh_for = seconds

    def get(self) -> Any:
        with self._lock:
            now = time.monotonic()
            if self._made_at is None or now - self._made_at >= self._fresh_for:
                self._value = self._make()
                self._made_at = time.monotonic()
                self._fresh_for = max(self._seconds, 4 * (self._made_at - now))
            return self._value


class Dashboard:
    """What the dashboard serves, by path: the page, its data and the standing limits.

    ``summary`` makes the summary to show (called at most once per :data:`CACHE_SECONDS`);
    ``limits``, when given, the standing limits (else the page says none are shown and
    ``/limits.json`` answers 404). ``ledger`` and ``store`` name them on the page. I/O-free
    apart from those two callables: :meth:`answer` maps a method and path to a response.

    >>> board = Dashboard(lambda: {}, ledger="sqlite:///t.db", title="Spend")
    >>> status, kind, body = board.answer("GET", "/?tab=1")
    >>> status, kind, b"<title>Spend</title>" in body, b'data-refresh="data.json"' in body
    (200, 'text/html; charset=utf-8', True, True)
    """

    def __init__(
        self,
        summary: Summary,
        *,
        ledger: str,
        limits: Limits | None = None,
        store: str | None = None,
        title: str = "tollgate dashboard",
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.title = title
        self._summary = _Recent(summary)
        self._limits = _Recent(limits) if limits is not None else None

    def data(self) -> dict[str, Any]:
        """The page's data (:func:`tollgate.html.page_data`) of a summary at most a second old."""
        return html.page_data(self._summary.get())

    def limits(self) -> Mapping[str, Any] | None:
        """The standing limits, at most a second old; None when no store was given."""
        return None if self._limits is None else self._limits.get()

    def page(self) -> str:
        """The report page, refreshing itself from ``data.json``, with the limits section."""
        text = html.render_report(self._summary.get(), title=self.title, refresh="data.json")
        return text.replace("</main>", self._limits_section() + "\n</main>", 1)

    def answer(self, method: str, target: str) -> tuple[int, str, bytes]:
        """The status, content type and body for ``method target`` (HEAD: as GET; the server
        leaves the body out). Only GET and HEAD are answered: the dashboard changes nothing."""
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, b"405 method not allowed: the dashboard only reads (GET, HEAD)\n"
        path = urlsplit(target).path
        if path in ("/", "/index.html"):
            return 200, _HTML, self.page().encode()
        if path == "/data.json":
            return 200, _JSON, _json(self.data())
        if path == "/limits.json" and self._limits is not None:
            return 200, _JSON, _json(self.limits())
        return 404, _TEXT, f"404 not found: {path} (there are /, /data.json and /limits.json)\n".encode()

    def _limits_section(self) -> str:
        e = escape
        if self._limits is None:
            body = (
                '<p class="note" id="limits-none">No store given, so no standing limits are shown: '
                "start the dashboard with --store.</p>"
            )
            return _SECTION.format(store="", body=body, script="")
        try:
            limits = self.limits() or {}
            table = str(limits.get("table") or "")
        except Exception as exc:  # the store cannot be reached: the spend still shows
            table = f"could not read the standing limits: {' '.join(str(exc).split())}"
        body = f'<pre id="limits-table">{e(table)}</pre>'
        store = f" in <code>{e(self.store)}</code>" if self.store else ""
        return _SECTION.format(store=store, body=body, script=f"<script>{_LIMITS_JS}</script>")


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


_HTML, _JSON, _TEXT = "text/html; charset=utf-8", "application/json", "text/plain; charset=utf-8"

_SECTION = """<section id="limits">
<h2>Standing limits{store}</h2>
<style>#limits pre {{ margin: 0; overflow: auto; font-size: 0.85rem; line-height: 1.4; }}</style>
{body}
<p class="note">The store's standing limits (<code>tollgate limits</code>, <code>tollgate.set_limit</code>),
as <code>tollgate limits</code> shows them. Budgets made in code with <code>tollgate.budget(...)</code>
live in the process that made them and are not shown.</p>
<p class="meta status" id="limits-status" hidden></p>
{script}
</section>"""

#: Refreshes the limits table from ``limits.json`` as report.js refreshes the rest of the page.
_LIMITS_JS = """(function () {
  "use strict";
  var seconds = Number(document.body.dataset.refreshSeconds) || 5;
  var done = 0;
  function once() {
    window.fetch("limits.json", { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        document.getElementById("limits-table").textContent = String(data.table || "");
        document.getElementById("limits-status").hidden = true;
        done += 1;
        document.body.dataset.limitsRefreshes = String(done);
      })
      .catch(function (err) {
        var el = document.getElementById("limits-status");
        el.textContent = "Could not refresh the limits: " + err.message +
          "; trying again in " + seconds + " s.";
        el.hidden = false;
      })
      .then(function () { window.setTimeout(once, seconds * 1000); });
  }
  window.setTimeout(once, seconds * 1000);
})();"""


# -- the server -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "tollgate-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond()

    def do_HEAD(self) -> None:
        self._respond()

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler looks up do_<METHOD>: every method but GET and HEAD is refused
        # (405, with Allow), not answered 501 as an unknown one would be.
        if name.startswith("do_"):
            return self._respond
        raise AttributeError(name)

    def _respond(self) -> None:
        if not self.server.host_allowed(self.headers.get("Host")):
            status, kind, body = 403, _TEXT, b"403 forbidden: the dashboard answers to localhost only\n"
        else:
            try:
                status, kind, body = self.server.dashboard.answer(self.command, self.path)
            except Exception as exc:  # the ledger or store failed: say why, keep serving
                message = " ".join(str(exc).split()) or type(exc).__name__
                self.server.log(f"{self.command} {self.path}: {message}")
                status, kind, body = 500, _JSON, _json({"error": message})
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        if status == 405:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a page polling every 5 s would fill the terminal; failures are logged in _respond


class DashboardServer(ThreadingHTTPServer):
    """The HTTP server of a :class:`Dashboard`: a thread per request (daemon threads, so a
    stuck browser never holds up Ctrl-C). ``url`` is where it listens (port 0: a free one)."""

    daemon_threads = True

    def __init__(self, dashboard: Dashboard, host: str, port: int, *, log: TextIO | None = None) -> None:
        self.dashboard = dashboard
        self._log = log
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self.local_only = is_loopback(host)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{f'[{name}]' if ':' in name else name}:{port}/"

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request's Host header may be answered: any, unless the server listens on
        a loopback address, where only loopback names are (a rebound DNS name is not)."""
        if not self.local_only:
            return True
        if not header:
            return False
        name = header.rsplit("]", 1)[0].lstrip("[") if header.startswith("[") else header.split(":")[0]
        return is_loopback(name)

    def log(self, message: str) -> None:
        if self._log is not None:
            print(f"tollgate dashboard: {message}", file=self._log, flush=True)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: ``localhost``, ``127.0.0.0/8`` or ``::1``.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(
    dashboard: Dashboard, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, log: TextIO | None = None
) -> DashboardServer:
    """A server for ``dashboard`` listening on ``host:port``, not yet serving: call its
    ``serve_forever()`` (and ``shutdown()`` from another thread, or Ctrl-C, to stop it).
    Failures while answering are written to ``log`` (default: stderr) as one line each.

    >>> server = make_server(Dashboard(lambda: {}, ledger="memory://"), port=0)
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.server_close()
    """
    return DashboardServer(dashboard, host, port, log=sys.stderr if log is None else log)
