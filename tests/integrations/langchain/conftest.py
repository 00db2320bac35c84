"""LangChain chat models whose outgoing request bodies land in ``sent`` (see tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import http_module

pytest.importorskip("tollgate_langchain")


@pytest.fixture
def chat_openai(sent):  # type: ignore[no-untyped-def]
    """``chat_openai(model="gpt-4o", **kwargs)``: a ChatOpenAI (sync and async) on the capturing client."""
    langchain_openai = pytest.importorskip("langchain_openai")
    httpx = http_module("openai")

    def make(model: str = "gpt-4o-mini", **kwargs: Any) -> Any:
        return langchain_openai.ChatOpenAI(
            model=model,
            api_key="sk-test",
            max_retries=0,
            http_client=httpx.Client(event_hooks={"request": [sent.hook]}),
            http_async_client=httpx.AsyncClient(event_hooks={"request": [sent.ahook]}),
            **kwargs,
        )

    return make


@pytest.fixture
def chat_anthropic(sent, monkeypatch):  # type: ignore[no-untyped-def]
    """``chat_anthropic(model="claude-sonnet-4-6", **kwargs)``: ChatAnthropic takes no http client,
    so the httpx2 clients it builds for itself are replaced by capturing ones."""
    chat_models = pytest.importorskip("langchain_anthropic.chat_models")
    httpx = http_module("anthropic")  # httpx2 from anthropic 2.x on

    def client(*, base_url: Any, **_: Any) -> Any:
        return httpx.Client(
            base_url=base_url or "https://api.anthropic.com", event_hooks={"request": [sent.hook]}
        )

    def aclient(*, base_url: Any, **_: Any) -> Any:
        return httpx.AsyncClient(
            base_url=base_url or "https://api.anthropic.com", event_hooks={"request": [sent.ahook]}
        )

    monkeypatch.setattr(chat_models, "_get_default_httpx_client", client)
    monkeypatch.setattr(chat_models, "_get_default_async_httpx_client", aclient)

    def make(model: str = "claude-sonnet-4-6", **kwargs: Any) -> Any:
        return chat_models.ChatAnthropic(model=model, api_key="sk-ant-test", max_retries=0, **kwargs)

    return make
