"""A private PostgreSQL server for tests and benchmarks: Debian's ``postgresql`` binaries, a
fresh cluster in a temporary folder, loopback only, trust authentication, stopped at the end.

Run as root (CI), the cluster belongs to the ``postgres`` system user and its commands run as
that user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

NO_POSTGRES = (
    "no PostgreSQL server: set TOLLGATE_TEST_POSTGRES_URL, or install Debian's postgresql "
    "(apt-get install postgresql) and psycopg (pip install 'tollgate-llm[postgres]')"
)


def binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest version."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(**settings: str) -> Iterator[str]:
    """A running server's URL (database ``postgres``, user ``tollgate``); raises
    ``RuntimeError`` saying why when there is none. ``settings``: ``postgres -c`` options."""
    folder = binaries()
    if folder is None:
        raise RuntimeError(NO_POSTGRES)
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError(
                f"{NO_POSTGRES} (running as root, and no 'postgres' user to run it as)"
            ) from None
        runuser = shutil.which("runuser") or next(
            (path for path in ("/usr/sbin/runuser", "/sbin/runuser") if os.path.exists(path)), None
        )
        if runuser is None:
            raise RuntimeError(f"{NO_POSTGRES} (running as root, and no runuser to run it as postgres)")
        as_user = [runuser, "-u", "postgres", "--"]
    with tempfile.TemporaryDirectory(prefix="tollgate-pg-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        if owner is not None:
            os.chmod(tmp, 0o755)
            os.chown(data, owner.pw_uid, owner.pw_gid)
        run = [
            *as_user,
            str(folder / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "tollgate",
            "--no-sync",
        ]
        done = subprocess.run(run, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{NO_POSTGRES} (initdb failed: {done.stderr.strip()[-300:]})")
        options = {"listen_addresses": "127.0.0.1", "fsync": "off", "unix_socket_directories": str(data)}
        options |= settings
        for _ in range(3):  # the free port may be taken between the probe and the server's bind
            port = _free_port()
            flags = " ".join(f"-c {k}={v}" for k, v in {**options, "port": str(port)}.items())
            start = [*as_user, str(folder / "pg_ctl"), "-D", str(data), "-o", flags, "-l", str(data / "log")]
            done = subprocess.run([*start, "-w", "-t", "30", "start"], capture_output=True, text=True)
            if done.returncode == 0:
                break
        else:
            log = (data / "log").read_text(errors="replace")[-500:] if (data / "log").exists() else ""
            raise RuntimeError(f"{NO_POSTGRES} (pg_ctl start failed: {done.stderr.strip()} {log})")
        try:
            yield f"postgresql://tollgate@127.0.0.1:{port}/postgres"
        finally:
            stop = [*as_user, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(stop, capture_output=True)
            time.sleep(0.05)
