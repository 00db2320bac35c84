"""Instrument a google-genai client, with a token budget that clamps the output cap.

Run: python examples/gemini_instrument.py          (offline: no API key, no network)
     python examples/gemini_instrument.py --live   (the real API; needs GEMINI_API_KEY)

Offline, the client is given an HTTP client with a ``MockTransport`` (through
``HttpOptions(httpx_client=...)``) that answers ``generateContent`` like the Gemini API, built
with the library the installed google-genai sends through (httpx2 from 3.x, httpx before).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from google import genai
from google.genai import types

import tollgate
from tollgate.demo import http_library
from tollgate.pricing.tokens import count_text

http = http_library("gemini")

ANSWER = "A budget is a promise you make to your future self."


def fake_gemini_api(request: Any) -> Any:
    """``POST .../models/{model}:generateContent`` as the Gemini API answers it."""
    body = json.loads(request.content)
    model = request.url.path.rsplit("/models/", 1)[1].split(":", 1)[0]
    prompt = " ".join(p.get("text", "") for c in body["contents"] for p in c["parts"])
    cap = (body.get("generationConfig") or {}).get("maxOutputTokens") or 8192
    usage = {
        "promptTokenCount": count_text(prompt, model, "gemini"),
        "candidatesTokenCount": min(count_text(ANSWER, model, "gemini"), cap),
    }
    usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]
    return http.Response(
        200,
        json={
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": ANSWER}]}, "finishReason": "STOP"}
            ],
            "usageMetadata": usage,
            "modelVersion": model,
        },
    )


def make_client() -> genai.Client:
    if "--live" in sys.argv:
        return genai.Client()
    stand_in = http.Client(transport=http.MockTransport(fake_gemini_api))
    return genai.Client(api_key="offline", http_options=types.HttpOptions(httpx_client=stand_in))


def main() -> None:
    client = tollgate.instrument(make_client())

    with tollgate.track(tenant="acme", feature="quotes"):
        reply = client.models.generate_content(
            model="gemini-2.5-flash", contents="Say something about budgets."
        )
        print("gemini:", reply.text)

        # 5,000 output tokens do not fit a 1,000-token budget: the cap is lowered instead of refusing.
        with tollgate.budget(tokens=1000, on_exceed="clamp"):
            client.models.generate_content(
                model="gemini-2.5-flash",
                contents="Say something else about budgets.",
                config=types.GenerateContentConfig(max_output_tokens=5000),
            )
        clamp = tollgate.report().records[-1].decisions[0]
        print(
            f"under a 1,000-token budget, max_output_tokens 5000 was lowered to {clamp['max_output_tokens']}"
        )

    print()
    print(tollgate.report(group_by=["tenant", "model"]))


if __name__ == "__main__":
    main()
