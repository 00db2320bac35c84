"""examples/langchain_budget.py runs offline and shows what it says: a recorded call, a
downgrade, a clamped stream and a block."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, run_python

pytest.importorskip("tollgate_langchain")
pytest.importorskip("langchain_openai")


def test_langchain_example_runs_offline() -> None:
    lines = run_python(str(ROOT / "examples" / "langchain_budget.py")).splitlines()
    assert any(line.startswith("blocked:") and "action: block" in line for line in lines)
    decisions = [line.split() for line in lines if "->" in line]
    assert [d[0] for d in decisions] == ["gpt-4o-mini", "gpt-4o", "gpt-4o", "gpt-4o"]
    assert decisions[1][2] == "gpt-4o-mini" and "'downgrade'" in decisions[1][-1]
    assert "'clamp'" in decisions[2][-1] and decisions[3][3] == "blocked"
