"""Per-call overhead counted in CPU instructions (valgrind callgrind), for when wall-clock is noisy.

Run: python benchmarks/instructions.py [calls] [create|stream ...] [--budget] [--quick] [--json PATH]

Wall-clock differences of a few tens of microseconds drown in the noise of a shared machine;
instruction counts do not. Each variant (raw SDK, instrumented; sync create, stream) runs
twice under callgrind, with 0 and with N measured calls after the same warm-up, so start-up
cancels out: (count(N) - count(0)) / N is the per-call cost. The microsecond figure converts
the difference at the raw call's own instructions-per-microsecond, measured here without
valgrind.

Caveat, measured: counts are not exactly repeatable for the SDK path (garbage-collection
timing and address-dependent hashing move them): the raw call alone read 6.5M to 7.1M
instructions across identical runs here, which swamps a difference of a few tens of
microseconds. Compare several runs; for tollgate's own cost prefer overhead.py's
"adapter + gate (no SDK)" line.

``--quick`` only checks the plumbing: the probe runs once per variant (create) without valgrind, and
valgrind counts one tiny script (a callgrind run of the SDK takes about half a minute here).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_flags, write_json

PROBE = """
import gc, json, sys, time
import httpx, openai
import tollgate

MESSAGES = [
    {{"role": "system", "content": "You are a terse assistant."}},
    {{"role": "user", "content": "Name the capital of France in one word."}},
]
HEAD = {{"id": "chatcmpl-bench", "created": 1763900000, "model": "gpt-4o-mini-2024-07-18"}}
USAGE = {{"prompt_tokens": 25, "completion_tokens": 2, "total_tokens": 27}}
ANSWER = {{"index": 0, "message": {{"role": "assistant", "content": "Paris."}}, "finish_reason": "stop"}}
COMPLETION = json.dumps({{**HEAD, "object": "chat.completion", "usage": USAGE, "choices": [ANSWER]}}).encode()
CHUNK = {{**HEAD, "object": "chat.completion.chunk"}}
CHUNKS = b"".join(
    b"data: " + json.dumps({{**CHUNK, "choices": c, "usage": u}}).encode() + b"\\n\\n"
    for c, u in [
        ([{{"index": 0, "delta": {{"role": "assistant", "content": ""}}, "finish_reason": None}}], None),
        ([{{"index": 0, "delta": {{"content": "Paris."}}, "finish_reason": "stop"}}], None),
        ([], USAGE),
    ]
) + b"data: [DONE]\\n\\n"

def handler(request):
    if b'"stream":true' in request.content or b'"stream": true' in request.content:
        return httpx.Response(200, content=CHUNKS, headers={{"content-type": "text/event-stream"}})
    return httpx.Response(200, content=COMPLETION, headers={{"content-type": "application/json"}})

def sync_client():
    return openai.OpenAI(api_key="sk-bench", http_client=httpx.Client(transport=httpx.MockTransport(handler)))

tollgate.configure(ledger="memory://?maxlen=1000")
variant, stream, n = sys.argv[1], sys.argv[2] == "stream", int(sys.argv[3])
if {budget!r}:
    tollgate.budget(usd=1e9, per="day", name="bench").__enter__()  # every call reserves and settles
client = sync_client()
create = (client if variant == "raw" else tollgate.instrument(client)).chat.completions.create
def call():
    result = create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
    if stream:
        for _ in result:
            pass
for _ in range(50):
    call()
gc.collect()
gc.freeze()  # no collection inside the measured calls: its timing moved the counts between runs
gc.disable()
t = time.perf_counter()
for _ in range(n):
    call()
print((time.perf_counter() - t) / max(n, 1))
"""


def instructions(probe: Path, *args: str) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # same dict layouts in every run
    with tempfile.NamedTemporaryFile(suffix=".out") as out:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out.name}",
                sys.executable,
                str(probe),
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    match = re.search(r"Collected : (\d+)", result.stderr)
    assert match, result.stderr[-2000:]
    return int(match[1])


def seconds_per_call(probe: Path, variant: str, mode: str, calls: int) -> float:
    out = subprocess.run(
        [sys.executable, str(probe), variant, mode, str(calls)], capture_output=True, text=True, check=True
    ).stdout
    return float(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", nargs="?", type=int, default=100, help="measured calls per run")
    parser.add_argument("modes", nargs="*", help="create and/or stream (default: both)")
    parser.add_argument("--budget", action="store_true", help="run the calls under one daily budget")
    add_flags(parser)
    args = parser.parse_args()
    if set(args.modes) - {"create", "stream"}:
        parser.error(f"modes are create and stream, not {args.modes}")
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    budget, calls = args.budget, args.calls
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.py"
        probe.write_text(PROBE.format(budget=budget))
        print(
            f"memory store, {'one daily budget' if budget else 'no budget'}{' [quick]' if args.quick else ''}"
        )
        if args.quick:
            tiny = Path(tmp) / "tiny.py"
            tiny.write_text("print(sum(range(1000)))\n")
            count = instructions(tiny)
            print(f"{'valgrind':<14} python start-up + a tiny script: {count / 1e6:,.1f}M instructions")
            rows.append({"mode": "valgrind check", "instructions": count})
            for mode in args.modes or ("create",):
                raw, gated = (seconds_per_call(probe, v, mode, 20) for v in ("raw", "tollgate"))
                print(f"{mode:<14} probe, no valgrind: raw {raw * 1e6:.1f} us, tollgate {gated * 1e6:.1f} us")
                rows.append({"mode": mode, "raw_us": raw * 1e6, "tollgate_us": gated * 1e6})
        for mode in [] if args.quick else args.modes or ("create", "stream"):
            per_call = {}
            for variant in ("raw", "tollgate"):
                base = instructions(probe, variant, mode, "0")
                per_call[variant] = (instructions(probe, variant, mode, str(calls)) - base) / calls
            seconds = seconds_per_call(probe, "raw", mode, 2000)
            rate = per_call["raw"] / (seconds * 1e6)  # instructions per microsecond of a raw call
            extra = per_call["tollgate"] - per_call["raw"]
            raw_k, gated_k = per_call["raw"] / 1e3, per_call["tollgate"] / 1e3
            print(
                f"{mode:<7} raw {raw_k:8.1f}k instr/call   tollgate {gated_k:8.1f}k"
                f"   overhead {extra / 1e3:+7.1f}k instr ({extra / per_call['raw']:+.1%}) "
                f"~ {extra / rate:+.1f} us at {rate:,.0f} instr/us"
            )
            rows.append(
                {
                    "mode": mode,
                    "raw_instructions_per_call": per_call["raw"],
                    "tollgate_instructions_per_call": per_call["tollgate"],
                    "overhead_instructions": extra,
                    "overhead_fraction": extra / per_call["raw"],
                    "instructions_per_us": rate,
                    "overhead_us": extra / rate,
                }
            )
    write_json(args, "instructions", {"calls": calls, "budget": budget, "rows": rows})


if __name__ == "__main__":
    main()
