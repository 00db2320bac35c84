from __future__ import annotations

import pytest

import tollgate
from tollgate.config import settings
from tollgate.ledger import MemoryLedger, SQLiteLedger


def test_defaults() -> None:
    s = settings()
    assert isinstance(s.ledger, MemoryLedger)
    assert (s.on_unpriced, s.capture_content, s.on_record) == ("warn", False, ())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_unpriced": "loud"}, "on_unpriced='loud' is not one of"),
        ({"capture_content": "yes"}, "capture_content='yes' must be True or False"),
        ({"on_record": 42}, "on_record=42 is not callable"),
        ({"on_record": [print, 42]}, "nor a list of callables"),
        ({"ledger": "mysql://db"}, "unknown ledger URI 'mysql://db'"),
        ({"ledger": 3}, "ledger=3 is neither a ledger URI nor a Ledger"),
        ({"prices": {"my-model": {"inptu": 1e-6}}}, "inptu"),
        ({"prices": {"my-model": {"input": -1.0}}}, "my-model"),
    ],
)
def test_bad_values_raise_value_error_naming_them(kwargs: dict[str, object], message: str) -> None:
    before = settings()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        tollgate.configure(**kwargs)  # type: ignore[arg-type]
    assert settings() is before  # a failed configure changes nothing


def test_unknown_option_name_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="ledgr"):
        tollgate.configure(ledgr="memory://")  # type: ignore[call-arg]


def test_configure_changes_only_what_is_given(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tollgate.configure(on_unpriced="raise")
    s = tollgate.configure(ledger=f"sqlite:///{tmp_path / 'l.db'}")
    assert isinstance(s.ledger, SQLiteLedger)
    assert s.on_unpriced == "raise"


def test_reset_restores_defaults_and_forgets_records() -> None:
    tollgate.configure(on_unpriced="ignore", prices={"house": {"input": 1e-6, "output": 1e-6}})
    settings().ledger.write(
        tollgate.CallRecord(
            id="x", started_at=1.0, ended_at=2.0, provider="p", operation="chat", request_model="m"
        )
    )
    assert tollgate.report().total["calls"] == 1
    s = tollgate.reset()
    assert s.on_unpriced == "warn"
    assert s.prices.lookup("house") is None
    assert tollgate.report().total["calls"] == 0


def test_price_overrides_win_over_bundled_prices() -> None:
    bundled = settings().prices.lookup("gpt-4o")
    assert bundled is not None
    tollgate.configure(prices={"gpt-4o": {"input": 1e-6, "output": 2e-6}})
    p = settings().prices.lookup("gpt-4o")
    assert p is not None and (p.input, p.output) == (1e-6, 2e-6)
