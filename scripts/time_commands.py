"""How long the commands a new user types take (docs/timings.md), as a Markdown table.

    python3 scripts/time_commands.py            # --help, train, a data-file error, the default run
    python3 scripts/time_commands.py --no-run   # without the default run (the slowest)
    python3 scripts/time_commands.py --repeats 5

Each command runs ``--repeats`` times from the repository root (so it times this checkout's code). Two
figures per command: the median wall-clock time, and the median CPU seconds of the whole process tree,
the worker forkserver and every worker included. This script makes itself the "child subreaper" of the
tree (Linux prctl), so the forkserver, which outlives the command by a moment, is reaped here and its CPU
counted. On a busy machine the wall time mostly measures the other load; the CPU seconds much less so.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree)"""
    cpu0 = children_cpu_s()
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    while True:  # reap what the command left behind (the forkserver exits once its parent has)
        try:
            os.wait()
        except ChildProcessError:
            break
    return wall, children_cpu_s() - cpu0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-run", action="store_true", help="skip the default `run` (the slowest)")
    args = parser.parse_args()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.environ.setdefault("MPLBACKEND", "Agg")
    py = [sys.executable, "-m", "minibatch_core"]
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / "broken.csv"
        broken.write_text("a,b,t\n1,2,0\n3,x,1\n")
        cases = [
            ("minibatch-bench --help", lambda i: [*py, "--help"]),
            ("minibatch-bench train", lambda i: [*py, "train"]),
            ("minibatch-bench train --dataset broken.csv --target t (error)",
             lambda i: [*py, "train", "--dataset", str(broken), "--target", "t"]),
        ]
        if not args.no_run:
            cases.append(("minibatch-bench run", lambda i: [*py, "run", "--quiet", "--out", f"{tmp}/run{i}"]))
        print(f"load average before: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
        print("| command | wall, median | CPU s (all processes), median | wall of each repeat |")
        print("|---|---|---|---|")
        for label, make in cases:
            samples = [timed(make(i)) for i in range(args.repeats)]
            walls = [w for w, _ in samples]
            cpus = [c for _, c in samples]
            print(f"| `{label}` | {statistics.median(walls):.2f} s | {statistics.median(cpus):.2f} s | "
                  f"{', '.join(f'{w:.2f}' for w in walls)} |", flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
