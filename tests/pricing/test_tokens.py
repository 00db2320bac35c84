from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from tollgate.pricing import tokens


def test_encoding_per_model_family() -> None:
    assert tokens.encoding_for("gpt-4o") == "o200k_base"
    assert tokens.encoding_for("gpt-4o-mini-2024-07-18") == "o200k_base"
    assert tokens.encoding_for("openai/gpt-5-mini") == "o200k_base"
    assert tokens.encoding_for("o4-mini") == "o200k_base"
    assert tokens.encoding_for("gpt-4-0613") == "cl100k_base"
    assert tokens.encoding_for("gpt-3.5-turbo") == "cl100k_base"
    assert tokens.encoding_for("gpt-35-turbo") == "cl100k_base"
    assert tokens.encoding_for("text-embedding-3-small") == "cl100k_base"


def test_counts_match_tiktoken_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our Encoding objects equal tiktoken's own, loaded from litellm's copy of its cache."""
    tiktoken = pytest.importorskip("tiktoken")
    spec = importlib.util.find_spec("litellm")  # located, not imported (its import is slow)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("litellm, whose wheel carries tiktoken's cache files, is not installed")
    cache = pathlib.Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    text = "Tollgate counts tokens offline: naïve café, 12345 numbers, émojis 🎉, 中文, code `x += 1`\n\n"
    for name in ("o200k_base", "cl100k_base"):
        ours = tokens.encoder(name)
        assert ours is not None
        reference = tiktoken.get_encoding(name)
        assert ours.encode_ordinary(text * 3) == reference.encode_ordinary(text * 3)
        assert ours.n_vocab == reference.n_vocab  # type: ignore[attr-defined]


def test_chat_framing_follows_openai_formula() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "hello world", "name": "alice"},
    ]
    enc = tokens.encoder("o200k_base")
    assert enc is not None
    expected = 3  # reply priming
    for m in messages:
        expected += 3 + sum(len(enc.encode_ordinary(str(v))) for v in m.values())
        expected += 1 if "name" in m else 0
    assert tokens.count_messages(messages, "gpt-4o") == expected


def test_images_and_tools_add_tokens() -> None:
    text_only = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}]
    low = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "x", "detail": "low"}},
            ],
        }
    ]
    high = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        }
    ]
    base = tokens.count_messages(text_only, "gpt-4o")
    assert tokens.count_messages(low, "gpt-4o") == base + tokens.IMAGE_TOKENS_LOW
    assert tokens.count_messages(high, "gpt-4o") == base + tokens.IMAGE_TOKENS_DEFAULT
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    assert tokens.count_messages(text_only, "gpt-4o", tools=[tool]) > base


def test_other_providers_are_approximated_upwards() -> None:
    messages = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]
    exact = tokens.count_messages(messages, "gpt-4o")
    assert tokens.is_exact("gpt-4o")
    assert not tokens.is_exact("claude-sonnet-4-5", "anthropic")
    assert tokens.count_messages(messages, "claude-sonnet-4-5", "anthropic") == -(-exact * 12 // 10)
    assert tokens.count_messages(messages, "gemini-2.5-flash", "gemini") >= exact


OFFLINE_PROBE = textwrap.dedent(
    """
    import json, socket, warnings
    import tiktoken
    try:
        tiktoken.get_encoding("o200k_base")
        tiktoken_alone = "ok"
    except Exception as exc:
        tiktoken_alone = type(exc).__name__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import tollgate
        hello = [{"role": "user", "content": "hello world"}]
        n = tollgate.estimate("gpt-4o", hello, max_tokens=5).input_tokens
        m = tollgate.estimate("gpt-4", hello, max_tokens=5).input_tokens
    print(json.dumps({"tiktoken_alone": tiktoken_alone, "gpt-4o": n, "gpt-4": m,
                      "warnings": [str(w.message) for w in caught]}))
    """
)


def test_counts_exactly_with_the_network_unreachable(tmp_path: pytest.TempPathFactory) -> None:
    """No network, empty tiktoken cache: tiktoken alone fails, tollgate still counts exactly."""
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    cmd = [sys.executable, "-c", OFFLINE_PROBE]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        cmd = [unshare, "-rn", *cmd]  # a network namespace with no interfaces but loopback
    else:  # no namespaces here: make every socket connection fail instead
        guard = "import socket\ndef _no(*a, **k): raise OSError('network unreachable (test)')\n"
        guard += "socket.socket.connect = _no\nsocket.create_connection = _no\n"
        cmd = [sys.executable, "-c", guard + OFFLINE_PROBE]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["tiktoken_alone"] != "ok", "the probe could reach the network or a warm cache"
    # "hello world" is 2 tokens in both encodings; +1 for the role, +3 per message, +3 priming.
    assert result["gpt-4o"] == 9
    assert result["gpt-4"] == 9
    assert result["warnings"] == []


def test_missing_encoding_degrades_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tokens._ENCODINGS, "o200k_base", (tokens._O200K_PAT, {}, "0" * 64))
    monkeypatch.setattr(tokens, "_encoders", {})
    tokens._count_cached.cache_clear()
    try:
        with pytest.warns(tokens.ApproximationWarning, match="approximated"):
            n = tokens.count_text("x" * 40, "gpt-4o")
        assert n == 10  # ceil(40 / 4)
    finally:
        tokens._count_cached.cache_clear()
