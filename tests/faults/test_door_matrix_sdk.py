"""Every provider-SDK door x every failure point x every store: one record, no hold left, and
the caller sees what it would have seen without tollgate (issue 16, item 5).

The doors, faults and checks are in ``matrix_sdk.py``. Each cell runs the scenario through the
raw SDK client and through ``tollgate.instrument(client)`` under a windowed budget and a
standing limit (on the memory and SQLite stores, and Redis when ``TOLLGATE_TEST_REDIS_URL`` is
set), and fails with the list of every broken promise, one line each (``OUTCOME``, ``SENT``,
``RECORDS``, ``STATUS``, ``HOLD``, ``SPANS``, ``LEAK``). Malformed replies are drawn by hypothesis,
reproducibly (``derandomize=True``, no shrinking: the first reply that breaks a door is shown).

    .venv/bin/python -m pytest tests/faults/test_door_matrix_sdk.py -q
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("google.genai")
pytest.importorskip("hypothesis")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from tests.faults import matrix_sdk as m  # noqa: E402
from tollgate.stores import Store  # noqa: E402

REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL")
STORES = ["memory", "sqlite", *(["redis"] if REDIS_URL else [])]

MALFORMED = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: a failing cell reports the first reply that broke it, and a matrix of
    # failing cells would otherwise spend minutes shrinking.
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CELLS = [
    pytest.param(door, failure, store, id=f"{door.id}-{failure}-{store}")
    for door in m.DOORS
    for failure in m.FAILURES
    if m.applies(door, failure)
    for store in STORES
]
DOOR_STORES = [pytest.param(door, store, id=f"{door.id}-{store}") for door in m.DOORS for store in STORES]


@pytest.fixture(scope="module", autouse=True)
def quick_gc() -> Iterator[None]:
    """The "stream-dropped" cells collect garbage, and with the SDKs loaded a full collection
    takes ~0.5 s: so the clients are built and every door called once, then everything that
    exists is frozen out of the collector's way."""
    from tollgate.stores import MemoryStore

    for door in m.DOORS:
        m.run_cell(door, "ok", MemoryStore(), exporter=InMemorySpanExporter())
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    """One store of each kind for the whole module: every cell clears it first."""
    opened = {kind: m.open_store(kind, tmp_path_factory.mktemp("matrix"), REDIS_URL) for kind in STORES}
    yield opened
    for store in opened.values():
        store.clear()
        store.close()


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def spans(exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """tollgate's spans, in ``exporter``.

    The one internal touch in this file: OpenTelemetry lets a process set its global tracer
    provider once, and tests/telemetry/ sets it for the session, so (as tests/providers/ does)
    tollgate's tracer is pointed at a provider of this file's own, and told an SDK is there.
    """
    from tollgate import telemetry

    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("tollgate"))
    monkeypatch.setattr(telemetry, "_no_sdk", lambda module, name: False)
    exporter.clear()
    yield exporter
    exporter.clear()


def check(cell: m.Cell) -> None:
    found = m.problems(cell)
    assert not found, f"{cell.door.id} / {cell.failure}:\n  " + "\n  ".join(found)


@pytest.mark.parametrize(("door", "failure", "store"), CELLS)
def test_cell(
    door: m.Door, failure: str, store: str, stores: dict[str, Store], spans: InMemorySpanExporter
) -> None:
    check(m.run_cell(door, failure, stores[store], exporter=spans))


@pytest.mark.parametrize(("door", "store"), DOOR_STORES)
@MALFORMED
@given(data=st.data())
def test_malformed_reply(
    door: m.Door, store: str, stores: dict[str, Store], spans: InMemorySpanExporter, data: Any
) -> None:
    body = data.draw(m.malformed(door), label="reply")
    check(m.run_cell(door, "malformed", stores[store], exporter=spans, body=body))


def test_the_matrix_covers_every_door_and_failure() -> None:
    """Every door is there sync and async (the media doors: sync), and every failure point is
    a cell of every door it can happen at."""
    media = {"openai-transcription", "openai-images"}
    ids = {d.id for d in m.DOORS}
    for name in {d.name for d in m.DOORS} - media:
        assert {f"{name}-sync", f"{name}-async"} <= ids, name
    assert {f"{name}-sync" for name in media} <= ids
    for failure in m.FAILURES:
        assert any(m.applies(d, failure) for d in m.DOORS), failure
    streams = [d for d in m.DOORS if d.streaming]
    assert all(m.applies(d, "stream-broken") and m.applies(d, "stream-abandoned") for d in streams)
    assert all(m.applies(d, "cancelled") for d in m.DOORS if d.is_async)
