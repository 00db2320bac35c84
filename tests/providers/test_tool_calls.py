"""The tool calls a response asks for, counted at every provider door (``CallRecord.tool_calls``,
what ``budget(tool_calls=...)`` counts).

Real SDKs replay constructed cassettes in cassettes/ (plain and streamed, for OpenAI chat and
Responses, Anthropic and Gemini); the real recordings in ../shared/cassettes are read by the
adapters' own readers; a malformed response counts what can be read and never raises.
"""

from __future__ import annotations

import gzip
import json
import pathlib
from typing import Any

import pytest
import yaml

import tollgate
from tests.conftest import CASSETTES, SHARED_CASSETTES
from tollgate.providers import anthropic as anthropic_adapter
from tollgate.providers import gemini as gemini_adapter
from tollgate.providers import openai as openai_adapter

WEATHER_QUESTION = "What is the weather in Paris and in London?"


def recorded_body(cassette: str) -> dict[str, Any]:
    """The request a cassette recorded, as keyword arguments to send it again."""
    data = yaml.safe_load((CASSETTES / cassette).read_text())
    return json.loads(data["interactions"][0]["request"]["body"])  # type: ignore[no-any-return]


def only_record() -> tollgate.CallRecord:
    records = tollgate.config.settings().ledger.records()
    assert len(records) == 1, records
    return records[0]


# -- OpenAI chat ------------------------------------------------------------------------------


def test_chat_counts_each_parallel_tool_call(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_tool_calls.yaml"):
        response = client.chat.completions.create(**recorded_body("openai/chat_tool_calls.yaml"))
    assert len(response.choices[0].message.tool_calls) == 2
    record = only_record()
    assert record.tool_calls == 2 and not record.estimated


def test_chat_without_tool_calls_counts_none(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/chat_basic.yaml"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert only_record().tool_calls == 0


def test_streamed_chat_counts_each_call_once_across_its_deltas(client, replay) -> None:  # type: ignore[no-untyped-def]
    body = recorded_body("openai/chat_tool_calls_stream.yaml")
    with replay("openai/chat_tool_calls_stream.yaml"):
        chunks = list(client.chat.completions.create(**body))
    deltas = [d for c in chunks for choice in c.choices for d in choice.delta.tool_calls or ()]
    assert len(deltas) == 9 and {d.index for d in deltas} == {0, 1, 2}  # 3 calls, 3 deltas each
    record = only_record()
    assert record.stream and record.tool_calls == 3 and not record.estimated


def test_chat_stream_helper_counts_the_calls(client, replay) -> None:  # type: ignore[no-untyped-def]
    body = recorded_body("openai/chat_tool_calls_stream.yaml")
    del body["stream"]
    with replay("openai/chat_tool_calls_stream.yaml"), client.chat.completions.stream(**body) as stream:
        final = stream.get_final_completion()
    assert len(final.choices[0].message.tool_calls) == 3
    assert only_record().tool_calls == 3


# -- OpenAI Responses -------------------------------------------------------------------------


def test_responses_count_every_tool_call_item(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_tool_calls.yaml"):
        response = client.responses.create(**recorded_body("openai/responses_tool_calls.yaml"))
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "web_search_call", "function_call", "function_call"]
    assert only_record().tool_calls == 3  # the built-in web search and the two function calls


def test_streamed_responses_count_function_and_custom_tool_calls(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_tool_calls_stream.yaml"):
        events = list(client.responses.create(**recorded_body("openai/responses_tool_calls_stream.yaml")))
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "function_call", "custom_tool_call"]
    record = only_record()
    assert record.stream and record.tool_calls == 2 and not record.estimated


def test_a_responses_stream_left_early_counts_the_calls_it_saw(client, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/responses_tool_calls_stream.yaml"):
        stream = client.responses.create(**recorded_body("openai/responses_tool_calls_stream.yaml"))
        for event in stream:
            if event.type == "response.output_item.done" and event.output_index == 1:
                break  # the function call is done; the custom tool call has not begun
        stream.close()
    record = only_record()
    assert record.status == "abandoned" and record.tool_calls == 1


# -- Anthropic --------------------------------------------------------------------------------


def test_anthropic_counts_server_and_client_tool_use(claude, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("anthropic/messages_tool_use.yaml"):
        message = claude.messages.create(**recorded_body("anthropic/messages_tool_use.yaml"))
    kinds = [block.type for block in message.content]
    assert kinds == ["server_tool_use", "web_search_tool_result", "text", "tool_use", "tool_use"]
    assert only_record().tool_calls == 3


@pytest.mark.parametrize(
    ("cassette", "expected"),
    [("anthropic/messages_tool_use_stream.yaml", 3), ("anthropic/messages_stream_tools.yaml", 1)],
)
def test_streamed_anthropic_counts_tool_blocks_as_they_start(claude, replay, cassette, expected) -> None:  # type: ignore[no-untyped-def]
    with replay(cassette):
        events = list(claude.messages.create(**recorded_body(cassette)))
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert sum(kind in ("tool_use", "server_tool_use") for kind in starts) == expected
    record = only_record()
    assert record.stream and record.tool_calls == expected


def test_anthropic_stream_helper_counts_the_calls(claude, replay) -> None:  # type: ignore[no-untyped-def]
    body = recorded_body("anthropic/messages_tool_use_stream.yaml")
    del body["stream"]
    with replay("anthropic/messages_tool_use_stream.yaml"), claude.messages.stream(**body) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content].count("tool_use") == 2
    assert only_record().tool_calls == 3


# -- Gemini -----------------------------------------------------------------------------------


@pytest.fixture
def gemini() -> Any:
    pytest.importorskip("google.genai")
    from tests.providers.gemini_helpers import Wire, gemini_client

    return gemini_client(Wire())


GEMINI_TOOLS = {
    "tools": [
        {
            "function_declarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
                }
            ]
        }
    ]
}


def test_gemini_counts_function_call_parts(gemini, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("gemini/generate_function_call.yaml"):
        response = gemini.models.generate_content(
            model="gemini-2.5-flash", contents=WEATHER_QUESTION, config=GEMINI_TOOLS
        )
    assert len(response.function_calls) == 2
    assert only_record().tool_calls == 2


def test_streamed_gemini_sums_the_calls_over_chunks(gemini, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("gemini/stream_function_call.yaml"):
        chunks = list(
            gemini.models.generate_content_stream(
                model="gemini-2.5-flash", contents=WEATHER_QUESTION, config=GEMINI_TOOLS
            )
        )
    assert [len(c.function_calls or ()) for c in chunks] == [0, 1, 1]
    record = only_record()
    assert record.stream and record.tool_calls == 2 and not record.estimated


# -- what counts, read from JSON --------------------------------------------------------------


def test_legacy_function_call_counts_one_per_choice() -> None:
    response = {
        "choices": [
            {"message": {"function_call": {"name": "f", "arguments": "{}"}}},
            {"message": {"content": "no call"}},
            {"message": {"tool_calls": [{"id": "a"}], "function_call": {"name": "f"}}},  # not twice
        ]
    }
    assert openai_adapter.chat_tool_calls(response) == 2
    acc = openai_adapter.ChatStreamAccountant(hide_usage_chunk=False)
    for arguments in ('{"a"', ": 1}"):
        acc.observe(
            {"choices": [{"index": 0, "delta": {"function_call": {"name": "f", "arguments": arguments}}}]}
        )
    assert acc.tool_calls == 1


def test_chat_stream_tells_calls_apart_by_choice_and_index_or_id() -> None:
    acc = openai_adapter.ChatStreamAccountant(hide_usage_chunk=False)
    chunks = [
        [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}}]}}],
        [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}],
        [{"index": 1, "delta": {"tool_calls": [{"index": 0, "id": "b", "function": {"name": "f"}}]}}],  # n=2
        # A server that sends no index: each call whole, told apart by its id.
        [{"index": 0, "delta": {"tool_calls": [{"id": "c", "function": {"name": "g", "arguments": "{}"}}]}}],
        [{"index": 0, "delta": {"tool_calls": [{"id": "d", "function": {"name": "g", "arguments": "{}"}}]}}],
    ]
    for choices in chunks:
        acc.observe({"choices": choices})
    assert acc.tool_calls == 4


@pytest.mark.parametrize(
    "kind",
    [
        "function_call",
        "custom_tool_call",
        "web_search_call",
        "file_search_call",
        "code_interpreter_call",
        "computer_call",
        "mcp_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
        "image_generation_call",
        "tool_search_call",
    ],
)
def test_every_responses_item_ending_in_call_is_a_tool_call(kind: str) -> None:
    not_calls = ["message", "reasoning", "function_call_output", "mcp_list_tools", "mcp_approval_request"]
    output = [{"type": t} for t in not_calls] + [{"type": kind}]
    assert openai_adapter.responses_tool_calls(output) == 1
    surface = openai_adapter.ResponsesSurface("openai", (None, None))
    assert surface.found({"output": output, "usage": None}).tool_calls == 1


def test_anthropic_mcp_tool_use_counts_and_results_do_not() -> None:
    content = [
        {"type": "mcp_tool_use", "id": "m", "name": "search", "server_name": "docs", "input": {}},
        {"type": "mcp_tool_result", "tool_use_id": "m", "content": []},
        {"type": "tool_result", "tool_use_id": "x"},
        {"type": "thinking", "thinking": "..."},
    ]
    assert anthropic_adapter.content_tool_calls(content) == 1


def test_gemini_code_execution_and_server_tool_calls_count() -> None:
    parts = [
        {"text": "Computing."},
        {"executableCode": {"language": "PYTHON", "code": "print(2 ** 10)"}},
        {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1024"}},
        {"toolCall": {"id": "t", "toolType": "GOOGLE_SEARCH_WEB", "args": {}}},
        {"functionResponse": {"name": "f", "response": {}}},
    ]
    assert gemini_adapter.response_tool_calls({"candidates": [{"content": {"parts": parts}}]}) == 2


def test_gemini_counts_every_candidate() -> None:
    call = {"functionCall": {"name": "f", "args": {}}}
    candidates = [
        {"index": 0, "content": {"parts": [call]}},
        {"index": 1, "content": {"parts": [call, call]}},
    ]
    assert gemini_adapter.response_tool_calls({"candidates": candidates}) == 3


def test_vertex_streamed_function_call_arguments_are_one_call() -> None:
    """Vertex AI can stream one call's arguments over parts (``will_continue``): one call."""
    parts = [
        {"functionCall": {"name": "get_weather", "willContinue": True}},
        {
            "functionCall": {
                "partialArgs": [{"jsonPath": "$.city", "stringValue": "Par"}],
                "willContinue": True,
            }
        },
        {
            "functionCall": {
                "partialArgs": [{"jsonPath": "$.city", "stringValue": "is"}],
                "willContinue": True,
            }
        },
        {"functionCall": {}},
        {"functionCall": {"name": "get_time", "args": {}}},
    ]
    acc = gemini_adapter.GenerateStreamAccountant()
    for part in parts:
        acc.observe({"candidates": [{"index": 0, "content": {"parts": [part]}}]})
    assert acc.tool_calls == 2
    assert gemini_adapter.response_tool_calls({"candidates": [{"content": {"parts": parts}}]}) == 2


# -- malformed responses ----------------------------------------------------------------------

_chat = openai_adapter.chat_tool_calls
_responses = openai_adapter.responses_tool_calls
_anthropic = anthropic_adapter.content_tool_calls
_gemini = gemini_adapter.response_tool_calls


@pytest.mark.parametrize(
    ("count", "response", "expected"),
    [
        (_chat, {"choices": "tool_calls"}, 0),
        (_chat, {"choices": 3}, 0),
        (_chat, {"choices": [{"message": {"tool_calls": "call_a"}}]}, 0),
        (_chat, {"choices": [{"message": {"tool_calls": {"id": "a"}}}]}, 0),
        (
            _chat,
            {"choices": [None, 7, {"message": None}, {"message": {"tool_calls": [None, {"id": "a"}]}}]},
            1,
        ),
        (_responses, {"type": "function_call"}, 0),
        (_responses, [None, 5, {"type": 5}, {"type": ["x_call"]}, {"type": "function_call"}], 1),
        (_anthropic, "tool_use", 0),
        (_anthropic, [None, {"type": ["tool_use"]}, {"type": {}}, {"type": "tool_use"}], 1),
        (_gemini, {"candidates": {"content": {}}}, 0),
        (_gemini, {"candidates": [{"content": {"parts": "functionCall"}}]}, 0),
        (
            _gemini,
            {"candidates": [None, {"content": "x"}, {"content": {"parts": [None, {"functionCall": {}}]}}]},
            1,
        ),
    ],
)
def test_a_malformed_response_counts_what_can_be_read(count, response, expected) -> None:  # type: ignore[no-untyped-def]
    assert count(response) == expected


def test_a_metered_function_returning_a_malformed_response_counts_none() -> None:
    @tollgate.metered(model="gpt-4o-mini", provider="openai")
    def ask(calls: Any) -> dict[str, Any]:
        usage = {"prompt_tokens": 10, "completion_tokens": 5}
        return {"model": "gpt-4o-mini", "choices": [{"message": {"tool_calls": calls}}], "usage": usage}

    ask("not a list")
    ask([{"id": "a", "type": "function"}, {"id": "b", "type": "function"}])
    records = tollgate.config.settings().ledger.records()
    assert [r.tool_calls for r in records] == [0, 2]
    assert all(r.status == "ok" and not r.estimated for r in records)


@pytest.mark.parametrize(
    ("accountant", "chunk"),
    [
        (
            openai_adapter.ChatStreamAccountant(hide_usage_chunk=False),
            {"choices": [{"delta": {"tool_calls": 5}}]},
        ),
        (
            openai_adapter.ChatStreamAccountant(hide_usage_chunk=False),
            {"choices": [{"delta": {"tool_calls": [[]]}}]},
        ),
        (openai_adapter.ResponseStreamAccountant(), {"type": "response.output_item.done", "item": "x"}),
        (
            openai_adapter.ResponseStreamAccountant(),
            {"type": "response.completed", "response": {"output": 3}},
        ),
        (anthropic_adapter.MessageStreamAccountant(), {"type": "content_block_start", "content_block": 3}),
        (gemini_adapter.GenerateStreamAccountant(), {"candidates": [{"content": {"parts": {"a": 1}}}]}),
    ],
)
def test_a_malformed_chunk_never_breaks_the_stream(accountant, chunk) -> None:  # type: ignore[no-untyped-def]
    assert accountant.observe(chunk) is True
    assert accountant.tool_calls == 0


# -- real recordings --------------------------------------------------------------------------

#: The real recordings whose responses ask for tool calls, by a unique part of their file name:
#: the count in each LLM call, in order. Every other recorded call asks for none.
REAL_TOOL_CALLS = {
    "test_chat_completion_tool_calls_with_content": [2, 0],
    "test_chat_completion_multiple_tools_streaming_with_content": [2],
    "test_tool_calls__test_tool_calls": [2],
    "test_chat__test_chat_tools_streaming": [1],
    "test_responses_create_captures_tool_call_content": [1],
    "test_anthropic_instrumentation_multiple_tool_calling.yaml": [2],
    "test_anthropic_instrumentation_multiple_tool_calling_streaming": [2],
    "test_generate_content_with_tool": [1],
    "test_validate_token_counts.yaml": [1],  # code execution: one executableCode part
    "test_validate_token_counts_stream": [1],
    "test_function_call_choice": [2],  # Vertex AI: two parallel function calls
}


def _recorded(path: pathlib.Path) -> list[tuple[str, Any]]:
    """(uri, response body) of each recorded call, the body as text or JSON data."""
    calls = []
    for interaction in yaml.safe_load(path.read_text())["interactions"]:
        response = interaction["response"]
        body = response.get("parsed_body") or response["body"]
        body = body.get("string", body) if isinstance(body, dict) else body
        if isinstance(body, bytes):
            body = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            body = body.decode(errors="replace")  # Bedrock's binary event streams are not read
        calls.append((interaction["request"]["uri"], body))
    return calls


_CHAT = openai_adapter.ChatSurface("openai", (None, None))
_RESPONSES = openai_adapter.ResponsesSurface("openai", (None, None))
_MESSAGES = anthropic_adapter.MessagesSurface("anthropic", (None, None))
_GENERATE = gemini_adapter.GenerateSurface("gemini", (None, None))


def _counted(uri: str, body: Any) -> int | None:
    """What the adapter counts in one recorded response (None: not an API tollgate reads)."""
    path = uri.split("?", 1)[0]
    if path.endswith("/chat/completions"):
        found, acc = _CHAT, openai_adapter.ChatStreamAccountant(hide_usage_chunk=False)
    elif path.endswith("/responses"):
        found, acc = _RESPONSES, openai_adapter.ResponseStreamAccountant()
    elif path.endswith("/v1/messages"):
        found, acc = _MESSAGES, anthropic_adapter.MessageStreamAccountant()
    elif path.endswith("enerateContent"):
        found, acc = _GENERATE, gemini_adapter.GenerateStreamAccountant()
    else:
        return None
    if isinstance(body, str) and body.lstrip().startswith(("data:", "event:")):
        for line in body.splitlines():
            data = line[5:].strip() if line.startswith("data:") else ""
            if data and data != "[DONE]":
                acc.observe(json.loads(data))
        return acc.tool_calls
    return found.found(json.loads(body) if isinstance(body, str) else body).tool_calls


def _shared() -> list[pathlib.Path]:
    return sorted(SHARED_CASSETTES.glob("*/*.yaml")) if SHARED_CASSETTES.exists() else []


@pytest.mark.shared
@pytest.mark.parametrize("path", _shared(), ids=lambda p: p.name[-70:])
def test_real_recordings_count_the_calls_their_responses_ask_for(path: pathlib.Path) -> None:
    counts = [n for uri, body in _recorded(path) if (n := _counted(uri, body)) is not None]
    expected = next((v for k, v in REAL_TOOL_CALLS.items() if k in path.name), [0] * len(counts))
    assert counts == expected


@pytest.mark.shared
def test_every_real_recording_with_tool_calls_is_found() -> None:
    if not _shared():
        pytest.skip("../shared/cassettes is absent")
    names = [p.name for p in _shared()]
    assert all(sum(key in name for name in names) == 1 for key in REAL_TOOL_CALLS)
