"""Per-tenant budgets in a shared store: a daily cap per tenant, and a standing limit an
operator can change without a deploy.

Run: python examples/tenant_budgets.py     (offline: no API key, no network)

The counters live in an SQLite file (every process of this machine shares them); set
TOLLGATE_REDIS_URL=redis://localhost:6379/0 to keep them in Redis instead (many machines).
Offline, the OpenAI SDK talks to ``tollgate.demo.StandIn`` running in this process.
"""

from __future__ import annotations

import os
import tempfile

import openai

import tollgate
from tollgate.demo import offline_client
from tollgate.stores import Store
from tollgate.stores import open_store as open_store_uri


def open_store() -> tuple[Store, str]:
    """Redis when TOLLGATE_REDIS_URL is set, else a new SQLite file."""
    redis_url = os.environ.get("TOLLGATE_REDIS_URL")
    if redis_url:
        from tollgate.stores.redis import RedisStore

        # A prefix of its own, so the example's counters never mix with an application's.
        # An application writes just: tollgate.configure(store="redis://host:6379/0")
        store = RedisStore(redis_url, prefix="tollgate-example")
        store.clear()  # a fresh day for the example
        return store, redis_url.split("@")[-1]
    uri = "sqlite:///" + os.path.join(tempfile.mkdtemp(prefix="tollgate-budgets-"), "budgets.db")
    return open_store_uri(uri), uri


def handle_request(client: openai.OpenAI, tenant: str, question: str) -> str:
    """What a request handler does: tag the call with its tenant, under the tenant's daily cap."""
    with (
        tollgate.track(tenant=tenant, feature="assistant"),
        tollgate.budget(usd=0.004, per="day", key="tenant", name="example-daily-cap"),
    ):
        try:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": question}], max_tokens=300
            )
        except tollgate.BudgetExceeded as refused:
            return f"refused: {refused}"
        return f"answered (${tollgate.report(where={'tenant': tenant}).total['usd']:.6f} so far)"


def main() -> None:
    store, where = open_store()
    tollgate.configure(store=store)
    print(f"budget counters in {where}\n")
    client = offline_client()

    for i in range(4):  # each call may cost up to $0.0031; the daily cap is $0.004
        print(f"acme   call {i + 1}: {handle_request(client, 'acme', 'Summarise the contract.')}")
    print(f"globex call 1: {handle_request(client, 'globex', 'Summarise the contract.')}")

    # A standing limit lives in the store: every worker sharing it applies it from its next call.
    # The same from a shell: tollgate limits set --usd 0.002 --per month --store sqlite:///... tenant=globex
    tollgate.set_limit(usd=0.002, per="month", tenant="globex")
    print(f"globex call 2 (monthly limit $0.002): {handle_request(client, 'globex', 'Summarise it again.')}")
    tollgate.remove_limit(tenant="globex")
    print(f"globex call 3 (limit removed): {handle_request(client, 'globex', 'And once more.')}")

    print()
    print(tollgate.report(group_by="tenant"))


if __name__ == "__main__":
    main()
