"""Door x failure matrix for the doors that are not SDK clients (issue 16, item 5).

Doors: ``@tollgate.metered`` (sync, async, generator, async generator, a returned stream and a
returned async stream; each with and without a model), ``tollgate.record()``, LangChain's
``TollgateCallbackHandler`` (invoke, ainvoke, stream, astream), ``guard()`` (the same four)
and ``TollgateMiddleware`` in an agent (invoke, ainvoke), LiteLLM's ``TollgateLogger`` and the
``tollgate_litellm`` wrappers (completion, acompletion, each plain and streamed). All offline:
fake functions, a scripted LangChain chat model, and LiteLLM on the real OpenAI SDK over
``httpx.MockTransport``.

Failure points: a request tollgate cannot read (messages a string, a dict, ``[None]``, a message
without content; the model not a string), a budget that blocks, a budget action the door cannot
apply, the call raising before it is sent, a provider (HTTP) error, malformed usage (drawn by
hypothesis), a response whose model is not a string (pricing), the ledger write failing, the
store failing at settle, and for streams: broken mid-way, abandoned after two chunks, and
cancelled (asyncio). Plus ``none``, the control row. Each cell runs on the memory and SQLite
stores (and Redis when ``TOLLGATE_TEST_REDIS_URL`` is set).

The promise under test, for every cell (see tests/faults/matrix_doors.py): exactly one record,
no reservation left on the windowed budget nor on the standing limit, the caller sees what it
sees without tollgate (or tollgate's own error where a pre-flight decision stands in for the
call), and no record's error carries the prompt or the API key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tollgate  # noqa: E402
from tests.faults.matrix_doors import (  # noqa: E402
    BY_NAME,
    MALFORMED,
    MAX_TOKENS,
    MODEL,
    NONE,
    PROMPT,
    Scenario,
    arun_cell,
    cells,
    close_shared_stores,
    explain,
    open_harness,
    quiet_litellm,
    run_cell,
    scenario_for,
    stores,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::tollgate.UnpricedModelWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

JUNK = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: the first failing example is enough
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: A LiteLLM example costs ~50 ms (LiteLLM itself, twice, and its logging thread): fewer of them,
#: so that the file runs in well under a minute on two cores.
JUNK_LITELLM = settings(JUNK, max_examples=12)


def _ids(cell: tuple[str, str]) -> str:
    return f"{cell[0]}-{cell[1]}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the cells' SQLite store lives (one file for the module, cleared for each cell)."""
    yield tmp_path_factory.mktemp("door-matrix")
    close_shared_stores()


SYNC = cells(is_async=False, malformed=False)
ASYNC = cells(is_async=True, malformed=False)


def junk_doors(*, is_async: bool, litellm: bool) -> list[str]:
    """The doors of the malformed-usage column (hypothesis), LiteLLM's or the others."""
    doors = [door for door, _ in cells(is_async=is_async, malformed=True)]
    return [door for door in doors if door.startswith("litellm-") == litellm]


@pytest.mark.parametrize("store", stores())
@pytest.mark.parametrize("cell", SYNC, ids=_ids)
def test_sync_door(cell: tuple[str, str], store: str, folder: Path) -> None:
    door = BY_NAME[cell[0]]
    sc = scenario_for(door, cell[1])
    with quiet_litellm():
        problems = run_cell(door, sc, store, folder)
    assert not problems, explain(door, sc, store, problems)


@pytest.mark.parametrize("store", stores())
@pytest.mark.parametrize("cell", ASYNC, ids=_ids)
async def test_async_door(cell: tuple[str, str], store: str, folder: Path) -> None:
    door = BY_NAME[cell[0]]
    sc = scenario_for(door, cell[1])
    with quiet_litellm():
        problems = await arun_cell(door, sc, store, folder)
    assert not problems, explain(door, sc, store, problems)


def malformed(door_name: str, store: str, folder: Path, data: st.DataObject) -> None:
    door = BY_NAME[door_name]
    sc = scenario_for(door, MALFORMED)
    door.draw(sc, data)
    with quiet_litellm():
        problems = run_cell(door, sc, store, folder)
    assert not problems, explain(door, sc, store, problems)


async def amalformed(door_name: str, store: str, folder: Path, data: st.DataObject) -> None:
    door = BY_NAME[door_name]
    sc = scenario_for(door, MALFORMED)
    door.draw(sc, data)
    with quiet_litellm():
        problems = await arun_cell(door, sc, store, folder)
    assert not problems, explain(door, sc, store, problems)


@pytest.mark.parametrize("store", stores())
@pytest.mark.parametrize("door_name", junk_doors(is_async=False, litellm=False))
@JUNK
@given(data=st.data())
def test_sync_door_malformed_usage(door_name: str, store: str, folder: Path, data: st.DataObject) -> None:
    malformed(door_name, store, folder, data)


@pytest.mark.parametrize("store", stores())
@pytest.mark.parametrize("door_name", junk_doors(is_async=True, litellm=False))
@JUNK
@given(data=st.data())
async def test_async_door_malformed_usage(
    door_name: str, store: str, folder: Path, data: st.DataObject
) -> None:
    await amalformed(door_name, store, folder, data)


@pytest.mark.parametrize("store", stores())
@pytest.mark.parametrize("door_name", junk_doors(is_async=False, litellm=True))
@JUNK_LITELLM
@given(data=st.data())
def test_sync_litellm_malformed_usage(door_name: str, store: str, folder: Path, data: st.DataObject) -> None:
    malformed(door_name, store, folder, data)


@pytest.mark.parametrize("store", stores())
@pytest.mark.parametrize("door_name", junk_doors(is_async=True, litellm=True))
@JUNK_LITELLM
@given(data=st.data())
async def test_async_litellm_malformed_usage(
    door_name: str, store: str, folder: Path, data: st.DataObject
) -> None:
    await amalformed(door_name, store, folder, data)


@pytest.mark.parametrize("store", stores())
def test_the_matrix_reads_the_counters_the_gate_writes(store: str, folder: Path) -> None:
    """The control of the HOLD column: a call in flight shows a hold on both counters the matrix
    reads, and once settled, its spend and no hold (else every HOLD check would pass vacuously)."""
    h = open_harness(store, NONE, folder)
    in_flight: dict[str, float] = {}

    @tollgate.metered(model=MODEL)
    def ask(messages: Any, model: str = MODEL, max_tokens: int = MAX_TOKENS) -> Any:
        in_flight.update({name: state.reserved for name, state in h.counters().items()})
        return Scenario(NONE).body()

    with tollgate.track(tenant=h.tenant), h.budget(Scenario(NONE)):
        ask([{"role": "user", "content": PROMPT}])
    assert len(in_flight) == 2 and all(held > 0 for held in in_flight.values()), in_flight
    after = h.counters()
    assert all(s.spent > 0 and abs(s.reserved) < 1e-12 for s in after.values()), after
    assert len(h.records()) == 1
