"""OpenAI-compatible providers reached through the OpenAI SDK with a base_url: the provider is
inferred from the URL and recorded, and each one's usage dialect is read.

Real openai SDK, HTTP replayed by vcrpy from constructed cassettes in cassettes/openai/.
"""

from __future__ import annotations

import warnings

import pytest

import tollgate
from tollgate.pricing import cost, default_table
from tollgate.providers.openai import provider_for

openai = pytest.importorskip("openai")

ASK = [{"role": "user", "content": "Name the capital of France in one word."}]


def only_record() -> tollgate.CallRecord:
    (record,) = tollgate.config.settings().ledger.records()
    return record


def make(base_url: str, *, is_async: bool = False):  # type: ignore[no-untyped-def]
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return tollgate.instrument(cls(api_key="test", base_url=base_url, max_retries=0))


@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://api.deepseek.com", "deepseek"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://api.together.xyz/v1", "together_ai"),
        ("https://api.mistral.ai/v1", "mistral"),
        ("https://api.fireworks.ai/inference/v1", "fireworks_ai"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "gemini"),
        ("http://localhost:11434/v1", "ollama"),
        ("http://127.0.0.1:8000/v1", "vllm"),
        ("http://gpu-box.internal:9000/v1", "openai_compatible:gpu-box.internal"),
    ],
)
def test_provider_inferred_from_base_url(base_url: str, provider: str) -> None:
    assert provider_for(openai.OpenAI(api_key="x", base_url=base_url)) == provider


def test_deepseek_cache_hits_priced_at_the_cache_rate(replay) -> None:  # type: ignore[no-untyped-def]
    client = make("https://api.deepseek.com")
    with replay("openai/deepseek_chat.yaml"):
        client.chat.completions.create(model="deepseek-chat", messages=ASK)
    record = only_record()
    assert record.provider == "deepseek"
    assert (record.usage.input_tokens, record.usage.cache_read_tokens, record.usage.output_tokens) == (
        1200,
        1152,
        2,
    )
    price = default_table().lookup("deepseek-chat", "deepseek")
    assert price is not None and price.cache_read is not None and price.input is not None
    assert record.usd == pytest.approx(48 * price.input + 1152 * price.cache_read + 2 * (price.output or 0))
    assert record.usd < 1200 * price.input / 2  # far below what the uncached prompt would cost


def test_openrouter_reported_cost_is_the_truth(replay) -> None:  # type: ignore[no-untyped-def]
    client = make("https://openrouter.ai/api/v1")
    with replay("openai/openrouter_chat.yaml"):
        client.chat.completions.create(model="anthropic/claude-3.5-haiku", messages=ASK)
    record = only_record()
    assert record.provider == "openrouter" and record.response_model == "anthropic/claude-3.5-haiku"
    assert record.usd == 0.000032 and record.priced  # usage.cost, not the price table
    assert (record.usage.input_tokens, record.usage.output_tokens) == (20, 4)


async def test_groq_stream_usage_from_x_groq(replay) -> None:  # type: ignore[no-untyped-def]
    client = make("https://api.groq.com/openai/v1", is_async=True)
    with replay("openai/groq_stream.yaml"):
        stream = await client.chat.completions.create(model="openai/gpt-oss-20b", messages=ASK, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "Paris."
    record = only_record()
    assert record.provider == "groq" and not record.estimated
    assert (record.usage.input_tokens, record.usage.output_tokens) == (45, 2)
    price = default_table().lookup("openai/gpt-oss-20b", "groq")
    assert price is not None and record.usd == pytest.approx(cost(price, record.usage)) and record.usd > 0


def test_local_ollama_model_recorded_unpriced_with_tokens(replay) -> None:  # type: ignore[no-untyped-def]
    client = make("http://localhost:11434/v1")
    with replay("openai/ollama_chat.yaml"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.chat.completions.create(model="llama3.2", messages=ASK)
    record = only_record()
    assert (record.provider, record.priced, record.usd) == ("ollama", False, 0.0)
    assert (record.usage.input_tokens, record.usage.output_tokens) == (33, 3)
    assert any(issubclass(w.category, tollgate.UnpricedModelWarning) for w in caught)
    assert tollgate.report(group_by="provider").rows[0]["unpriced_calls"] == 1


def test_local_model_with_a_configured_price(replay) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(prices={"llama3.2": {"input": 1e-7, "output": 2e-7}})
    client = make("http://localhost:11434/v1")
    with replay("openai/ollama_chat.yaml"):
        client.chat.completions.create(model="llama3.2", messages=ASK)
    assert only_record().usd == pytest.approx(33 * 1e-7 + 3 * 2e-7)
