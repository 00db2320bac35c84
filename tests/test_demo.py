"""The offline demo (``tollgate demo``): it runs, tells its story, and its records add up."""

from __future__ import annotations

import http.server
import io
import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from tollgate import demo
from tollgate.ledger import SQLiteLedger

OFFLINE_ENV = {"PATH": "/usr/bin:/bin", "NO_PROXY": "*", "HOME": "/nonexistent"}  # no API key, no proxy


def run_cli(
    *args: str, timeout: float = 60, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollgate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or OFFLINE_ENV,
        cwd=cwd,
    )


def usd(cell: str) -> Decimal:
    return Decimal(cell.lstrip("$").replace(",", ""))


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

    # The printed totals are the ledger's, and the rows add up to them as printed, to the digit.
    total = next(line for line in text.splitlines() if line.startswith("TOTAL")).split()
    assert int(total[1]) == len(records)
    places = len(total[4].split(".")[1])
    assert abs(float(usd(total[4])) - math.fsum(r.usd for r in records)) <= 0.5 * 10**-places + 1e-15
    rows = [line.split() for line in text.splitlines() if re.match(r"(acme|globex|initech)\s+\w+\s+\d", line)]
    assert sum(int(row[2]) for row in rows) == len(records)
    assert sum(usd(row[5]) for row in rows) == usd(total[4])
    assert f"{len(records)} calls, 1 blocked before they were sent" in text
    assert f"tokens, {total[4]} in all (the rows add up to the total)" in text

    # The page beside the ledger shows the printed totals.
    page = (tmp_path / "demo.html").read_text()
    assert re.search(rf'<span id="total-usd">{re.escape(total[4])}</span>', page)
    assert f'<span id="total-calls">{len(records)}</span>' in page
    assert f"the same report as a page, with charts: {tmp_path / 'demo.html'} (open it in a browser)" in text


def demo_folders() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("tollgate-demo")}


def test_demo_command_then_report_command(tmp_path: Path) -> None:
    """What a new user does: run the demo, then the report command it prints, as printed (the
    virtual environment not active: `tollgate` is not on the PATH)."""
    temp_before = demo_folders()
    started = time.monotonic()
    out = run_cli("demo", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert elapsed < 30, f"the demo took {elapsed:.1f}s"
    assert "Traceback" not in out.stderr
    assert "kept in tollgate-demo.db; the next demo run empties it" in out.stdout
    command = shlex.split(out.stdout.strip().splitlines()[-1])
    script = Path(sys.executable).parent / "tollgate"
    assert command[0] == str(script) and command[1:4] == ["report", "--ledger", "sqlite:///tollgate-demo.db"]
    report = subprocess.run(
        [*command, "--format", "json"], capture_output=True, text=True, env=OFFLINE_ENV, cwd=tmp_path
    )
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
    # the files it said: the ledger, and the report as a page beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tollgate-demo.db", "tollgate-demo.html"]
    assert "the same report as a page, with charts: tollgate-demo.html (open it in a browser)" in out.stdout
    dashboard = shlex.split(out.stdout.strip().splitlines()[-2].partition("#")[0])
    assert dashboard[1:] == [
        "dashboard",
        "--ledger",
        "sqlite:///tollgate-demo.db",
        "--group-by",
        "tenant,feature",
    ]
    assert demo_folders() == temp_before  # and nothing left in the temporary folder

    again = run_cli("demo", cwd=tmp_path)  # the next run starts from an empty ledger
    assert again.returncode == 0, again.stderr
    report = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, cwd=tmp_path)
    assert json.loads(report.stdout)["total"]["calls"] == data["total"]["calls"]


def test_demo_prints_tollgate_when_it_is_on_the_path(tmp_path: Path) -> None:
    env = {**OFFLINE_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{OFFLINE_ENV['PATH']}"}
    out = run_cli("demo", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1].strip()
    assert last == "tollgate report --ledger sqlite:///tollgate-demo.db --group-by tenant,feature"


def test_the_command_is_spelled_to_run_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = tmp_path / "venv" / "bin"
    scripts.mkdir(parents=True)
    python = scripts / "python"
    python.write_text("")
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert demo.tollgate_command() == "venv/bin/python -m tollgate"  # no script: the interpreter
    script = scripts / "tollgate"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert demo.tollgate_command() == "venv/bin/tollgate"  # relative to where the user is
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert demo.tollgate_command() == shlex.quote(str(script))  # outside: the whole path
    monkeypatch.setenv("PATH", str(scripts))
    assert demo.tollgate_command() == "tollgate"  # this installation's, on the PATH


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_otlp_with_nothing_listening_says_so_at_once(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    out = run_cli("demo", "--otlp", url, cwd=tmp_path)
    assert time.monotonic() - started < 10
    assert out.returncode == 1 and out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"tollgate demo: error: --otlp {url}: nothing answers there (")
    assert "start an OTLP/HTTP collector" in line and "leave out --otlp" in line


@contextmanager
def refusing_server() -> Iterator[str]:
    """An HTTP server that answers every POST with 404, as a wrong endpoint does."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_demo_otlp_that_fails_is_reported_not_hidden(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    with refusing_server() as url:
        started = time.monotonic()
        out = run_cli("demo", "--otlp", url, cwd=tmp_path)
        elapsed = time.monotonic() - started
    assert out.returncode == 1 and elapsed < 30, (out.stderr, elapsed)
    assert "metrics were sent" not in out.stdout and "Traceback" not in out.stderr
    (line,) = [line for line in out.stdout.splitlines() if url in line and "spans" in line]
    assert line.startswith(f"spans and metrics could not all be sent to {url} (")
    assert "404" in line and "check that an OTLP/HTTP collector listens there" in line
    assert "retrying" not in out.stderr  # the exporter's retries are summed up, not printed


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


def test_the_help_names_the_default_ledger() -> None:
    from tollgate import cli

    assert cli.DEMO_LEDGER == demo.DEFAULT_LEDGER


def test_demo_otlp_without_the_sdk_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.metrics", None)  # the core install, no [otel]
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        out = io.StringIO()
        assert demo.run(ledger=f"sqlite:///{tmp_path / 'demo.db'}", otlp=url, out=out) == 1
    assert out.getvalue() == ""
    err = capsys.readouterr().err
    assert (
        err == 'tollgate demo: error: --otlp needs the OpenTelemetry SDK: pip install "tollgate-llm[otel]"\n'
    )
