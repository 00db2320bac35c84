"""The SQLite ledger under faults: a writer SIGKILLed under load, two processes on one file, a
read-only place, a full disk.

"Acknowledged" is the ledger's own definition (tollgate/ledger/sqlite.py): a record written
before a ``flush()`` that returned with ``dropped()`` unchanged. The children here make real
gated calls (the ``openai`` SDK wrapped by ``tollgate.instrument``, against an in-process
stand-in for the API) from several threads, and report through a pipe which calls were
acknowledged; the parent kills them at a random moment and checks the file.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import tollgate
from tests.faults.servers import chat_response, make_read_only, tmpfs
from tollgate.ledger import SQLiteLedger
from tollgate.request import CallRecord

ROOT = str(Path(__file__).resolve().parents[2])
THREADS = 4
ACK_EVERY = 5  # each child thread flushes and reports after this many calls

# A child process: THREADS threads make gated calls, each tagged user_id=<label>-<thread>-<n>,
# and after every ACK_EVERY calls flush the ledger and print "<label>-<thread> <calls so far>"
# when nothing was dropped: those calls are acknowledged. PER_THREAD 0 runs until killed.
CHILD = """
import sys, threading
import httpx, openai, tollgate
from tests.faults.servers import chat_response

path, label, per_thread = sys.argv[1], sys.argv[2], int(sys.argv[3])
ACK_EVERY, THREADS = int(sys.argv[4]), int(sys.argv[5])
tollgate.configure(ledger=f"sqlite:///{path}")
ledger = tollgate.config.settings().ledger
transport = httpx.MockTransport(chat_response)
client = tollgate.instrument(
    openai.OpenAI(api_key="sk-test", max_retries=0, http_client=httpx.Client(transport=transport))
)
say = threading.Lock()
ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 50}

def work(t):
    n = 0
    while per_thread == 0 or n < per_thread:
        with tollgate.track(user_id=f"{label}-{t}-{n}"), tollgate.budget(usd=1000):
            assert client.chat.completions.create(**ASK).choices[0].message.content == "OK"
        n += 1
        if n % ACK_EVERY == 0:
            ledger.flush()
            if ledger.dropped() == 0:
                with say:
                    print(f"{label}-{t} {n}", flush=True)

threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ledger.close()
print("done", ledger.dropped(), flush=True)
"""


class Child:
    """A child writing through gated calls; its acknowledgements, read from its stdout pipe."""

    def __init__(self, path: Path, label: str, per_thread: int = 0) -> None:
        self.label = label
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), label, str(per_thread), str(ACK_EVERY), str(THREADS)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acked: dict[str, int] = {}  # "<label>-<thread>" -> calls acknowledged
        self.lines: list[str] = []
        self.first_ack = threading.Event()
        self.err = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        self.err = self.process.stderr.read()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())
            name, _, count = line.strip().partition(" ")
            if name != "done":
                self.acked[name] = max(self.acked.get(name, 0), int(count))
                self.first_ack.set()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)  # what it printed before dying was acknowledged too
        self._err_reader.join(timeout=10)

    def finish(self) -> str:
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        self._err_reader.join(timeout=10)
        assert self.process.returncode == 0, self.err
        return self.err

    def acknowledged(self) -> set[str]:
        return {f"{name}-{n}" for name, count in self.acked.items() for n in range(count)}


def user_ids(path: Path) -> list[str]:
    with SQLiteLedger(path) as ledger:
        return [r.tags["user_id"] for r in ledger.records()]


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def assert_writable(path: Path) -> None:
    with SQLiteLedger(path) as ledger:
        ledger.write(CallRecord(id="after", started_at=9e9, ended_at=9e9, provider="openai",
                                operation="chat", request_model="gpt-4o-mini"))  # fmt: skip
        ledger.flush()
        assert ledger.dropped() == 0 and ledger.records(since=9e9)[0].id == "after"


def test_a_writer_killed_under_load_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    child = Child(path, "w")
    assert child.first_ack.wait(30), child.err
    time.sleep(random.uniform(0.05, 0.6))  # a random moment, mid-batch for all we know
    child.kill()
    acknowledged = child.acknowledged()
    assert len(acknowledged) >= ACK_EVERY

    written = user_ids(path)
    assert acknowledged <= set(written), sorted(acknowledged - set(written))[:10]
    assert len(written) == len(set(written))  # and nothing twice
    assert integrity(path) == "ok"
    assert_writable(path)


def test_two_processes_write_one_ledger_and_one_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    per_thread = 60
    survivor, victim = Child(path, "a", per_thread), Child(path, "b")
    assert victim.first_ack.wait(30) and survivor.first_ack.wait(30)
    time.sleep(random.uniform(0.05, 0.4))
    victim.kill()
    err = survivor.finish()
    assert "database is locked" not in err and "Traceback" not in err, err
    assert survivor.lines[-1] == "done 0"  # the survivor lost nothing and saw no error

    written = user_ids(path)
    assert len(written) == len(set(written))
    mine = [u for u in written if u.startswith("a-")]
    assert len(mine) == THREADS * per_thread  # everything it wrote, acknowledged or at close
    assert victim.acknowledged() <= set(written)
    assert integrity(path) == "ok"
    assert_writable(path)


@contextmanager
def read_only_place(tmp_path: Path) -> Iterator[Path]:
    """A folder holding a closed tollgate ledger (``existing.db``), then made read-only."""
    folder = tmp_path / "ro"
    with tmpfs(folder) if os.geteuid() == 0 else _plain(folder):
        with SQLiteLedger(folder / "existing.db"):
            pass
        make_read_only(folder)
        try:
            yield folder
        finally:
            if os.geteuid() != 0:
                folder.chmod(0o755)
                (folder / "existing.db").chmod(0o644)


@contextmanager
def _plain(folder: Path) -> Iterator[Path]:
    folder.mkdir()
    yield folder


@pytest.mark.parametrize("name", ["existing.db", "new.db", "sub/new.db"])
def test_a_ledger_that_cannot_be_written_fails_at_configure(tmp_path: Path, name: str) -> None:
    before = tollgate.config.settings().ledger
    with read_only_place(tmp_path) as folder:
        path = folder / name
        with pytest.raises(ValueError) as e:
            tollgate.configure(ledger=f"sqlite:///{path}")
    message = str(e.value)
    assert message.startswith(f"cannot open ledger file {str(path)!r}: ")
    # A missing folder is refused as such, before anything is written (tests/test_config_validation.py).
    causes = ("does not exist",) if "/" in name else ("read-only", "not writable", "permission denied")
    assert any(c in message.lower() for c in causes), message
    assert tollgate.config.settings().ledger is before  # the configuration in force is kept


def test_a_read_only_ledger_file_fails_at_open(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    with SQLiteLedger(path):
        pass
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files; the read-only file system case covers it")
    path.chmod(0o444)
    try:
        with pytest.raises(ValueError, match=r"the file is read-only") as e:
            SQLiteLedger(path)
        assert str(path) in str(e.value)
    finally:
        path.chmod(0o644)


def make_calls(count: int) -> None:
    client = tollgate.instrument(
        openai.OpenAI(
            api_key="sk-test",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(chat_response)),
        )
    )
    ask: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say OK."}],
        "max_tokens": 50,
    }
    for i in range(count):
        with tollgate.track(user_id=f"u{i}"), tollgate.budget(usd=1000):
            assert client.chat.completions.create(**ask).choices[0].message.content == "OK"


def check_full_disk(ledger: SQLiteLedger, caplog: pytest.LogCaptureFixture, calls: int) -> None:
    tollgate.configure(ledger=ledger)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="tollgate"):
        for _ in range(calls // 50):
            make_calls(50)  # every gated call succeeds: the ledger never raises into it
            ledger.flush()
    assert ledger.dropped() > 0
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    # Logged once (then at most once per 10 s while it lasts), not once per failed batch.
    assert 1 <= len(lost) <= 1 + (time.monotonic() - started) // 10, [r.getMessage() for r in lost]
    message = lost[0].getMessage()
    assert "disk is full" in message and ledger.path in message, message
    kept = ledger.records()  # reading still works, and gives what did fit
    assert 0 < len(kept) < calls and len(kept) + ledger.dropped() == calls


def test_a_full_database_costs_records_not_calls(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The database reaches its size limit (``PRAGMA max_page_count``: SQLITE_FULL, as a full
    disk gives), portable to any machine."""
    ledger = SQLiteLedger(tmp_path / "calls.db")
    with ledger._lock:  # the ledger's own connection: the limit is per connection
        conn = ledger._connection()
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count = {pages + 8}")
    check_full_disk(ledger, caplog, calls=500)
    with ledger._lock:  # room again: the ledger carries on
        ledger._connection().execute("PRAGMA max_page_count = 1073741823")
    dropped = ledger.dropped()
    make_calls(10)
    ledger.flush()
    assert ledger.dropped() == dropped and len(ledger.records()) + dropped == 510
    ledger.close()


def test_a_full_disk_costs_records_not_calls(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A real full disk: a 512 KiB tmpfs (root only, skipped elsewhere)."""
    with tmpfs(tmp_path / "small", size="256k") as folder:
        ledger = SQLiteLedger(folder / "calls.db")
        try:
            check_full_disk(ledger, caplog, calls=1_500)
        finally:
            tollgate.reset()
