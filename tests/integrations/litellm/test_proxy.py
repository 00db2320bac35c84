"""End to end: ``litellm --config ...`` (the LiteLLM proxy, from ``litellm[proxy]``) on a loopback
port with TollgateLogger in its callbacks, a loopback upstream, and standing limits set from
this process in the shared store, keyed by the proxy's API key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tollgate

pytest.importorskip("tollgate_litellm")
for _dependency in ("fastapi", "uvicorn", "backoff", "apscheduler"):  # litellm[proxy]
    pytest.importorskip(_dependency)
httpx = pytest.importorskip("httpx")

MASTER_KEY = "sk-master-test"
KEY_TAG = "litellm_proxy_master_key"  # the proxy's name for its master key in the key metadata
QUESTION = [{"role": "user", "content": "Name the capital of France in one word."}]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, upstream_server: Any) -> Iterator[dict[str, Any]]:
    exe = Path(sys.executable).with_name("litellm")
    if not exe.exists():
        exe = Path(shutil.which("litellm") or "litellm")
    folder = tmp_path_factory.mktemp("proxy")
    base = upstream_server.url
    (folder / "config.yaml").write_text(
        textwrap.dedent(
            f"""
            model_list:
              - model_name: gpt-4o
                litellm_params: {{model: openai/gpt-4o, api_base: "{base}", api_key: sk-up}}
              - model_name: gpt-4o-mini
                litellm_params: {{model: openai/gpt-4o-mini, api_base: "{base}", api_key: sk-up}}
            litellm_settings:
              callbacks: tollgate_litellm.proxy.handler  # as in examples/litellm_proxy_config.yaml
            general_settings:
              master_key: {MASTER_KEY}
            """
        )
    )
    db = folder / "tollgate.db"
    port = _free_port()
    env = {
        **os.environ,
        "TOLLGATE_STORE": f"sqlite:///{db}",
        "TOLLGATE_LEDGER": f"sqlite:///{db}.ledger",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "NO_PROXY": "*",
    }
    log = open(folder / "proxy.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(exe), "--config", "config.yaml", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the LiteLLM proxy did not start:\n" + (folder / "proxy.log").read_text()[-3000:])
            time.sleep(0.3)
        yield {"url": url, "db": db}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def store(proxy: dict[str, Any], upstream: Any) -> Iterator[None]:
    """This process on the proxy's store and ledger (standing limits are shared through it)."""
    db = proxy["db"]
    tollgate.configure(store=f"sqlite:///{db}", ledger=f"sqlite:///{db}.ledger")
    yield
    tollgate.remove_limit(api_key=KEY_TAG)


def ask(proxy: dict[str, Any], model: str = "gpt-4o") -> Any:
    return httpx.post(
        f"{proxy['url']}/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": model, "messages": QUESTION, "max_tokens": 100},
        timeout=30,
    )


def ledger() -> list[tollgate.CallRecord]:
    return sorted(tollgate.settings().ledger.records(), key=lambda r: r.ended_at)


def wait_for(count: int) -> list[tollgate.CallRecord]:
    for _ in range(100):
        if len(ledger()) >= count:
            break
        time.sleep(0.05)
    return ledger()


def test_proxy_call_is_recorded_with_the_key_as_a_tag(proxy, store, upstream) -> None:  # type: ignore[no-untyped-def]
    before = len(ledger())
    reply = ask(proxy)
    assert reply.status_code == 200, reply.text
    assert [b["model"] for b in upstream.received] == ["gpt-4o"]
    rec = wait_for(before + 1)[-1]
    assert rec.status == "ok" and rec.usage.output_tokens == 5
    assert rec.tags["api_key"] == KEY_TAG
    time.sleep(0.3)
    assert len(ledger()) == before + 1  # the proxy hook and the deployment hook count it once


def test_over_budget_request_gets_429_and_no_upstream_call(proxy, store, upstream) -> None:  # type: ignore[no-untyped-def]
    tollgate.set_limit(usd=1e-9, per="day", on_exceed="block", api_key=KEY_TAG)
    before = len(ledger())
    reply = ask(proxy)
    assert reply.status_code == 429, reply.text
    assert "tollgate" in reply.text and "exceeded" in reply.text
    assert upstream.received == []
    rec = wait_for(before + 1)[-1]
    assert rec.status == "blocked" and rec.tags["api_key"] == KEY_TAG


def test_downgrade_reaches_the_upstream_as_the_cheaper_model(proxy, store, upstream) -> None:  # type: ignore[no-untyped-def]
    tollgate.set_limit(
        usd=0.0005, per="day", on_exceed="downgrade", downgrade={"gpt-4o": "gpt-4o-mini"}, api_key=KEY_TAG
    )
    before = len(ledger())
    reply = ask(proxy)
    assert reply.status_code == 200, reply.text
    assert [b["model"] for b in upstream.received] == ["gpt-4o-mini"]
    rec = wait_for(before + 1)[-1]
    assert rec.request_model == "gpt-4o" and rec.response_model == "gpt-4o-mini", ledger()
    assert rec.decisions[0]["action"] == "downgrade"
