from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import tollgate
from tollgate.tags import current_tags


def test_track_nests_merges_and_restores() -> None:
    assert dict(current_tags()) == {}
    with tollgate.track(tenant="acme", feature="search"):
        with tollgate.track(feature="answer", user_id="alice"):
            assert dict(current_tags()) == {"tenant": "acme", "feature": "answer", "user_id": "alice"}
        assert dict(current_tags()) == {"tenant": "acme", "feature": "search"}
    assert dict(current_tags()) == {}


def test_track_restores_after_exception() -> None:
    with pytest.raises(RuntimeError), tollgate.track(tenant="acme"):
        raise RuntimeError("boom")
    assert dict(current_tags()) == {}


def test_track_values_are_strings_and_validated() -> None:
    with tollgate.track(plan_seats=5, beta=True):
        assert dict(current_tags()) == {"plan_seats": "5", "beta": "True"}
    with pytest.raises(ValueError, match=r"tag tenant=.*must be str"):
        tollgate.track(tenant=["acme"])


async def test_track_survives_await_and_isolates_tasks() -> None:
    async def worker(tenant: str) -> str:
        async with tollgate.track(tenant=tenant):
            await asyncio.sleep(0.01)
            return current_tags()["tenant"]

    assert await asyncio.gather(worker("a"), worker("b"), worker("c")) == ["a", "b", "c"]
    assert dict(current_tags()) == {}


async def test_track_decorates_async_and_sync_functions() -> None:
    @tollgate.track(feature="summarise")
    async def summarise() -> str:
        await asyncio.sleep(0)
        return current_tags()["feature"]

    @tollgate.track(feature="classify")
    def classify() -> str:
        return current_tags()["feature"]

    assert await summarise() == "summarise"
    assert classify() == "classify"
    assert dict(current_tags()) == {}


def test_threads_do_not_inherit_without_propagate() -> None:
    seen: dict[str, object] = {}
    with tollgate.track(tenant="acme"):
        t = threading.Thread(target=lambda: seen.update(tags=dict(current_tags())))
        t.start()
        t.join()
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(tollgate.propagate(lambda _: current_tags().get("tenant")), range(8)))
    assert seen["tags"] == {}
    assert results == ["acme"] * 8


async def test_one_track_object_entered_by_interleaved_tasks() -> None:
    shared = tollgate.track(feature="shared")

    async def worker(delay: float) -> dict[str, str]:
        async with shared:
            await asyncio.sleep(delay)
        return dict(current_tags())

    assert await asyncio.gather(worker(0.0), worker(0.02)) == [{}, {}]


def test_track_decorates_generators_tags_each_step_and_leaks_nothing() -> None:
    @tollgate.track(feature="stream")
    def numbers() -> Iterator[dict[str, str]]:
        yield dict(tollgate.current_tags())
        yield dict(tollgate.current_tags())

    with tollgate.track(tenant="acme"):
        gen = numbers()
        first = next(gen)
        assert dict(tollgate.current_tags()) == {"tenant": "acme"}  # not set in the caller between steps
        second = next(gen)
    assert first == second == {"tenant": "acme", "feature": "stream"}
    assert dict(tollgate.current_tags()) == {}


async def test_track_decorates_async_generators() -> None:
    @tollgate.track(feature="astream")
    async def numbers() -> AsyncIterator[dict[str, str]]:
        yield dict(tollgate.current_tags())

    assert [tags async for tags in numbers()] == [{"feature": "astream"}]
    assert dict(tollgate.current_tags()) == {}
