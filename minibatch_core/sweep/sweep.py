"""Sweeps: a grid of configurations x seeds, measured one timed run at a time, recorded as it goes.

``SweepConfig`` (``sweep_config.py``) is what to run (every axis of ``records.axes``, validated at
construction); ``plan`` (``sweep_plan.py``) expands it into jobs, the product over the axes, and checks every
one of them before anything trains; ``execute`` measures the jobs in order and rewrites ``runs.csv`` /
``profile.csv`` atomically after each one, so an interrupted sweep leaves valid files holding exactly the
runs that completed. Nothing here formats or plots.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_csv, atomic_write_text
from minibatch_core.input.data import Table, data_key, table_for
from minibatch_core.records.columns import PROFILE_COLUMNS, RUN_COLUMNS, names
from minibatch_core.records.io import CALIBRATION_JSON, ENV_JSON, PROFILE_CSV, RUNS_CSV
from minibatch_core.records.rows import profile_rows, run_rows
from minibatch_core.running import trainer
from minibatch_core.running.envinfo import load_average
from minibatch_core.sweep.eta import Estimate, RemainingTime
from minibatch_core.sweep.executors import (
    Executor,
    LocalExecutor,
    ProgressCallback,
    Task,
    fresh_per_task,
    stopped_status,
    task_resources,
)
from minibatch_core.sweep.sweep_config import (
    SweepConfig,
    check_plan_size,
    load_toml,
    planned_size,
    read_toml,
    sweep_from_toml,
)
from minibatch_core.sweep.sweep_plan import Job, Plan, plan

# the config's and the plan's names too, where callers have always found them
__all__ = ["CALIBRATION_JSON", "ENV_JSON", "PROFILE_CSV", "RUNS_CSV", "Job", "Plan", "SweepConfig", "check_plan_size",
           "execute", "load_toml", "plan", "planned_size", "read_toml", "sweep_from_toml"]


# --- running ----------------------------------------------------------------------------------------------

def job_label(job: Job) -> str:
    c = job.config
    seeds = f"seed {job.seeds[0]}" if len(job.seeds) == 1 else f"seeds {job.seeds[0]}..{job.seeds[-1]}"
    workers = f" | workers {c.workers}" if c.workers > 1 else ""
    return f"{c.engine} | {c.dataset} | {c.device} | batch {c.batch_spec}{workers} | lr {c.lr:g} | {seeds}"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SweepOutcome:
    out_dir: Path
    runs_done: int
    runs_total: int
    wall_s: float
    completed: bool


def calibrate(devices: Iterable[str], *, isolate: bool = True, threads: int | None = 1) -> list[dict[str, Any]]:
    """The fixed calibration workload once per device, in a fresh worker like the runs themselves, at the
    runs' torch threads."""
    from minibatch_core.running.calibration import measure_calibration
    from minibatch_core.running.isolation import run_isolated

    return [(run_isolated(measure_calibration, d, 200, 7, threads) if isolate
             else measure_calibration(d, threads=threads)).to_dict()
            for d in devices]


def train_job(job: Job, isolate: bool, fresh_process: bool = False, table: Table | None = None) -> list:
    """One job's runs (an executor's task): in a fresh worker of this command (``isolate``), or here, in a
    process that is itself fresh (``fresh_process``: a Ray worker that serves this job alone). ``table``:
    the job's data, loaded by this command for its workers (``data.table_for``)."""
    return trainer.train_seeds(job.config, list(job.seeds), isolate=isolate, profile=job.profile,
                               fresh_process=fresh_process, table=table)


def job_tasks(the_plan: Plan, executor_name: str, isolate: bool) -> list[Task]:
    """Each job as an executor task, asking for what it uses (threads, GPUs, ddp's workers). A local
    sweep's data is loaded here once per dataset and handed to each run's fresh worker, which would
    otherwise read and scale it again for every run; a remote worker loads its own."""
    remote = fresh_per_task(executor_name)
    local = isolate and not remote
    tables: dict[tuple, Table | None] = {}
    if local:
        for job in the_plan.jobs:
            key = data_key(job.config)
            if key not in tables:
                tables[key] = table_for(job.config)
    return [Task(train_job, (job, local, remote, tables.get(data_key(job.config))), job_label(job),
                 **task_resources(job.config.device, job.config.threads, job.config.workers))
            for job in the_plan.jobs]


class RecordsFile:
    """runs.csv or profile.csv of a sweep in progress: the kept rows (a resumed sweep's), then each
    completed job's, rewritten atomically after every job. Each job's rows are formatted once for those
    rewrites (formatting every row again after every job grew as the square of the runs: 0.2 s of the
    default sweep); the final file is written from the frames, in the plan's order."""

    def __init__(self, path: Path, kept: pd.DataFrame | None) -> None:
        self.path, self.kept = path, kept
        self.added: dict[int, pd.DataFrame] = {}  # plan index -> rows, in completion order
        self._texts = {} if kept is None else {-1: _csv_text(kept)}

    def add(self, index: int, rows: pd.DataFrame) -> None:
        self.added[index] = rows
        self._texts[index] = _csv_text(rows)

    def write_progress(self) -> None:
        """Kept rows, then the jobs in completion order."""
        texts = list(self._texts.values())
        if not texts:
            return
        if len({header for header, _ in texts}) > 1:  # jobs with other columns: pandas aligns them
            self._write(list(self.added))
            return
        atomic_write_text(self.path, texts[0][0] + "".join(body for _, body in texts))

    def write_final(self) -> None:
        """Kept rows, then the jobs in the plan's order."""
        if self._texts:
            self._write(sorted(self.added))

    def _write(self, order: list[int]) -> None:
        kept = [] if self.kept is None else [self.kept]
        atomic_write_csv(self.path, pd.concat(kept + [self.added[i] for i in order], ignore_index=True))


def _csv_text(frame: pd.DataFrame) -> tuple[str, str]:
    """(header line, rows) as ``atomic_write_csv`` writes them"""
    header, _, body = frame.to_csv(index=False, lineterminator="\n").partition("\n")
    return header + "\n", body


def execute(the_plan: Plan, out_dir: str | Path, env: dict[str, Any], *,
            on_progress: ProgressCallback | None = None, isolate: bool = True,
            kept_runs: pd.DataFrame | None = None, kept_profiles: pd.DataFrame | None = None,
            calibration: list[dict[str, Any]] | None = None, executor: Executor | None = None,
            on_estimate: Callable[[Estimate | None], None] | None = None) -> SweepOutcome:
    """Measure every job into ``out_dir``, on ``executor`` (default: local, one at a time, in plan order).
    Writes env.json first, then calibration.json, then runs.csv/profile.csv after every job (atomically: a
    reader or an interruption never sees half a file), in completion order, the plan's order restored in
    the final files. An interruption or error propagates after env.json records how far the sweep got.

    Resuming: ``kept_runs`` / ``kept_profiles`` are recorded rows to keep (every rewrite holds them
    first), and ``calibration`` the recorded calibration, reused so old and new runs share one.

    A job that fails for a reason of its own (a ddp worker died, CUDA ran out of memory, an engine
    refused the configuration) is recorded in env.json's ``failed_runs`` and the sweep goes on; if every
    job fails, the sweep fails. ``on_estimate`` gets the remaining time after each job (``sweep.eta``)."""
    import json
    from contextlib import closing

    out = Path(out_dir)
    executor = executor or LocalExecutor()
    started = time.perf_counter()
    kept = int(kept_runs["run_id"].nunique()) if kept_runs is not None else 0
    env = {**env, "status": "running", "runs_total": the_plan.total_runs + kept, "runs_done": kept}
    env.setdefault("executor", {"kind": executor.name})
    hosts: dict[str, Any] = dict(env.get("hosts") or {})

    def write_env(**changes: Any) -> None:
        env.update(changes)
        atomic_write_text(out / ENV_JSON, json.dumps(env, indent=2, default=str) + "\n")

    write_env()
    report = on_progress or (lambda done, total, label: None)
    total = the_plan.total_runs + kept
    done = kept
    try:
        if calibration is None:
            report(done, total, "calibration workload")
            # at the runs' thread count; calibrate's default is the sweep's default (one thread), so the
            # keyword is passed only for another count (callers that stand in for calibrate take none)
            threads = the_plan.sweep.threads
            calibration = calibrate(the_plan.devices, isolate=isolate, **({} if threads == 1 else {"threads": threads}))
            atomic_write_text(out / CALIBRATION_JSON, json.dumps(calibration, indent=2) + "\n")
        step_by_device = {c["device"]: c["step_s"] for c in calibration}
        runs = RecordsFile(out / RUNS_CSV, None if kept_runs is None else kept_runs[names(RUN_COLUMNS)])
        profiles = RecordsFile(out / PROFILE_CSV,
                               None if kept_profiles is None else kept_profiles[names(PROFILE_COLUMNS)])
        failed: list[dict[str, str]] = list(env.get("failed_runs") or [])

        remaining_time = RemainingTime()
        tasks = job_tasks(the_plan, executor.name, isolate)
        if tasks:
            report(done, total, tasks[0].label if executor.name == "local" else f"{len(tasks)} jobs queued")
        since = time.perf_counter()
        settled: set[int] = set()  # plan indices that completed or failed
        # any job that fails for a reason of its own (a worker or node died, a ddp worker hung, CUDA ran out
        # of memory, an engine refused the configuration) is recorded and the sweep goes on
        with closing(executor.run(tasks, failures=(Exception,))) as outcomes:
            for outcome in outcomes:
                job = the_plan.jobs[outcome.index]
                if outcome.error is not None:
                    settled.add(outcome.index)
                    since = time.perf_counter()
                    error = (outcome.error.splitlines() or [""])[0] or "failed"
                    failed.append({"run": job_label(job), "error": error,
                                   **({"node": outcome.node} if outcome.node else {})})
                    write_env(failed_runs=failed)
                    print(f"minibatch-bench run: {job_label(job)}: {error} (the sweep goes on)",
                          file=sys.stderr)
                    continue
                results = outcome.value
                now = time.perf_counter()  # serial: this job's time; in parallel, time per completed job
                remaining_time.record(job, now - since)
                since = now
                settled.add(outcome.index)
                if on_estimate:
                    left = [j for i, j in enumerate(the_plan.jobs) if i not in settled]
                    on_estimate(remaining_time.estimate(left))
                if outcome.host and outcome.host not in hosts:
                    hosts[outcome.host] = outcome.hardware
                    write_env(hosts=hosts)
                load = load_average()  # contention during this run shows in the report and compare
                placed = {"host": outcome.host, "executor": executor.name}
                rows = pd.concat(
                    [run_rows(r, calibration_step_s=step_by_device.get(r.device), load_1m=load[0] if load else None)
                     .assign(**placed) for r in results], ignore_index=True)
                runs.add(outcome.index, rows)
                if outcome.node:  # which Ray node: two nodes of one machine share a host name
                    env.setdefault("run_nodes", {}).update({r: outcome.node for r in rows["run_id"]})
                if job.profile and results[0].profile:
                    profiles.add(outcome.index, profile_rows(results[0]))
                runs.write_progress()  # completion order
                profiles.write_progress()
                done += len(results)
                env["runs_done"] = done
                following = outcome.index + 1
                if executor.name == "local" and following < len(tasks):
                    report(done, total, tasks[following].label)
                else:
                    report(done, total, f"{job_label(job)} done")
        if failed and done == kept:
            raise MinibatchError(f"every run of the sweep failed; the first: {failed[0]['run']}: "
                                 f"{failed[0]['error']}")
        if runs.added:  # the plan's order, for readers of the final file
            runs.write_final()
            profiles.write_final()
        report(done, total, "done")
    except BaseException as err:
        write_env(status=stopped_status(err), runs_done=done, finished_utc=utc_now(),
                  sweep_wall_s=time.perf_counter() - started, load_average_end=load_average())
        raise
    wall = time.perf_counter() - started
    retried = getattr(executor, "retried", None)
    write_env(status="complete", runs_done=done, finished_utc=utc_now(), sweep_wall_s=wall,
              load_average_end=load_average(), **({"retried_runs": retried} if retried else {}))
    return SweepOutcome(out, done, total, wall, True)
