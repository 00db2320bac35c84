"""The offline demo (``tollgate demo``): it runs, tells its story, and its records add up."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tollgate import demo
from tollgate.ledger import SQLiteLedger

OFFLINE_ENV = {"PATH": "/usr/bin:/bin", "NO_PROXY": "*", "HOME": "/nonexistent"}  # no API key, no proxy


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollgate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=OFFLINE_ENV,
    )


def event_lines(output: str, event: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(rf"\s+\S+\s+\S+\s+{event}\s", line)]


def test_demo_story_and_ledger_agree(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    out = io.StringIO()
    assert demo.run(ledger=f"sqlite:///{path}", out=out) == 0
    text = out.getvalue()

    # The narrative: one line per event, each action shown.
    (block,) = [line for line in event_lines(text, "BLOCK") if "initech" in line and "agent" in line]
    assert "refused before it was sent" in block
    assert (
        len([line for line in event_lines(text, "ok") if "initech  agent" in line]) >= 2
    )  # it ran, then stopped
    assert "gpt-4o-mini answered" in event_lines(text, "DOWNGRADE")[0]
    assert re.search(r"max_tokens 4000 lowered to [\d,]+", event_lines(text, "CLAMP")[0])
    assert re.search(r"the \d+ oldest turns were dropped", event_lines(text, "TRUNCATE")[0])
    assert "BudgetExceeded(action='cutoff')" in event_lines(text, "CUTOFF")[0]
    assert "acme's counter is its own" in text  # the cap is per tenant
    assert f"tollgate report --ledger sqlite:///{path} --group-by tenant,feature" in text

    # The ledger: what the story says happened, happened.
    with SQLiteLedger(path) as ledger:
        records = ledger.records()
    blocked = [r for r in records if r.status == "blocked"]
    assert [(r.tags["tenant"], r.tags["feature"]) for r in blocked] == [("initech", "agent")]
    assert blocked[0].usd == 0 and blocked[0].decisions[-1]["budget"] == "daily-cap-per-tenant"
    (downgraded,) = [r for r in records if any(d.get("action") == "downgrade" for d in r.decisions)]
    assert downgraded.request_model == "gpt-4o" and downgraded.response_model == "gpt-4o-mini"
    (clamped,) = [r for r in records if any(d.get("action") == "clamp" for d in r.decisions)]
    assert clamped.usage.total_tokens <= 1500
    (truncated,) = [r for r in records if any(d.get("action") == "truncate" for d in r.decisions)]
    assert truncated.usage.input_tokens + 150 <= 600
    (cut,) = [r for r in records if any(d.get("action") == "cutoff" for d in r.decisions)]
    assert cut.stream and cut.estimated and 0 < cut.usage.output_tokens < demo.StandIn.story_tokens
    assert cut.usd <= 0.00005 + 2 * 0.6e-6  # at most a chunk past the budget

    # The printed totals are the ledger's, and the rows add up to them.
    total = next(line for line in text.splitlines() if line.startswith("TOTAL")).split()
    assert int(total[1]) == len(records)
    assert total[4] == f"${math.fsum(r.usd for r in records):,.6f}"
    rows = [line.split() for line in text.splitlines() if re.match(r"(acme|globex|initech)\s+\w+\s+\d", line)]
    assert sum(int(row[2]) for row in rows) == len(records)
    assert f"{len(records)} calls, 1 blocked before they were sent" in text
    assert "(the rows add up to the total)" in text


def test_demo_command_then_report_command(tmp_path: Path) -> None:
    """What a new user does: run the demo, then the report command it prints."""
    started = time.monotonic()
    out = run_cli("demo")
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert elapsed < 30, f"the demo took {elapsed:.1f}s"
    assert "Traceback" not in out.stderr
    command = out.stdout.strip().splitlines()[-1].split()
    assert command[:3] == ["tollgate", "report", "--ledger"]
    report = run_cli(*command[1:], "--format", "json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    printed = re.search(r"^(\d+) calls, (\d+) blocked", out.stdout, re.M)
    assert printed is not None
    assert (
        data["total"]["calls"] == int(printed[1]) and data["total"]["blocked_calls"] == int(printed[2]) == 1
    )
    assert {(row["tags"]["tenant"], row["tags"]["feature"]) for row in data["rows"]} >= {
        ("initech", "agent"),
        ("globex", "summarize"),
        ("acme", "stories"),
    }
    shutil.rmtree(Path(command[3].removeprefix("sqlite:///")).parent)  # the demo's temporary folder


def test_demo_sends_spans_to_an_otlp_endpoint(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    from tests.telemetry.otlp_sink import attributes, otlp_sink

    with otlp_sink() as sink:
        out = run_cli("demo", "--otlp", sink.url, "--ledger", f"sqlite:///{tmp_path / 'demo.db'}")
        assert out.returncode == 0, out.stderr
    assert f"spans and metrics were sent to {sink.url}" in out.stdout
    spans = [
        span
        for request in sink.traces()
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    actions = {attributes(span.attributes).get("tollgate.budget.action") for span in spans}
    assert {"block", "downgrade", "clamp", "truncate", "cutoff"} <= actions
    assert any(attributes(span.attributes).get("tollgate.tag.tenant") == "initech" for span in spans)
    assert sink.metrics()


def test_live_needs_a_key(tmp_path: Path) -> None:
    out = run_cli("demo", "--live", "--ledger", f"sqlite:///{tmp_path / 'demo.db'}")
    assert out.returncode == 1 and "OPENAI_API_KEY" in out.stderr and "Traceback" not in out.stderr
