"""Redis killed, paused or black-holed under real calls: fail closed (or open) quickly, never
hang, and leak no reservation once Redis is back.

Each test starts its own redis-server (``appendonly yes``, ``appendfsync always``, so what it
acknowledged survives a SIGKILL and a restart brings the counters back) and drives the real
``openai`` SDK, wrapped by ``tollgate.instrument``, against an in-process stand-in for the API.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

import tollgate
from tests.faults.servers import RedisServer, black_hole, chat_response, redis_server
from tollgate.request import CallRecord
from tollgate.stores.base import Charge
from tollgate.stores.redis import RedisStore
from tollgate.stores.windows import Lifetime

ASK: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say OK."}]}
ASK["max_tokens"] = 50
IN_FLIGHT = 8
#: A call that fails closed against a dead or mute Redis must do so within this (socket and
#: connect timeouts are 2 s; a refused connection fails at once).
PROMPT = 5.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as s:
        yield s


@pytest.fixture
def store(server: RedisServer) -> Iterator[RedisStore]:
    s = RedisStore(server.url, prefix=f"faults-{uuid.uuid4().hex[:10]}")
    tollgate.configure(store=s, ledger="memory://")
    yield s
    tollgate.reset()


def counters(url: str, prefix: str) -> tuple[float, float]:
    """Spent and reserved over every counter slot of the store, read straight from Redis."""
    client = redis.Redis.from_url(url)
    try:
        spent = reserved = 0.0
        for key in client.scan_iter(match=f"{{{prefix}}}:slot:*"):
            fields = client.hgetall(key)
            spent += float(fields[b"spent"])
            reserved += float(fields[b"reserved"])
        return spent, reserved
    finally:
        client.close()


def live_hold_records(url: str, prefix: str) -> list[str]:
    """Hold records still holding something (a cancelled reservation's mark holds nothing)."""
    client = redis.Redis.from_url(url)
    try:
        return [
            key.decode()
            for key in client.scan_iter(match=f"{{{prefix}}}:hold:*")
            if set(client.hkeys(key)) - {b"cancelled"}
        ]
    finally:
        client.close()


def records() -> list[CallRecord]:
    return tollgate.config.settings().ledger.records()


def assert_back_to_exact(server: RedisServer, store: RedisStore) -> None:
    """Nothing held, and spent = the recorded cost of every budgeted call that ran."""
    spent, reserved = counters(server.url, store.prefix)
    budgeted = [r for r in records() if r.status == "ok" and not _unbudgeted(r)]
    assert reserved == pytest.approx(0.0, abs=1e-12)
    assert spent == pytest.approx(sum(r.usd for r in budgeted), rel=1e-9)
    assert spent > 0
    assert store.pending == 0 and store.lost == 0
    assert live_hold_records(server.url, store.prefix) == []


def _unbudgeted(record: CallRecord) -> bool:
    return any(d.get("store") == "unavailable" for d in record.decisions)


def async_client(handler: Any) -> Any:
    transport = httpx.MockTransport(handler)
    raw = openai.AsyncOpenAI(
        api_key="sk-test", max_retries=0, http_client=httpx.AsyncClient(transport=transport)
    )
    return tollgate.instrument(raw)


def sync_client(handler: Any) -> Any:
    transport = httpx.MockTransport(handler)
    raw = openai.OpenAI(api_key="sk-test", max_retries=0, http_client=httpx.Client(transport=transport))
    return tollgate.instrument(raw)


async def test_async_calls_across_a_redis_kill_and_restart(server: RedisServer, store: RedisStore) -> None:
    entered = 0
    all_in, go = asyncio.Event(), asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal entered
        entered += 1
        if entered == IN_FLIGHT:
            all_in.set()
        await go.wait()
        return chat_response(request)

    client = async_client(handler)

    async def ask() -> Any:
        async with tollgate.budget(usd=1.0, per="day"):
            return await client.chat.completions.create(**ASK)

    in_flight = [asyncio.create_task(ask()) for _ in range(IN_FLIGHT)]
    await asyncio.wait_for(all_in.wait(), 10)
    spent, held = counters(server.url, store.prefix)
    assert spent == 0 and held > 0  # every call in flight holds its worst case

    server.kill()
    go.set()  # the provider answers: every call settles while Redis is dead
    answers = await asyncio.wait_for(asyncio.gather(*in_flight), 15)
    assert [a.choices[0].message.content for a in answers] == ["OK"] * IN_FLIGHT
    assert store.pending == IN_FLIGHT  # the settles that failed, kept for replay

    took = []
    for _ in range(3):  # calls that start during the outage fail closed, before any traffic
        started = time.monotonic()
        with pytest.raises(tollgate.StoreUnavailable, match="unreachable during reserve"):
            await asyncio.wait_for(ask(), 15)
        took.append(time.monotonic() - started)
    assert max(took) < PROMPT
    assert entered == IN_FLIGHT

    server.start()  # same port, same AOF: Redis comes back with the holds it had at the kill
    assert counters(server.url, store.prefix) == pytest.approx((0.0, held))

    answer = await asyncio.wait_for(ask(), 15)  # one more operation replays the failed ones first
    assert answer.choices[0].message.content == "OK"
    assert_back_to_exact(server, store)
    statuses = sorted(r.status for r in records())
    assert statuses == ["error"] * 3 + ["ok"] * (IN_FLIGHT + 1)  # a record for every call
    assert all("StoreUnavailable" in (r.error or "") for r in records() if r.status == "error")
    assert len({r.id for r in records()}) == IN_FLIGHT + 4
    await store.aclose()


def test_sync_calls_across_a_redis_kill_and_restart_closed_then_open(
    server: RedisServer, store: RedisStore
) -> None:
    arrived = threading.Semaphore(0)
    go = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        arrived.release()
        assert go.wait(15)
        return chat_response(request)

    client = sync_client(handler)

    def ask() -> Any:
        with tollgate.budget(usd=1.0, per="day"):
            return client.chat.completions.create(**ASK)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        in_flight = [pool.submit(ask) for _ in range(IN_FLIGHT)]
        for _ in range(IN_FLIGHT):
            assert arrived.acquire(timeout=10)
        held = counters(server.url, store.prefix)[1]
        assert held > 0
        server.kill()
        go.set()
        answers = [f.result(timeout=15) for f in in_flight]
    assert [a.choices[0].message.content for a in answers] == ["OK"] * IN_FLIGHT

    started = time.monotonic()
    with pytest.raises(tollgate.StoreUnavailable):
        ask()
    assert time.monotonic() - started < PROMPT

    tollgate.configure(on_store_error="open")  # now the outage lets calls through, unbudgeted
    started = time.monotonic()
    for _ in range(2):
        assert ask().choices[0].message.content == "OK"
    assert time.monotonic() - started < 2 * PROMPT
    unbudgeted = [r for r in records() if _unbudgeted(r)]
    assert len(unbudgeted) == 2 and all(r.status == "ok" and r.usd > 0 for r in unbudgeted)
    assert all("unreachable during reserve" in d["error"] for r in unbudgeted for d in r.decisions)

    server.start()
    assert counters(server.url, store.prefix) == pytest.approx((0.0, held))
    tollgate.configure(on_store_error="closed")
    assert ask().choices[0].message.content == "OK"
    assert_back_to_exact(server, store)  # the unbudgeted calls are not in the counters
    assert sorted(r.status for r in records()) == ["error"] + ["ok"] * (IN_FLIGHT + 3)


async def test_a_paused_redis_fails_calls_in_seconds_and_leaks_nothing_after(
    server: RedisServer, store: RedisStore
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return chat_response(request)

    client = async_client(handler)

    async def ask() -> Any:
        async with tollgate.budget(usd=1.0, per="day"):
            return await client.chat.completions.create(**ASK)

    await ask()  # connections and scripts are warm
    server.pause()  # SIGSTOP: connections are accepted, commands are buffered, nothing answers
    try:
        started = time.monotonic()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(ask() for _ in range(5)), return_exceptions=True), 30
        )
        took = time.monotonic() - started
    finally:
        server.resume()
    assert all(isinstance(o, tollgate.StoreUnavailable) for o in outcomes), outcomes
    assert "Timeout" in str(outcomes[0])
    assert took < PROMPT
    # The paused server may still run the reserves it had buffered, after the callers gave up:
    # each was queued as a cancel, replayed before the next operation.
    assert store.pending == 5
    await ask()
    assert_back_to_exact(server, store)
    assert len(records()) == 7
    await store.aclose()


def test_a_black_holed_redis_fails_closed_or_lets_through_in_seconds() -> None:
    handler_calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal handler_calls
        handler_calls += 1
        return chat_response(request)

    client = sync_client(handler)
    with black_hole() as url:
        tollgate.configure(store=url)
        with tollgate.budget(usd=1.0, per="day"):
            started = time.monotonic()
            with pytest.raises(tollgate.StoreUnavailable, match="Timeout"):
                client.chat.completions.create(**ASK)
            closed_took = time.monotonic() - started
            assert handler_calls == 0

            tollgate.configure(on_store_error="open")
            started = time.monotonic()
            assert client.chat.completions.create(**ASK).choices[0].message.content == "OK"
            open_took = time.monotonic() - started
        tollgate.reset()  # closes the store: its one replay attempt at close is bounded too
    assert closed_took < PROMPT and open_took < PROMPT
    assert handler_calls == 1


# -- the store's own guarantees, below the gate ---------------------------------------------


def test_undoing_a_hold_twice_counts_once(server: RedisServer, store: RedisStore) -> None:
    """A settle or release replayed after its reply was lost must not count again (and must
    not eat another call's hold)."""
    budget = Charge("b", Lifetime(), 1.0, 0.25)
    first, second = store.reserve([budget], 0.0), store.reserve([budget], 0.0)
    store.settle(first.holds, [0.1])
    store.settle(first.holds, [0.1])
    store.release(first.holds)
    assert counters(server.url, store.prefix) == pytest.approx((0.1, 0.25))
    store.release(second.holds)
    store.release(second.holds)
    assert counters(server.url, store.prefix) == pytest.approx((0.1, 0.0))
    assert live_hold_records(server.url, store.prefix) == []


def test_failed_operations_replay_in_order_after_a_restart(server: RedisServer, store: RedisStore) -> None:
    budget = Charge("b", Lifetime(), 10.0, 1.0)
    holds = [store.reserve([budget], 0.0).holds for _ in range(4)]
    server.kill()
    for i, hold in enumerate(holds[:3]):
        with pytest.raises(tollgate.StoreUnavailable, match="during settle"):
            store.settle(hold, [0.5 * (i + 1)])
    with pytest.raises(tollgate.StoreUnavailable, match="during release"):
        store.release(holds[3])
    with pytest.raises(tollgate.StoreUnavailable, match="during reserve"):
        store.reserve([budget], 0.0)  # fails at the replay, before sending: nothing to cancel
    assert store.pending == 4
    server.start()
    assert counters(server.url, store.prefix) == (0.0, 4.0)
    (state,) = store.read([budget], 0.0)  # any operation replays first
    assert (state.spent, state.reserved) == pytest.approx((3.0, 0.0))
    assert store.pending == 0


def test_a_reserve_whose_reply_was_lost_holds_nothing_once_cancelled(
    server: RedisServer, store: RedisStore
) -> None:
    budget = Charge("b", Lifetime(), 10.0, 1.0)
    store.reserve([budget], 0.0)  # scripts loaded, connection pooled
    server.pause()
    try:
        with pytest.raises(tollgate.StoreUnavailable, match="Timeout"):
            store.reserve([budget], 0.0)
    finally:
        server.resume()
    assert store.pending == 1  # its cancel
    (state,) = store.read([budget], 0.0)
    assert state.reserved == 1.0  # the first reserve's hold only, whether or not the second ran
