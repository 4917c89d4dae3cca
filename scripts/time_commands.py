"""How long the commands a new user types take, cold (docs/timings.md), as a Markdown table.

    python3 scripts/time_commands.py            # --help, a data-file error, train, the default run
    python3 scripts/time_commands.py --no-run   # without the default run (the slowest)
    python3 scripts/time_commands.py --repeats 5

Each command runs ``--repeats`` times from the repository root (so it times this checkout's code) in a fresh
interpreter, as a user starts it: every command that trains starts its own worker forkserver, which imports
torch. Reported: the median wall time, the median CPU seconds of the whole process tree (this script makes
itself the "child subreaper" of the tree (Linux prctl), so the forkserver is reaped here and its CPU
counted), and for ``run`` the training time its runs.csv records (every epoch of every run, warm-up epochs
included) and wall / training. The load average is printed before and after: on a busy machine the wall
time mostly measures the other load; the CPU seconds much less so.
"""

from __future__ import annotations

import argparse
import csv
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


def reap() -> None:
    """Reap what a command left behind (its forkserver exits a moment after it)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree reaped so far)"""
    cpu0 = children_cpu_s()
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    reap()
    return wall, children_cpu_s() - cpu0


def training_s(folder: Path) -> float:
    """The summed epoch times of a sweep's runs.csv: the time its runs spent training."""
    with open(folder / "runs.csv", newline="") as f:
        return sum(float(row["epoch_time_s"]) for row in csv.DictReader(f))


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
            ("minibatch-bench train --dataset broken.csv --target t (error)",
             lambda i: [*py, "train", "--dataset", str(broken), "--target", "t"]),
            ("minibatch-bench train", lambda i: [*py, "train"]),
        ]
        if not args.no_run:
            cases.append(("minibatch-bench run", lambda i: [*py, "run", "--quiet", "--out", f"{tmp}/run{i}"]))
        print(f"load average before: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
        print("| command | wall, median | CPU s (all processes), median | wall of each repeat | training s, median "
              "(wall / training) |")
        print("|---|---|---|---|---|")
        n = 0
        for label, make in cases:
            first = n
            runs = [timed(make(n + i)) for i in range(args.repeats)]
            n += args.repeats
            walls = [w for w, _ in runs]
            trained = ""
            if label.endswith(" run"):
                train = statistics.median(training_s(Path(tmp) / f"run{first + i}") for i in range(args.repeats))
                trained = f"{train:.2f} s ({statistics.median(walls) / train:.1f}x)"
            print(f"| `{label}` | {statistics.median(walls):.2f} s | {statistics.median(c for _, c in runs):.2f} s | "
                  f"{', '.join(f'{w:.2f}' for w in walls)} | {trained} |", flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
