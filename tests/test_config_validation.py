"""Bad configuration is refused where it is written (budget, set_limit, limit, configure and
``tollgate limits set``) with an error naming the value and saying what to give instead, and
nothing is changed by a refused call. (Redis URLs and error replies: tests/stores/test_redis_errors.py.)"""

from __future__ import annotations

import io
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tollgate
from tollgate.cli import main
from tollgate.config import settings
from tollgate.stores import SQLiteStore

NAN, INF = math.nan, math.inf


def refused(call: Any, needle: str) -> str:
    """Run ``call``, which must raise ValueError whose message names the bad value (``needle``)."""
    with pytest.raises(ValueError) as e:
        call()
    message = str(e.value)
    assert needle in message, message
    return message


# -- budget(...) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"usd": NAN}, "usd=nan"),
        ({"usd": INF}, "usd=inf"),
        ({"usd": -INF}, "usd=-inf"),
        ({"usd": "5"}, "usd='5'"),
        ({"usd": [5]}, "usd=[5]"),
        ({"tokens": NAN}, "tokens=nan"),
        ({"tokens": INF}, "tokens=inf"),
        ({"tokens": 1.5}, "tokens=1.5"),
        ({"tokens": -100}, "tokens=-100"),
        ({"tokens": 0}, "tokens=0"),
        ({"tokens": "100"}, "tokens='100'"),
        ({"usd": 1, "tokens": False}, "tokens=False"),
        ({"usd": 1, "name": 5}, "name=5"),
        ({"usd": 1, "name": "   "}, "name='   '"),
        ({"usd": 1, "clamp_floor": 1.5}, "clamp_floor=1.5"),
        ({"usd": 1, "clamp_floor": True}, "clamp_floor=True"),
        ({"usd": 1, "clamp_floor": NAN}, "clamp_floor=nan"),
        ({"usd": 1, "per": 5}, "per=5"),
        ({"usd": 1, "per": "Daily"}, "per='Daily'"),
        ({"usd": 1, "per": timedelta(seconds=-1)}, "per=datetime.timedelta(days=-1, seconds=86399)"),
        ({"usd": 1, "key": 5}, "key=5"),
        ({"usd": 1, "key": ("tenant", 5)}, "key=('tenant', 5)"),
        ({"usd": 1, "on_exceed": None}, "on_exceed=None"),
        ({"usd": 1, "on_exceed": "downgrade", "downgrade": {"gpt-4o": ""}}, "downgrade={'gpt-4o': ''}"),
    ],
)
def test_budget_refuses_bad_values_naming_them(kwargs: dict[str, Any], needle: str) -> None:
    refused(lambda: tollgate.budget(**kwargs), needle)


@pytest.mark.parametrize(
    ("kwargs", "tokens", "name"),
    [({"tokens": 100.0}, 100, "tokens=100"), ({"tokens": 1e6}, 1_000_000, "tokens=1000000")],
)
def test_budget_takes_whole_floats_as_token_counts(kwargs: dict[str, Any], tokens: int, name: str) -> None:
    spec = tollgate.budget(**kwargs).spec
    assert spec.tokens == tokens and type(spec.tokens) is int
    assert spec.name == name


# -- set_limit(...) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"usd": NAN, "tenant": "acme"}, "usd=nan"),
        ({"usd": INF, "tenant": "acme"}, "usd=inf"),
        ({"tokens": 1.5, "tenant": "acme"}, "tokens=1.5"),
        ({"tokens": NAN, "tenant": "acme"}, "tokens=nan"),
        ({"usd": 1, "tenant": None}, "tenant=None"),
        ({"usd": 1, "tenant": b"acme"}, "tenant=b'acme'"),
        ({"usd": 1, "tenant": ""}, "tenant=''"),
        ({"usd": 1, "ten ant": "acme"}, "'ten ant'"),
        ({"usd": 1, "key": "api key", "tenant": "acme"}, "key=('api key',)"),
        ({"usd": 1, "per": "fortnightly", "tenant": "acme"}, "per='fortnightly'"),
        ({"usd": 1, "store": 5, "tenant": "acme"}, "store=5"),
    ],
)
def test_set_limit_refuses_bad_values_and_stores_nothing(kwargs: dict[str, Any], needle: str) -> None:
    kwargs.setdefault("per", "day")
    refused(lambda: tollgate.set_limit(**kwargs), needle)
    assert settings().store.limits()[1] == {}


def test_remove_limit_refuses_a_match_no_call_can_have() -> None:
    refused(lambda: tollgate.remove_limit(tenant=5), "tenant=5")


def test_tag_values_with_separators_cannot_overwrite_another_limit() -> None:
    # Unescaped, both would be 'limit[plan=free,tenant=a]' and the second would replace the first.
    one = tollgate.set_limit(usd=1, per="day", tenant="a,plan=free")
    two = tollgate.set_limit(usd=2, per="day", tenant="a", plan="free")
    assert one != two
    assert sorted(settings().store.limits()[1]) == sorted([one, two])
    assert tollgate.remove_limit(tenant="a,plan=free")
    assert list(settings().store.limits()[1]) == [two]


# -- limit(...) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rpm": NAN}, "requests=nan"),
        ({"rpm": INF}, "requests=inf"),
        ({"rpm": 1.5}, "requests=1.5"),
        ({"rpm": True}, "requests=True"),
        ({"rpm": "500"}, "requests='500'"),
        ({"tpm": -1}, "tokens=-1"),
        ({"tpm": NAN}, "tokens=nan"),
        ({"rpm": 1, "timeout": NAN}, "timeout=nan"),
        ({"rpm": 1, "timeout": INF}, "timeout=inf"),
        ({"rpm": 1, "timeout": "60"}, "timeout='60'"),
        ({"rpm": 1, "timeout": True}, "timeout=True"),
        ({"rpm": 1, "per": 60}, "per=60"),
        ({"rpm": 1, "model": 5}, "model=5"),
        ({"rpm": 1, "model": ""}, "model=''"),
        ({"rpm": 1, "provider": 3}, "provider=3"),
        ({"rpm": 1, "wait": "no"}, "wait='no'"),
    ],
)
def test_limit_refuses_bad_values_and_adds_nothing(kwargs: dict[str, Any], needle: str) -> None:
    refused(lambda: tollgate.limit(**kwargs), needle)
    assert settings().rate_limits == ()


def test_limit_takes_whole_floats_as_counts() -> None:
    rate = tollgate.limit(rpm=500.0, tpm=2e5)
    assert (rate.requests, rate.tokens) == (500, 200_000)
    assert type(rate.requests) is int and type(rate.tokens) is int


# -- configure(...) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"on_unpriced": None}, "on_unpriced=None"),
        ({"on_unpriced": "WARN"}, "on_unpriced='WARN'"),
        ({"on_store_error": "closd"}, "on_store_error='closd'"),
        ({"on_store_error": True}, "on_store_error=True"),
        ({"expected_output_tokens": 1.5}, "expected_output_tokens=1.5"),
        ({"expected_output_tokens": NAN}, "expected_output_tokens=nan"),
        ({"expected_output_tokens": 0}, "expected_output_tokens=0"),
        ({"expected_output_tokens": True}, "expected_output_tokens=True"),
        ({"expected_output_tokens": "1000"}, "expected_output_tokens='1000'"),
        ({"capture_content": 1}, "capture_content=1"),
        ({"capture_content": None}, "capture_content=None"),
        ({"prices": {"my-model": {"input": NAN, "output": 1e-6}}}, "input=nan"),
        ({"prices": {"my-model": {"input": INF, "output": 1e-6}}}, "input=inf"),
        ({"prices": {"my-model": {"input": "cheap", "output": 1e-6}}}, "input='cheap'"),
        ({"prices": {"my-model": {"input": True, "output": 1e-6}}}, "input=True"),
        ({"prices": {"gpt-4o": {"output": -2e-6}}}, "output=-2e-06"),
        ({"prices": {"gpt-4o": {"max_output_tokens": 1.5}}}, "max_output_tokens=1.5"),
        ({"prices": {"gpt-4o": {"max_input_tokens": NAN}}}, "max_input_tokens=nan"),
        ({"prices": "cheap"}, "prices='cheap'"),
        ({"prices": {5: {"input": 1e-6, "output": 1e-6}}}, "model name 5"),
        ({"prices": {"my-model": 1e-6}}, "prices['my-model']=1e-06"),
        ({"store": "mysql://db"}, "'mysql://db'"),
        ({"store": "sqlite://budgets.db"}, "'sqlite://budgets.db'"),
        ({"store": 5}, "store=5"),
        ({"store": "redis://cache:6379/0?socket_timeout=abc"}, "socket_timeout='abc'"),
        ({"ledger": "mongodb://db"}, "'mongodb://db'"),
        ({"ledger": "memory://?maxlen=lots"}, "maxlen"),
        ({"metric_tags": "tenant"}, "metric_tags='tenant'"),
    ],
)
def test_configure_refuses_bad_values_and_changes_nothing(kwargs: dict[str, Any], needle: str) -> None:
    before = settings()
    refused(lambda: tollgate.configure(**kwargs), needle)
    assert settings() is before


def test_configure_refusing_the_ledger_keeps_the_store_it_had(tmp_path: Path) -> None:
    before = settings()
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    refused(lambda: tollgate.configure(store=uri, ledger="mongodb://db"), "'mongodb://db'")
    assert settings() is before and settings().store is before.store


def test_configure_takes_a_whole_float_as_expected_output_tokens() -> None:
    assert tollgate.configure(expected_output_tokens=1000.0).expected_output_tokens == 1000


# -- tollgate limits set (in process) ------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue(), capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--usd", "nan"], "usd=nan"),
        (["--usd", "inf"], "usd=inf"),
        (["--usd", "-5"], "usd=-5.0"),
        (["--tokens", "1.5"], "tokens=1.5"),
        (["--tokens", "-1"], "tokens=-1"),
        (["--usd", "1", "--key", "api key"], "key=('api key',)"),
        (["--usd", "1", "tenant="], "tenant=''"),
    ],
)
def test_cli_limits_set_refuses_bad_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], needle: str
) -> None:
    store = tmp_path / "store.db"
    argv = ["limits", "set", *args, "--per", "day", "--store", f"sqlite:///{store}"]
    if not any("=" in a for a in args):
        argv.append("tenant=acme")
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""  # a usage mistake, as the README's exit statuses say
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    written = SQLiteStore(store)
    assert written.limits()[1] == {}
    written.close()


@pytest.mark.parametrize(
    ("store", "needle", "status"),
    [
        ("redis://cache:6379/0?socket_timeout=abc", "socket_timeout='abc'", 1),
        ("redis://cache:6379/zero", "'zero'", 1),
        ("mysql://db", "'mysql://db'", 2),  # no such kind of store: a usage mistake
    ],
)
def test_cli_limits_set_refuses_a_bad_store(
    capsys: pytest.CaptureFixture[str], store: str, needle: str, status: int
) -> None:
    code, _, err = cli(capsys, "limits", "set", "--usd", "1", "--per", "day", "tenant=acme", "--store", store)
    assert code == status and needle in err and "Traceback" not in err


def test_cli_tokens_must_be_a_number(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with pytest.raises(SystemExit) as e:
        cli(capsys, "limits", "set", "--tokens", "lots", "--per", "day", "t=a", "--store", store)
    assert e.value.code == 2
    assert "'lots' is not a number of tokens" in capsys.readouterr().err


def test_cli_takes_tokens_in_any_whole_form(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    code, out, _ = cli(
        capsys, "limits", "set", "--tokens", "2e4", "--per", "day", "tenant=acme", "--store", store
    )
    assert code == 0 and out == "set limit[tenant=acme]: 20,000 tokens per day, on_exceed=block\n"


# -- downgrade maps name models tollgate can price -----------------------------------------------


@pytest.mark.parametrize(
    ("downgrade", "needle", "close"),
    [
        ({"gpt-4o": "gpt4o-mini"}, "no price table entry for 'gpt4o-mini'", "'gpt-4o-mini'"),
        ({"gtp-4o": "gpt-4o-mini"}, "no price table entry for 'gtp-4o'", "'gpt-4o'"),
        ({"gpt-4o": "house-model-lite"}, "no price table entry for 'house-model-lite'", None),
    ],
)
def test_a_downgrade_to_an_unknown_model_is_refused_at_creation(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    downgrade: dict[str, str],
    needle: str,
    close: str | None,
) -> None:
    for make in (
        lambda: tollgate.budget(usd=1, on_exceed="downgrade", downgrade=downgrade),
        lambda: tollgate.set_limit(usd=1, per="day", on_exceed="downgrade", downgrade=downgrade, tenant="a"),
    ):
        message = refused(make, needle)
        assert "tollgate.configure(prices=" in message  # the fix for a model of one's own
        assert (f"did you mean {close}?" in message) if close else "did you mean" not in message
    assert settings().store.limits()[1] == {}  # the refused standing limit was not written
    pair = "=".join(next(iter(downgrade.items())))
    store = f"sqlite:///{tmp_path / 'store.db'}"
    code, out, err = cli(
        capsys, "limits", "set", "--usd", "1", "--per", "day", "--on-exceed", "downgrade",
        "--downgrade", pair, "tenant=a", "--store", store,
    )  # fmt: skip
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and needle in err, err


def test_a_downgrade_to_a_model_priced_by_configure_is_accepted() -> None:
    prices = {"house-big": {"input": 1e-6, "output": 2e-6}, "house-lite": {"input": 0.0, "output": 0.0}}
    downgrade = {"house-big": "house-lite"}
    refused(lambda: tollgate.budget(usd=1, on_exceed="downgrade", downgrade=downgrade), "'house-big'")
    tollgate.configure(prices=prices)  # a price first (zero for a free local model), then the budget
    assert tollgate.budget(usd=1, on_exceed="downgrade", downgrade=downgrade).spec.downgrade == downgrade
    assert tollgate.set_limit(usd=1, per="day", on_exceed="downgrade", downgrade=downgrade, tenant="a")


# -- SQLite files go in folders that exist -------------------------------------------------------


@pytest.mark.parametrize("setting", ["store", "ledger"])
def test_an_sqlite_file_in_a_missing_folder_is_refused(tmp_path: Path, setting: str) -> None:
    folder = tmp_path / "no such folder"
    option: dict[str, Any] = {setting: f"sqlite:///{folder / 'tollgate.db'}"}
    before = settings()
    message = refused(lambda: tollgate.configure(**option), f"{str(folder)!r}")
    assert "does not exist" in message and f"mkdir -p '{folder}'" in message and "\n" not in message
    assert not folder.exists() and settings() is before
    folder.mkdir()  # the fix the message names
    assert tollgate.configure(**option)


def test_cli_limits_set_refuses_a_store_in_a_missing_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'missing' / 'store.db'}"
    code, out, err = cli(capsys, "limits", "set", "--usd", "1", "--per", "day", "tenant=a", "--store", store)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert not (tmp_path / "missing").exists()


# -- a budget kept per tag, reached by a call without that tag -----------------------------------


def test_a_keyed_budget_warns_once_when_calls_lack_its_tag() -> None:
    def call() -> None:
        tollgate.record(provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5)

    daily = tollgate.budget(usd=5, per="day", key="tenat", name="typo-key")
    with pytest.warns(UserWarning) as caught, tollgate.track(tenant="acme", feature="search"), daily:
        call()
        call()
    (warning,) = [w for w in caught if "typo-key" in str(w.message)]  # once, not once per call
    message = str(warning.message)
    assert "without a 'tenat' tag" in message and "(its tags: feature, tenant)" in message
    assert "did you mean key='tenant'?" in message and "tollgate.track(tenat=...)" in message


def test_a_keyed_budget_is_quiet_when_calls_carry_its_tag(recwarn: pytest.WarningsRecorder) -> None:
    with tollgate.track(tenant="acme"), tollgate.budget(usd=5, per="day", key="tenant", name="good-key"):
        tollgate.record(provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5)
    assert not [w for w in recwarn if "good-key" in str(w.message)]


def test_reset_lets_a_keyed_budget_warn_again() -> None:
    def call_without_the_tag() -> None:
        with tollgate.budget(usd=5, per="day", key="tenant", name="again-key"):
            tollgate.record(provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5)

    with pytest.warns(UserWarning, match="again-key"):
        call_without_the_tag()
    tollgate.reset()
    with pytest.warns(UserWarning, match="again-key"):
        call_without_the_tag()
