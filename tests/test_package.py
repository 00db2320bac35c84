"""Properties of the package as a whole: a light import, a working quick start."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("openai", "anthropic", "google.genai", "langchain", "langchain_core", "litellm", "httpx")


def test_import_pulls_in_no_llm_framework() -> None:
    probe = (
        "import sys, json, tollgate; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        "or m.startswith('google.genai'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_quickstart_demo_runs_offline() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NO_PROXY": "*", "HOME": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert "Spend by tenant and feature" in out.stdout
    assert "agent call 2:" in out.stdout and "agent call 3:" not in out.stdout  # the budget stopped it
    assert "stopped before the next call: budget 'usd=0.02' exceeded" in out.stdout
    assert "gpt-4o was asked for, gpt-4o-mini answered" in out.stdout
    assert "max_tokens 800 was lowered to" in out.stdout
    assert "24 calls" in out.stdout  # 19 + 2 agent calls + the blocked one + downgrade + clamp
