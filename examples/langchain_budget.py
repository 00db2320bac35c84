"""A LangChain chat model under a tollgate budget: attributed, downgraded, clamped, blocked.

Run: python examples/langchain_budget.py          (offline: no API key, no network)
     python examples/langchain_budget.py --live   (the real API; needs OPENAI_API_KEY)

Needs ``pip install -e integrations/langchain langchain-openai``. Offline, the real
``langchain-openai`` / ``openai`` stack talks to a stand-in for api.openai.com that runs in this
process (a ``MockTransport`` handler below, on the HTTP library the openai SDK runs on: httpx, or
httpx2 for openai 3.x), answering in OpenAI's wire format.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from langchain_openai import ChatOpenAI

import tollgate
from tollgate.demo import http_library
from tollgate_langchain import TollgateCallbackHandler, guard

HTTP = http_library("openai")


def stand_in(request: Any) -> Any:
    """A tiny api.openai.com: echoes which model answered, with a usage object."""
    body = json.loads(request.content)
    words = " ".join(str(m.get("content", "")) for m in body["messages"]).split()
    text = f"({body['model']}) Noted: {' '.join(words[-6:])}"
    usage = {"prompt_tokens": 8 * len(body["messages"]) + len(words), "completion_tokens": len(text.split())}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    message = {"role": "assistant", "content": text}
    if body.get("stream"):
        chunks = [
            {"choices": [{"index": 0, "delta": message, "finish_reason": "stop"}]},
            {"choices": [], "usage": usage},
        ]
        lines = "".join(
            "data: "
            + json.dumps(
                {"id": "chatcmpl-offline", "object": "chat.completion.chunk", "model": body["model"], **c}
            )
            + "\n\n"
            for c in chunks
        )
        return HTTP.Response(
            200, text=lines + "data: [DONE]\n\n", headers={"content-type": "text/event-stream"}
        )
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return HTTP.Response(
        200,
        json={
            "id": "chatcmpl-offline",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [choice],
            "usage": usage,
        },
    )


def model(name: str, **kwargs: Any) -> ChatOpenAI:
    if "--live" in sys.argv:
        return ChatOpenAI(model=name, **kwargs)
    transport = HTTP.MockTransport(stand_in)
    return ChatOpenAI(
        model=name, api_key="sk-offline", http_client=HTTP.Client(transport=transport), **kwargs
    )


def main() -> None:
    # 1. A callback handler: every call recorded, priced and attributed (metadata -> tags).
    chat = model("gpt-4o-mini", callbacks=[TollgateCallbackHandler()])
    reply = chat.invoke("Summarise the supplier agreement.", config={"metadata": {"tenant": "acme"}})
    print("callback:", reply.content)

    # 2. guard(): the budget's actions applied. gpt-4o would need more than this budget
    #    allows for its worst case, so the call is downgraded to gpt-4o-mini, then clamped.
    safe = guard(model("gpt-4o", max_tokens=400))
    with (
        tollgate.track(feature="search"),
        tollgate.budget(usd=0.002, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
    ):
        print("guard:   ", safe.invoke("Find the renewal clause.").content)
    with tollgate.budget(tokens=150, on_exceed="clamp"):
        print("stream:  ", "".join(str(c.content) for c in safe.stream("List three risks.")))

    # 3. A hard cap: the call is refused before anything is sent.
    try:
        with tollgate.budget(usd=0.000001):
            safe.invoke("One more question.")
    except tollgate.BudgetExceeded as exc:
        print("blocked: ", exc)

    print()
    for row in tollgate.report(group_by=["tenant", "feature"]):
        print(row["tags"], row["calls"], "calls", f"${row['usd']:.6f}", row["blocked_calls"], "blocked")
    for rec in tollgate.settings().ledger.records():
        actions = [d["action"] for d in rec.decisions]
        print(f"{rec.request_model:12} -> {rec.response_model or '-':12} {rec.status:8} {actions}")


if __name__ == "__main__":
    main()
