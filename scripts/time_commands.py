"""How long the commands a new user types take (README, docs/timings.md), as a Markdown table.

    python3 scripts/time_commands.py            # --help, train, a data-file error, the default run
    python3 scripts/time_commands.py --no-run   # without the default run (the slowest)
    python3 scripts/time_commands.py --repeats 5

Each command runs ``--repeats`` times from the repository root (so it times this checkout's code), in two
settings:

- **cold**: ``MINIBATCH_BENCH_SERVER=off``, every command starts its own worker forkserver, which imports
  torch; this is also what the first command after 10 idle minutes costs. Two figures: the median wall
  time and the median CPU seconds of the whole process tree (this script makes itself the "child
  subreaper" of the tree (Linux prctl), so the forkserver is reaped here and its CPU counted).
- **warm**: with the warm worker server running (started, and then stopped again, by this script), the
  median wall time. Its CPU seconds are the server's children's and are not counted here.

On a busy machine the wall time mostly measures the other load; the cold CPU seconds much less so.
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
SWITCH = "MINIBATCH_BENCH_SERVER"


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def reap() -> None:
    """Reap what commands left behind (a forkserver exits a moment after its command) without waiting for
    a warm server, which lives on."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree reaped so far)"""
    cpu0 = children_cpu_s()
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    reap()
    return wall, children_cpu_s() - cpu0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-run", action="store_true", help="skip the default `run` (the slowest)")
    args = parser.parse_args()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.environ.setdefault("MPLBACKEND", "Agg")
    py = [sys.executable, "-m", "minibatch_core"]
    cold_env = {**os.environ, SWITCH: "off"}
    warm_env = {**os.environ, SWITCH: "on"}
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
        print("| command | cold: wall, median | cold: CPU s (all processes), median | warm: wall, median | "
              "wall of each repeat (cold; warm) |")
        print("|---|---|---|---|---|")
        subprocess.run([*py, "server", "stop"], cwd=ROOT, env=warm_env, stdout=subprocess.DEVNULL)
        subprocess.run([*py, "train", "--epochs", "2"], cwd=ROOT, env=warm_env, stdout=subprocess.DEVNULL)
        reap()  # the server now runs: the warm repeats below find it
        n = 0
        for label, make in cases:
            cold = [timed(make(n + i), cold_env) for i in range(args.repeats)]
            n += args.repeats
            warm = [timed(make(n + i), warm_env)[0] for i in range(args.repeats)]
            n += args.repeats
            walls = [w for w, _ in cold]
            print(f"| `{label}` | {statistics.median(walls):.2f} s | "
                  f"{statistics.median(c for _, c in cold):.2f} s | {statistics.median(warm):.2f} s | "
                  f"{', '.join(f'{w:.2f}' for w in walls)}; {', '.join(f'{w:.2f}' for w in warm)} |", flush=True)
        subprocess.run([*py, "server", "stop"], cwd=ROOT, env=warm_env, stdout=subprocess.DEVNULL)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
