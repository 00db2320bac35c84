"""``tollgate report --html``: the page of a real SQLite ledger, whose figures are the text
report's, and what headless Chromium draws of it (skipped, with the reason, without chromium)."""

from __future__ import annotations

import json
import re
import warnings
from decimal import Decimal
from pathlib import Path

import pytest

import tollgate
from tests.test_cli import assert_one_line_error, tollgate_cli
from tests.test_html_report import CHROMIUM, Dom, chromium, needs_chromium, text_cells
from tollgate import demo
from tollgate import html as page
from tollgate.ledger import SQLiteLedger


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    """Gated calls through the real OpenAI SDK (to the demo's stand-in for the API, in this
    process), one of them blocked by a budget, and calls recorded by ``tollgate.record``, one
    of a model with no price, all written to an SQLite ledger."""
    uri = f"sqlite:///{tmp_path / 'calls.db'}"
    tollgate.configure(ledger=uri, store="memory://")
    client = demo.offline_client()
    ask = [{"role": "user", "content": "Summarise the contract in one line."}]
    for tenant, feature, model in [("acme", "search", "gpt-4o-mini"), ("globex", "support", "gpt-4o")]:
        with tollgate.track(tenant=tenant, feature=feature):
            client.chat.completions.create(model=model, messages=ask, max_tokens=60)
    blocked = tollgate.budget(usd=1e-9)
    with tollgate.track(tenant="initech", feature="agent"), blocked, pytest.raises(tollgate.BudgetExceeded):
        client.chat.completions.create(model="gpt-4o", messages=ask, max_tokens=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unpriced model's warning, on purpose
        for i in range(1, 6):
            tollgate.record(
                provider="openai",
                model="house-llm" if i == 5 else "gpt-4o-mini",
                input_tokens=1000 * i,
                output_tokens=37 * i,
                cache_read_tokens=200 * i,
                tenant="acme" if i % 2 else "globex",
                feature="summarize",
            )
    tollgate.reset()  # closes the ledger: every record is in the file
    return uri


def json_report(ledger: str, *args: str) -> dict[str, object]:
    out = tollgate_cli("report", "--ledger", ledger, "--format", "json", *args)
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def self_contained(text: str) -> None:
    dom = Dom(text)
    assert text.startswith("<!DOCTYPE html>") and dom.sources == []  # no src=, href=, action=
    assert "connect-src 'none'" in text and "Chart.js v4.6.2" in text


def test_the_page_has_the_text_reports_figures(ledger: str, tmp_path: Path) -> None:
    out = tollgate_cli(
        "report", "--ledger", ledger, "--group-by", "tenant,feature", "--html", "r.html", cwd=tmp_path
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
    text = (tmp_path / "r.html").read_text()
    self_contained(text)
    dom = Dom(text)
    # the headline: what `tollgate report --format json` totals, printed as the table prints it
    total = json_report(ledger)["total"]
    assert isinstance(total, dict)
    table = tollgate_cli("report", "--ledger", ledger, "--group-by", "tenant,feature").stdout
    printed = table.split("\n\n")[0]
    (total_line,) = [cells for cells in text_cells(printed) if cells[0] == "TOTAL"]
    usd = dom.text["total-usd"]
    assert [usd] == [cell for cell in total_line if cell.startswith("$")] and total["calls"] == 8
    places = len(usd.split(".")[1])  # the JSON's float, rounded as printed
    assert abs(Decimal(usd.strip("$").replace(",", "")) - Decimal(total["usd"])) <= Decimal(5) / 10 ** (
        places + 1
    )
    assert dom.text["total-calls"] == f"{total['calls']:,}"
    assert dom.text["total-tokens"] == f"{total['input_tokens'] + total['output_tokens']:,}"
    assert dom.text["total-blocked"] == "1" == str(total["blocked_calls"])
    assert dom.text["total-unpriced"] == "1" == str(total["unpriced_calls"])
    # the table: the text report's rows and cells, to the digit
    assert [" ".join(cells).split() for cells in dom.rows] == text_cells(printed)
    assert out.stdout == f"wrote r.html (8 calls, {usd})\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db", "r.html"]  # no partial file left


def test_selection_options_select_the_same_calls(ledger: str, tmp_path: Path) -> None:
    options = ["--where", "tenant=acme", "--since", "1h", "--group-by", "feature"]
    out = tollgate_cli("report", "--ledger", ledger, *options, "--html", str(tmp_path / "acme.html"))
    assert out.returncode == 0, out.stderr
    dom = Dom((tmp_path / "acme.html").read_text())
    total = json_report(ledger, "--where", "tenant=acme", "--since", "1h")["total"]
    assert isinstance(total, dict) and total["calls"] == 4
    assert dom.text["total-calls"] == "4" and "tenant=acme" in dom.text["filters"]
    assert [row[0] for row in dom.rows[1:-1]] == ["summarize", "search"]


def test_html_dash_writes_the_page_to_stdout(ledger: str, tmp_path: Path) -> None:
    out = tollgate_cli("report", "--ledger", ledger, "--html", "-", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    self_contained(out.stdout)
    assert out.stdout.rstrip().endswith("</html>") and "wrote" not in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db"]


def test_an_empty_ledger_gives_a_page_that_says_no_calls(tmp_path: Path) -> None:
    with SQLiteLedger(tmp_path / "empty.db"):
        pass
    out = tollgate_cli("report", "--ledger", "sqlite:///empty.db", "--html", "empty.html", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "wrote empty.html (0 calls, $0.000000)\n"
    dom = Dom((tmp_path / "empty.html").read_text())
    assert dom.text["period"] == "no calls" and dom.text["total-calls"] == "0"
    assert "No calls in this period." in (tmp_path / "empty.html").read_text()
    if CHROMIUM is not None:  # the notes that stand in for the charts show
        drawn = Dom(
            chromium((tmp_path / "empty.html").as_uri(), "empty ledger", tmp_path / "p", "--dump-dom")
        )
        assert drawn.errors() == [] and drawn.attrs["body"]["data-rendered"] == "0"
        assert drawn.empty_shown == len(page.CHARTS)


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("missing/r.html", "--html 'missing/r.html': the folder 'missing' does not exist"),
        (".", "--html '.' is a folder"),
    ],
)
def test_a_page_in_a_folder_that_does_not_exist_is_refused(
    ledger: str, tmp_path: Path, target: str, needle: str
) -> None:
    out = tollgate_cli("report", "--ledger", ledger, "--html", target, cwd=tmp_path)
    assert_one_line_error(out, needle, status=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db"]


def test_html_with_format_and_a_missing_ledger_are_refused(ledger: str, tmp_path: Path) -> None:
    both = tollgate_cli("report", "--ledger", ledger, "--format", "json", "--html", "r.html", cwd=tmp_path)
    assert_one_line_error(both, "--html writes a page: leave out --format json", status=2)
    missing = tollgate_cli("report", "--ledger", "sqlite:///nope.db", "--html", "r.html", cwd=tmp_path)
    assert_one_line_error(missing, "no ledger at 'nope.db'", status=1)
    unknown = tollgate_cli(
        "report", "--ledger", ledger, "--group-by", "tenat", "--html", "r.html", cwd=tmp_path
    )
    assert_one_line_error(unknown, "--group-by: no call has a tag 'tenat' (did you mean 'tenant'?)", status=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db"]


@needs_chromium
def test_chromium_draws_the_written_page(ledger: str, tmp_path: Path) -> None:
    out = tollgate_cli("report", "--ledger", ledger, "--group-by", "tenant", "--html", "r.html", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    usd = re.search(r"\((\d+) calls, (\$[\d,.]+)\)", out.stdout)
    assert usd is not None
    dom = Dom(chromium((tmp_path / "r.html").as_uri(), "report --html", tmp_path / "profile", "--dump-dom"))
    assert dom.errors() == []
    # spend over time, models, tokens, a blocked call's decision, an unpriced model
    assert dom.attrs["body"]["data-rendered"] == str(len(page.CHARTS))
    assert dom.text["total-usd"] == usd[2] and dom.text["total-calls"] == usd[1] == "8"
