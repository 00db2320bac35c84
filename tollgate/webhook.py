"""``tollgate.Webhook``: alerts posted to a URL (a Slack incoming webhook, or any receiver).

Kept apart from :mod:`tollgate.alerts` because the HTTP sink it builds on imports
:mod:`urllib.request` (~25 ms): only a process that posts alerts pays for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from tollgate.alerts import Alert
from tollgate.ledger.http import HttpSink


class Webhook(HttpSink):
    """Post each alert to ``url`` as Slack-compatible JSON (``{"text": ..., "alert": {...}}``),
    from a background thread, with the HTTP sink's retries and backoff (see
    :class:`~tollgate.HttpSink`): ``configure(on_alert=Webhook("https://hooks.slack.com/..."))``.
    Never blocks the call that fired the alert, never raises; losses are counted in ``stats()``.
    """

    content_headers: ClassVar[dict[str, str]] = {"Content-Type": "application/json"}  # Slack takes no gzip

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, **options: Any) -> None:
        super().__init__(url, headers, **{"batch_size": 1, "keep": 0, "flush_interval": 0.05, **options})

    def __call__(self, alert: Alert) -> None:  # type: ignore[override]
        self.enqueue(alert)

    def encode(self, items: list[dict[str, Any]], batch_id: str) -> bytes | None:
        alert = items[0]
        return json.dumps({"text": f"tollgate: {alert['message']}", "alert": alert}).encode("utf-8")
