"""Failed calls on every return shape release their reservation and leave a ledger record.

A network timeout (the SDK's APITimeoutError), raised by an httpx transport that never
answers, on a create, a stream manager and a streamed raw response, sync and async.
"""

from __future__ import annotations

from typing import Any

import pytest

import tollgate
from tollgate.stores.base import Charge

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

ASK = [{"role": "user", "content": "Name the capital of France in one word."}]
DAILY = {"usd": 1.0, "per": "day", "name": "failures-daily"}


def timing_out(request: Any) -> Any:
    raise httpx.ReadTimeout("the server did not answer", request=request)


def counter() -> Any:
    spec = tollgate.budget(**DAILY).spec  # type: ignore[arg-type]
    charge = Charge("budget:failures-daily:usd", spec.window, 1.0, 0)
    return tollgate.config.settings().store.read([charge], tollgate.preflight.store_clock())[0]


def check_charged_and_recorded(n: int) -> None:
    # A read timeout: the provider had the request and answers (and bills) it all the same, so
    # each call is charged what it reserved (docs/semantics.md, "Cancelled calls"); no hold is left.
    state = counter()
    records = tollgate.config.settings().ledger.records()
    assert len(records) == n
    for record in records:
        assert record.status == "error" and "APITimeoutError" in (record.error or "")
        assert record.estimated and record.decisions[-1]["abandoned"] == "reservation" and record.usd > 0
    assert state.reserved == 0 and state.spent == pytest.approx(sum(r.usd for r in records))


def test_sync_read_timeouts_are_charged_and_recorded() -> None:
    client = tollgate.instrument(
        openai.OpenAI(
            api_key="test", max_retries=0, http_client=httpx.Client(transport=httpx.MockTransport(timing_out))
        )
    )
    with tollgate.budget(**DAILY):  # type: ignore[arg-type]
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=50)
        with (
            pytest.raises(openai.APITimeoutError),
            client.chat.completions.stream(model="gpt-4o-mini", messages=ASK),
        ):
            pass
        with (
            pytest.raises(openai.APITimeoutError),
            client.responses.with_streaming_response.create(model="gpt-4o-mini", input="hi"),
        ):
            pass
        with pytest.raises(openai.APITimeoutError):
            client.embeddings.create(model="text-embedding-3-small", input="hi")
    check_charged_and_recorded(4)


async def test_async_read_timeouts_are_charged_and_recorded() -> None:
    transport = httpx.MockTransport(timing_out)
    client = tollgate.instrument(
        openai.AsyncOpenAI(api_key="test", max_retries=0, http_client=httpx.AsyncClient(transport=transport))
    )
    async with tollgate.budget(**DAILY):  # type: ignore[arg-type]
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True)
        with pytest.raises(openai.APITimeoutError):
            async with client.responses.stream(model="gpt-4o-mini", input="hi"):
                pass
        with pytest.raises(openai.APITimeoutError):
            await client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    check_charged_and_recorded(3)
