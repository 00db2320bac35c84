"""Instrument an Anthropic client, with a budget that downgrades Sonnet to Haiku.

Run: python examples/anthropic_instrument.py          (offline: no API key, no network)
     python examples/anthropic_instrument.py --live   (the real API; needs ANTHROPIC_API_KEY)

Offline, the client is given a ``MockTransport`` that answers ``/v1/messages`` like the API,
usage included, built on the HTTP library the installed Anthropic SDK sends through (httpx2 for
anthropic 2.x, httpx before).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anthropic

import tollgate
from tollgate.demo import http_library
from tollgate.pricing.tokens import count_messages, count_text

HTTP = http_library("anthropic")

ANSWER = "Paris is the capital of France; it has been since the tenth century, give or take."


def fake_messages_api(request: Any) -> Any:
    """``POST /v1/messages`` as Anthropic answers it (token counts approximated offline)."""
    body = json.loads(request.content)
    text = ANSWER
    message = {
        "id": f"msg_{os.urandom(8).hex()}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": count_messages(body["messages"], body["model"], "anthropic"),
            "output_tokens": min(count_text(text, body["model"], "anthropic"), body["max_tokens"]),
        },
    }
    return HTTP.Response(200, json=message)


def make_client() -> anthropic.Anthropic:
    if "--live" in sys.argv:
        return anthropic.Anthropic()
    http = HTTP.Client(transport=HTTP.MockTransport(fake_messages_api))
    return anthropic.Anthropic(api_key="sk-ant-offline", http_client=http, max_retries=0)


def main() -> None:
    client = tollgate.instrument(make_client())
    question = [{"role": "user", "content": "What is the capital of France?"}]

    with tollgate.track(tenant="acme", feature="geo"):
        reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=300, messages=question)
        print(f"{reply.model}: {reply.content[0].text}")

        # Up to 1,000 output tokens of Sonnet may cost $0.015, over the $0.01 budget; Haiku fits.
        with tollgate.budget(
            usd=0.01, on_exceed="downgrade", downgrade={"claude-sonnet-4-6": "claude-haiku-4-5"}
        ):
            reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=1000, messages=question)
        print(f"under a $0.01 budget, claude-sonnet-4-6 was asked for and {reply.model} answered")

    print()
    print(tollgate.report(group_by=["tenant", "feature"]))


if __name__ == "__main__":
    main()
