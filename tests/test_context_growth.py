"""Issue 16: ``track``, ``budget`` and the integrations leave a context as they found it.

Each ``track``/``budget`` object used to create a ContextVar of its own and leave it set, so a
long-running worker (the LangChain handler and the LiteLLM logger make a ``track`` per call)
grew its context by one variable per call. Here the size of the context,
``len(contextvars.copy_context())``, is the same before and after thousands of blocks and
calls, and a ``track``/``budget`` object keeps its semantics: one object open in many threads
and tasks at once, nested in itself, each exit undoing only its own change.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

import tollgate
from tollgate.budgets.scope import Frame, active_budgets
from tollgate.config import settings
from tollgate.tags import current_tags

N = 10_000


def size() -> int:
    """How many variables are set in the current context."""
    return len(contextvars.copy_context())


def tags() -> dict[str, str]:
    return dict(current_tags())


def names() -> list[str]:
    return [f.spec.name for f in active_budgets()]


def flat_over(calls: int, call: Callable[[], object], *, warm_up: int = 3) -> tuple[int, int, int]:
    """Context sizes before ``calls`` calls, after a tenth of them, and after all of them.

    A few calls first, so that what a library sets once (not per call) is already set.
    """
    for _ in range(warm_up):
        call()
    before = size()
    for _ in range(calls // 10):
        call()
    tenth = size()
    for _ in range(calls - calls // 10):
        call()
    return before, tenth, size()


async def aflat_over(calls: int, call: Callable[[], Any], *, warm_up: int = 3) -> tuple[int, int, int]:
    """:func:`flat_over` for a coroutine function, measured in the running task's context."""
    for _ in range(warm_up):
        await call()
    before = size()
    for _ in range(calls // 10):
        await call()
    tenth = size()
    for _ in range(calls - calls // 10):
        await call()
    return before, tenth, size()


# -- the context stays flat ------------------------------------------------------------------


def test_ten_thousand_track_blocks_leave_the_context_as_it_was() -> None:
    before = size()
    for i in range(N):
        with tollgate.track(tenant=f"t{i % 7}", feature="search"), tollgate.track(user_id="alice"):
            assert current_tags()["tenant"] == f"t{i % 7}"
    assert size() == before
    assert tags() == {}


def test_one_track_object_and_its_decorator_leave_the_context_as_it_was() -> None:
    shared = tollgate.track(feature="shared")

    @tollgate.track(feature="decorated")
    def decorated() -> str:
        return current_tags()["feature"]

    before = size()
    for _ in range(N):
        with shared, shared:
            assert decorated() == "decorated"
    assert size() == before


async def test_track_in_a_task_leaves_its_context_as_it_was() -> None:
    shared = tollgate.track(feature="shared")

    @tollgate.track(feature="decorated")
    async def decorated() -> str:
        await asyncio.sleep(0)
        return current_tags()["feature"]

    before = size()
    for _ in range(N // 10):
        async with shared, tollgate.track(tenant="acme"):
            assert await decorated() == "decorated"
    assert size() == before


def test_ten_thousand_budget_blocks_leave_the_context_as_it_was() -> None:
    before = size()
    for i in range(N):
        with tollgate.budget(usd=1.0):
            assert len(active_budgets()) == 1
        with (
            tollgate.track(tenant=f"t{i % 7}"),
            tollgate.budget(usd=5.0, per="day", key="tenant", name="daily"),
        ):
            assert names() == ["daily"]
    assert size() == before
    assert active_budgets() == ()


def test_budget_decorators_leave_the_context_as_it_was() -> None:
    @tollgate.budget(usd=1.0, name="fn")
    def fn() -> list[str]:
        return names()

    @tollgate.budget(usd=1.0, name="gen")
    def gen() -> Iterator[list[str]]:
        yield names()
        yield names()

    before = size()
    for _ in range(N // 10):
        assert fn() == ["fn"]
        assert list(gen()) == [["gen"], ["gen"]]
    assert size() == before


# -- the integrations (fewer calls: each goes through the framework; growth per call would
# still show as a difference between the sizes after a tenth of the calls and after all) ---


def _fake_chat_model() -> Any:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class Replies:
        def __iter__(self) -> Replies:
            return self

        def __next__(self) -> AIMessage:
            return AIMessage("hi")

    return GenericFakeChatModel(messages=Replies())


def test_langchain_callback_handler_leaves_the_context_as_it_was() -> None:
    pytest.importorskip("tollgate_langchain")
    from tollgate_langchain import TollgateCallbackHandler

    tollgate.configure(on_unpriced="ignore")
    model = _fake_chat_model()
    config: Any = {"callbacks": [TollgateCallbackHandler()], "metadata": {"tenant": "acme"}}
    before, tenth, after = flat_over(500, lambda: model.invoke("hello", config=config))
    assert before == tenth == after
    assert len(settings().ledger.records()) == 503  # every call went through the handler


async def test_langchain_async_callback_handler_leaves_the_context_as_it_was() -> None:
    pytest.importorskip("tollgate_langchain")
    from tollgate_langchain import AsyncTollgateCallbackHandler, TollgateCallbackHandler, guard

    tollgate.configure(on_unpriced="ignore")
    model = _fake_chat_model()

    async def measure(handler: Any) -> None:
        config: Any = {"callbacks": [handler], "metadata": {"tenant": "acme"}}
        before, tenth, after = await aflat_over(200, lambda: model.ainvoke("hello", config=config))
        assert before == tenth == after

    await measure(TollgateCallbackHandler())
    await measure(AsyncTollgateCallbackHandler())
    safe = guard(model)
    before, tenth, after = await aflat_over(
        200, lambda: safe.ainvoke("hello", config={"metadata": {"t": "a"}})
    )
    assert before == tenth == after
    assert len(settings().ledger.records()) == 3 * 203


@pytest.fixture
def litellm_logger(monkeypatch: pytest.MonkeyPatch) -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price map
    pytest.importorskip("tollgate_litellm")
    import litellm

    from tollgate_litellm import TollgateLogger

    logger = TollgateLogger()
    monkeypatch.setattr(litellm, "callbacks", [logger])
    return logger


LITELLM_ARGS: dict[str, Any] = {
    "model": "openai/gpt-4o",
    "messages": [{"role": "user", "content": "Name the capital of France in one word."}],
    "mock_response": "Paris.",
    "api_key": "sk-test",
    "metadata": {"tollgate": {"tenant": "acme"}},
}


async def test_litellm_logger_leaves_the_context_as_it_was(litellm_logger: Any) -> None:
    import litellm

    import tollgate_litellm

    # The logger's pre-call hook pre-flights in the caller's task, inside a track of its tags.
    before, tenth, after = await aflat_over(30, lambda: litellm.acompletion(**LITELLM_ARGS))
    assert before == tenth == after
    # The wrappers pre-flight in the caller's context too (sync and async).
    before, tenth, after = await aflat_over(60, lambda: tollgate_litellm.acompletion(**LITELLM_ARGS))
    assert before == tenth == after
    before, tenth, after = flat_over(60, lambda: tollgate_litellm.completion(**LITELLM_ARGS))
    assert before == tenth == after
    assert any(dict(r.tags) == {"tenant": "acme"} for r in settings().ledger.records())


# -- the semantics kept ----------------------------------------------------------------------

THREADS = 50


def test_one_track_object_open_in_fifty_threads_at_once() -> None:
    shared = tollgate.track(feature="shared")
    inside = threading.Barrier(THREADS)
    seen: dict[int, tuple[dict[str, str], dict[str, str], dict[str, str], int]] = {}

    def worker(i: int) -> None:
        start = size()
        with shared:
            with tollgate.track(user_id=f"u{i}"):
                inside.wait(timeout=30)  # every thread is inside the same object's block now
                within = tags()
            with shared:  # nested in itself
                again = tags()
        seen[i] = (within, again, tags(), size() - start)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    with shared:  # open in this thread too: the others never see it
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert tags() == {"feature": "shared"}
    assert tags() == {}
    assert seen == {
        i: ({"feature": "shared", "user_id": f"u{i}"}, {"feature": "shared"}, {}, 0) for i in range(THREADS)
    }


async def test_one_track_object_open_in_fifty_tasks_at_once_leaving_in_any_order() -> None:
    shared = tollgate.track(feature="shared")
    inside = asyncio.Barrier(THREADS)

    async def worker(i: int) -> tuple[dict[str, str], dict[str, str], dict[str, str], int]:
        start = size()
        async with shared:
            async with tollgate.track(user_id=f"u{i}"):
                await inside.wait()
                await asyncio.sleep((THREADS - i) * 0.001)  # the first in leaves last
                within = tags()
            async with shared:
                await asyncio.sleep(0)
                again = tags()
        return within, again, tags(), size() - start

    before = size()
    results = await asyncio.gather(*(worker(i) for i in range(THREADS)))
    assert results == [
        ({"feature": "shared", "user_id": f"u{i}"}, {"feature": "shared"}, {}, 0) for i in range(THREADS)
    ]
    assert tags() == {} and size() == before


def test_nested_reentry_of_one_track_object_restores_each_level() -> None:
    outer = tollgate.track(tenant="acme", feature="outer")
    inner = tollgate.track(feature="inner")
    before = size()
    with outer:
        with inner:
            with outer:  # re-entered above a block of another object: its tags win again
                assert tags() == {"tenant": "acme", "feature": "outer"}
                with outer:
                    assert tags() == {"tenant": "acme", "feature": "outer"}
                assert tags() == {"tenant": "acme", "feature": "outer"}
            assert tags() == {"tenant": "acme", "feature": "inner"}
        assert tags() == {"tenant": "acme", "feature": "outer"}
    assert tags() == {} and size() == before


def test_recursive_decorated_function_reenters_its_track() -> None:
    depths: list[dict[str, str]] = []

    @tollgate.track(feature="walk")
    def walk(depth: int) -> None:
        depths.append(tags())
        if depth:
            with tollgate.track(level=depth):
                walk(depth - 1)

    before = size()
    walk(3)
    assert depths == [
        {"feature": "walk"},
        {"feature": "walk", "level": "3"},
        {"feature": "walk", "level": "2"},
        {"feature": "walk", "level": "1"},
    ]
    assert tags() == {} and size() == before


def test_exceptions_inside_blocks_restore_tags_and_budgets() -> None:
    shared = tollgate.track(feature="shared")
    cap = tollgate.budget(usd=1.0, name="cap")
    before = size()
    for _ in range(100):
        with pytest.raises(RuntimeError, match="boom"), shared, cap, shared, cap, tollgate.track(user_id="a"):
            raise RuntimeError("boom")
    assert tags() == {} and active_budgets() == () and size() == before


def test_exit_stack_unwinds_in_reverse_order() -> None:
    shared = tollgate.track(feature="a")
    before = size()
    with ExitStack() as stack:
        stack.enter_context(shared)
        stack.enter_context(tollgate.track(feature="b", tenant="acme"))
        stack.enter_context(shared)
        assert tags() == {"feature": "a", "tenant": "acme"}
        stack.enter_context(tollgate.budget(usd=1, name="x"))
        assert names() == ["x"]
    assert tags() == {} and active_budgets() == () and size() == before


def _held_open(scope: Any) -> Generator[None, None, None]:
    with scope:
        yield
        yield


def test_blocks_ended_out_of_order_undo_only_their_own_change() -> None:
    # Generators holding blocks open, closed in another order than they began.
    first, second = tollgate.track(tenant="acme", feature="a"), tollgate.track(feature="b", user_id="u")
    before = size()
    a, b = _held_open(first), _held_open(second)
    next(a)
    next(b)
    assert tags() == {"tenant": "acme", "feature": "b", "user_id": "u"}
    a.close()  # first ends while second is still open: second's tags stay, acme goes
    assert tags() == {"feature": "b", "user_id": "u"}
    with tollgate.track(extra="1"):
        assert tags() == {"feature": "b", "user_id": "u", "extra": "1"}
    assert tags() == {"feature": "b", "user_id": "u"}
    b.close()
    assert tags() == {} and size() == before

    # The middle one of three ends first, then the outer, then the inner.
    gens = [_held_open(tollgate.track(level=str(n), **{f"k{n}": "v"})) for n in range(3)]
    for g in gens:
        next(g)
    assert tags() == {"level": "2", "k0": "v", "k1": "v", "k2": "v"}
    gens[1].close()
    assert tags() == {"level": "2", "k0": "v", "k2": "v"}
    gens[0].close()
    assert tags() == {"level": "2", "k2": "v"}
    gens[2].close()
    assert tags() == {} and size() == before


def test_budgets_ended_out_of_order_drop_only_their_own_frame() -> None:
    x, y, z = (tollgate.budget(usd=1, name=name) for name in "xyz")
    before = size()
    a, b, c = _held_open(x), _held_open(y), _held_open(z)
    for g in (a, b, c):
        next(g)
    assert names() == ["x", "y", "z"]
    b.close()
    assert names() == ["x", "z"]
    a.close()
    assert names() == ["z"]
    c.close()
    assert names() == [] and size() == before


def test_nested_reentry_of_one_budget_object_pops_its_own_frame() -> None:
    cap = tollgate.budget(usd=1, name="cap")
    before = size()
    with cap:
        [outer] = active_budgets()
        with cap:
            frames = active_budgets()
            assert [f.spec.name for f in frames] == ["cap", "cap"] and frames[0] is outer
            assert frames[1].scope != outer.scope  # a fresh lifetime counter per block
        assert active_budgets() == (outer,)
    assert active_budgets() == () and size() == before


def test_one_budget_object_open_in_fifty_threads_at_once() -> None:
    cap = tollgate.budget(usd=1, name="cap")
    inside = threading.Barrier(THREADS)
    frames: dict[int, tuple[Frame, ...]] = {}
    after: dict[int, tuple[tuple[Frame, ...], int]] = {}

    def worker(i: int) -> None:
        start = size()
        with cap:
            inside.wait(timeout=30)
            frames[i] = active_budgets()
        after[i] = (active_budgets(), size() - start)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(f) == 1 and f[0].spec is cap.spec for f in frames.values())
    assert len({f[0].scope for f in frames.values()}) == THREADS  # a frame of its own each
    assert after == {i: ((), 0) for i in range(THREADS)}


async def test_one_budget_object_open_in_fifty_tasks_at_once() -> None:
    cap = tollgate.budget(usd=1, name="cap")
    inside = asyncio.Barrier(THREADS)

    async def worker(i: int) -> tuple[str, tuple[Frame, ...]]:
        async with cap:
            await inside.wait()
            [frame] = active_budgets()
            await asyncio.sleep((THREADS - i) * 0.001)
            assert active_budgets() == (frame,)
        return frame.scope, active_budgets()

    before = size()
    results = await asyncio.gather(*(worker(i) for i in range(THREADS)))
    assert len({scope for scope, _ in results}) == THREADS
    assert all(left == () for _, left in results)
    assert size() == before


async def test_async_generator_budget_still_applies_inside_steps_only() -> None:
    @tollgate.budget(usd=1, name="agen")
    async def steps() -> AsyncIterator[list[str]]:
        for _ in range(3):
            await asyncio.sleep(0)
            yield names()

    before = size()
    assert [v async for v in steps()] == [["agen"]] * 3
    assert names() == [] and size() == before


def test_a_block_ended_in_a_copy_of_its_context_ends_there_only() -> None:
    # An async generator finalised in a task of its own ends its block in a copy of the
    # context it began in: the copy loses the block, the original keeps it until it ends.
    shared = tollgate.track(feature="shared")
    cap = tollgate.budget(usd=1, name="cap")
    with shared, cap:
        copy = contextvars.copy_context()
        copy.run(cap.__exit__, None, None, None)
        copy.run(shared.__exit__, None, None, None)
        assert copy.run(tags) == {} and copy.run(names) == []
        assert tags() == {"feature": "shared"} and names() == ["cap"]
    assert tags() == {} and names() == []


def test_ending_a_block_that_was_not_begun_here_is_an_error() -> None:
    shared = tollgate.track(feature="shared")
    cap = tollgate.budget(usd=1, name="cap")
    with pytest.raises(RuntimeError, match="not begun in this context"):
        shared.__exit__(None, None, None)
    with pytest.raises(RuntimeError, match="not begun in this context"):
        cap.__exit__(None, None, None)
    with shared:
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                shared.__exit__(None, None, None)
            except RuntimeError as exc:
                errors.append(exc)

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert len(errors) == 1 and tags() == {"feature": "shared"}
    assert tags() == {}
