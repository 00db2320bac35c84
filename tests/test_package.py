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


def test_no_module_imports_a_transport_library_itself() -> None:
    # openai 3.x and anthropic 2.x send through httpx2, older majors through httpx: tollgate, its
    # demo and its examples build stand-ins on whichever the installed SDK uses
    # (tollgate.demo.http_library), never importing one it may not have (google-genai 3.x no
    # longer depends on httpx either).
    import ast

    offenders = []
    for path in [*sorted((ROOT / "tollgate").rglob("*.py")), *sorted((ROOT / "examples").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] in ("httpx", "httpx2") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
