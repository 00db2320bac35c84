"""tollgate.Webhook: alerts posted as Slack-compatible JSON to a real local HTTP server, with the
HTTP sink's retries, from a background thread."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import tollgate
from tollgate.alerts import Alert

TOKEN = "Bearer hook-s3cret"


class Receiver:
    """A webhook endpoint: answers the statuses in ``script`` first, then 200; keeps each request."""

    def __init__(self) -> None:
        self.script: deque[int] = deque()
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                status = outer.script.popleft() if outer.script else 200
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append({"status": status, "headers": headers, "body": raw})
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/T000/B000"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests if r["status"] == 200]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    r = Receiver()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()


def alert() -> Alert:
    return Alert(
        kind="threshold",
        name="usd=5/day/tenant",
        key={"tenant": "acme"},
        unit="usd",
        spent=4.01,
        limit=5.0,
        threshold=0.8,
        window_end=datetime(2026, 12, 8, tzinfo=UTC),
    )


def test_an_alert_is_posted_as_slack_json_after_retries(receiver: Receiver) -> None:
    receiver.script.extend([503, 500])
    hook = tollgate.Webhook(receiver.url, {"Authorization": TOKEN}, backoff=0.01, max_backoff=0.05)
    try:
        hook(alert())
        hook.flush(5)
    finally:
        hook.close()
    assert [r["status"] for r in receiver.requests] == [503, 500, 200]
    (body,) = receiver.delivered()
    assert body["text"] == (
        "tollgate: budget 'usd=5/day/tenant' (tenant=acme) crossed 80% of its limit: "
        "$4.01 of $5 (80%) spent, window ends 2026-12-08 00:00 UTC"
    )
    assert body["alert"]["kind"] == "threshold" and body["alert"]["key"] == {"tenant": "acme"}
    sent = receiver.requests[-1]["headers"]
    assert sent["content-type"] == "application/json" and "content-encoding" not in sent
    assert sent["authorization"] == TOKEN
    assert hook.stats()["sent"] == 1 and hook.stats()["retries"] == 2


def test_alerts_from_calls_reach_the_webhook_without_blocking_them(receiver: Receiver) -> None:
    receiver.script.extend([500] * 3)
    hook = tollgate.Webhook(receiver.url, backoff=0.2, max_backoff=0.2)
    tollgate.configure(on_alert=hook)
    from tests.budgets.test_control import SAY_OK, Provider, usd

    with tollgate.budget(usd=usd(20) * 1.5, warn_at=0.5, name="hooked"):
        Provider().client().chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
    assert hook.stats()["sent"] == 0  # the call did not wait: the sink's thread is still retrying
    hook.flush(5)
    hook.close()
    (body,) = receiver.delivered()
    assert body["alert"]["name"] == "hooked" and "Say OK" not in json.dumps(body)


def test_a_webhook_url_is_checked_at_creation() -> None:
    with pytest.raises(ValueError, match="scheme"):
        tollgate.Webhook("hooks.slack.com/services/x")
