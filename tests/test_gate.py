"""The gate's steps on their own, without any SDK."""

from __future__ import annotations

import logging

import pytest

import tollgate
from tollgate import gate
from tollgate.config import settings
from tollgate.request import LLMRequest, Usage

MESSAGES = [{"role": "user", "content": "Summarise the attached report in three bullet points."}]


def request(model: str = "gpt-4o-mini", **kw: object) -> LLMRequest:
    return LLMRequest(provider="openai", operation="chat", model=model, messages=MESSAGES, **kw)  # type: ignore[arg-type]


def test_preflight_estimates_worst_case_from_cap_or_model_maximum() -> None:
    capped = gate.preflight(request(max_output_tokens=100))
    price = settings().prices.lookup("gpt-4o-mini")
    assert price is not None and price.max_output_tokens
    assert capped.estimate.output_tokens == 100
    assert capped.estimate.usd == pytest.approx(
        capped.estimate.input_tokens * price.input + 100 * price.output, abs=1e-15
    )
    uncapped = gate.preflight(request(n=2))
    assert uncapped.estimate.output_tokens == 2 * price.max_output_tokens
    assert capped.decision.action == "proceed" and capped.decision.model == "gpt-4o-mini"


def test_settle_writes_one_record_and_is_idempotent() -> None:
    with tollgate.track(feature="f"):
        call = gate.preflight(request())
    usage = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=512)
    record = call.finish(tollgate.gate.Outcome(usage, model="gpt-4o-mini-2024-07-18", id="r1"))
    assert record is not None
    assert call.finish(tollgate.gate.Outcome(usage)) is None
    call.fail(RuntimeError("late"))
    records = settings().ledger.records()
    assert records == [record]
    p = settings().prices.lookup("gpt-4o-mini-2024-07-18")
    assert p is not None and p.cache_read is not None
    assert record.usd == pytest.approx(488 * p.input + 512 * p.cache_read + 200 * p.output, abs=1e-15)
    assert record.tags == {"feature": "f"} and record.duration >= 0


def test_response_model_prices_the_call() -> None:
    # An Azure deployment name is unpriced; the model named in the response is what is billed.
    call = gate.preflight(
        LLMRequest(provider="azure", operation="chat", model="my-deployment", messages=MESSAGES)
    )
    record = call.finish(
        tollgate.gate.Outcome(Usage(input_tokens=100, output_tokens=10), model="gpt-4o-2024-08-06")
    )
    assert record is not None and record.priced and record.usd > 0


def test_fail_records_error_with_http_status() -> None:
    class APIStatusError(Exception):
        status_code = 503

    call = gate.preflight(request())
    call.fail(APIStatusError("overloaded"))
    (record,) = settings().ledger.records()
    assert record.status == "error" and record.usd == 0.0
    assert record.error == "APIStatusError: HTTP 503"  # the message only with capture_content


def test_on_record_hook_sees_every_record_and_cannot_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    tollgate.configure(on_record=lambda rec: seen.append(rec.id))
    call = gate.preflight(request())
    call.finish(tollgate.gate.Outcome(Usage(input_tokens=1, output_tokens=1)))
    assert seen == [call.id]

    def broken(rec: tollgate.CallRecord) -> None:
        raise RuntimeError("sink down")

    tollgate.configure(on_record=broken)
    with caplog.at_level(logging.ERROR, logger="tollgate"):
        record = gate.preflight(request()).finish(
            tollgate.gate.Outcome(Usage(input_tokens=1, output_tokens=1))
        )
    assert record is not None
    assert "on_record hook" in caplog.text


def test_ledger_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(tollgate.ledger.MemoryLedger):
        def write(self, record: tollgate.CallRecord) -> None:
            raise OSError("disk full")

    tollgate.configure(ledger=Broken())
    with caplog.at_level(logging.ERROR, logger="tollgate"):
        record = gate.preflight(request()).finish(tollgate.gate.Outcome(Usage(input_tokens=1)))
    assert record is not None and record.status == "ok"  # the caller's call is unaffected
    assert "could not record call" in caplog.text and "disk full" in caplog.text


def test_unpriced_warns_once_per_model_at_settle() -> None:
    with pytest.warns(tollgate.UnpricedModelWarning, match="house-model"):
        gate.preflight(request("house-model")).finish(
            tollgate.gate.Outcome(Usage(input_tokens=5, output_tokens=5))
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = gate.preflight(request("house-model")).finish(
            tollgate.gate.Outcome(Usage(input_tokens=5, output_tokens=5))
        )
    assert record is not None and not record.priced and record.usd == 0.0
    assert tollgate.report().total["unpriced_calls"] == 2


def test_unpriced_raise_records_the_refusal() -> None:
    tollgate.configure(on_unpriced="raise")
    with pytest.raises(tollgate.UnpricedModelError, match=r"'house-model'.*configure\(prices="):
        gate.preflight(request("house-model"))
    (record,) = settings().ledger.records()
    assert record.status == "error" and "UnpricedModelError" in (record.error or "")


def test_public_estimate() -> None:
    e = tollgate.estimate("gpt-4o", MESSAGES, max_tokens=50)
    assert e.priced and e.output_tokens == 50 and e.usd > 0
    unknown = tollgate.estimate("house-model", MESSAGES, max_tokens=50)
    assert not unknown.priced and unknown.usd == 0.0 and unknown.input_tokens > 0


def test_estimate_takes_a_prompt_string_and_names_the_fix_for_anything_else() -> None:
    as_chat = tollgate.estimate("gpt-4o", [{"role": "user", "content": "hi"}], max_tokens=10)
    assert tollgate.estimate("gpt-4o", "hi", max_tokens=10) == as_chat  # was: AttributeError
    for wrong in (42, ["hi"], None):
        with pytest.raises(TypeError, match="give a string"):
            tollgate.estimate("gpt-4o", wrong)  # type: ignore[arg-type]
