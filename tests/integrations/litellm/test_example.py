"""examples/litellm_budget.py runs offline and shows what it says: a recorded call, a downgrade,
a clamped stream, a block, a Router downgrade and a gated sync call."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_python

pytest.importorskip("tollgate_litellm")


def test_litellm_example_runs_offline() -> None:
    lines = run_python(str(ROOT / "examples" / "litellm_budget.py")).splitlines()
    assert any(line.startswith("blocked:") and "action: block" in line for line in lines)
    assert any(line.startswith("router:") and "(gpt-4o-mini)" in line for line in lines)
    decisions = [line.split() for line in lines if "->" in line]
    assert [d[0] for d in decisions] == ["gpt-4o-mini", "gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o"]
    assert [d[2] for d in decisions] == [
        "gpt-4o-mini",
        "gpt-4o-mini",
        "gpt-4o",
        "-",
        "gpt-4o-mini",
        "gpt-4o-mini",
    ]
    assert (
        "'downgrade'" in decisions[1][-1] and "'clamp'" in decisions[2][-1] and decisions[3][3] == "blocked"
    )


def test_import_tollgate_does_not_import_litellm() -> None:
    code = "import sys, tollgate; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
