"""How often does ``minibatch-bench ab`` alarm on identical code, and how often does it catch a slowdown?
(issue 21: the successor of false_alarm_rate.py, which measured the stored-baseline ``compare``.)

Makes three copies of this checkout's package in a temporary folder: ``A``, ``same`` (identical to A) and
``slow`` (A with a busy-wait after every ``optimizer.step()`` of the reference engine's lesson loop, of
``--slowdown`` x one reference step at batch 32, calibrated here first). Then it runs
``minibatch-bench ab A same`` and ``ab A slow`` ``--reps`` times each, alternating, optionally with
``--busy N`` other processes spinning (``while True: pass``) for the whole measurement, and records each
ab's exit status and per-configuration ratio and interval, with the load average, to
``OUT/reps.csv``, ``OUT/configs.csv`` and ``OUT/summary.md``.

    python3 scripts/ab_alarm_rate.py --reps 20 --slowdown 0.10 --busy 1 --out /tmp/ab-alarm-busy
    python3 scripts/ab_alarm_rate.py --reps 5 --slowdown 0.05 --busy 0 --only slow --out /tmp/ab-alarm-quiet

Detection: an ``ab A slow`` that exits 1. False alarm: an ``ab A same`` that exits 1. The spinning
processes are this script's children and are killed when it ends, however it ends.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LOOP = "            optimizer.step()\n            batch_loss = loss.item()\n"
CALIBRATE = r'''
import statistics, torch
torch.set_num_threads(1)
from minibatch_core import RunConfig, train
r = train(RunConfig(engine="reference", batch_size=32, epochs=41), isolate=False)
# the fastest epoch, as ab's trials take it: under load a median step is inflated and the injected
# slowdown would be a smaller share of what the code costs on a quiet core than --slowdown says
print(min(e.time_s / e.steps for e in r.records[1:]))
'''


def copy_package(dest: Path) -> Path:
    shutil.copytree(ROOT / "minibatch_core", dest / "minibatch_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def add_busy_wait(checkout: Path, seconds: float) -> None:
    """A spin of ``seconds`` after each optimizer step of the reference engine's timed loop (only there:
    its profile and the other engines are untouched)."""
    path = checkout / "minibatch_core" / "engines" / "reference.py"
    text = path.read_text()
    if text.count(LOOP) != 1:
        raise SystemExit(f"ab_alarm_rate: the lesson loop's optimizer.step() was not found once in {path}")
    spin = ("            _clock = __import__('time').perf_counter  # ab_alarm_rate's injected slowdown\n"
            f"            _until = _clock() + {seconds!r}\n"
            "            while _clock() < _until:\n                pass\n")
    path.write_text(text.replace(LOOP, LOOP.replace("            batch_loss", spin + "            batch_loss", 1)))


def calibrate(checkout: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CALIBRATE], capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def run_ab(a: Path, b: Path, out: Path, order_seed: int, grid: list[str]) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "minibatch_core", "ab", str(a), str(b), "--out", str(out),
                           "--order-seed", str(order_seed), *grid], capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1):
        raise SystemExit(f"ab failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.returncode, time.perf_counter() - start


def summarize(reps: pd.DataFrame, configs: pd.DataFrame, header: list[str]) -> str:
    lines = ["# ab alarm rates", "", *[f"- {h}" for h in header], "",
             "| pair of versions | abs | exit 1 (alarm) | median ab wall time | load (1 min) range |",
             "| --- | --- | --- | --- | --- |"]
    for kind, g in reps.groupby("kind", sort=False):
        lines.append(f"| A vs {kind} | {len(g)} | {int((g.rc == 1).sum())} of {len(g)} | {g.wall_s.median():.0f} s | "
                     f"{g.load_before.min():.1f}-{g.load_after.max():.1f} |")
    lines += ["", "Per configuration: the ratio B/A (median of the pairs) and its interval, over the abs:", "",
              "| pair | configuration | median ratio | ratio range | regressed | lowest interval low |",
              "| --- | --- | --- | --- | --- | --- |"]
    for (kind, config), g in configs.groupby(["kind", "configuration"], sort=False):
        lines.append(f"| A vs {kind} | {config} | {g.ratio.median():.3f} | {g.ratio.min():.3f}-{g.ratio.max():.3f} | "
                     f"{int((g.verdict == 'regressed').sum())} of {len(g)} | {g.low.min():.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=20, help="abs of each pair (default 20)")
    p.add_argument("--slowdown", type=float, default=0.10, help="busy-wait per reference step, as a fraction "
                   "of one reference step at batch 32 (default 0.10)")
    p.add_argument("--busy", type=int, default=1, help="spinning processes kept running throughout (default 1)")
    p.add_argument("--only", choices=("both", "slow", "same"), default="both")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("grid", nargs="*", help="extra ab options after --, e.g. -- --pairs 10 (default: ab's defaults)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    spinners: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with tempfile.TemporaryDirectory(prefix="ab-alarm-") as tmp:
            work = Path(tmp)
            a = copy_package(work / "A")
            step_s = calibrate(a)
            kinds = {"same": copy_package(work / "same"), "slow": copy_package(work / "slow")}
            add_busy_wait(kinds["slow"], args.slowdown * step_s)
            if args.only != "both":
                kinds = {args.only: kinds[args.only]}
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
            time.sleep(2 if spinners else 0)
            reps, configs = [], []
            for rep in range(args.reps):
                for kind, b in kinds.items():
                    folder = args.out / f"{kind}-{rep:02d}"
                    before = os.getloadavg()[0]
                    rc, wall = run_ab(a, b, folder, rep, args.grid)
                    reps.append({"kind": kind, "rep": rep, "rc": rc, "wall_s": wall, "load_before": before,
                                 "load_after": os.getloadavg()[0]})
                    configs += [{"kind": kind, "rep": rep, **row} for row in
                                pd.read_csv(folder / "ab.csv").to_dict("records")]
                    print(f"{kind} rep {rep}: exit {rc}, {wall:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
                    pd.DataFrame(reps).to_csv(args.out / "reps.csv", index=False)
                    pd.DataFrame(configs).rename(columns={"config": "configuration"}).to_csv(
                        args.out / "configs.csv", index=False)
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    header = [f"machine: {os.cpu_count()} cores; {args.busy} spinning process(es) throughout",
              f"injected: a busy-wait of {args.slowdown:.0%} of one reference step at batch 32 "
              f"({args.slowdown * step_s * 1e6:.1f} us of {step_s * 1e6:.1f} us), after each reference-engine step",
              f"ab options: {' '.join(args.grid) or '(defaults)'}; order seed = rep"]
    text = summarize(pd.DataFrame(reps), pd.DataFrame(configs).rename(columns={"config": "configuration"}), header)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
