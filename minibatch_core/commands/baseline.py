"""``minibatch-bench baseline update``: re-measure the committed baseline deliberately.

It runs the documented quick sweep through the ordinary ``run`` command (no second sweep
implementation), keeps only the small files CI compares against, and swaps them in for the old
baseline folder in one step: the old one stays intact until the new one is complete and readable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from minibatch_core.commands import SUMMARIES
from minibatch_core.errors import MinibatchError

DEFAULT_CONFIG = Path("bench") / "quick-sweep.toml"
DEFAULT_DIR = Path("results") / "baseline"
REQUIRED = ("runs.csv", "env.json", "calibration.json")
OPTIONAL = ("summary.md",)
CONFIG_NAME = "quick-sweep.toml"
# The gate measures with one torch thread (scripts/regression-gate.sh sets the same): this model's ops
# are too small to gain from a second thread, and on a shared 2-core machine every parallel region
# waits for a descheduled thread, which made epochs up to 100x slower in our measurements.
GATE_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "baseline",
        help=SUMMARIES["baseline"],
        description="Manage the committed baseline under results/baseline/.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    u = actions.add_parser(
        "update",
        help="run the quick sweep and replace the baseline with its results",
        description="Run the quick sweep (`minibatch-bench run --config CONFIG --out TMP --quiet`) and "
        "replace the baseline folder with its runs.csv, env.json, calibration.json, summary.md and the "
        "config. "
        "The new folder is built beside the old one and swapped in only when complete.",
    )
    u.add_argument("--config", default=str(DEFAULT_CONFIG), metavar="TOML",
                   help=f"sweep settings (default {DEFAULT_CONFIG})")
    u.add_argument("--dir", default=str(DEFAULT_DIR), metavar="DIR",
                   help=f"baseline folder (default {DEFAULT_DIR})")
    u.add_argument("--from-results", metavar="DIR",
                   help="adopt this finished sweep folder instead of running the sweep (its config is "
                        "copied from --config, so give the one it was made with)")
    p.set_defaults(handler=run)


def _run_sweep(config: Path, out: Path) -> None:
    """The ordinary `run` command (the one sweep implementation), in a fresh interpreter so that the
    thread settings take effect before torch starts."""
    cmd = [sys.executable, "-m", "minibatch_core", "run", "--config", str(config), "--out", str(out),
           "--quiet"]
    done = subprocess.run(cmd, env={**os.environ, **GATE_ENV}, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise MinibatchError(
            f"the quick sweep failed (exit {done.returncode}); the baseline was left as it was")


def _stage(source: Path, config: Path, stage: Path) -> None:
    stage.mkdir()
    for name in REQUIRED:
        if not (source / name).is_file():
            raise MinibatchError(f"{source} has no {name}; the baseline was left as it was")
        shutil.copy2(source / name, stage / name)
    for name in OPTIONAL:
        if (source / name).is_file():
            shutil.copy2(source / name, stage / name)
    shutil.copy2(config, stage / CONFIG_NAME)


def _swap(stage: Path, target: Path, work: Path) -> None:
    """Two renames on one filesystem: at every instant either the old or the new folder is complete."""
    old = work / "old"
    if target.exists():
        os.rename(target, old)
    try:
        os.rename(stage, target)
    except BaseException:
        if old.exists():
            os.rename(old, target)
        raise


def update(config: Path, target: Path, from_results: Path | None = None) -> Path:
    if not config.is_file():
        raise MinibatchError(
            f"sweep config {str(config)!r} does not exist (run from the project root, or pass --config)")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-update-", dir=target.parent))
    try:
        source = from_results
        if source is None:
            source = work / "sweep"
            _run_sweep(config, source)
        stage = work / "new"
        _stage(source, config, stage)
        from minibatch_core.analysis.result_sets import load_results  # pandas: not for --help

        checked = load_results(stage)  # never commit a baseline that compare cannot read
        if not checked.frame["epoch_time_s"].notna().any():
            raise MinibatchError(f"{source}: no timed epochs; the baseline was left as it was")
        _swap(stage, target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def run(args: argparse.Namespace) -> int:
    from minibatch_core.analysis.result_sets import load_results

    target = update(Path(args.config), Path(args.dir), Path(args.from_results) if args.from_results else None)
    rs = load_results(target)
    n_configs = rs.frame.groupby(["engine", "dataset", "device", "batch_size"]).ngroups
    print(f"baseline updated: {target} ({len(rs.frame)} epoch rows, {n_configs} configurations; "
          f"{rs.env.describe()})")
    return 0
