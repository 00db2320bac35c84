"""Ambient budgets: nesting, async isolation, decorators on every kind of function."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

import tollgate
from tests.budgets.helpers import request, run
from tollgate.budgets.scope import active_budgets


def names() -> list[str]:
    return [f.spec.name for f in active_budgets()]


def test_nesting_pushes_and_pops() -> None:
    with tollgate.budget(usd=1, name="outer"):
        with tollgate.budget(usd=0.5, name="inner"):
            assert names() == ["outer", "inner"]
        assert names() == ["outer"]
    assert names() == []


def test_every_enclosing_budget_is_charged() -> None:
    from tollgate.stores.base import Charge

    store = tollgate.config.settings().store
    with tollgate.budget(usd=1, name="outer"), tollgate.budget(usd=1, name="inner"):
        run(request())
        frames = active_budgets()
        spent = [
            store.read([Charge(f.counter({}) + ":usd", f.spec.window, 1.0, 0)], 0.0)[0].spent for f in frames
        ]
    assert [f.spec.name for f in frames] == ["outer", "inner"]
    assert spent[0] == spent[1] > 0


async def test_async_tasks_do_not_share_budgets() -> None:
    async def worker(name: str) -> list[str]:
        async with tollgate.budget(usd=1, name=name):
            await asyncio.sleep(0.01)
            return names()

    assert await asyncio.gather(worker("a"), worker("b")) == [["a"], ["b"]]


async def test_decorates_async_functions() -> None:
    @tollgate.budget(usd=1, name="async")
    async def f() -> list[str]:
        await asyncio.sleep(0)
        return names()

    assert await f() == ["async"] and names() == []


def test_generator_budget_applies_inside_steps_only() -> None:
    @tollgate.budget(usd=1, name="gen")
    def steps() -> Iterator[list[str]]:
        yield names()
        received = yield names()
        yield [received]

    gen = steps()
    assert next(gen) == ["gen"]
    assert names() == []  # nothing leaks to the caller between steps
    assert next(gen) == ["gen"]
    assert gen.send("hello") == ["hello"]
    with pytest.raises(StopIteration):
        next(gen)


def test_generator_throw_and_close_reach_the_generator() -> None:
    closed = []

    @tollgate.budget(usd=1)
    def steps() -> Iterator[int]:
        try:
            yield 1
            yield 2
        except ValueError:
            yield 99
        finally:
            closed.append(True)

    gen = steps()
    assert next(gen) == 1
    assert gen.throw(ValueError) == 99
    gen.close()
    assert closed == [True]


async def test_async_generator_budget_applies_inside_steps_only() -> None:
    @tollgate.budget(usd=1, name="agen")
    async def steps() -> AsyncIterator[list[str]]:
        for _ in range(2):
            await asyncio.sleep(0)
            yield names()

    seen = []
    async for value in steps():
        seen.append(value)
        assert names() == []
    assert seen == [["agen"], ["agen"]]


def test_budget_with_a_generator_blocks_a_runaway_agent_loop() -> None:
    @tollgate.budget(usd=0.02)
    def agent() -> Iterator[float]:
        while True:  # a loop that would run forever
            yield run(request(cap=500), output_tokens=500)[1].usd

    spent = []
    with pytest.raises(tollgate.BudgetExceeded):
        for usd in agent():
            spent.append(usd)
    assert 0 < sum(spent) <= 0.02 and len(spent) == 3


async def test_one_budget_object_entered_by_interleaved_tasks() -> None:
    shared = tollgate.budget(usd=1, name="shared")

    async def worker(delay: float) -> list[str]:
        async with shared:
            await asyncio.sleep(delay)
            inside = names()
        return inside + names()

    # Task a enters first and leaves first: with one shared token stack it would undo b's entry.
    assert await asyncio.gather(worker(0.0), worker(0.02)) == [["shared"], ["shared"]]
    assert names() == []


def test_lifetime_counters_are_dropped_when_their_block_ends() -> None:
    store = tollgate.config.settings().store
    assert isinstance(store, tollgate.stores.MemoryStore)
    with tollgate.budget(usd=1):
        run(request())
        assert len(store._slots) == 1
    assert store._slots == {}  # a per-request budget leaves nothing behind

    @tollgate.budget(usd=1)
    def handler() -> None:
        run(request())

    for _ in range(3):
        handler()
    assert store._slots == {}
    with tollgate.budget(usd=1, per="day"):  # windowed: a persistent counter, kept
        run(request())
    assert len(store._slots) == 1
