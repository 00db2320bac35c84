"""tollgate quick start: attribute every LLM call's tokens and dollars, offline.

Run: python examples/quickstart.py        (no API key, no network)

The real OpenAI SDK talks to a stand-in for the API that runs in this process (an
``MockTransport`` answering like api.openai.com, usage included, built on the HTTP library the
installed SDK runs on: httpx, or httpx2 for openai 3.x). Set OPENAI_API_KEY and
pass --live to send the same calls to the real API instead.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import openai

import tollgate
from tollgate.demo import http_library
from tollgate.pricing.tokens import count_messages, count_text

ANSWERS = {
    "search": "The three closest matches are the 2023 supplier agreement, the NDA, and the SLA.",
    "support": "I have reset your password; check your inbox for the link.",
}


def fake_openai(request: Any) -> Any:
    """Answers /v1/chat/completions like OpenAI does, with exact usage figures."""
    body = json.loads(request.content)
    model = body["model"]
    feature = "search" if "search" in body["messages"][0]["content"] else "support"
    answer = ANSWERS[feature]
    usage = {
        "prompt_tokens": count_messages(body["messages"], model),
        "completion_tokens": min(count_text(answer, model), body.get("max_tokens") or 10**9),
    }
    if "agent" in body["messages"][0]["content"]:  # a verbose agent: it writes up to its cap every time
        usage["completion_tokens"] = body.get("max_tokens") or 4096
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    created, rid = int(time.time()), f"chatcmpl-demo{os.urandom(4).hex()}"
    if body.get("stream"):
        pieces = answer.split(" ")
        events = [
            {"choices": [{"index": 0, "delta": {"content": p + " "}, "finish_reason": None}], "usage": None}
            for p in pieces
        ]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"choices": [], "usage": usage})
        sse = "".join(
            "data: "
            + json.dumps(
                {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, **e}
            )
            + "\n\n"
            for e in events
        )
        return http_library("openai").Response(
            200, text=sse + "data: [DONE]\n\n", headers={"content-type": "text/event-stream"}
        )
    completion = {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }
    return http_library("openai").Response(200, json=completion)


def make_client() -> openai.OpenAI:
    if "--live" in sys.argv:
        return openai.OpenAI()
    http = http_library("openai")
    transport = http.MockTransport(fake_openai)
    return openai.OpenAI(api_key="sk-offline-demo", http_client=http.Client(transport=transport))


def agent_turns(client: openai.OpenAI, feature: str, turns: int, model: str) -> None:
    """An agent-style loop: the history grows every turn, so every turn costs more."""
    history = [{"role": "system", "content": f"You are the {feature} assistant of a contracts app."}]
    for turn in range(turns):
        history.append(
            {"role": "user", "content": f"Request {turn + 1}: please help with case #{1000 + turn}."}
        )
        response = client.chat.completions.create(model=model, messages=history)  # type: ignore[arg-type]
        history.append({"role": "assistant", "content": response.choices[0].message.content or ""})


def budgets(client: openai.OpenAI) -> None:
    """A runaway loop stopped by a budget; a downgrade and a clamp instead of a refusal."""
    question = [
        {"role": "system", "content": "search assistant"},
        {"role": "user", "content": "Find the NDA."},
    ]
    agent_task = [{"role": "system", "content": "research agent"}, question[1]]

    @tollgate.budget(usd=0.02)
    def runaway_agent() -> int:
        calls = 0
        while True:  # a loop that would run (and bill) all night
            client.chat.completions.create(model="gpt-4o", messages=agent_task, max_tokens=800)  # type: ignore[arg-type]
            calls += 1
            spent = tollgate.report(where={"feature": "agent"}).total["usd"]
            print(f"  agent call {calls}: ${spent:.6f} so far")

    print("A runaway agent loop under a $0.02 budget (each call may cost up to $0.008):")
    with tollgate.track(tenant="acme", feature="agent"):
        try:
            runaway_agent()
        except tollgate.BudgetExceeded as stopped:
            print(f"  stopped before the next call: {stopped}")

    with (
        tollgate.track(tenant="acme", feature="cheap"),
        tollgate.budget(usd=0.002, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
    ):
        response = client.chat.completions.create(model="gpt-4o", messages=question, max_tokens=800)  # type: ignore[arg-type]
    print(f"\nA $0.002 budget with on_exceed='downgrade': gpt-4o was asked for, {response.model} answered")

    with tollgate.track(tenant="acme", feature="short"), tollgate.budget(tokens=200, on_exceed="clamp"):
        client.chat.completions.create(model="gpt-4o-mini", messages=question, max_tokens=800)  # type: ignore[arg-type]
    clamp = tollgate.report(where={"feature": "short"}).records[0].decisions[0]
    lowered = clamp["max_output_tokens"]
    print(f"A 200-token budget with on_exceed='clamp': max_tokens 800 was lowered to {lowered}")


def main() -> None:
    client = tollgate.instrument(make_client())
    print("tollgate quick start: two tenants, several features, budgets, one streamed answer\n")

    estimate = tollgate.estimate(
        "gpt-4o", [{"role": "user", "content": "Summarise this contract."}], max_tokens=500
    )
    print(
        f"pre-flight estimate for gpt-4o: {estimate.input_tokens} input tokens, "
        f"worst case ${estimate.usd:.6f} with max_tokens=500\n"
    )

    for tenant, turns in (("acme", 6), ("globex", 3)):
        with tollgate.track(tenant=tenant, user_id=f"{tenant}-admin"):
            with tollgate.track(feature="search"):
                agent_turns(client, "search", turns, "gpt-4o")
            with tollgate.track(feature="support"):
                agent_turns(client, "support", turns, "gpt-4o-mini")

    with tollgate.track(tenant="acme", feature="support"):
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "support assistant"},
                {"role": "user", "content": "Reset?"},
            ],
            stream=True,
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        print(f"streamed answer: {streamed.strip()!r} (usage reported in the stream's last chunk)\n")

    budgets(client)

    print("\nSpend by tenant and feature:")
    print(tollgate.report(group_by=["tenant", "feature"]))
    print("\nSpend by model:")
    print(tollgate.report(group_by="model"))
    total = tollgate.report().total
    print(
        f"\n{total['calls']} calls, {total['input_tokens']:,} input + "
        f"{total['output_tokens']:,} output tokens, ${total['usd']:.6f} in all"
    )


if __name__ == "__main__":
    main()
