"""How close tollgate's pre-flight token estimate is to what the provider then reported.

Run: python benchmarks/estimate_error.py [--quick] [--json PATH]

Replays nothing: for every real OpenAI / Azure OpenAI chat recording in ../shared/cassettes that
reports usage, it estimates the recorded request body with ``tollgate.estimate`` and compares
the input tokens with the recording's ``prompt_tokens``. ``--quick`` takes the first 5 recordings.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import add_flags, write_json

import tollgate
from tests.providers.shared_cassettes import exchanges, openai_chat_cassettes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flags(parser)
    args = parser.parse_args()
    cassettes = openai_chat_cassettes()
    if not cassettes:
        sys.exit("../shared/cassettes is absent: nothing to measure")
    if args.quick:
        cassettes = cassettes[:5]
    rows = []
    for cassette in cassettes:
        for ex in exchanges(cassette):
            if not ex.input_tokens:
                continue
            body = ex.body
            model = body.get("model") or "gpt-4o"
            est = tollgate.estimate(model, body["messages"], max_tokens=1, tools=body.get("tools") or ())
            actual = int(ex.input_tokens)
            kind = "tools" if body.get("tools") or body.get("functions") else "text"
            rows.append((cassette.name[-58:], ex.index, model, kind, est.input_tokens, actual))
    print(f"{'cassette':<58} {'#':>2} {'model':<22} {'kind':<5} {'est':>6} {'actual':>6} {'error':>7}")
    errors: dict[str, list[float]] = {"text": [], "tools": []}
    for name, index, model, kind, est, actual in rows:
        err = (est - actual) / actual
        errors[kind].append(err)
        print(f"{name:<58} {index:>2} {model[:22]:<22} {kind:<5} {est:>6} {actual:>6} {err:>+7.1%}")
    summary = {}
    for kind, errs in errors.items():
        if errs:
            print(
                f"{kind:>5}: {len(errs)} calls, mean |error| {statistics.mean(abs(e) for e in errs):.1%}, "
                f"median {statistics.median(errs):+.1%}, range {min(errs):+.1%} .. {max(errs):+.1%}"
            )
            summary[kind] = {
                "calls": len(errs),
                "mean_abs_error": statistics.mean(abs(e) for e in errs),
                "median_error": statistics.median(errs),
                "min_error": min(errs),
                "max_error": max(errs),
            }
    write_json(
        args,
        "estimate_error",
        {
            "cassettes": len(cassettes),
            "rows": [
                {
                    "cassette": name,
                    "index": index,
                    "model": model,
                    "kind": kind,
                    "estimate": est,
                    "actual": actual,
                }
                for name, index, model, kind, est, actual in rows
            ],
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
