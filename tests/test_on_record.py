"""configure(on_record=...): every CallRecord, after it is written, from every door."""

from __future__ import annotations

import logging

import pytest

import tollgate
from tollgate.demo import offline_client

MESSAGES = [{"role": "user", "content": "Name the capital of France in one word."}]


def test_every_hook_sees_every_record_after_it_is_written(caplog: pytest.LogCaptureFixture) -> None:
    ledger = tollgate.config.settings().ledger
    seen: list[tuple[str, str, bool]] = []

    def first(rec: tollgate.CallRecord) -> None:
        seen.append(("first", rec.status, rec in ledger.records()))

    def broken(rec: tollgate.CallRecord) -> None:
        raise RuntimeError("sink down")

    def last(rec: tollgate.CallRecord) -> None:
        seen.append(("last", rec.status, rec in ledger.records()))

    tollgate.configure(on_record=[first, broken, last])
    client = offline_client()
    with caplog.at_level(logging.ERROR, logger="tollgate"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)  # gated
        with tollgate.budget(usd=1e-9), pytest.raises(tollgate.BudgetExceeded):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)  # blocked
        tollgate.metered(model="gpt-4o-mini")(lambda: "Paris")()  # any function
        tollgate.record(provider="openai", model="gpt-4o", input_tokens=5, output_tokens=1)  # manual
    assert seen == [
        ("first", "ok", True),
        ("last", "ok", True),
        ("first", "blocked", True),
        ("last", "blocked", True),
        ("first", "ok", True),
        ("last", "ok", True),
        ("first", "ok", True),
        ("last", "ok", True),
    ]
    assert caplog.text.count("RuntimeError: sink down") == 4  # logged, never raised into the call
    tollgate.configure(on_record=None)
    tollgate.record(provider="openai", model="gpt-4o", input_tokens=5, output_tokens=1)
    assert len(seen) == 8
