"""Alerts reach OpenTelemetry: a ``tollgate.alert`` event on the call's span that crossed the
threshold, and the ``tollgate.alerts`` counter."""

from __future__ import annotations

from typing import Any

import pytest

import tollgate
from tests.budgets.test_control import SAY_OK, Provider, usd
from tollgate.alerts import Alert


@pytest.fixture
def alerts() -> list[Alert]:
    fired: list[Alert] = []
    tollgate.configure(on_alert=fired.append)
    return fired


def test_alert_is_a_span_event(alerts: list[Alert], spans: Any) -> None:
    with tollgate.budget(usd=usd(20) * 1.5, warn_at=0.5, name="spanned"):
        Provider().client().chat.completions.create(model="gpt-4o-mini", messages=SAY_OK, max_tokens=20)
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat")]
    assert len(alerts) == 1
    (event,) = [e for e in span.events if e.name == "tollgate.alert"]
    assert event.attributes is not None
    assert event.attributes["tollgate.alert.kind"] == "threshold"
    assert event.attributes["tollgate.budget.name"] == "spanned"
    assert event.attributes["tollgate.alert.threshold"] == 0.5


def test_alerts_are_counted(alerts: list[Alert], measured: Any) -> None:
    with tollgate.budget(usd=usd(20) * 1.2, warn_at=(0.5, 0.8), name="counted"):
        Provider().client().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
    points = measured.points(
        "tollgate.alerts", **{"tollgate.alert.kind": "threshold", "tollgate.budget.name": "counted"}
    )
    assert sum(p.value for p in points) == 2
