"""``tollgate limits show|set|reset|raise|top-up``: the control plane from the command line, run
through its entry point on a real SQLite store, checked against what the API reads in-process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tests.test_cli import assert_one_line_error, tollgate_cli
from tollgate.budgets.standing import limit_document, raised_document
from tollgate.ledger import SQLiteLedger
from tollgate.stores import SQLiteStore

LIMIT: dict[str, Any] = {
    "per": "month",
    "on_exceed": "block",
    "downgrade": None,
    "key": (),
    "match": {"tenant": "acme"},
}


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'budgets.db'}"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[SQLiteStore]:
    """The application's side: tollgate configured in-process on the same store file."""
    opened = SQLiteStore(str(tmp_path / "budgets.db"))
    tollgate.configure(store=opened)
    try:
        yield opened
    finally:
        tollgate.reset()  # closes the store


def limits(store: str, *args: str) -> str:
    out = tollgate_cli("limits", *args, "--store", store)
    assert out.returncode == 0, out.stderr
    return out.stdout


def line_of(output: str, start: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(start))


def test_lifetime_limit_topped_up_spent_and_reset(store: str, tmp_path: Path, app: SQLiteStore) -> None:
    assert limits(store, "set", "--usd", "20", "--per", "lifetime", "tenant=acme").startswith(
        "set limit[tenant=acme]: $20 lifetime, on_exceed=block"
    )
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    first = limits(store, "top-up", "--usd", "5", "tenant=acme", "--ledger", ledger)
    assert first.startswith("topped up limit[tenant=acme] by $5: limit $25, remaining $25.000000")
    second = limits(store, "top-up", "--usd", "2.5", "tenant=acme")
    assert second.startswith("topped up limit[tenant=acme] by $2.5: limit $27.5")
    row = line_of(limits(store), "limit[tenant=acme]")
    assert "lifetime" in row and "$27.5" in row and "topped up $7.5" in row
    with SQLiteLedger(tmp_path / "ledger.db") as db:  # the top-up given --ledger is recorded there
        assert [r.operation for r in db.records()] == ["top_up"]

    tollgate.record(provider="openai", model="gpt-4o-mini", input_tokens=1000, usd=1.25, tenant="acme")
    tollgate.record(provider="openai", model="gpt-4o-mini", input_tokens=1000, usd=0.5, tenant="acme")
    api = tollgate.usage(tenant="acme")
    (shown,) = json.loads(limits(store, "show", "tenant=acme", "--format", "json"))["usage"]
    assert (shown["spent"], shown["remaining"], shown["limit"]) == (api.spent, api.remaining, api.limit)
    assert api.spent == pytest.approx(1.75) and api.limit == 27.5 and shown["topped_up"] == 7.5
    assert "$1.750000" in line_of(limits(store, "show", "tenant=acme"), "limit[tenant=acme]")

    reset = limits(store, "reset", "tenant=acme")
    assert reset.startswith("reset limit[tenant=acme]: spent is 0 again")
    assert "$27.500000" in line_of(reset, "limit[tenant=acme]")  # remaining: all of it
    assert tollgate.usage(tenant="acme").spent == 0.0
    assert tollgate.usage(tenant="acme").limit == 27.5  # top-ups outlive a reset


def test_top_up_errors(store: str) -> None:
    limits(store, "set", "--usd", "50", "--per", "month", "tenant=acme")
    assert_one_line_error(
        tollgate_cli("limits", "top-up", "--usd", "5", "tenant=acme", "--store", store),
        "lifetime limits only",
        status=2,
    )
    assert_one_line_error(
        tollgate_cli("limits", "top-up", "--usd", "5", "tenant=nobody", "--store", store),
        "no standing limit",
        status=2,
    )
    assert_one_line_error(
        tollgate_cli("limits", "top-up", "tenant=acme", "--store", store), "needs an amount", status=2
    )


def test_raise_until_a_span_then_back(store: str, app: SQLiteStore) -> None:
    limits(store, "set", "--usd", "50", "--tokens", "1000", "--per", "month", "tenant=acme")
    out = limits(store, "raise", "--usd", "80", "--until", "1h", "tenant=acme")
    assert out.startswith("raised limit[tenant=acme] to $80 until ")
    usd = line_of(out, "limit[tenant=acme]")
    assert "$80" in usd and "raised to $80 until " in usd
    state = tollgate.usage(tenant="acme")
    assert state.limit == 80.0 and state.until is not None
    assert 3500 < state.until.timestamp() - time.time() <= 3600
    assert tollgate.usage(tenant="acme", unit="tokens").limit == 1000  # what was not raised is kept

    (row,) = json.loads(limits(store, "--format", "json"))
    assert row["usd"] == 50 and row["per"] == "month" and row["raise"]["usd"] == 80
    assert row["raise"]["over"] is False and [s["limit"] for s in row["usage"]] == [80.0, 1000.0]

    # A raise whose time is over shows as such, and the limit is $50 again.
    ident, base = limit_document(50, 1000, **LIMIT)
    _, raised = limit_document(80, 1000, **LIMIT)
    app.put_limit(ident, raised_document(base, ident, raised, until=1.0))
    over = line_of(limits(store, "show", "tenant=acme"), "limit[tenant=acme]")
    assert "raise over ($80 until 1970-01-01T00:00:01Z)" in over and "$50.000000" in over
    assert tollgate.usage(tenant="acme").limit == 50.0


def test_raise_errors(store: str) -> None:
    def refused(*args: str, needle: str) -> None:
        assert_one_line_error(tollgate_cli("limits", "raise", *args, "--store", store), needle, status=2)

    missing = tollgate_cli("limits", "raise", "--usd", "80", "--until", "1h", "tenant=acme", "--store", store)
    assert_one_line_error(missing, "no store at")  # as for every command, a missing file: status 1
    limits(store, "set", "--usd", "50", "--per", "day", "tenant=acme")
    refused("--usd", "80", "--until", "2030-01-01T00:00", "tenant=acme", needle="add Z or +00:00")
    refused("--usd", "80", "--until", "2020-01-01T00:00Z", "tenant=acme", needle="has passed")
    refused("--usd", "80", "--until", "someday", "tenant=acme", needle="--until 'someday'")
    refused("--until", "1h", "tenant=acme", needle="give --usd")
    refused(
        "--usd", "80", "--until", "1h", "--per", "month", "tenant=acme", needle="keeps the limit's window"
    )
    refused("--usd", "80", "--until", "1h", "tenant=nobody", needle="give --per")
    # With --per, a raise from no limit is a limit that lapses when the raise ends.
    out = limits(store, "raise", "--usd", "5", "--until", "2030-01-01T00:00Z", "--per", "day", "tenant=new")
    assert "raised to $5 until 2030-01-01T00:00Z" in line_of(out, "limit[tenant=new]")


def test_set_options(store: str) -> None:
    out = limits(
        store,
        "set",
        "--usd", "50",
        "--calls", "200",
        "--tool-calls", "500",
        "--per", "day",
        "--tz", "America/New_York",
        "--warn-at", "0.95,0.5,0.8",
        "--burn-rate-lookback", "2h",
        "tenant=acme",
    )  # fmt: skip
    assert out.strip() == (
        "set limit[tenant=acme]: $50 and 200 calls and 500 tool calls per day (America/New_York), "
        "on_exceed=block, warn at 50%, 80%, 95%, burn-rate alert (2h look-back)"
    )
    limits(store, "set", "--usd", "10", "--per", "month", "--burn-rate", "team=ml")
    rows = {r["id"]: r for r in json.loads(limits(store, "--format", "json"))}
    acme = rows["limit[tenant=acme]"]
    assert (acme["window"], acme["tz"], acme["warn_at"], acme["burn_rate"]) == (
        "per day (America/New_York)",
        "America/New_York",
        [0.5, 0.8, 0.95],
        7200.0,
    )
    assert (acme["calls"], acme["tool_calls"]) == (200, 500)
    assert [s["unit"] for s in acme["usage"]] == ["usd", "calls", "tool_calls"]
    assert rows["limit[team=ml]"]["burn_rate"] == 30 * 86_400 / 24  # a 24th of the month
    table = limits(store)
    assert "warn at 50%, 80%, 95%; burn-rate alert (2h look-back)" in line_of(table, "limit[tenant=acme]")
    assert "200 calls" in table and "500 tool calls" in table


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--warn-at", "0.5,lots"], "--warn-at '0.5,lots': fractions of the limit"),
        (["--warn-at", "1.5"], "warn_at=(1.5,): 1.5 is not one of fractions"),
        (["--tz", "Mars/Olympus"], "tz='Mars/Olympus' is not a time zone"),
        (["--burn-rate-lookback", "2days"], "--burn-rate-lookback '2days': give a duration"),
        (["--burn-rate-lookback", "2d"], "shorter than the window"),
        (["--calls", "0"], "calls=0"),
    ],
)
def test_set_refuses_bad_options(tmp_path: Path, options: list[str], needle: str) -> None:
    store = f"sqlite:///{tmp_path / 'budgets.db'}"
    out = tollgate_cli(
        "limits", "set", "--usd", "5", "--per", "day", *options, "tenant=acme", "--store", store
    )
    assert_one_line_error(out, needle, status=2)
    assert not (tmp_path / "budgets.db").exists()  # nothing written


def test_set_lifetime_refuses_a_window_option(store: str) -> None:
    for options, needle in (
        (["--tz", "Europe/Paris"], "tz='Europe/Paris'"),
        (["--burn-rate"], "burn_rate=True"),
    ):
        out = tollgate_cli(
            "limits", "set", "--usd", "5", "--per", "lifetime", *options, "t=a", "--store", store
        )
        assert_one_line_error(out, needle, status=2)


def test_show_one_counter_of_a_keyed_limit(store: str, app: SQLiteStore) -> None:
    limits(store, "set", "--usd", "5", "--per", "day", "--key", "api_key", "plan=free")
    limits(store, "set", "--usd", "50", "--per", "month", "tenant=acme")
    tollgate.record(provider="openai", model="gpt-4o-mini", usd=0.75, plan="free", api_key="k-1")

    listing = line_of(limits(store), "limit[plan=free]")
    assert "one counter per api_key value" in listing and "$0.75" not in listing
    one = limits(store, "show", "plan=free", "api_key=k-1")
    assert len(one.splitlines()) == 3  # header, rule, the limit
    assert "api_key=k-1" in one and "$0.750000" in one and "$4.250000" in one
    (state,) = json.loads(limits(store, "show", "plan=free", "api_key=k-1", "--format", "json"))["usage"]
    assert state == tollgate.usage(plan="free", api_key="k-1").to_dict()
    other = json.loads(limits(store, "--format", "json", "show", "plan=free", "api_key=k-2"))
    assert other["usage"][0]["spent"] == 0.0
    assert "one counter per api_key" in limits(store, "show", "plan=free")  # no key value: the limit

    reset = limits(store, "reset", "plan=free", "api_key=k-1")
    assert reset.startswith("reset limit[plan=free] api_key=k-1: spent is 0 again")
    assert tollgate.usage(plan="free", api_key="k-1").spent == 0.0


def test_show_and_reset_errors(store: str) -> None:
    def refused(*args: str, needle: str) -> None:
        assert_one_line_error(tollgate_cli("limits", *args, "--store", store), needle, status=2)

    assert_one_line_error(tollgate_cli("limits", "show", "tenant=acme", "--store", store), "no store at")
    limits(store, "set", "--usd", "5", "--per", "day", "--key", "api_key", "plan=free")
    refused("show", "tenant=acme", needle="no standing limit for tenant=acme")
    refused("show", "plan=free", "user=u", needle="no standing limit for plan=free user=u")
    refused("reset", "tenant=acme", needle="no standing limit for tenant=acme")
    refused("reset", "plan=free", needle="give api_key=")
    refused("show", "acme", needle="NAME=VALUE")


def test_json_output_parses_for_every_action(store: str) -> None:
    assert limits(store, "set", "--usd", "5", "--per", "lifetime", "tenant=acme")
    for args in (
        ["--format", "json"],
        ["show", "--format", "json"],
        ["show", "tenant=acme", "--format", "json"],
        ["top-up", "--usd", "1", "tenant=acme", "--format", "json"],
        ["reset", "tenant=acme", "--format", "json"],
        ["raise", "--usd", "9", "--until", "24h", "tenant=acme", "--format", "json"],
    ):
        data = json.loads(limits(store, *args))
        row = data[0] if isinstance(data, list) else data
        assert row["id"] == "limit[tenant=acme]" and row["window"] == "lifetime", args
    assert json.loads(limits(store, "--format", "json"))[0]["usage"][0]["limit"] == 9.0
    assert datetime.now(UTC) < datetime.fromisoformat(
        json.loads(limits(store, "--format", "json"))[0]["raise"]["until"]
    )
