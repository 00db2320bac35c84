"""The ``tollgate`` command, run through its entry point (``python -m tollgate``) in a subprocess,
on real SQLite ledgers and stores."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

import tollgate
from tollgate.ledger import SQLiteLedger
from tollgate.request import CallRecord, Usage
from tollgate.stores import SQLiteStore

DAY = 86_400.0


def tollgate_cli(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollgate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        input=stdin,
    )


def assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str, status: int = 1) -> None:
    """One line on stderr naming the problem; exit status 1 (the command failed) or 2 (usage)."""
    assert out.returncode == status, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tollgate "), out.stderr
    for needle in needles:
        assert needle in lines[0]


def record(i: int, feature: str, usd: float, *, age_days: float = 0.0, status: str = "ok") -> CallRecord:
    started = time.time() - age_days * DAY - i
    return CallRecord(
        id=f"c{i}",
        started_at=started,
        ended_at=started + 0.5,
        provider="openai",
        operation="chat",
        request_model="gpt-4o-mini",
        usage=Usage(input_tokens=100, output_tokens=20) if status == "ok" else Usage(),
        usd=usd if status == "ok" else 0.0,
        status=status,  # type: ignore[arg-type]
        tags={"feature": feature, "user_id": "alice" if i % 2 else "bob"},
    )


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    """A real SQLite ledger: 3 search calls (one blocked), 2 chat calls, and one 10-day-old call."""
    path = tmp_path / "tollgate.db"
    with SQLiteLedger(path) as db:
        db.write(record(1, "search", 0.25))
        db.write(record(2, "search", 0.5))
        db.write(record(3, "search", 0.0, status="blocked"))
        db.write(record(4, "chat", 0.125))
        db.write(record(5, "chat", 0.125))
        db.write(record(6, "chat", 4.0, age_days=10))
    return f"sqlite:///{path}"


# -- help and usage ------------------------------------------------------------------------------


def test_help_lists_every_command_and_exits_zero() -> None:
    out = tollgate_cli("--help")
    assert out.returncode == 0
    for command in ("report", "prices", "estimate", "limits", "demo"):
        assert command in out.stdout
    sub = tollgate_cli("report", "--help")
    assert sub.returncode == 0 and "--group-by" in sub.stdout and "--since" in sub.stdout
    assert tollgate_cli("--version").stdout.strip() == f"tollgate {tollgate.__version__}"


def test_usage_mistakes_exit_two() -> None:
    bare = tollgate_cli()
    assert bare.returncode == 2 and "usage: tollgate" in bare.stderr
    bad = tollgate_cli("report", "--format", "xml")
    assert bad.returncode == 2 and "invalid choice: 'xml'" in bad.stderr
    assert tollgate_cli("frobnicate").returncode == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["report", "--where", "tenant"], "--where 'tenant': use NAME=VALUE"),
        (["report", "--since", "yesterday"], "--since 'yesterday': give a duration"),
        (["report", "--until", "soon"], "--until 'soon'"),
        (["report", "--ledger", "ftp://x"], "unknown ledger URI 'ftp://x'"),
        (
            ["estimate", "gpt-4o", "--messages", "-", "--max-tokens", "-1"],
            "--max-tokens -1: give zero or more",
        ),
        (["limits", "set", "--usd", "1", "--per", "day", "acme"], "'acme': give the tags"),
        (["limits", "set", "--usd", "-1", "--per", "day", "tenant=a"], "usd=-1.0"),
        (
            ["limits", "set", "--usd", "1", "--per", "day", "--downgrade", "cheap", "tenant=a"],
            "MODEL=CHEAPER_MODEL",
        ),
        (["limits", "--store", "mysql://db"], "unknown store URI 'mysql://db'"),
        (["prices", "gpt-4o", "--update"], "--update regenerates the whole table: leave out 'gpt-4o'"),
        (["demo", "--ledger", "memory://"], "--ledger 'memory://': use sqlite:///path.db"),
    ],
)
def test_every_usage_mistake_exits_two_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    """The README's exit statuses: 2 for a usage mistake, whoever notices it (argparse or the command)."""
    out = tollgate_cli(*args, cwd=tmp_path, stdin="[]")
    assert_one_line_error(out, needle, status=2)
    assert not list(tmp_path.iterdir())  # nothing created on the way to the refusal


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["report"], "no ledger at 'tollgate.db'"),
        (["estimate", "gpt-4o", "--messages", "chat.json"], "cannot read 'chat.json'"),
        (["limits"], "no store at 'tollgate.db'"),
        (["prices", "gtp-4o"], "no model in the price table matches 'gtp-4o' (did you mean 'gpt-4o'?)"),
    ],
)
def test_a_command_that_fails_exits_one_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    assert_one_line_error(tollgate_cli(*args, cwd=tmp_path), needle, status=1)


def test_an_error_message_spanning_lines_is_printed_as_one(capsys: pytest.CaptureFixture[str]) -> None:
    from tollgate import cli

    def fails(args: object, out: object) -> int:
        raise ValueError("disk I/O error\n  while reading page 7")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "cmd_report", fails)
        assert cli.main(["report"]) == 1
    assert capsys.readouterr().err == "tollgate report: error: disk I/O error while reading page 7\n"


# -- report --------------------------------------------------------------------------------------


def test_report_table_groups_and_totals(ledger: str) -> None:
    out = tollgate_cli("report", "--ledger", ledger, "--group-by", "feature")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:2] == ["feature", "calls"]
    chat = next(line for line in lines if line.startswith("chat"))
    search = next(line for line in lines if line.startswith("search"))
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert chat.split()[1] == "3" and "$4.250000" in chat  # the 10-day-old call included
    assert search.split()[1] == "3" and "$0.750000" in search
    assert total.split()[1] == "6" and "$5.000000" in total
    assert "6 calls, 600 tokens, $5.000000, 1 blocked, 0 unpriced" in out.stdout


def test_report_rows_add_up_to_the_total_as_printed(tmp_path: Path) -> None:
    path = tmp_path / "tollgate.db"
    with SQLiteLedger(path) as db:  # at 6 decimals: $0.010000 + $0.007355 rows, TOTAL $0.017356
        db.write(record(1, "search", 0.0100004))
        db.write(record(2, "chat", 0.0073554))
    out = tollgate_cli("report", "--ledger", f"sqlite:///{path}", "--group-by", "feature")
    assert out.returncode == 0, out.stderr
    cells = [
        line.split()[-1] for line in out.stdout.splitlines() if line.startswith(("search", "chat", "TOTAL"))
    ]
    *rows, total = [Decimal(cell.lstrip("$")) for cell in cells]
    assert sum(rows) == total == Decimal("0.0173558")
    assert "2 calls, 240 tokens, $0.0173558, 0 blocked" in out.stdout  # the summary says what TOTAL says


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--group-by", "featur"], "--group-by: no call has a tag 'featur' (did you mean 'feature'?)"),
        (
            ["--group-by", "feature,tenant"],
            "--group-by: no call has a tag 'tenant'; tags seen: feature, user_id",
        ),
        (["--where", "usr_id=alice"], "--where: no call has a tag 'usr_id' (did you mean 'user_id'?)"),
    ],
)
def test_report_refuses_a_tag_no_call_has(ledger: str, args: list[str], needle: str) -> None:
    assert_one_line_error(tollgate_cli("report", "--ledger", ledger, *args), needle, status=2)


def test_report_by_a_tag_is_not_refused_when_there_is_nothing_to_tell_by(ledger: str) -> None:
    out = tollgate_cli("report", "--ledger", ledger, "--group-by", "tenant", "--since", "2099-01-01")
    assert out.returncode == 0 and "no calls in" in out.stdout


def test_report_since_and_where(ledger: str) -> None:
    out = tollgate_cli("report", "--ledger", ledger, "--since", "7d", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total"]["calls"] == 5  # the 10-day-old call is out
    out = tollgate_cli("report", "--ledger", ledger, "--where", "feature=chat", "--format", "json")
    data = json.loads(out.stdout)
    assert data["total"]["calls"] == 3 and data["total"]["usd"] == pytest.approx(4.25)
    empty = tollgate_cli("report", "--ledger", ledger, "--since", "2099-01-01T00:00:00")
    assert empty.returncode == 0 and "no calls in" in empty.stdout


def test_report_json_and_csv(ledger: str) -> None:
    out = tollgate_cli("report", "--ledger", ledger, "--group-by", "feature,user_id", "--format", "json")
    data = json.loads(out.stdout)
    assert data["group_by"] == ["feature", "user_id"]
    assert sum(row["calls"] for row in data["rows"]) == data["total"]["calls"] == 6
    assert data["total"]["blocked_calls"] == 1
    assert sum(row["usd"] for row in data["rows"]) == pytest.approx(data["total"]["usd"])
    out = tollgate_cli("report", "--ledger", ledger, "--group-by", "feature", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {r["feature"]: int(r["calls"]) for r in rows} == {"chat": 3, "search": 3}
    assert {r["feature"]: float(r["usd"]) for r in rows} == {"chat": 4.25, "search": 0.75}


def test_report_missing_database_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    out = tollgate_cli("report", "--ledger", f"sqlite:///{tmp_path / 'nope.db'}")
    assert_one_line_error(out, "no ledger at", "does not exist")
    assert not (tmp_path / "nope.db").exists()
    default = tollgate_cli("report", cwd=tmp_path)  # sqlite:///tollgate.db in the working directory
    assert_one_line_error(default, "tollgate.db")


def test_report_foreign_databases_are_one_line(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    assert_one_line_error(tollgate_cli("report", "--ledger", f"sqlite:///{other}"), "not a tollgate ledger")
    text = tmp_path / "notes.db"
    text.write_text("this is not a database\n" * 100)
    assert_one_line_error(tollgate_cli("report", "--ledger", f"sqlite:///{text}"))
    assert_one_line_error(tollgate_cli("report", "--ledger", "ftp://x"), "unknown ledger URI", status=2)


def test_report_bad_since_is_one_line(ledger: str) -> None:
    assert_one_line_error(
        tollgate_cli("report", "--ledger", ledger, "--since", "last tuesday"),
        "--since 'last tuesday'",
        "7d",
        status=2,
    )


# -- limits --------------------------------------------------------------------------------------


def test_limits_set_list_remove(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'budgets.db'}"
    out = tollgate_cli("limits", "set", "--usd", "50", "--per", "month", "tenant=acme", "--store", store)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("set limit[tenant=acme]: $50")
    out = tollgate_cli(
        "limits", "set", "--tokens", "1000", "--per", "day", "--key", "api_key", "plan=free", "--store", store
    )
    assert out.returncode == 0, out.stderr

    listing = tollgate_cli("limits", "--store", store)
    assert listing.returncode == 0, listing.stderr
    acme = next(line for line in listing.stdout.splitlines() if line.startswith("limit[tenant=acme]"))
    assert "$50" in acme and "month" in acme and "block" in acme and "$0.000000" in acme
    free = next(line for line in listing.stdout.splitlines() if line.startswith("limit[plan=free]"))
    assert "1,000" in free and "api_key" in free

    # What the CLI wrote is what tollgate applies: the limit is in the store, for every worker.
    s = SQLiteStore(str(tmp_path / "budgets.db"))
    try:
        _, documents = s.limits()
        assert json.loads(documents["limit[tenant=acme]"])["usd"] == 50
        tollgate.configure(store=s)
        with tollgate.track(tenant="acme"):
            from tests.budgets.helpers import request, run

            _, rec = run(request(cap=100), output_tokens=10)
        assert rec.status == "ok"
        assert tollgate_cli("limits", "--store", store, "--format", "json").returncode == 0
        spent = json.loads(tollgate_cli("limits", "--store", store, "--format", "json").stdout)
        assert next(r for r in spent if r["id"] == "limit[tenant=acme]")["spent_usd"] == pytest.approx(
            rec.usd
        )
    finally:
        tollgate.reset()

    removed = tollgate_cli("limits", "--store", store, "remove", "tenant=acme")  # --store before the action
    assert removed.returncode == 0 and "removed limit[tenant=acme]" in removed.stdout
    assert_one_line_error(
        tollgate_cli("limits", "remove", "tenant=acme", "--store", store), "no standing limit"
    )
    left = json.loads(tollgate_cli("limits", "--store", store, "--format", "json").stdout)
    assert [r["id"] for r in left] == ["limit[plan=free]"]


def test_limits_store_option_goes_before_or_after_the_action(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'budgets.db'}"
    out = tollgate_cli(
        "limits", "--store", store, "set", "--usd", "0.5", "--per", "day", "team=ml", cwd=tmp_path
    )
    assert out.returncode == 0 and out.stdout.strip() == "set limit[team=ml]: $0.5 per day, on_exceed=block"
    assert not (tmp_path / "tollgate.db").exists()  # not the default store
    listed = json.loads(tollgate_cli("limits", "--format", "json", "--store", store).stdout)
    assert [(r["id"], r["usd"], r["per"]) for r in listed] == [("limit[team=ml]", 0.5, "day")]


def test_limits_errors(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert_one_line_error(tollgate_cli("limits", "--store", missing), "no store at")
    assert not (tmp_path / "missing.db").exists()
    store = f"sqlite:///{tmp_path / 'b.db'}"
    assert_one_line_error(
        tollgate_cli("limits", "set", "--per", "day", "tenant=acme", "--store", store),
        "needs a limit",
        status=2,
    )
    assert_one_line_error(
        tollgate_cli("limits", "set", "--usd", "1", "--per", "day", "acme", "--store", store),
        "NAME=VALUE",
        status=2,
    )
    assert (
        tollgate_cli("limits", "set", "--usd", "1", "tenant=acme", "--store", store).returncode == 2
    )  # no --per
    assert not (tmp_path / "b.db").exists()  # a refused `set` creates no store
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    empty = tollgate_cli("limits", "--store", f"sqlite:///{other}")
    assert empty.returncode == 0 and "no standing limits" in empty.stdout


# -- prices --------------------------------------------------------------------------------------


def test_prices_with_a_pattern() -> None:
    out = tollgate_cli("prices", "gpt-4o-mini", "--provider", "openai")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.split()[0] == "gpt-4o-mini")
    assert row.split()[1:5] == ["openai", "$0.15", "$0.6", "$0.075"]
    assert "USD per 1M tokens" in out.stdout and "generated 20" in out.stdout
    substring = tollgate_cli("prices", "4o-mini", "--provider", "openai")  # no model of that name
    models = [line.split()[0] for line in substring.stdout.splitlines()[2:] if line and line[0] != " "]
    assert len(models) > 2 and all("4o-mini" in m for m in models[:-1])

    glob = json.loads(
        tollgate_cli("prices", "claude-*", "--provider", "anthropic", "--format", "json").stdout
    )
    assert glob["models"] and all(m["provider"] == "anthropic" for m in glob["models"])
    assert all(m["model"].startswith("claude-") for m in glob["models"])
    assert_one_line_error(tollgate_cli("prices", "no-such-model-anywhere"), "no model in the price table")


def test_prices_of_a_model_shows_that_model() -> None:
    out = tollgate_cli("prices", "gpt-4o")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:] if line.strip()]
    assert rows[0][:4] == ["gpt-4o", "openai", "$2.5", "$10"] and rows[1][:2] == ["1", "model;"]
    hint = out.stdout.splitlines()[-1]
    assert "more models contain 'gpt-4o'" in hint and hint.endswith("tollgate prices '*gpt-4o*'")
    others = tollgate_cli("prices", "*gpt-4o*")  # the command the hint names lists them
    listed = [line.split()[0] for line in others.stdout.splitlines()[2:] if line and line[0] != " "]
    assert {"gpt-4o", "azure/gpt-4o", "gpt-4o-mini"} <= set(listed)
    assert int(hint.split()[0].replace(",", "")) == sum("gpt-4o" in m for m in listed) - 1
    azure = tollgate_cli("prices", "gpt-4o", "--provider", "azure", "--format", "json")
    assert [m["model"] for m in json.loads(azure.stdout)["models"]] == ["azure/gpt-4o"]


def test_prices_update_outside_a_source_checkout_says_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tollgate import cli

    table = Path(cli.__file__).parent / "pricing" / "prices.json"
    before = table.stat().st_mtime_ns
    monkeypatch.setattr(cli, "_source_checkout", lambda: None)  # as installed from a wheel
    assert cli.main(["prices", "--update"], out=io.StringIO()) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "tollgate prices: error: --update regenerates the price table in a source checkout"
    )
    assert "pip install --upgrade tollgate-llm" in line and "tollgate.configure(prices=" in line
    assert table.stat().st_mtime_ns == before


def test_prices_update_regenerates_the_table(tmp_path: Path) -> None:
    pytest.importorskip("litellm")  # (reads its data file only; litellm itself is never imported)
    target = tmp_path / "prices.json"
    out = tollgate_cli("prices", "--update", "--output", str(target))
    assert out.returncode == 0, out.stderr
    data = json.loads(target.read_text())
    assert data["metadata"]["source"].startswith("litellm/") and "gpt-4o" in data["models"]


# -- estimate ------------------------------------------------------------------------------------


def test_estimate_with_a_messages_file(tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "You are a contracts assistant."},
        {"role": "user", "content": "Summarise the supplier agreement in three bullet points."},
    ]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(messages))
    expected = tollgate.estimate("gpt-4o", messages, max_tokens=500)

    out = tollgate_cli("estimate", "gpt-4o", "--messages", str(path), "--max-tokens", "500")
    assert out.returncode == 0, out.stderr
    assert f"input tokens   {expected.input_tokens}" in out.stdout
    assert "output tokens  500" in out.stdout and f"${expected.usd:,.6f}" in out.stdout

    data = json.loads(tollgate_cli("estimate", "gpt-4o", "--messages", str(path), "--format", "json").stdout)
    assert data["input_tokens"] == expected.input_tokens
    assert data["output_tokens"] == tollgate.estimate("gpt-4o", messages).output_tokens  # the model's max

    body = tmp_path / "request.json"  # a whole request body works too, and so does stdin
    body.write_text(json.dumps({"model": "gpt-4o", "messages": messages}))
    from_body = tollgate_cli("estimate", "gpt-4o", "--messages", str(body), "--max-tokens", "500")
    from_stdin = tollgate_cli(
        "estimate", "gpt-4o", "--messages", "-", "--max-tokens", "500", stdin=json.dumps(messages)
    )
    assert from_body.stdout == from_stdin.stdout == out.stdout

    unpriced = tollgate_cli("estimate", "house-model-v9", "--messages", str(path), "--max-tokens", "10")
    assert unpriced.returncode == 0 and "no price for this model" in unpriced.stdout


def test_estimate_bad_files_are_one_line(tmp_path: Path) -> None:
    assert_one_line_error(
        tollgate_cli("estimate", "gpt-4o", "--messages", str(tmp_path / "x.json")), "cannot read"
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert_one_line_error(tollgate_cli("estimate", "gpt-4o", "--messages", str(bad)), "is not JSON")
    bad.write_text('"hello"')
    assert_one_line_error(tollgate_cli("estimate", "gpt-4o", "--messages", str(bad)), "expected a JSON list")


def test_foreign_files_are_left_unchanged(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    before = other.read_bytes()
    assert_one_line_error(tollgate_cli("report", "--ledger", f"sqlite:///{other}"), "its tables are invoices")
    listing = tollgate_cli("limits", "--store", f"sqlite:///{other}")
    assert listing.returncode == 0 and "no standing limits" in listing.stdout
    assert_one_line_error(tollgate_cli("limits", "remove", "tenant=acme", "--store", f"sqlite:///{other}"))
    assert other.read_bytes() == before
    text = tmp_path / "notes.txt"
    text.write_text("this is not a database\n" * 100)
    assert_one_line_error(tollgate_cli("limits", "--store", f"sqlite:///{text}"), "is not a tollgate store")
