"""How often does the wall-time ``compare`` alarm on identical code? (issue 13, item 4)

Runs the same code back to back N times, both ways the wall-time gate sees it:

- ``bench``: ``pytest bench --benchmark-only --benchmark-json=...`` (OMP_NUM_THREADS=1);
- ``sweep``: ``python3 -m minibatch_core run --config bench/quick-sweep.toml --threads 1 --quiet``;

then compares every consecutive pair (run i as baseline, run i+1 as current), or with ``--pairs all``
every pair i < j, with ``compare``'s own verdict code, in the normalizations the gate and a new user
would use, and writes every speed ratio, its bootstrap interval and the load average around each run to
``OUT/ratios-PAIRS.csv`` and ``OUT/summary-PAIRS.md``.
The smallest ``--max-slowdown`` that would have raised no alarm is the largest ratio whose interval lies
above 1 (a verdict needs both).

    nice -n 10 python3 scripts/false_alarm_rate.py --runs 21 --out /tmp/false-alarm
    python3 scripts/false_alarm_rate.py --out /tmp/false-alarm --analyze-only

Run it from a snapshot of the code you want to measure (e.g. a copy of the checkout), not from a tree
you are editing. The load average is recorded because wall time on a shared machine is the point here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minibatch_core.analysis.compare import CompareOptions, compare, load_results  # noqa: E402

KINDS = ("bench", "sweep")
NORMALIZE = {"bench": ("none", "calibration"), "sweep": ("none", "calibration")}


def _load() -> float:
    return os.getloadavg()[0]


def _command(kind: str, target: Path) -> list[str]:
    if kind == "bench":
        return [sys.executable, "-m", "pytest", "bench", "--benchmark-only", "-q", "-p", "no:cacheprovider",
                f"--benchmark-json={target}"]
    return [sys.executable, "-m", "minibatch_core", "run", "--config", "bench/quick-sweep.toml",
            "--threads", "1", "--quiet", "--out", str(target)]


def collect(out: Path, runs: int, kinds: tuple[str, ...]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    log = out / "runs.log.csv"
    for i in range(runs):
        for kind in kinds:  # interleaved, so a long burst of load hits both kinds alike
            target = out / kind / (f"{i:03d}.json" if kind == "bench" else f"{i:03d}")
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            before, t0 = _load(), time.time()
            proc = subprocess.run(_command(kind, target), cwd=ROOT, env=env, capture_output=True, text=True)
            row = {"kind": kind, "index": i, "rc": proc.returncode, "seconds": round(time.time() - t0, 1),
                   "load1_before": before, "load1_after": _load(),
                   "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))}
            pd.DataFrame([row]).to_csv(log, mode="a", header=not log.exists(), index=False)
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{kind} run {i} failed with exit {proc.returncode}")
            print(f"{kind} {i}: {row['seconds']} s, load {before:.2f} -> {row['load1_after']:.2f}", flush=True)


def analyze(out: Path, pairs: str = "consecutive") -> pd.DataFrame:
    rows = []
    for kind in KINDS:
        folder = out / kind
        if not folder.is_dir():
            continue
        inputs = sorted(folder.iterdir())
        log = out / "runs.log.csv"
        if log.is_file():  # only finished runs: one may be under way
            done = pd.read_csv(log).query("kind == @kind and rc == 0")["index"]
            inputs = [p for p in inputs if int(p.name.split(".")[0]) in set(done)]
        loaded = [load_results(p) for p in inputs]
        for normalize in NORMALIZE[kind]:
            # a huge threshold: every verdict is recomputed below from the ratio and its interval
            options = CompareOptions(max_slowdown=1e9, normalize=normalize)
            n = len(loaded)
            todo = ([(i, i + 1) for i in range(n - 1)] if pairs == "consecutive" else
                    [(i, j) for i in range(n) for j in range(i + 1, n)])
            for i, j in todo:
                result = compare(loaded[i], loaded[j], options)
                for r in result.rows:
                    if r.speed is None or r.speed.verdict == "not judged":
                        continue
                    rows.append({
                        "kind": kind, "normalize": normalize, "pair": f"{i}->{j}",
                        "engine": r.key["engine"], "batch": r.batch_spec, "device": r.key["device"],
                        "ratio": r.speed.ratio, "low": r.speed.low, "high": r.speed.high,
                        "memory_ratio": r.memory.ratio if r.memory else float("nan"),
                        "memory_verdict": r.memory.verdict if r.memory else "",
                        "loss_verdict": r.loss.verdict if r.loss else "",
                    })
    frame = pd.DataFrame(rows)
    frame.to_csv(out / f"ratios-{pairs}.csv", index=False)
    return frame


def summarize(frame: pd.DataFrame, out: Path, thresholds: tuple[float, ...], pairs: str = "consecutive") -> str:
    log = out / "runs.log.csv"
    cores = os.cpu_count() or 1
    if log.is_file():
        runs = pd.read_csv(log)
        runs["load"] = runs[["load1_before", "load1_after"]].max(axis=1)
        load = {(r.kind, int(r.index)): r.load for r in runs.itertuples()}
        ends = frame["pair"].str.split("->", expand=True).astype(int)
        frame = frame.assign(load=[max(load.get((k, a), float("inf")), load.get((k, b), float("inf")))
                                   for k, a, b in zip(frame["kind"], ends[0], ends[1], strict=True)])
    else:
        frame = frame.assign(load=float("inf"))
    lines = ["| input | normalize | comparisons | rows | max ratio | max ratio with CI above 1 | "
             f"same, pairs with load <= {cores} | "
             + " | ".join(f"alarms at {t:g}" for t in thresholds) + " | memory/loss alarms |",
             "|" + " --- |" * (7 + len(thresholds) + 1)]
    for (kind, normalize), g in frame.groupby(["kind", "normalize"]):
        above = g[g["low"] > 1]
        needed = above["ratio"].max() if len(above) else float("nan")
        quiet = above[above["load"] <= cores]
        quiet_needed = (f"{quiet['ratio'].max():.3f} ({g.loc[g['load'] <= cores, 'pair'].nunique()} pairs)"
                        if len(quiet) else f"– ({g.loc[g['load'] <= cores, 'pair'].nunique()} pairs)")
        alarms = []
        for t in thresholds:
            hit = g[(g["ratio"] > t) & (g["low"] > 1)]
            alarms.append(f"{hit['pair'].nunique()} of {g['pair'].nunique()}")
        other = int(((g["memory_verdict"] == "regressed") | (g["loss_verdict"] == "regressed")).sum())
        lines.append(f"| {kind} | {normalize} | {g['pair'].nunique()} | {len(g)} | {g['ratio'].max():.3f} | "
                     f"{needed:.3f} | {quiet_needed} | " + " | ".join(alarms) + f" | {other} |")
    lines += ["", "Largest ratios (current/baseline median epoch time, bootstrap 95% interval):", "",
              "| input | normalize | pair | engine | batch | ratio | interval |", "|" + " --- |" * 7]
    for r in frame.sort_values("ratio", ascending=False).head(8).itertuples():
        lines.append(f"| {r.kind} | {r.normalize} | {r.pair} | {r.engine} | {r.batch} | {r.ratio:.3f} | "
                     f"[{r.low:.3f}, {r.high:.3f}] |")
    if log.is_file():
        peak = runs[["load1_before", "load1_after"]].max().max()
        lines += ["", f"Load average (1 min) around the runs: min {runs['load1_before'].min():.2f}, "
                      f"median {runs['load1_before'].median():.2f}, max {peak:.2f} "
                      f"on {os.cpu_count()} CPUs; {len(runs)} runs from {runs['started_utc'].min()} "
                      f"to {runs['started_utc'].max()}."]
    text = "\n".join(lines) + "\n"
    (out / f"summary-{pairs}.md").write_text(text, encoding="utf-8")
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=21, help="runs of each kind (comparisons = runs - 1)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--kinds", default="bench,sweep", help="bench, sweep or both (default both)")
    p.add_argument("--analyze-only", action="store_true", help="only compare the runs already in OUT")
    p.add_argument("--thresholds", default="1.1,1.25,1.5,2.0,3.0")
    p.add_argument("--pairs", choices=("consecutive", "all"), default="consecutive",
                   help="compare run i with i+1 (default), or every pair i < j")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.analyze_only:
        collect(args.out, args.runs, tuple(k for k in args.kinds.split(",") if k))
    frame = analyze(args.out, args.pairs)
    print(summarize(frame, args.out, tuple(float(t) for t in args.thresholds.split(",")), args.pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
