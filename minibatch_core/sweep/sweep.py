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


def train_job(job: Job, isolate: bool, fresh_process: bool = False) -> list:
    """One job's runs (an executor's task): in a fresh worker of this command (``isolate``), or here, in a
    process that is itself fresh (``fresh_process``: a Ray worker that serves this job alone)."""
    return trainer.train_seeds(job.config, list(job.seeds), isolate=isolate, profile=job.profile,
                               fresh_process=fresh_process)


def job_tasks(the_plan: Plan, executor_name: str, isolate: bool) -> list[Task]:
    """Each job as an executor task, asking for what it uses (threads, GPUs, ddp's workers)."""
    remote = fresh_per_task(executor_name)
    return [Task(train_job, (job, isolate and not remote, remote), job_label(job),
                 **task_resources(job.config.device, job.config.threads, job.config.workers))
            for job in the_plan.jobs]


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
        first_runs = [] if kept_runs is None else [kept_runs[names(RUN_COLUMNS)]]
        first_profiles = [] if kept_profiles is None else [kept_profiles[names(PROFILE_COLUMNS)]]
        runs: dict[int, pd.DataFrame] = {}  # plan index -> rows, in completion order
        profiles: dict[int, pd.DataFrame] = {}
        failed: list[dict[str, str]] = list(env.get("failed_runs") or [])

        def write_records(order: Iterable[int]) -> None:
            order = list(order)
            atomic_write_csv(out / RUNS_CSV, pd.concat(first_runs + [runs[i] for i in order if i in runs],
                                                       ignore_index=True))
            chosen = first_profiles + [profiles[i] for i in order if i in profiles]
            if chosen:
                atomic_write_csv(out / PROFILE_CSV, pd.concat(chosen, ignore_index=True))

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
                runs[outcome.index] = pd.concat(
                    [run_rows(r, calibration_step_s=step_by_device.get(r.device), load_1m=load[0] if load else None)
                     .assign(**placed) for r in results], ignore_index=True)
                if outcome.node:  # which Ray node: two nodes of one machine share a host name
                    env.setdefault("run_nodes", {}).update({r: outcome.node for r in runs[outcome.index]["run_id"]})
                if job.profile and results[0].profile:
                    profiles[outcome.index] = profile_rows(results[0])
                write_records(runs)  # completion order
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
        if runs:
            write_records(range(len(the_plan.jobs)))  # the plan's order, for readers of the final file
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
