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
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    written = SQLiteStore(store)
    assert written.limits()[1] == {}
    written.close()


@pytest.mark.parametrize(
    ("store", "needle"),
    [
        ("redis://cache:6379/0?socket_timeout=abc", "socket_timeout='abc'"),
        ("redis://cache:6379/zero", "'zero'"),
        ("mysql://db", "'mysql://db'"),
    ],
)
def test_cli_limits_set_refuses_a_bad_store(
    capsys: pytest.CaptureFixture[str], store: str, needle: str
) -> None:
    code, _, err = cli(capsys, "limits", "set", "--usd", "1", "--per", "day", "tenant=acme", "--store", store)
    assert code == 1 and needle in err and "Traceback" not in err


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
