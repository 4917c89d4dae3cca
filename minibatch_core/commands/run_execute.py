"""``run``'s execution: the sweep run with a progress bar (or quietly), then its tables, plots and report;
an interruption says what it left and how to finish it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from minibatch_core.commands.run_folder import LATEST, point_latest


def execute_and_report(args: argparse.Namespace, the_plan, folder: Path, env: dict, default_place: bool,
                       *, executor, **resumed) -> int:
    """Run ``the_plan`` into ``folder``, build its report, say where it is; 130 when interrupted."""
    from minibatch_core.sweep.sweep import execute

    env = {**env, "executor": _describe(executor)}
    progress = None if args.quiet else _progress()
    try:
        if progress is None:
            outcome = execute(the_plan, folder, env, isolate=not args.no_isolate, executor=executor, **resumed)
        else:
            with progress:
                task = progress.add_task("starting", total=the_plan.total_runs, eta="after the first run")

                def show(done: int, total: int, label: str) -> None:
                    progress.update(task, completed=done, total=total, description=label)

                def estimate(left) -> None:  # sweep.eta.Estimate, from the runs timed so far
                    progress.update(task, eta=left.describe() if left else "after the first run")

                outcome = execute(the_plan, folder, env, on_progress=show, isolate=not args.no_isolate,
                                  on_estimate=estimate, executor=executor, **resumed)
                progress.update(task, description="done; building tables, plots and report")
    except KeyboardInterrupt:
        print(f"minibatch-bench run: {_interrupted(folder, _runs_total(folder, the_plan))}", file=sys.stderr)
        return 130
    finally:  # a local Ray instance stops here, before the report forks its plot workers
        executor.close()
    # after the progress display has stopped: its refresh thread must be gone before the report forks
    # its plot workers (a fork while another thread holds a lock can hang the child)
    _build(folder)
    latest = point_latest(folder) if default_place else False
    where = f"{folder}" + (f" (also {folder.parent / LATEST})" if latest else "")
    if args.quiet:
        print(folder)
    else:
        print(f"{outcome.runs_done} runs in {outcome.wall_s:.1f} s -> {where}: runs.csv, summary.md, "
              "report.html")
    return 0


def _runs_total(folder: Path, the_plan) -> int:
    import json

    try:  # execute recorded the total, kept runs of a resumed sweep included
        return int(json.loads((folder / "env.json").read_text())["runs_total"])
    except (OSError, ValueError, KeyError, TypeError):
        return the_plan.total_runs


def _interrupted(folder: Path, total: int) -> str:
    """What an interruption left, as it is: runs.csv exists only once a run completed."""
    if not (folder / "runs.csv").exists():
        return (f"interrupted before any run completed: nothing was recorded ({folder} holds only env.json); "
                f"`minibatch-bench run --resume {folder}` starts it again")
    return (f"interrupted after {_runs_done(folder)} of {total} runs; the completed runs are kept in "
            f"{folder / 'runs.csv'}: `minibatch-bench run --resume {folder}` runs the rest, "
            f"`minibatch-bench report {folder}` reports what is there")


def _build(folder: Path) -> None:
    from minibatch_core.presentation.report import build  # matplotlib and seaborn: only when plotting

    build(folder)


def _describe(executor) -> dict:
    return executor.describe() if hasattr(executor, "describe") else {"kind": executor.name}


def _runs_done(folder: Path) -> int:
    import pandas as pd

    try:
        return int(pd.read_csv(folder / "runs.csv", usecols=["run_id"])["run_id"].nunique())
    except (OSError, ValueError):
        return 0


def _progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    # a log (stderr not a terminal) gets the bar's last state only, at rich's 80 columns unless COLUMNS says
    # otherwise: too narrow for the elapsed time and the closing description, which it cut ("0:0…")
    wide = sys.stderr.isatty() or "COLUMNS" in os.environ
    console = Console(stderr=True) if wide else Console(stderr=True, width=120)
    # the remaining time comes from the sweep's own estimate (per configuration, from its first run:
    # sweep/eta.py), not from rich's average speed, which mixes batch 1 with batch full
    return Progress(TextColumn("[bold]runs"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                    TextColumn("ETA {task.fields[eta]}"), TextColumn("{task.description}"),
                    console=console, transient=False)
