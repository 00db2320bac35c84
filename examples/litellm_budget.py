"""LiteLLM under a tollgate budget: recorded, downgraded, clamped (streamed), blocked; SDK and Router.

Run: python examples/litellm_budget.py          (offline: no API key, no network)
     python examples/litellm_budget.py --live   (the real API; needs OPENAI_API_KEY)

Needs ``pip install -e integrations/litellm``. Offline, LiteLLM talks (``api_base=``) to a stand-in
for api.openai.com that runs in a thread of this process and answers in OpenAI's wire format.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: LiteLLM's own price map

import litellm

import tollgate

# isort: split
import tollgate_litellm
from tollgate_litellm import TollgateLogger

LIVE = "--live" in sys.argv


class StandIn(BaseHTTPRequestHandler):
    """A tiny api.openai.com: says which model answered, with a usage object."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        words = " ".join(str(m.get("content", "")) for m in body["messages"]).split()
        text = f"({body['model']}) Noted: {' '.join(words[-4:])}"
        usage = {
            "prompt_tokens": 8 * len(body["messages"]) + len(words),
            "completion_tokens": len(text.split()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        head = {"id": "chatcmpl-offline", "created": 0, "model": body["model"]}
        if body.get("stream"):
            chunks = [
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            ]
            if (body.get("stream_options") or {}).get("include_usage"):
                chunks.append({"choices": [], "usage": usage})
            payload = "".join(
                f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', **c})}\n\n" for c in chunks
            )
            self._send("text/event-stream", (payload + "data: [DONE]\n\n").encode())
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            answer = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            self._send("application/json", json.dumps(answer).encode())

    def _send(self, kind: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def endpoint() -> dict[str, Any]:
    if LIVE:
        return {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return {"api_base": f"http://127.0.0.1:{server.server_address[1]}/v1", "api_key": "sk-offline"}


async def wait_for_records(count: int) -> None:
    """LiteLLM reports success after the call returns: give its logging task a moment."""
    for _ in range(250):
        if len(tollgate.settings().ledger.records()) >= count:
            return
        await asyncio.sleep(0.02)


async def main() -> None:
    litellm.callbacks = [TollgateLogger()]
    where = endpoint()
    ask = [{"role": "user", "content": "Summarise the supplier agreement."}]

    # 1. Every call recorded, priced and attributed (metadata={"tollgate": {...}} -> tags).
    reply = await litellm.acompletion(
        model="gpt-4o-mini", messages=ask, metadata={"tollgate": {"tenant": "acme"}}, **where
    )
    print("recorded:", reply.choices[0].message.content)

    # 2. Downgrade: gpt-4o's worst case does not fit, so the call goes out as gpt-4o-mini.
    downgrade = {"usd": 0.002, "on_exceed": "downgrade", "downgrade": {"gpt-4o": "gpt-4o-mini"}}
    with tollgate.track(feature="search"), tollgate.budget(**downgrade):
        reply = await litellm.acompletion(model="gpt-4o", messages=ask, max_tokens=400, **where)
    print("downgrade:", reply.choices[0].message.content)

    # 3. Clamp, on a stream (tollgate asks it for its usage chunk).
    with tollgate.budget(tokens=150, on_exceed="clamp"):
        stream = await litellm.acompletion(model="gpt-4o", messages=ask, max_tokens=400, stream=True, **where)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    print("stream:   ", text)

    # 4. A hard cap: refused before anything is sent.
    try:
        with tollgate.budget(usd=0.000001):
            await litellm.acompletion(model="gpt-4o", messages=ask, **where)
    except tollgate.BudgetExceeded as exc:
        print("blocked:  ", exc)

    # 5. A Router whose group runs two models: a downgrade routes to the cheaper deployment.
    router = litellm.Router(
        model_list=[
            {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4o", **where}},
            {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4o-mini", **where}},
        ]
    )
    with tollgate.budget(**downgrade):
        reply = await router.acompletion(model="smart", messages=ask, max_tokens=400)
    print("router:   ", reply.choices[0].message.content)

    # 6. A sync call: tollgate_litellm.completion applies the budget (litellm.completion alone
    #    is recorded observe-only: LiteLLM has no sync hook that can change or stop it).
    with tollgate.budget(**downgrade):
        reply = tollgate_litellm.completion(model="gpt-4o", messages=ask, max_tokens=400, **where)
    print("sync:     ", reply.choices[0].message.content)

    await wait_for_records(6)
    print()
    for row in tollgate.report(group_by=["tenant", "feature"]):
        print(row["tags"], row["calls"], "calls", f"${row['usd']:.6f}", row["blocked_calls"], "blocked")
    for rec in sorted(tollgate.settings().ledger.records(), key=lambda r: r.started_at):
        actions = [d["action"] for d in rec.decisions if "action" in d]
        print(f"{rec.request_model:12} -> {rec.response_model or '-':12} {rec.status:8} {actions}")


if __name__ == "__main__":
    asyncio.run(main())
