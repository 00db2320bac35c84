"""Can readers that drop streams early run a provider past a budget's cap?

Run: python benchmarks/abandoned_streams.py [--quick] [--json PATH]

The scenario (issue 17, item 2): a USD budget (``on_exceed="block"``) with room for about two
calls' reservations; each call streams gpt-4o-mini with ``max_tokens=1000`` from a stand-in
provider on a real loopback socket (tests/providers/streaming_provider.py), through the real
OpenAI SDK. The reader takes three chunks, works for 0.3 s and closes the stream; calls go on
until tollgate refuses one (at most 30; 4 with ``--quick``). The provider bills every token
it wrote before it saw the connection close: "paced" writes one token per 2 ms (a model
streaming 500 tokens/s), "unpaced" as fast as the socket takes them. Reported, as a share of
the cap: what the provider billed (priced at tollgate's price for the model), and what
tollgate charged the budget. The cap holds when the provider's figure is at most 100%.

Run it against another tollgate (an older commit, say) by putting that one first on
PYTHONPATH: the stand-in provider is imported from this repository, tollgate from the path.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))  # tests/; tollgate as installed or on PYTHONPATH

import openai
from _common import add_flags, write_json

import tollgate
from tests.providers.streaming_provider import Served, StreamingProvider
from tollgate.pricing import cost
from tollgate.pricing.estimate import lookup_price
from tollgate.request import Usage

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Write a long story about the sea."}]
MAX_TOKENS = 1000
PROMPT = 15  # what the stand-in bills for the prompt (tollgate's estimate is a little higher)
PACE = 0.002
WORK = 0.3  # seconds the reader works after its three chunks


def price_of(provider: str) -> Any:
    price = lookup_price(tollgate.config.settings(), MODEL, provider)
    assert price is not None, f"no price for {MODEL}"
    return price


def cap_usd() -> float:
    """Room for two calls' reservations and a bit: 2.1 x (the prompt, estimated, + the output cap)."""
    estimate = tollgate.estimate(MODEL, MESSAGES, max_tokens=MAX_TOKENS)
    return 2.1 * estimate.usd


def billed(served: list[Served], provider: str) -> float:
    price = price_of(provider)
    return sum(
        cost(price, Usage(input_tokens=s.prompt_tokens, output_tokens=s.output_tokens)) for s in served
    )


def scenario(pace: float, mode: str, max_calls: int) -> dict[str, Any]:
    tollgate.reset()
    cap = cap_usd()
    with StreamingProvider(pace=pace, prompt_tokens=PROMPT) as provider:
        calls, refused = 0, False
        if mode == "sync":
            client = tollgate.instrument(openai.OpenAI(base_url=provider.url("openai"), api_key="sk-bench"))
            with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
                while calls < max_calls:
                    try:
                        stream = client.chat.completions.create(
                            model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
                        )
                    except tollgate.BudgetExceeded:
                        refused = True
                        break
                    calls += 1
                    for _ in range(3):
                        next(stream)
                    time.sleep(WORK)
                    stream.close()
        else:
            refused, calls = asyncio.run(_async_calls(provider, cap, max_calls))
        served = provider.wait(calls, timeout=30)
        records = list(tollgate.config.settings().ledger.records())
        provider_name = records[0].provider if records else "openai"
        provider_usd = billed(served, provider_name)
    charged = sum(r.usd for r in records)
    return {
        "provider": "paced" if pace else "unpaced",
        "reader": f"{mode} close",
        "cap_usd": cap,
        "calls": calls,
        "refused": refused,
        "tokens_generated": sum(s.output_tokens for s in served),
        "provider_usd": provider_usd,
        "charged_usd": charged,
        "provider_pct": 100 * provider_usd / cap,
        "charged_pct": 100 * charged / cap,
        "statuses": sorted({r.status for r in records}),
    }


async def _async_calls(provider: StreamingProvider, cap: float, max_calls: int) -> tuple[bool, int]:
    client = tollgate.instrument(openai.AsyncOpenAI(base_url=provider.url("openai"), api_key="sk-bench"))
    calls = 0
    with tollgate.budget(usd=cap, per="day", name="abandon", on_exceed="block"):
        while calls < max_calls:
            try:
                stream = await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
                )
            except tollgate.BudgetExceeded:
                return True, calls
            calls += 1
            for _ in range(3):
                await stream.__anext__()
            await asyncio.sleep(WORK)
            await stream.close()
    return False, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flags(parser)
    args = parser.parse_args()
    max_calls = 4 if args.quick else 30
    tollgate.configure(on_unpriced="ignore")
    rows = [scenario(pace, mode, max_calls) for pace in (PACE, 0.0) for mode in ("sync", "async")]
    cap = rows[0]["cap_usd"]
    print(
        f"cap ${cap:.6f} (about two reservations of {MAX_TOKENS} output tokens); the reader takes 3 chunks, "
        f"works {WORK} s and closes; calls until refused (at most {max_calls})"
    )
    columns = ("provider", "reader", "calls", "refused", "tokens", "provider/cap", "charged/cap")
    print("{:<9} {:<12} {:>5} {:>7} {:>7} {:>12} {:>12}".format(*columns))
    for row in rows:
        refused = "yes" if row["refused"] else "no"
        print(
            f"{row['provider']:<9} {row['reader']:<12} {row['calls']:>5} {refused:>7} "
            f"{row['tokens_generated']:>7} {row['provider_pct']:>11.1f}% {row['charged_pct']:>11.1f}%"
        )
    held = all(row["provider_pct"] <= 100 for row in rows)
    print("the cap held against what the provider generated" if held else "THE CAP DID NOT HOLD")
    write_json(args, "abandoned_streams", {"rows": rows, "cap_held": held, "max_calls": max_calls})


if __name__ == "__main__":
    main()
