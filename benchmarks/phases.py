"""Where tollgate's own per-call time goes, phase by phase, without the SDK's work around it.

Run: python benchmarks/phases.py [--budget] [--quick] [--json PATH]

Each phase of one gated OpenAI chat call is timed on its own in a tight loop (timeit: best of 7
repeats, garbage collection off), on the same parsed SDK response the overhead benchmark's
mock transport returns. The phases nest (pre-flight includes the estimate, the whole call
includes everything), so the figures explain ``overhead.py``'s "adapter + gate" line rather
than add up to it exactly. A hot loop keeps tollgate's code and data in the CPU's caches;
between real SDK calls they are colder, which is why the end-to-end overhead is about twice
the sum (see the README's overhead section).
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_flags, write_json
from peers.common import MESSAGES, MODEL, sync_client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", action="store_true", help="run the calls under one daily budget")
    add_flags(parser)
    args = parser.parse_args()

    import tollgate
    from tollgate import gate
    from tollgate.call import Call
    from tollgate.pricing.estimate import estimate_request, lookup_price
    from tollgate.pricing.tokens import count_messages
    from tollgate.providers.base import begin, gated, outcome
    from tollgate.providers.openai import ChatSurface, usage_from

    tollgate.configure(ledger="memory://?maxlen=1000")
    if args.budget:
        tollgate.budget(usd=1e9, per="day", name="bench").__enter__()
    response = sync_client().chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    surface = ChatSurface("openai", ("api.openai.com", 443))
    settings = tollgate.config.settings()
    kwargs: dict[str, Any] = {"model": MODEL, "messages": MESSAGES}
    request = surface.request(dict(kwargs))
    price = lookup_price(settings, MODEL, "openai")
    expected = settings.expected_output_tokens
    found = surface.found(response)
    adapter = gated(lambda **_: response, surface, is_async=False)

    def preflight_only() -> None:
        gate.preflight(request).settled = True  # settled: closed without a record

    def closed() -> None:
        gate.preflight(request)._close(found, None)

    def finished() -> None:
        gate.preflight(request).finish(found)

    def by_hand() -> None:
        with begin(surface, dict(kwargs)) as call:
            call.edit(surface.apply, call, kwargs)
            with call.sending():
                pass
            call.hand_over()
            call.finish(outcome(call, surface, response))

    phases: list[tuple[str, Callable[[], object]]] = [
        ("read the request (surface.request)", lambda: surface.request(dict(kwargs))),
        ("price lookup", lambda: lookup_price(settings, MODEL, "openai")),
        ("count the prompt's tokens (cached)", lambda: count_messages(MESSAGES, MODEL, "openai")),
        ("estimate (tokens and USD)", lambda: estimate_request(request, price, expected)),
        ("Call(): id, tags, estimate, span start", lambda: Call(request)),
        ("pre-flight (Call + budgets + reserve)", preflight_only),
        ("read the response (surface.found)", lambda: surface.found(response)),
        ("  of which usage", lambda: usage_from(response.usage, response.service_tier)),
        ("pre-flight + close (price, record)", closed),
        ("pre-flight + finish (+ settle, ledger, span end)", finished),
        ("the door's steps by hand (edit, sending, outcome)", by_hand),
        ("adapter + gate (what overhead.py reports)", lambda: adapter(model=MODEL, messages=MESSAGES)),
    ]
    number = 500 if args.quick else 20_000
    rows = []
    print(
        f"memory store, {'one daily budget' if args.budget else 'observe-only'}; best of 7 x {number:,} calls"
    )
    for name, fn in phases:
        fn()
        best = min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6
        rows.append({"phase": name, "us": best})
        print(f"{best:7.2f} us  {name}")
    tollgate.reset()
    write_json(args, "phases-budget" if args.budget else "phases", {"budget": args.budget, "rows": rows})


if __name__ == "__main__":
    main()
