"""How tollgate's per-call cost grows with nested budgets, tags, standing limits, ledger size and
the message count of a truncate decision.

Run: python benchmarks/scale.py [--quick] [--json PATH] [--only DIMENSION ...]

What is timed is tollgate's whole adapter for ``client.chat.completions.create`` (request
translation, pre-flight: estimate, price, reserve on every budget and limit, actions; the
call; settle: usage, cost, ledger record, span) around a create that returns a ready
``ChatCompletion`` at once: ``tollgate.providers.base.gated`` + ``ChatSurface``, the very
wrapper ``tollgate.instrument(openai.OpenAI())`` installs, without the SDK's HTTP work. Store:
``memory://``; OpenTelemetry: API only (no SDK).

One dimension grows at a time; the others stay at the baseline: one ambient daily budget, no
tags, no standing limits, the default in-memory ledger, 2 messages. Each size is timed as the
best of several batches (the machine is shared; the best batch is the least disturbed one).
The growth verdict comes from the data: the slope of log(time) against log(size), and the
exponent of the *added* time (time minus the smallest size's time) against the added size:
~0 flat, ~1 linear, above 1.3 "superlinear!" (see ``verdict``).
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import COMPLETION, MESSAGES, add_flags, loglog_slope, write_json

import tollgate
from tollgate.providers.base import gated
from tollgate.providers.openai import ChatSurface
from tollgate.request import CallRecord

MODEL = "gpt-4o-mini"
SUPERLINEAR = 1.3


def ready_create() -> Callable[..., Any]:
    """``chat.completions.create`` as instrumented, around a create that returns a ready response."""
    from openai.types.chat import ChatCompletion

    response = ChatCompletion.model_validate(COMPLETION)
    create: Callable[..., Any] = gated(
        lambda **kwargs: response, ChatSurface("openai", ("api.openai.com", 443)), is_async=False
    )
    return create


class Timer:
    """Best-of-batches time per call; a batch lasts about ``target`` seconds."""

    def __init__(self, quick: bool) -> None:
        self.target = 0.02 if quick else 0.15
        self.repeats = 2 if quick else 5

    def per_call(self, fn: Callable[[], object], before_batch: Callable[[], object] | None = None) -> float:
        fn()
        fn()  # warm up: tokenizer, price lookup, standing-limit cache
        start = time.perf_counter()
        fn()
        one = max(time.perf_counter() - start, 1e-7)
        calls = max(1, min(100_000, int(self.target / one)))
        best = float("inf")
        for _ in range(self.repeats):
            if before_batch is not None:
                before_batch()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best = min(best, (time.perf_counter() - start) / calls)
        return best


@contextlib.contextmanager
def baseline(ledger: str = "memory://", budgets: int = 1) -> Iterator[None]:
    """A fresh tollgate (memory store) with ``budgets`` nested ambient daily budgets."""
    tollgate.reset()
    tollgate.configure(store="memory://", ledger=ledger, on_unpriced="ignore")
    with contextlib.ExitStack() as stack:
        for i in range(budgets):
            stack.enter_context(tollgate.budget(usd=1e9, per="day", name=f"scale-{i}"))
        yield
    tollgate.reset()


def verdict(sizes: list[int], times: list[float]) -> dict[str, Any]:
    """How time grows with size, from the data.

    ``tail_slope``: log-log slope of the time over the last step (the two largest sizes), which
    a fixed cost can only lower: above 1.3 the growth is superlinear there. ``added_time_exponent``:
    log-log slope of the time added over the smallest size against the size added, over the sizes
    whose added time is clearly above noise (half the smallest size's time): ~1 linear, ~2 quadratic.
    Growth counts only when it shows at the largest size (a spike at one middle size is noise).
    """
    slope = loglog_slope(sizes, times)
    n0, t0 = sizes[0], times[0]
    tail = None
    if len(sizes) >= 2 and sizes[-2] > 0:
        tail = loglog_slope(sizes[-2:], times[-2:])
    excess = [(n - n0, t - t0) for n, t in zip(sizes[1:], times[1:], strict=True) if t - t0 > 0.5 * t0]
    exponent = loglog_slope([n for n, _ in excess], [t for _, t in excess]) if len(excess) >= 2 else None
    per_item = (times[-1] - t0) / (sizes[-1] - n0) if sizes[-1] != n0 else 0.0  # times are in µs
    if (tail is not None and tail > SUPERLINEAR) or (
        exponent is not None and exponent > SUPERLINEAR and len(excess) >= 3
    ):
        label = "superlinear!"
    elif not excess or excess[-1][0] != sizes[-1] - n0:
        label = "flat"  # no growth above noise, or only at a size below the largest: a spike, not a trend
    elif max(tail or 0.0, exponent or 0.0) >= 0.7:
        label = "linear"
    else:
        label = "sublinear"
    return {
        "verdict": label,
        "loglog_slope": slope,
        "tail_slope": tail,
        "added_time_exponent": exponent,
        "us_per_item": per_item,
        "ratio_largest_to_smallest": times[-1] / t0,
    }


def record_template(i: int) -> CallRecord:
    return CallRecord(
        id=f"prefill-{i}",
        started_at=1.7e9 + i,
        ended_at=1.7e9 + i + 0.5,
        provider="openai",
        operation="chat",
        request_model=MODEL,
        response_model="gpt-4o-mini-2024-07-18",
        usage=tollgate.Usage(input_tokens=25, output_tokens=2),
        usd=5e-6,
        tags={"tenant": "acme", "feature": "search"},
    )


# -- the dimensions ---------------------------------------------------------------------------


def nested_budgets(timer: Timer, quick: bool, create: Callable[..., Any]) -> list[dict[str, Any]]:
    rows = []
    for n in (1, 2, 4, 8) if quick else (1, 2, 4, 8, 16, 32):
        with baseline(budgets=n):
            t = timer.per_call(lambda: create(model=MODEL, messages=MESSAGES))
        rows.append({"size": n, "us_per_call": t * 1e6})
    return rows


def tags(timer: Timer, quick: bool, create: Callable[..., Any]) -> list[dict[str, Any]]:
    rows = []
    for n in (0, 1, 4, 16, 64) if quick else (0, 1, 2, 4, 8, 16, 32, 64):
        with baseline(), tollgate.track(**{f"tag{i}": f"value-{i}" for i in range(n)}):
            t = timer.per_call(lambda: create(model=MODEL, messages=MESSAGES))
        rows.append({"size": n, "us_per_call": t * 1e6})
    return rows


def standing_not_matching(timer: Timer, quick: bool, create: Callable[..., Any]) -> list[dict[str, Any]]:
    """Standing limits in the store, none of which matches the call (tenant=acme)."""
    rows = []
    for n in (0, 1, 10, 100) if quick else (0, 1, 10, 100, 1_000):
        with baseline(), tollgate.track(tenant="acme"):
            for i in range(n):
                tollgate.set_limit(usd=1e9, per="day", tenant=f"other-{i}")
            t = timer.per_call(lambda: create(model=MODEL, messages=MESSAGES))
        rows.append({"size": n, "us_per_call": t * 1e6})
    return rows


def standing_matching(timer: Timer, quick: bool, create: Callable[..., Any]) -> list[dict[str, Any]]:
    """Standing limits that all apply: the call has 10 tags, limit i matches a distinct subset."""
    rows = []
    call_tags = {f"a{b}": "v" for b in range(10)}
    for n in (0, 1, 10, 100) if quick else (0, 1, 10, 100, 1_000):
        with baseline(), tollgate.track(**call_tags):
            for i in range(n):
                subset = i + 1  # a non-empty subset of the 10 tags, as a bit mask
                match: dict[str, Any] = {f"a{b}": "v" for b in range(10) if subset >> b & 1}
                tollgate.set_limit(usd=1e9, per="day", **match)
            t = timer.per_call(lambda: create(model=MODEL, messages=MESSAGES))
            record = tollgate.config.settings().ledger.records()[-1]
            assert record.status == "ok", record
        rows.append({"size": n, "us_per_call": t * 1e6})
    return rows


def memory_ledger(timer: Timer, quick: bool, create: Callable[..., Any]) -> list[dict[str, Any]]:
    """An in-memory ring as it fills up to its bound (at the bound, each write drops one)."""
    maxlen = 10_000 if quick else 100_000
    rows = []
    template = record_template(0)
    for level in (100, 1_000, 10_000) if quick else (1_000, 10_000, 50_000, 100_000):
        with baseline(ledger=f"memory://?maxlen={maxlen}"):
            ledger = tollgate.config.settings().ledger

            def refill(ledger: Any = ledger, level: int = level) -> None:
                ledger.clear()
                for _ in range(level):
                    ledger.write(template)

            t = timer.per_call(lambda: create(model=MODEL, messages=MESSAGES), before_batch=refill)
            full = len(cast(Any, ledger)) == maxlen
        rows.append(
            {"size": level, "us_per_call": t * 1e6, "note": f"maxlen {maxlen}" + (", full" if full else "")}
        )
    return rows


def sqlite_ledger(timer: Timer, quick: bool, create: Callable[..., Any]) -> list[dict[str, Any]]:
    """An SQLite ledger file already holding N rows. What a call pays: its record is queued for
    the background writer (the batch's flush runs outside the timed part), so this measures
    that the file's size does not reach the caller, not the writer's insert cost."""
    from tollgate.ledger.sqlite import SQLiteLedger

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.db"
        with SQLiteLedger(path) as seed:
            seed.write(record_template(0))  # a real row, written by the ledger: the template of the prefill
        with sqlite3.connect(path) as conn:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(calls)")]
            template = list(conn.execute("SELECT * FROM calls").fetchone())
            conn.execute("DELETE FROM calls")
        where = {name: columns.index(name) for name in ("id", "started_at", "ended_at")}
        insert = f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"

        def row(i: int) -> list[Any]:
            values = list(template)
            values[where["id"]] = f"prefill-{i}"
            values[where["started_at"]], values[where["ended_at"]] = 1.7e9 + i, 1.7e9 + i + 0.5
            return values

        held = 0
        for target in (0, 1_000, 10_000) if quick else (0, 100_000, 1_000_000):
            if target > held:
                with sqlite3.connect(path) as conn:
                    for start in range(held, target, 50_000):
                        conn.executemany(insert, (row(i) for i in range(start, min(start + 50_000, target))))
                        conn.commit()
            with baseline(ledger=f"sqlite:///{path}"):
                ledger = tollgate.config.settings().ledger

                def one(ledger: Any = ledger) -> None:
                    create(model=MODEL, messages=MESSAGES)

                t = timer.per_call(one, before_batch=ledger.flush)
                ledger.flush()
            with sqlite3.connect(path) as conn:
                held = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            rows.append({"size": target, "us_per_call": t * 1e6, "note": f"{held:,} rows after"})
    return rows


def token_cache_misses() -> int:
    """Misses so far of tollgate's token-count cache (an internal: 0 if it is not there)."""
    try:
        from tollgate.pricing.tokens import _count_cached

        return int(_count_cached.cache_info().misses)
    except (ImportError, AttributeError):
        return 0


def conversation(n: int) -> list[dict[str, str]]:
    """A system message, then alternating user / assistant turns, ending with a user turn: n in all."""
    messages = [{"role": "system", "content": "You are a terse assistant."}]
    for i in range(1, n):
        role = "user" if (n - 1 - i) % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"Turn {i}: tell me about the weather in city number {i}."})
    return messages


def truncate(
    timer: Timer, quick: bool, create: Callable[..., Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A per-call token budget that fits about half the prompt, so truncate must drop about half the
    messages; and, for comparison, the same messages under a budget with room (no decision)."""
    tight: list[dict[str, Any]] = []
    roomy: list[dict[str, Any]] = []
    for n in (10, 100, 1_000) if quick else (10, 100, 1_000, 10_000):
        messages = conversation(n)
        est = tollgate.estimate(MODEL, messages, max_tokens=16)
        limit = est.output_tokens + est.input_tokens // 2
        for rows, tokens in ((tight, limit), (roomy, 10**12)):
            with baseline():

                def one(tokens: int = tokens, messages: list[dict[str, str]] = messages) -> None:
                    with tollgate.budget(tokens=tokens, on_exceed="truncate"):
                        create(model=MODEL, messages=messages, max_tokens=16)

                t = timer.per_call(one)
                misses = token_cache_misses()
                one()
                misses = token_cache_misses() - misses
                record = tollgate.config.settings().ledger.records()[-1]
                dropped = sum(
                    d.get("dropped_messages", 0) for d in record.decisions if d.get("action") == "truncate"
                )
                if tokens == limit and not dropped:
                    raise AssertionError(f"truncate did not drop messages at n={n}: {record}")
            rows.append(
                {
                    "size": n,
                    "us_per_call": t * 1e6,
                    "note": f"dropped {dropped}; {misses:,} token-count cache misses per call",
                    "dropped": dropped,
                    "token_cache_misses_per_call": misses,
                }
            )
    return tight, roomy


DIMENSIONS: dict[str, str] = {
    "nested_budgets": "nested `with budget(per='day')` blocks",
    "tags": "ambient tags (track)",
    "standing_limits_not_matching": "standing limits in the store, none matching",
    "standing_limits_matching": "standing limits in the store, all matching (10 tags)",
    "memory_ledger": "records in the in-memory ledger",
    "sqlite_ledger": "rows already in the SQLite ledger",
    "truncate_messages": "messages, truncate drops ~half",
    "messages_no_truncate": "messages, budget with room (no truncate)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flags(parser)
    parser.add_argument("--only", nargs="*", choices=DIMENSIONS, help="run only these dimensions")
    args = parser.parse_args()
    timer = Timer(args.quick)
    create = ready_create()
    wanted = set(args.only or DIMENSIONS)
    results: dict[str, list[dict[str, Any]]] = {}
    runners: list[tuple[str, Callable[..., Any]]] = [
        ("nested_budgets", nested_budgets),
        ("tags", tags),
        ("standing_limits_not_matching", standing_not_matching),
        ("standing_limits_matching", standing_matching),
        ("memory_ledger", memory_ledger),
        ("sqlite_ledger", sqlite_ledger),
    ]
    print(
        "tollgate per-call cost as one dimension grows (adapter + gate around a ready response, "
        f"memory store; best of {timer.repeats} batches){' [quick]' if args.quick else ''}\n"
    )
    print(f"{'dimension':<30} {'size':>8} {'µs / call':>11} {'x smallest':>10}  note")
    dims: list[dict[str, Any]] = []

    def show(name: str, rows: list[dict[str, Any]]) -> None:
        base = rows[0]["us_per_call"]
        for row in rows:
            print(
                f"{name:<30} {row['size']:>8,} {row['us_per_call']:>11.1f} "
                f"{row['us_per_call'] / base:>10.2f}  {row.get('note', '')}"
            )
        v = verdict([r["size"] for r in rows], [r["us_per_call"] for r in rows])
        exponent, tail = v["added_time_exponent"], v["tail_slope"]
        print(
            f"{'':<30} -> {v['verdict']}: log-log slope {v['loglog_slope']:.2f} (last step "
            f"{'-' if tail is None else f'{tail:.2f}'}), "
            f"added-time exponent {'-' if exponent is None else f'{exponent:.2f}'}, "
            f"{v['us_per_item']:+.3f} µs per item\n",
            flush=True,
        )
        dims.append({"dimension": name, "description": DIMENSIONS[name], "rows": rows, **v})

    for name, run in runners:
        if name in wanted:
            results[name] = run(timer, args.quick, create)
            show(name, results[name])
    if wanted & {"truncate_messages", "messages_no_truncate"}:
        tight, roomy = truncate(timer, args.quick, create)
        for name, rows in (("truncate_messages", tight), ("messages_no_truncate", roomy)):
            if name in wanted:
                show(name, rows)
    superlinear = [d["dimension"] for d in dims if d["verdict"] == "superlinear!"]
    print(f"superlinear dimensions: {', '.join(superlinear) or 'none'}")
    write_json(
        args,
        "scale",
        {
            "path": "tollgate.providers.base.gated + ChatSurface around a ready ChatCompletion",
            "store": "memory://",
            "dimensions": dims,
            "superlinear": superlinear,
        },
    )


if __name__ == "__main__":
    main()
