"""Instrument an OpenAI client: every call attributed to a tenant and feature, priced, reported.

Run: python examples/openai_instrument.py          (offline: no API key, no network)
     python examples/openai_instrument.py --live   (the real API; needs OPENAI_API_KEY)

Offline, the real ``openai`` SDK talks to a stand-in for api.openai.com that runs in this
process (``tollgate.demo.StandIn``, a ``MockTransport`` handler of the HTTP library the
installed SDK runs on: httpx, or httpx2 for openai 3.x).
"""

from __future__ import annotations

import sys

import openai

import tollgate
from tollgate.demo import StandIn, http_library


def make_client() -> openai.OpenAI:
    if "--live" in sys.argv:
        return openai.OpenAI()
    http = http_library("openai")
    return openai.OpenAI(
        api_key="sk-offline", http_client=http.Client(transport=http.MockTransport(StandIn()))
    )


def main() -> None:
    client = tollgate.instrument(make_client())  # a thin proxy: still an openai.OpenAI

    with tollgate.track(tenant="acme", feature="search", user_id="alice"):
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Find the supplier agreement."}],
            max_tokens=100,
        )
        print("chat:", (reply.choices[0].message.content or "")[:60], "...")

        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "And the NDA?"}],
            max_tokens=50,
            stream=True,  # tollgate asks for the usage chunk and hides it from you
        )
        print("stream:", "".join(c.choices[0].delta.content or "" for c in stream if c.choices)[:60], "...")

    with tollgate.track(tenant="globex", feature="support"):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Reset my password."}], max_tokens=80
        )

    print()
    print(tollgate.report(group_by=["tenant", "feature"]))
    estimate = tollgate.estimate("gpt-4o", [{"role": "user", "content": "Summarise this."}], max_tokens=500)
    print(f"\nbefore sending: gpt-4o with max_tokens=500 costs at most ${estimate.usd:.6f}")


if __name__ == "__main__":
    main()
