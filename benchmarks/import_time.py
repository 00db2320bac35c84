"""How long `import tollgate` takes in a fresh interpreter, and what it drags in.

Run: python benchmarks/import_time.py [runs] [--quick] [--json PATH]

Cold import = a fresh interpreter each time (bytecode already compiled: one discarded run
first). Two measures over N fresh processes, median and best:

- the wall time of ``python -c "import tollgate"`` minus that of ``python -c pass`` (the
  interpreter's own start-up), the figure the goal (< 150 ms) is about;
- the time of the import statement itself, measured inside the process;
- the CPU time (user + sys) of the one minus the other, which a busy machine inflates less.

Also checks that no LLM SDK, OpenTelemetry SDK, Redis client, LangChain or LiteLLM module was
imported (exit status 1 if one was), lists the third-party packages that were, and prints the
largest cumulative imports from ``-X importtime``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, add_flags, write_json

GOAL_MS = 150.0
#: Must not be imported by ``import tollgate``: each adapter imports its SDK when needed.
FORBIDDEN = (
    "openai",
    "anthropic",
    "google.genai",
    "opentelemetry.sdk",
    "redis",
    "langchain_core",
    "langchain",
    "litellm",
    "httpx",
)

PROBE = """
import sys, time
before = set(sys.modules)
t = time.perf_counter()
import tollgate
dt = time.perf_counter() - t
new = [m for m in list(sys.modules) if m not in before]
forbidden = sorted({n for n in FORBIDDEN for m in new if m == n or m.startswith(n + ".")})
files = {m: getattr(sys.modules[m], "__file__", None) or "" for m in new}
third = sorted({m.split(".")[0] for m in new if "-packages" in files[m] and not m.startswith("tollgate")})
print(dt)
print(",".join(forbidden))
print(",".join(third))
print(len(new))
""".replace("FORBIDDEN", repr(FORBIDDEN))


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def importtime(env: dict[str, str]) -> list[tuple[int, int, str]]:
    """(cumulative us, self us, name) of every module ``import tollgate`` imported."""
    tree = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import tollgate"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    ).stderr.splitlines()
    rows = []
    for line in tree[1:]:
        parts = line.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:"):
            rows.append((int(parts[1]), int(parts[0].split(":")[1]), parts[2].rstrip()))
    return rows


def stats_ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples) * 1e3, "best_ms": min(samples) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="?", type=int, help="fresh interpreters per measure (default 21; quick 3)"
    )
    add_flags(parser)
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 21)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    wall(["-c", "import tollgate"], env)  # compile bytecode, warm the page cache: not counted

    pass_times, import_walls, in_process, cpu_diffs = [], [], [], []
    forbidden, third, modules = "", "", 0
    for _ in range(runs):
        # Interleaved, so drift in the machine's load hits both alike.
        cpu = cpu_children()
        pass_times.append(wall(["-c", "pass"], env))
        cpu_pass, cpu = cpu_children() - cpu, cpu_children()
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, env=env, cwd=ROOT
        ).stdout
        import_walls.append(time.perf_counter() - start)
        cpu_diffs.append(cpu_children() - cpu - cpu_pass)
        lines = out.splitlines()
        in_process.append(float(lines[0]))
        forbidden, third, modules = lines[1], lines[2], int(lines[3])
    diffs = [i - p for i, p in zip(import_walls, pass_times, strict=True)]
    net = stats_ms(diffs)
    # The median of the differences of paired runs, and the best: best import minus best start-up.
    net["best_ms"] = (min(import_walls) - min(pass_times)) * 1e3
    results: dict[str, Any] = {
        "runs": runs,
        "python_c_pass": stats_ms(pass_times),
        "python_c_import_tollgate": stats_ms(import_walls),
        "import_minus_startup": net,
        "import_statement_in_process": stats_ms(in_process),
        "cpu_time_difference": stats_ms(cpu_diffs),
        "goal_ms": GOAL_MS,
    }
    print(f"cold `import tollgate`, {runs} fresh interpreters each{' [quick]' if args.quick else ''}\n")
    print(f"{'measure':<44} {'median ms':>10} {'best ms':>9}")
    for label, key in (
        ("python -c pass (start-up)", "python_c_pass"),
        ('python -c "import tollgate"', "python_c_import_tollgate"),
        ("difference: import tollgate", "import_minus_startup"),
        ("import statement, timed inside the process", "import_statement_in_process"),
        ("CPU time (user+sys) difference", "cpu_time_difference"),
    ):
        print(f"{label:<44} {results[key]['median_ms']:>10.1f} {results[key]['best_ms']:>9.1f}")
    verdict = "PASS" if net["median_ms"] < GOAL_MS else "FAIL"
    print(f"\ngoal: import under {GOAL_MS:g} ms: {verdict} (median {net['median_ms']:.1f} ms)")
    if net["median_ms"] > 1.5 * results["cpu_time_difference"]["median_ms"] + 5:
        print("  (wall time well above CPU time: the machine is busy, the wall figures are inflated)")
    print(f"modules `import tollgate` added: {modules}")
    print(f"forbidden modules imported: {forbidden or 'none'}")
    print(f"third-party packages imported: {third or 'none'}")

    rows = importtime(env)
    own_by_package: dict[str, int] = {}
    for _cumulative, own, name in rows:
        package = name.strip().split(".")[0]
        own_by_package[package] = own_by_package.get(package, 0) + own
    # A third-party package's cost: the self time of all its modules.
    heavy = sorted(((own_by_package.get(p, 0), p) for p in third.split(",") if p), reverse=True)
    print("\nthird-party packages imported, by their modules' total self time (us):")
    for cumulative, name in heavy:
        print(f"  {cumulative:>8}  {name}")
    print("largest cumulative imports (us, -X importtime, one run):")
    top = sorted(rows, reverse=True)[:12]
    for cumulative, own, name in top:
        print(f"  {cumulative:>8}  (self {own:>6})  {name}")
    print("largest self times (us):")
    for _cumulative, own, name in sorted(rows, key=lambda r: r[1], reverse=True)[:8]:
        print(f"  {own:>8}  {name.strip()}")

    results.update(
        {
            "passed": net["median_ms"] < GOAL_MS,
            "modules_loaded": modules,
            "forbidden_imported": [m for m in forbidden.split(",") if m],
            "third_party_imported": [{"package": n, "self_us_total": c} for c, n in heavy],
            "importtime_top": [{"module": n.strip(), "cumulative_us": c, "self_us": s} for c, s, n in top],
        }
    )
    write_json(args, "import_time", results)
    if forbidden:
        sys.exit(f"importing tollgate imported {forbidden}")


if __name__ == "__main__":
    main()
