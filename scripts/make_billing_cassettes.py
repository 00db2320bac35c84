"""Write the constructed cassettes of the billing tests (issue 17): one per usage field that
bills, on each surface it appears on. Run: ``python scripts/make_billing_cassettes.py``.

Each cassette says it is constructed and which documented wire format it follows. Counts are
chosen by hand; what the tests check is that every billed unit is read and priced.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent / "cassettes"

ANTHROPIC = """\
# CONSTRUCTED cassette, written by hand for tollgate's tests (not a recording).
# Wire format follows Anthropic's documented Messages API (POST /v1/messages) and its beta usage
# fields as the anthropic SDK types them (BetaUsage, BetaMessageDeltaUsage): `usage.iterations[]`
# entries of type `message`, `compaction`, `advisor_message` (with the advisor's `model`) and
# `fallback_message`, each with input_tokens, output_tokens, cache_read_input_tokens and
# cache_creation_input_tokens; a `compaction` entry's tokens are not in the top-level counts.
# `usage.server_tool_use` {web_search_requests, web_fetch_requests}; `usage.service_tier`.
# Streams: `message_start` carries the first step's counts, `message_delta` the cumulative ones.
"""
OPENAI = """\
# CONSTRUCTED cassette, written by hand for tollgate's tests (not a recording).
# Wire format follows OpenAI's documented APIs: POST /v1/responses returns a `response` object
# with `output` items (`web_search_call`, `message`), `service_tier` and `usage` {input_tokens,
# input_tokens_details {cached_tokens, cache_write_tokens}, output_tokens, output_tokens_details
# {reasoning_tokens}, total_tokens}; streams send `response.created` ... `response.completed`
# server-sent events. POST /v1/chat/completions returns `choices`, `service_tier` and `usage`.
# OpenAI-compatible hosts add their own usage fields: OpenRouter `usage.cost` (USD charged),
# Together a top-level `usage.cached_tokens`.
"""
GEMINI = """\
# CONSTRUCTED cassette, written by hand for tollgate's tests (not a recording).
# Wire format follows the Gemini API's documented REST reference (google-genai talks to v1):
# POST /v1/models/{model}:generateContent returns a GenerateContentResponse whose candidates
# carry `groundingMetadata` {webSearchQueries, groundingChunks} when Google Search grounding
# ran (`groundingChunks[].web` or `.maps`, and `googleMapsWidgetContextToken` for Grounding with
# Google Maps), and whose `usageMetadata` carries `serviceTier` (Gemini API) or `trafficType` (Vertex AI:
# POST /v1beta1/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent).
"""


def _interaction(uri: str, request: dict[str, Any], body: str, content_type: str) -> dict[str, Any]:
    host = uri.split("/")[2]
    return {
        "request": {
            "body": json.dumps(request),
            "headers": {"content-type": ["application/json"], "host": [host]},
            "method": "POST",
            "uri": uri,
        },
        "response": {
            "body": {"string": body},
            "headers": {"Content-Type": [content_type], "x-request-id": ["req_constructed"]},
            "status": {"code": 200, "message": "OK"},
        },
    }


def _yaml(header: str, interactions: list[dict[str, Any]]) -> str:
    """The cassette as vcrpy writes one (block YAML; bodies kept exact), after the header."""
    import yaml

    body = yaml.safe_dump({"interactions": interactions, "version": 1}, sort_keys=False, width=100_000)
    return header.rstrip("\n") + "\n" + body


def _sse(events: list[dict[str, Any]], named: bool) -> str:
    out = []
    for event in events:
        if named:
            out.append(f"event: {event['type']}")
        out.append(f"data: {json.dumps(event, separators=(',', ':'))}")
        out.append("")
    return "\n".join(out) + "\n"


def _write(path: str, header: str, interactions: list[dict[str, Any]]) -> None:
    target = ROOT / path
    target.write_text(_yaml(header, interactions))
    print("wrote", target.relative_to(ROOT.parent))


# -- Anthropic --------------------------------------------------------------------------------

MESSAGES = "https://api.anthropic.com/v1/messages"
ASK = {"max_tokens": 2048, "messages": [{"role": "user", "content": "Go on."}], "model": "claude-sonnet-4-6"}


def _usage(i: int, o: int, read: int = 0, write: int = 0, **more: Any) -> dict[str, Any]:
    return {
        "input_tokens": i,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": o,
        **more,
    }


def _message(mid: str, usage: dict[str, Any], text: str = "Done.") -> dict[str, Any]:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def _message_stream(mid: str, start: dict[str, Any], final: dict[str, Any]) -> str:
    return _sse(
        [
            {
                "type": "message_start",
                "message": {**_message(mid, start), "content": [], "stop_reason": None},
            },
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Done."}},
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": final,
            },
            {"type": "message_stop"},
        ],
        named=True,
    )


COMPACTION = [
    {"type": "compaction", **_usage(180_000, 3_500)},
    {"type": "message", **_usage(23_000, 1_000)},
]
# An advisor (Opus) consulted by a Sonnet executor: the top level counts the executor only.
ADVISOR = [
    {"type": "message", **_usage(1_200, 150, read=800), "model": "claude-sonnet-4-6"},
    {"type": "advisor_message", **_usage(2_100, 640), "model": "claude-opus-4-6"},
    {"type": "message", **_usage(1_950, 420, read=800), "model": "claude-sonnet-4-6"},
]


def anthropic() -> None:
    top = _usage(23_000, 1_000, iterations=COMPACTION, service_tier="standard")
    _write(
        "anthropic/messages_compaction.yaml",
        ANTHROPIC,
        [_interaction(MESSAGES, ASK, json.dumps(_message("msg_tg0501", top)), "application/json")],
    )
    start = _usage(180_000, 3_500, service_tier="standard")  # the compaction step's counts
    final = {
        "input_tokens": 23_000,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1_000,
        "iterations": COMPACTION,
    }
    _write(
        "anthropic/messages_compaction_stream.yaml",
        ANTHROPIC,
        [
            _interaction(
                MESSAGES,
                {**ASK, "stream": True},
                _message_stream("msg_tg0502", start, final),
                "text/event-stream",
            )
        ],
    )
    top = _usage(3_150, 570, read=1_600, iterations=ADVISOR, service_tier="standard")
    _write(
        "anthropic/messages_advisor.yaml",
        ANTHROPIC,
        [_interaction(MESSAGES, ASK, json.dumps(_message("msg_tg0503", top)), "application/json")],
    )
    final = {**_usage(3_150, 570, read=1_600), "iterations": ADVISOR}
    _write(
        "anthropic/messages_advisor_stream.yaml",
        ANTHROPIC,
        [
            _interaction(
                MESSAGES,
                {**ASK, "stream": True},
                _message_stream("msg_tg0504", _usage(1_200, 1, read=800), final),
                "text/event-stream",
            )
        ],
    )
    tools = {"web_search_requests": 3, "web_fetch_requests": 1}
    top = _usage(9_400, 820, server_tool_use=tools, service_tier="priority")
    _write(
        "anthropic/messages_web_search_priority.yaml",
        ANTHROPIC,
        [_interaction(MESSAGES, ASK, json.dumps(_message("msg_tg0505", top)), "application/json")],
    )
    final = {**_usage(9_400, 820), "server_tool_use": tools}
    _write(
        "anthropic/messages_web_search_stream.yaml",
        ANTHROPIC,
        [
            _interaction(
                MESSAGES,
                {**ASK, "stream": True},
                _message_stream("msg_tg0506", _usage(9_400, 1, service_tier="priority"), final),
                "text/event-stream",
            )
        ],
    )
    # A usage carrying fields tollgate does not know: a new server tool and a new token count.
    top = _usage(
        50,
        12,
        server_tool_use={"web_search_requests": 0, "code_execution_requests": 2},
        hologram_tokens=17,
        service_tier="standard",
    )
    _write(
        "anthropic/messages_unknown_usage.yaml",
        ANTHROPIC,
        [_interaction(MESSAGES, ASK, json.dumps(_message("msg_tg0507", top)), "application/json")],
    )


# -- OpenAI and OpenAI-compatible hosts -------------------------------------------------------


def _response(
    rid: str, model: str, usage: dict[str, Any], tier: str = "default", searches: int = 0
) -> dict[str, Any]:
    output: list[dict[str, Any]] = [
        {
            "type": "web_search_call",
            "id": f"ws_{rid}_{i}",
            "status": "completed",
            "action": {"type": "search", "query": f"query {i}"},
        }
        for i in range(searches)
    ]
    output.append(
        {
            "type": "message",
            "id": f"msg_{rid}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Done.", "annotations": [], "logprobs": []}],
        }
    )
    return {
        "id": rid,
        "object": "response",
        "created_at": 1796560000,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": tier,
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


def _response_stream(response: dict[str, Any]) -> str:
    """The documented event sequence: created, then per output item added / (content part,
    text deltas) / done, then completed with the usage."""
    created = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": created}]
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            text = item["content"][0]["text"]
            events += [
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": {**item, "status": "in_progress", "content": []},
                },
                {
                    "type": "response.content_part.added",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                },
                {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": text,
                    "logprobs": [],
                },
                {
                    "type": "response.output_text.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                },
                {
                    "type": "response.content_part.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": {**part, "text": text},
                },
            ]
        else:
            events.append(
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": {**item, "status": "in_progress"},
                }
            )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": response})
    return _sse([{**e, "sequence_number": n} for n, e in enumerate(events)], named=True)


def _responses_pair(name: str, uri: str, ask: dict[str, Any], body: dict[str, Any]) -> None:
    """A Responses API answer, plain and streamed."""
    _write(f"openai/{name}.yaml", OPENAI, [_interaction(uri, ask, json.dumps(body), "application/json")])
    stream = _interaction(uri, {**ask, "stream": True}, _response_stream(body), "text/event-stream")
    _write(f"openai/{name}_stream.yaml", OPENAI, [stream])


def _responses_usage(i: int, o: int, cached: int = 0, written: int = 0, **more: Any) -> dict[str, Any]:
    return {
        "input_tokens": i,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": o,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": i + o,
        **more,
    }


def _chat(cid: str, model: str, usage: dict[str, Any], tier: str | None = None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": 1796560000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Done.", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
        "service_tier": tier,
        "system_fingerprint": None,
    }


def openai() -> None:
    responses = "https://api.openai.com/v1/responses"
    ask = {"model": "gpt-5.6", "input": "Go on."}
    body = _response("resp_tg0601", "gpt-5.6", _responses_usage(4_000, 300, written=3_072))
    _responses_pair("responses_cache_write", responses, ask, body)
    ask = {"model": "gpt-5", "input": "Find it.", "tools": [{"type": "web_search"}]}
    body = _response(
        "resp_tg0602",
        "gpt-5-2025-08-07",
        _responses_usage(12_000, 700, cached=2_048),
        tier="priority",
        searches=2,
    )
    _responses_pair("responses_web_search_priority", responses, ask, body)
    openrouter = "https://openrouter.ai/api/v1/responses"
    ask = {"model": "openai/gpt-4o-mini", "input": "Go on."}
    usage = _responses_usage(
        900, 120, cost=0.00042, is_byok=False, cost_details={"upstream_inference_cost": None}
    )
    body = _response("gen-tg0603", "openai/gpt-4o-mini", usage)
    _responses_pair("openrouter_responses", openrouter, ask, body)
    together = "https://api.together.xyz/v1/chat/completions"
    model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    usage = {"prompt_tokens": 1_500, "completion_tokens": 60, "total_tokens": 1_560, "cached_tokens": 1_024}
    _write(
        "openai/together_cached.yaml",
        OPENAI,
        [
            _interaction(
                together,
                {"model": model, "messages": [{"role": "user", "content": "Go on."}]},
                json.dumps(_chat("tg-0604", model, usage)),
                "application/json",
            )
        ],
    )
    chat = "https://api.openai.com/v1/chat/completions"
    usage = {
        "prompt_tokens": 2_000,
        "completion_tokens": 400,
        "total_tokens": 2_400,
        "prompt_tokens_details": {"cached_tokens": 1_024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 128,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    interactions = [
        _interaction(
            chat,
            {"model": "gpt-5", "service_tier": tier, "messages": []},
            json.dumps(_chat(f"chatcmpl-tg06{i}", "gpt-5-2025-08-07", usage, tier)),
            "application/json",
        )
        for i, tier in enumerate(("priority", "flex", "default"), start=5)
    ]
    _write("openai/chat_service_tiers.yaml", OPENAI, interactions)
    interactions = [
        _interaction(
            chat,
            {"model": "gpt-5", "service_tier": tier, "messages": [], "stream": True},
            _chat_stream(f"chatcmpl-tg06{i}", "gpt-5-2025-08-07", usage, tier),
            "text/event-stream",
        )
        for i, tier in enumerate(("priority", "flex", "default"), start=5)
    ]
    _write("openai/chat_service_tiers_stream.yaml", OPENAI, interactions)
    usage = {"prompt_tokens": 1_500, "completion_tokens": 60, "total_tokens": 1_560, "cached_tokens": 1_024}
    _write(
        "openai/together_cached_stream.yaml",
        OPENAI,
        [
            _interaction(
                together,
                {"model": model, "messages": [{"role": "user", "content": "Go on."}], "stream": True},
                _chat_stream("tg-0605", model, usage, None),
                "text/event-stream",
            )
        ],
    )


def _chat_stream(cid: str, model: str, usage: dict[str, Any], tier: str | None) -> str:
    """Chat completion chunks as documented: the answer, the finish chunk, then (with
    ``stream_options.include_usage``) a chunk with empty ``choices`` and the usage; every
    chunk names the ``service_tier``."""
    head = {"id": cid, "object": "chat.completion.chunk", "created": 1796560000, "model": model,
            "service_tier": tier, "system_fingerprint": None}  # fmt: skip
    chunks = [
        {
            **head,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "Done."}, "finish_reason": None}
            ],
        },
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": usage},
    ]
    body = "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks)
    return body + "data: [DONE]\n\n"


# -- Gemini -----------------------------------------------------------------------------------


def gemini() -> None:
    grounding = {
        "webSearchQueries": ["tollgate library", "tollgate llm budget"],
        "groundingChunks": [{"web": {"uri": "https://example.org/a", "title": "example.org"}}],
    }
    ask = {"contents": [{"parts": [{"text": "Go on."}], "role": "user"}], "tools": [{"googleSearch": {}}]}
    for path, uri, tier in (
        (
            "gemini/generate_grounding.yaml",
            "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-flash:generateContent",
            {"serviceTier": "standard"},
        ),
        (
            "gemini/vertex_grounding_priority.yaml",
            "https://us-central1-aiplatform.googleapis.com/v1beta1/projects/tollgate-test/locations/us-central1"
            "/publishers/google/models/gemini-2.5-flash:generateContent",
            {"trafficType": "ON_DEMAND_PRIORITY"},
        ),
    ):
        usage = {
            "promptTokenCount": 40,
            "candidatesTokenCount": 120,
            "toolUsePromptTokenCount": 900,
            "totalTokenCount": 1060,
            **tier,
        }
        body = {
            "candidates": [
                {
                    "content": {"parts": [{"text": "Done."}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                    "groundingMetadata": grounding,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "tg0701",
        }
        _write(path, GEMINI, [_interaction(uri, ask, json.dumps(body), "application/json")])
        # The stream (`:streamGenerateContent?alt=sse`): the answer first, then the last chunk
        # with the finish reason, the grounding metadata and the final usage.
        started = {"promptTokenCount": 40, "candidatesTokenCount": 1, "totalTokenCount": 41, **tier}
        first = {
            "candidates": [{"content": {"parts": [{"text": "Do"}], "role": "model"}, "index": 0}],
            "usageMetadata": started,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "tg0702",
        }
        last = {**body, "responseId": "tg0702"}
        last["candidates"] = [
            {**body["candidates"][0], "content": {"parts": [{"text": "ne."}], "role": "model"}}
        ]
        sse = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in (first, last))
        stream_uri = uri.replace(":generateContent", ":streamGenerateContent?alt=sse")
        stream_path = path.replace(".yaml", "_stream.yaml")
        _write(stream_path, GEMINI, [_interaction(stream_uri, ask, sse, "text/event-stream")])


def gemini_maps() -> None:
    """Grounding with Google Maps: Maps chunks and the widget token, one query."""
    uri = "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-flash:generateContent"
    grounding = {
        "webSearchQueries": ["coffee near the station"],
        "groundingChunks": [
            {"maps": {"uri": "https://maps.google.com/?cid=1", "title": "Cafe", "placeId": "p1"}}
        ],
        "googleMapsWidgetContextToken": "widgetcontent/constructed",
    }
    body = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Done."}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
                "groundingMetadata": grounding,
            }
        ],
        "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 80, "totalTokenCount": 110},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "tg0703",
    }
    ask = {"contents": [{"parts": [{"text": "Coffee?"}], "role": "user"}], "tools": [{"googleMaps": {}}]}
    _write(
        "gemini/generate_maps_grounding.yaml",
        GEMINI,
        [_interaction(uri, ask, json.dumps(body), "application/json")],
    )


if __name__ == "__main__":
    anthropic()
    openai()
    gemini()
    gemini_maps()
