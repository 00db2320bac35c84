"""Per-call overhead counted in CPU instructions (valgrind callgrind), for when wall-clock is noisy.

Run: python benchmarks/instructions.py [calls] [create|stream ...] [--budget]

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
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import sys, time
sys.path.insert(0, {bench!r})
from overhead import MESSAGES, sync_client
import tollgate
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


def main() -> None:
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    budget = "--budget" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--budget"]
    calls = int(args[0]) if args else 100
    bench = str(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.py"
        probe.write_text(PROBE.format(bench=bench, budget=budget))
        print(f"memory store, {'one daily budget' if budget else 'no budget'}")
        for mode in args[1:] or ("create", "stream"):
            per_call = {}
            for variant in ("raw", "tollgate"):
                base = instructions(probe, variant, mode, "0")
                per_call[variant] = (instructions(probe, variant, mode, str(calls)) - base) / calls
            seconds = float(
                subprocess.run(
                    [sys.executable, str(probe), "raw", mode, "2000"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            rate = per_call["raw"] / (seconds * 1e6)  # instructions per microsecond of a raw call
            extra = per_call["tollgate"] - per_call["raw"]
            raw_k, gated_k = per_call["raw"] / 1e3, per_call["tollgate"] / 1e3
            print(
                f"{mode:<7} raw {raw_k:8.1f}k instr/call   tollgate {gated_k:8.1f}k"
                f"   overhead {extra / 1e3:+7.1f}k instr ({extra / per_call['raw']:+.1%}) "
                f"~ {extra / rate:+.1f} us at {rate:,.0f} instr/us"
            )


if __name__ == "__main__":
    main()
