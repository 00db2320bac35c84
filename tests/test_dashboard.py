"""``tollgate dashboard`` (tollgate/dashboard.py): a real server in a subprocess, watching an
SQLite ledger another process keeps writing to, read over HTTP and by headless Chromium."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tests.conftest import ROOT
from tests.test_cli import assert_one_line_error, tollgate_cli
from tests.test_html_report import ARTIFACTS, Dom, chromium, needs_chromium, png_pixels
from tollgate.dashboard import Dashboard, is_loopback


@dataclass
class Files:
    ledger: str
    store: str
    folder: Path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    """A ledger with a few calls and a store with a lifetime limit for acme, charged by them."""
    found = Files(f"sqlite:///{tmp_path / 'calls.db'}", f"sqlite:///{tmp_path / 'budgets.db'}", tmp_path)
    tollgate.configure(ledger=found.ledger, store=found.store)
    tollgate.set_limit(usd=5, per=None, tenant="acme")
    for i in range(3):
        tollgate.record(
            provider="openai", model="gpt-4o-mini", input_tokens=900, output_tokens=100 * i, tenant="acme"
        )
    tollgate.record(provider="openai", model="gpt-4o", input_tokens=400, output_tokens=50, tenant="globex")
    tollgate.reset()
    return found


WRITER = """
import sys, time, pathlib, tollgate
ledger, store, stop = sys.argv[1:]
tollgate.configure(ledger=ledger, store=store)
for i in range(3000):  # at most a minute
    if pathlib.Path(stop).exists():
        break
    tollgate.record(provider="openai", model="gpt-4o-mini", input_tokens=500 + i, output_tokens=40,
                    tenant="acme" if i % 3 else "globex")
    time.sleep(0.02)
tollgate.reset()  # the last records are in the file
"""


@contextmanager
def writer(files: Files) -> Iterator[Path]:
    """A second process recording calls into the ledger (and charging the store) until the
    file it yields is created."""
    stop = files.folder / "stop"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, files.ledger, files.store, str(stop)], cwd=ROOT)
    try:
        yield stop
    finally:
        stop.touch()
        assert proc.wait(timeout=30) == 0


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    port: int

    def get(self, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        status, headers, body = self.get(path)
        assert status == 200 and headers["Content-Type"] == "application/json", body
        return json.loads(body)


def read_line(proc: subprocess.Popen[str], timeout: float = 15) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as wait:
        wait.register(proc.stdout, selectors.EVENT_READ)
        assert wait.select(timeout), "the dashboard printed nothing"
    return proc.stdout.readline()


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def dashboard(*args: str, cwd: Path) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollgate", "dashboard", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        # Ctrl-C as a terminal sends it: a shell that started the suite in the background left
        # SIGINT ignored, and a child inherits that (Python then never raises KeyboardInterrupt).
        preexec_fn=_interruptible,
    )
    try:
        line = read_line(proc)
        found = re.match(r"tollgate dashboard: (http://[\d.]+:(\d+)/) shows ", line)
        assert found is not None, (
            line,
            proc.stderr.read() if proc.poll() is not None and proc.stderr else "",
        )
        yield Server(proc, found[1], int(found[2]))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)


def stop(server: Server) -> tuple[str, str]:
    """Ctrl-C: what the dashboard printed after its first line, and on stderr."""
    server.proc.send_signal(signal.SIGINT)
    out, err = server.proc.communicate(timeout=10)
    assert server.proc.returncode == 0, err
    return out, err


def report(files: Files, *args: str) -> dict[str, Any]:
    out = tollgate_cli("report", "--ledger", files.ledger, "--format", "json", *args)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def printed_total(files: Files) -> str:
    """The TOTAL usd cell of the text report (with --group-by tenant, as the dashboard)."""
    text = tollgate_cli("report", "--ledger", files.ledger, "--group-by", "tenant").stdout
    (line,) = [line.split() for line in text.splitlines() if line.startswith("TOTAL")]
    (usd,) = [cell for cell in line if cell.startswith("$")]
    return usd


def contents(path: Path) -> list[str]:
    """What an SQLite file holds, read-only (its bytes may move when a reader checkpoints the WAL)."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


# -- a live ledger ---------------------------------------------------------------------------------


def test_totals_grow_while_another_process_writes_and_end_as_the_report(files: Files) -> None:
    args = ["--ledger", files.ledger, "--store", files.store, "--group-by", "tenant"]
    with dashboard(*args, cwd=files.folder) as server:
        assert server.url.startswith("http://127.0.0.1:")  # 127.0.0.1 unless told otherwise
        with writer(files):
            seen = []
            for _ in range(3):
                seen.append(server.json("/data.json")["summary"]["total"]["calls"])
                time.sleep(1.1)  # past the summary's one-second cache
            assert seen[0] >= 4 and seen[0] < seen[1] < seen[2], seen
        # the writer is done: the dashboard and the report read the same ledger
        time.sleep(1.1)
        data = server.json("/data.json")
        total = report(files)["total"]
        assert data["summary"]["total"]["calls"] == total["calls"] > seen[2]
        assert data["headline"]["usd"] == printed_total(files)
        assert data["headline"]["calls"] == f"{total['calls']:,}"
        assert math.isclose(data["summary"]["total"]["usd"], total["usd"], rel_tol=1e-9)
        assert [row[0] for row in data["table"]["rows"]] == ["acme", "globex"]

        # the standing limit, charged by every acme call of both processes
        limits = server.json("/limits.json")
        assert limits["store"] == files.store
        (row,) = limits["limits"]
        (usage,) = row["usage"]
        acme = report(files, "--where", "tenant=acme")["total"]["usd"]
        assert row["id"] == "limit[tenant=acme]" and row["window"] == "lifetime"
        assert usage["limit"] == 5 and usage["reserved"] == 0
        assert math.isclose(usage["spent"], acme, rel_tol=1e-9)
        assert math.isclose(usage["remaining"], 5 - acme, rel_tol=1e-9)
        assert "limit[tenant=acme]" in limits["table"] and "lifetime" in limits["table"]

        # it only reads: the files are as the writer left them
        before = {name: contents(files.folder / name) for name in ("calls.db", "budgets.db")}
        for path in ("/", "/data.json", "/limits.json"):
            assert server.get(path)[0] == 200
        out, err = stop(server)
        assert out == "tollgate dashboard: stopped\n" and err == ""
        assert {name: contents(files.folder / name) for name in before} == before


def test_only_get_and_head_and_only_its_paths(files: Files) -> None:
    with dashboard("--ledger", files.ledger, "--store", files.store, cwd=files.folder) as server:
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
            status, headers, body = server.get("/data.json", method)
            assert (status, headers["Allow"]) == (405, "GET, HEAD"), method
            assert b"only reads" in body
        assert server.get("/nope")[0] == 404 and server.get("/data.json/../etc")[0] == 404
        status, headers, body = server.get("/", "HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 100_000
        assert (
            headers["Content-Type"] == "text/html; charset=utf-8" and headers["Cache-Control"] == "no-store"
        )
        # a page elsewhere whose name was pointed at 127.0.0.1 (DNS rebinding) reads nothing
        assert server.get("/data.json", Host="evil.example:8765")[0] == 403
        assert server.get("/data.json", Host=f"localhost:{server.port}")[0] == 200
        page = server.get("/")[2].decode()
        assert 'data-refresh="data.json"' in page and "connect-src 'self'" in page
        assert '<section id="limits">' in page and "limit[tenant=acme]" in page
        assert "Budgets made in code with <code>tollgate.budget(...)</code>" in page
        stop(server)


def test_another_host_is_warned_about(files: Files) -> None:
    with dashboard("--ledger", files.ledger, "--host", "0.0.0.0", cwd=files.folder) as server:
        _, err = stop(server)
    assert "warning: listening on 0.0.0.0, not 127.0.0.1: the dashboard has no authentication" in err
    assert not is_loopback("0.0.0.0") and is_loopback("::1") and is_loopback("127.0.0.2")


def test_refuses_what_it_cannot_read_and_creates_nothing(files: Files) -> None:
    folder = files.folder
    missing_store = tollgate_cli(
        "dashboard", "--ledger", files.ledger, "--store", "sqlite:///no.db", cwd=folder
    )
    assert_one_line_error(missing_store, "no store at 'no.db'", status=1)
    missing_ledger = tollgate_cli("dashboard", "--ledger", "sqlite:///none.db", cwd=folder)
    assert_one_line_error(missing_ledger, "no ledger at 'none.db'", status=1)
    port = tollgate_cli("dashboard", "--ledger", files.ledger, "--port", "70000", cwd=folder)
    assert_one_line_error(port, "--port 70000", status=2)
    since = tollgate_cli("dashboard", "--ledger", files.ledger, "--since", "lately", cwd=folder)
    assert_one_line_error(since, "--since 'lately'", status=2)
    assert sorted(p.name for p in folder.iterdir()) == ["budgets.db", "calls.db"]


def test_without_a_store_the_page_says_so(files: Files) -> None:
    # the default store (tollgate.db here) does not exist: no limits, and no file made
    with dashboard("--ledger", files.ledger, cwd=files.folder) as server:
        assert server.get("/limits.json")[0] == 404
        assert b"No store given, so no standing limits are shown" in server.get("/")[2]
        stop(server)
    assert not (files.folder / "tollgate.db").exists()


def test_one_summary_a_second_serves_every_request() -> None:
    made = []

    def summary() -> dict[str, Any]:
        made.append(time.monotonic())
        return {"total": {"calls": len(made), "usd": 0.25}}

    board = Dashboard(summary, ledger="sqlite:///t.db")
    for _ in range(5):
        board.answer("GET", "/data.json")
        board.answer("GET", "/")
    assert len(made) == 1
    time.sleep(1.05)
    assert json.loads(board.answer("GET", "/data.json")[2])["headline"]["calls"] == "2"


# -- a real browser --------------------------------------------------------------------------------


@needs_chromium
def test_chromium_shows_the_live_page_and_keeps_a_screenshot(files: Files, tmp_path: Path) -> None:
    args = ["--ledger", files.ledger, "--store", files.store, "--group-by", "tenant"]
    with dashboard(*args, cwd=files.folder) as server:
        with writer(files) as stopping:
            time.sleep(0.5)
            # 7 s of virtual time: the first refresh, 5 s in, of the page and of the limits
            dom = Dom(chromium(server.url, "dashboard, --dump-dom", tmp_path / "p", "--dump-dom"))
            stopping.touch()
        assert dom.errors() == []
        assert int(dom.attrs["body"]["data-refreshes"] or 0) >= 1
        assert int(dom.attrs["body"]["data-limits-refreshes"] or 0) >= 1
        assert dom.attrs["body"]["data-rendered"] == "3"  # spend over time, models, tokens
        assert int(dom.text["total-calls"].replace(",", "")) > 4
        assert Decimal(dom.text["total-usd"].strip("$")) > 0
        assert "limit[tenant=acme]" in dom.text["limits-table"] and "hidden" in dom.attrs["limits-status"]

        time.sleep(1.1)
        final = report(files)["total"]
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        chromium(
            server.url,
            "dashboard, screenshot",
            tmp_path / "q",
            f"--screenshot={shot}",
            "--window-size=1280,1500",
        )
        width, height, raw = png_pixels(shot.read_bytes())
        assert (width, height) == (1280, 1500) and len(set(raw)) > 100
        print(f"screenshot: {shot} ({final['calls']} calls)")
        stop(server)
    assert os.path.getsize(shot) > 50_000
