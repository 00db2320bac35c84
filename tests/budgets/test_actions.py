"""downgrade, clamp, truncate and callables: what the gate decides when a budget refuses."""

from __future__ import annotations

import pytest

import tollgate
from tests.budgets.helpers import QUESTION, request, run
from tollgate.config import settings
from tollgate.pricing.tokens import count_messages


def test_downgrade_swaps_the_model_and_is_recorded() -> None:
    with tollgate.budget(usd=0.003, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}):
        call, record = run(request("gpt-4o", cap=1000))
    assert call.decision.action == "downgrade" and call.decision.model == "gpt-4o-mini"
    assert call.estimate.usd <= 0.003
    assert record.decisions == ({"action": "downgrade", "from": "gpt-4o", "to": "gpt-4o-mini"},)
    mini = settings().prices.lookup("gpt-4o-mini")
    assert mini is not None and record.usd == pytest.approx(
        call.estimate.input_tokens * mini.input + 100 * mini.output
    )


def test_downgrade_chain_walks_until_one_fits() -> None:
    chain = {"gpt-4o": "gpt-4.1-mini", "gpt-4.1-mini": "gpt-4o-mini"}
    big = request("gpt-4o", cap=4000)
    with tollgate.budget(usd=0.003, on_exceed="downgrade", downgrade=chain):
        call = tollgate.gate.preflight(big)
    assert [n["to"] for n in call.steps] == ["gpt-4.1-mini", "gpt-4o-mini"]
    assert call.decision.model == "gpt-4o-mini"


def test_downgrade_that_never_fits_blocks() -> None:
    with (
        tollgate.budget(usd=0.0001, on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}),
        pytest.raises(tollgate.BudgetExceeded, match="tried downgrade"),
    ):
        run(request("gpt-4o", cap=1000))


def test_inner_downgrade_never_masks_an_outer_hard_cap() -> None:
    cheap = {"gpt-4o": "gpt-4o-mini"}
    # Only the outer budget refuses gpt-4o, and it blocks.
    with (
        tollgate.budget(usd=0.0005, on_exceed="block", name="outer"),
        tollgate.budget(usd=0.01, on_exceed="downgrade", downgrade=cheap),
        pytest.raises(tollgate.BudgetExceeded, match="'outer'"),
    ):
        run(request("gpt-4o", cap=1000))
    # Both refuse; the inner downgrade gives a call the outer cap admits too: it goes ahead.
    with (
        tollgate.budget(usd=0.0005, on_exceed="block", name="outer"),
        tollgate.budget(usd=0.0004, on_exceed="downgrade", downgrade=cheap),
    ):
        call, _ = run(request("gpt-4o", cap=500), output_tokens=10)
        assert call.decision.model == "gpt-4o-mini"
    # Both refuse; the downgraded call would fit the inner budget but not the outer cap: blocked.
    with (
        tollgate.budget(usd=0.0001, on_exceed="block", name="outer"),
        tollgate.budget(usd=0.0004, on_exceed="downgrade", downgrade=cheap),
        pytest.raises(tollgate.BudgetExceeded, match="'outer'"),
    ):
        run(request("gpt-4o", cap=500))


def test_clamp_lowers_the_cap_to_what_the_budget_affords() -> None:
    price = settings().prices.lookup("gpt-4o")
    assert price is not None
    with tollgate.budget(usd=0.003, on_exceed="clamp"):
        call = tollgate.gate.preflight(request("gpt-4o", cap=1000))
    cap = call.decision.max_output_tokens
    assert call.decision.action == "clamp" and cap is not None and 16 <= cap < 1000
    input_usd = call.estimate.input_tokens * price.input
    assert input_usd + cap * price.output <= 0.003 < input_usd + (cap + 1) * price.output
    assert call.steps == ({"action": "clamp", "max_output_tokens": cap, "was": 1000},)


def test_clamp_applies_to_a_call_with_no_cap_and_never_raises_a_lower_one() -> None:
    with tollgate.budget(tokens=300, on_exceed="clamp"):
        call = tollgate.gate.preflight(request("gpt-4o", cap=None))  # worst case: the model's max
        assert call.decision.max_output_tokens == 300 - call.estimate.input_tokens
    with tollgate.budget(tokens=300, on_exceed="clamp"):
        call = tollgate.gate.preflight(request("gpt-4o", cap=50))  # fits: nothing to do
        assert call.decision.action == "proceed" and call.decision.max_output_tokens is None


def test_clamp_below_the_floor_blocks() -> None:
    n = count_messages(QUESTION, "gpt-4o")
    with tollgate.budget(tokens=n + 10, on_exceed="clamp"), pytest.raises(tollgate.BudgetExceeded):
        tollgate.gate.preflight(request("gpt-4o", cap=1000))
    with tollgate.budget(tokens=n + 10, on_exceed="clamp", clamp_floor=5):
        assert tollgate.gate.preflight(request("gpt-4o", cap=1000)).decision.max_output_tokens == 10


def conversation(turns: int) -> list[dict[str, object]]:
    messages: list[dict[str, object]] = [{"role": "system", "content": "You are a careful analyst."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Question {i}: " + "context " * 200})
        if i == 2:  # a tool call and its results must go together
            messages.append(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": 1}'},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": 2}'},
                        },
                    ],
                }
            )
            messages.append({"role": "tool", "tool_call_id": "c1", "content": "result one " * 50})
            messages.append({"role": "tool", "tool_call_id": "c2", "content": "result two " * 50})
        messages.append({"role": "assistant", "content": f"Answer {i}: " + "detail " * 100})
    messages.append({"role": "user", "content": "Now summarise everything."})
    return messages


def test_truncate_drops_oldest_turns_keeping_system_last_user_and_tool_pairs() -> None:
    messages = conversation(8)
    full = count_messages(messages, "gpt-4o")
    with tollgate.budget(tokens=full // 2 + 100, on_exceed="truncate"):
        call = tollgate.gate.preflight(request("gpt-4o", cap=100, messages=messages))
    kept = list(call.decision.messages or [])
    assert call.decision.action == "truncate"
    assert kept[0] == messages[0] and kept[-1] == messages[-1]
    assert kept == [messages[0], *messages[len(messages) - len(kept) + 1 :]]  # a suffix of the history
    roles = [m["role"] for m in kept]
    assert roles[1] != "tool"  # never a tool result without its call
    dropped = call.steps[0]["dropped_messages"]
    assert dropped == len(messages) - len(kept)
    assert call.estimate.input_tokens + 100 <= full // 2 + 100
    # Minimal: keeping one more message would not have fitted.
    assert (
        count_messages([messages[0], *messages[len(messages) - len(kept) :]], "gpt-4o") + 100
        > full // 2 + 100
    )


def test_truncate_that_cannot_fit_blocks() -> None:
    messages = [{"role": "system", "content": "rules " * 500}, {"role": "user", "content": "hi"}]
    with tollgate.budget(tokens=100, on_exceed="truncate"), pytest.raises(tollgate.BudgetExceeded):
        tollgate.gate.preflight(request("gpt-4o", cap=10, messages=messages))


def test_callable_decides_the_action() -> None:
    seen = []

    def policy(ctx) -> str:  # type: ignore[no-untyped-def]
        seen.append((ctx.budget.name, ctx.request.model, ctx.unit))
        return "clamp" if ctx.request.model == "gpt-4o" else "block"

    with tollgate.budget(usd=0.003, on_exceed=policy, name="policy"):
        call = tollgate.gate.preflight(request("gpt-4o", cap=1000))
    assert call.decision.action == "clamp" and seen == [("policy", "gpt-4o", "usd")]
