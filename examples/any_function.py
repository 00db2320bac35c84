"""Every other door: a house LLM client with @metered, a batch job's usage with record(), and an
on_record hook feeding a per-customer bill.

Run: python examples/any_function.py      (offline: no API key, no network)

The "house SDK" below stands in for an internal gateway, BAML, or raw httpx: tollgate does not
know it, so the function that calls it is metered instead of the client instrumented.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tollgate


@dataclass
class HouseReply:
    """What the (pretend) house gateway answers."""

    model: str
    text: str
    tokens_in: int
    tokens_out: int


def house_gateway(model: str, prompt: str, max_tokens: int) -> HouseReply:
    words = ["Budgets", "keep", "agents", "honest."]
    return HouseReply(model, " ".join(words), tokens_in=len(prompt) // 4 + 7, tokens_out=min(max_tokens, 6))


# The bill: what each tenant spent, fed by every record from every door.
bill: dict[str, float] = defaultdict(float)
tollgate.configure(
    prices={
        "house-model-v2": {"input": 0.5e-6, "output": 1.5e-6},
        "house-model-lite": {"input": 0.1e-6, "output": 0.3e-6},
    },
    on_record=lambda rec: bill.__setitem__(
        rec.tags.get("tenant", "-"), bill[rec.tags.get("tenant", "-")] + rec.usd
    ),
)


@tollgate.metered(extract_usage=lambda r: (r.model, r.tokens_in, r.tokens_out))
def ask(prompt: str, model: str = "house-model-v2", max_tokens: int = 512) -> HouseReply:
    return house_gateway(model, prompt, max_tokens)


@tollgate.metered(model="gpt-4o-mini")
def stream_words(prompt: str) -> Iterator[str]:
    """A streaming function: its output is counted as it is read (no usage reported here)."""
    yield from ["Paris", " is", " the", " capital", "."]


with tollgate.track(tenant="acme", feature="house"):
    print("house:", ask("What keeps an agent loop from burning money overnight?").text)
    # A tight budget: the house model's worst case does not fit, the lite one does. The decorator
    # passes the cheaper model as the function's `model` argument.
    with tollgate.budget(usd=0.0002, on_exceed="downgrade", downgrade={"house-model-v2": "house-model-lite"}):
        reply = ask("Same question, on a budget.")
        print(f"downgraded: answered by {reply.model}")
    print("stream:", "".join(stream_words("Capital of France?")))

# A nightly batch job's results file: usage learned elsewhere, counted all the same.
results = Path(tempfile.mkdtemp()) / "batch_results.jsonl"
results.write_text(
    "\n".join(
        json.dumps(
            {"custom_id": f"req-{i}", "model": "gpt-4o-mini", "input_tokens": 1200, "output_tokens": 300}
        )
        for i in range(3)
    )
)
for line in results.read_text().splitlines():
    row = json.loads(line)
    tollgate.record(
        provider="openai",
        model=row["model"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        tenant="globex",
        feature="batch",
    )

print()
print(tollgate.report(group_by=["tenant", "feature"]))
print()
for tenant, usd in sorted(bill.items()):
    print(f"bill {tenant}: ${usd:.6f}")
