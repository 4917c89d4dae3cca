"""Studies: for each batch size, a grid of learning rates x seeds trained to a validation target.

``StudyConfig`` (``study_config.py``) is what to run; ``plan`` (``study_plan.py``) loads and splits every
dataset and checks every value before anything trains; ``execute`` trains each job to the target and
rewrites study.csv, runs.csv and checks.csv atomically after each one, so an interruption leaves valid files
holding exactly the jobs that completed. ``run_study`` (``commands/study.py``, also
``minibatch_core.run_study``) is the whole thing from Python, analysis and report included. Nothing here
formats or plots.

Each pass trains as every run of the suite does (``running.to_target.train_pass``): in a fresh worker
process on the local executor (a ray task's worker already serves it alone), at the study's torch threads,
the engine prewarmed on a few rows first.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from minibatch_core.engines import get_engine
from minibatch_core.fsio import atomic_write_csv, atomic_write_text
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import Dataset
from minibatch_core.input.devices import resolve_device, torch_threads
from minibatch_core.input.split import Split
from minibatch_core.records.study_axes import policy_factor, resolve_study_batches
from minibatch_core.records.study_rows import CHECKS_CSV, RUNS_CSV, STUDY_CSV, check_rows, epoch_rows, study_rows
from minibatch_core.running import trainer
from minibatch_core.running.envinfo import load_average
from minibatch_core.running.measure import device_name
from minibatch_core.running.to_target import Target, ToTargetRun, train_pass
from minibatch_core.sweep.executors import (
    Executor,
    LocalExecutor,
    ProgressCallback,
    Task,
    fresh_per_task,
    stopped_status,
    task_resources,
)
from minibatch_core.sweep.study_config import StudyConfig
from minibatch_core.sweep.study_plan import StudyJob, StudyPlan, plan, search_jobs, units
from minibatch_core.sweep.study_search import LrSearch, median_steps, step_budget

STUDY_JSON = "study.json"
__all__ = ["StudyConfig", "StudyJob", "StudyPlan", "execute", "measure_noise", "plan", "run_job"]


def start_session(engine_name: str, config: RunConfig, data: Dataset, device: torch.device, seeds: list[int]):
    """The engine's session as a study pass runs it: eager (``trainer.start_session``)."""
    return trainer.start_session(get_engine(engine_name), config, data, device, seeds, eager=True)


def run_job(study: StudyConfig, job: StudyJob, split: Split, target: Target, isolate: bool = True) -> ToTargetRun:
    """One pass to the target, in a fresh worker (``isolate``) or in this process."""
    lrs = [lr for lr, _, _ in job.pairs]
    seeds = [seed for _, _, seed in job.pairs]
    config = study.run_config(job.dataset, job.engine, job.device, job.batch_spec, lrs[0], seeds[0])
    by_steps = job.step_budget is not None and job.budget_rule != "max epochs"
    return train_pass(config, lrs, seeds, job.warmup_steps, split.train, split.val, target, isolate=isolate,
                      batch_size=job.batch_size, max_epochs=10 ** 9 if by_steps else study.max_epochs,
                      time_budget_s=study.time_budget_s, full_budget=study.full_budget,
                      eval_every=study.eval_every, max_steps=job.step_budget if by_steps else None)


def job_label(job: StudyJob) -> str:
    return f"{job.engine} | {job.dataset} | {job.device} | batch {job.batch_spec} | {len(job.pairs)} run(s)"


def job_in_context(study: StudyConfig, job: StudyJob, split: Split, target: Target, isolate: bool = True
                   ) -> tuple[ToTargetRun, str, int]:
    """An executor's task: one job, plus what its rows record of the process that trained it."""
    result = run_job(study, job, split, target, isolate)
    return result, device_name(resolve_device(job.device)), study.threads or torch.get_num_threads()


def execute(the_plan: StudyPlan, out_dir: str | Path, env: dict[str, Any], *,
            on_progress: ProgressCallback | None = None, executor: Executor | None = None,
            isolate: bool = True) -> float:
    """Train every job into ``out_dir`` on ``executor`` (default: local, in plan order); returns the wall
    seconds. study.json first, then study.csv, runs.csv and checks.csv rewritten atomically after every
    job. Per batch size: the grid, then (with ``lr_search``) the rates the search adds, round by round;
    the passes of one round go to the executor together (a cluster trains them at once), and the search
    waits for them; each pass's step budget per ``study_search.step_budget``. study.json records the
    search (``lr_search``) and the budgets. ``isolate``: each pass in a fresh worker (``run_job``)."""
    from contextlib import closing

    executor = executor or LocalExecutor()
    out = Path(out_dir)
    study = the_plan.study
    started = time.perf_counter()
    meta = {**env, "study": study.to_dict(), "devices_expanded": list(the_plan.devices),
            "splits": {d: s.describe() for d, s in the_plan.splits.items()},
            "targets": {d: {"metric": t.metric, "value": t.value, "text": t.describe()}
                        for d, t in the_plan.targets.items()},
            "status": "running", "runs_total": the_plan.total_runs, "runs_done": 0, "lr_search": [],
            "isolate": isolate}
    isolate_here = isolate and not fresh_per_task(executor.name)

    def write_meta(**changes: Any) -> None:
        meta.update(changes)
        atomic_write_text(out / STUDY_JSON, json.dumps(meta, indent=2, default=str) + "\n")

    write_meta()
    report = on_progress or (lambda done, total, label: None)
    studies, epochs, checks = {}, {}, {}  # plan index -> rows, in completion order
    done = 0
    hosts: dict[str, Any] = {}
    failed: list[dict[str, str]] = []
    order: list[int] = []  # rows' keys in the order their jobs were planned (grid, then search rounds)
    total = the_plan.total_runs
    floors: dict[tuple[str, str, str], int] = {}  # steps the smallest batch size needed at its best rate

    def write() -> None:
        for name, rows in ((STUDY_CSV, studies), (RUNS_CSV, epochs), (CHECKS_CSV, checks)):
            chosen = [rows[i] for i in order if i in rows]
            if chosen:
                atomic_write_csv(out / name, pd.concat(chosen, ignore_index=True))

    def train(jobs: list[StudyJob]) -> list[tuple[float, bool, float | None]]:
        """One round of passes on the executor; what each replica reached, for the search."""
        nonlocal done
        first_key = len(order)
        order.extend(range(first_key, first_key + len(jobs)))
        tasks = [Task(job_in_context, (study, job, the_plan.splits[job.dataset], the_plan.targets[job.dataset],
                                       isolate_here), job_label(job), **task_resources(job.device, study.threads))
                 for job in jobs]
        report(done, total, tasks[0].label if len(tasks) == 1 or executor.name == "local"
               else f"{len(tasks)} passes queued")
        reached: list[tuple[float, bool, float | None]] = []
        with closing(executor.run(tasks)) as outcomes:
            for outcome in outcomes:
                job, key = jobs[outcome.index], first_key + outcome.index
                if outcome.error is not None:  # lost with its worker or node twice (ray): recorded, goes on
                    failed.append({"run": job_label(job), "error": outcome.error})
                    write_meta(failed_runs=failed)
                    continue
                result, name, threads = outcome.value
                split, target = the_plan.splits[job.dataset], the_plan.targets[job.dataset]
                context = {"study": study, "job": job, "split": split, "target": target,
                           "device": str(resolve_device(job.device)), "device_name": name, "torch_threads": threads,
                           "n_samples": the_plan.n_samples[job.dataset]}
                placed = {"host": outcome.host, "executor": executor.name}
                studies[key] = study_rows(result, **context).assign(**placed)
                epochs[key] = epoch_rows(result, **context).assign(**placed)
                checks[key] = check_rows(result, **context)
                write()
                if outcome.host not in hosts:
                    hosts[outcome.host] = outcome.hardware
                    write_meta(hosts=hosts)
                done += len(job.pairs)
                meta["runs_done"] = done
                report(done, total, f"{job_label(job)} done")
                pairs = zip(job.pairs, result.replicas, strict=True)
                reached += [(base, r.reached, r.steps_to_target) for (_, base, _), r in pairs]
        return reached

    try:
        for unit in units(the_plan.jobs):
            first = unit[0]
            key = (first.dataset, first.engine, first.device)
            spe = -(-the_plan.splits[first.dataset].train.n_samples // first.batch_size)
            budget, rule = step_budget(study.max_steps, study.max_epochs, spe, floors.get(key))
            unit = [replace(job, step_budget=budget, budget_rule=rule) for job in unit]
            results = train(unit)
            factor = policy_factor(study.lr_policy, first.batch_size)
            search = LrSearch(factor=factor)
            while study.lr_search:
                step = search.next_round(median_steps(results))
                if step is None:
                    break
                jobs = search_jobs(study, unit[0], step[0], factor, len(search.rounds))
                total += sum(len(j.pairs) for j in jobs)
                meta["runs_total"] = total
                results += train(jobs)
            if not study.lr_search:
                search.outcome = "search off"
            medians = median_steps(results)
            meta["lr_search"].append({"dataset": first.dataset, "engine": first.engine, "device": first.device,
                                      "batch_spec": first.batch_spec, "batch_size": first.batch_size,
                                      "step_budget": budget, "budget_rule": rule, **search.to_dict()})
            if key not in floors:
                finite = {lr: m for lr, m in medians.items() if math.isfinite(m)}
                if finite:
                    best = min(finite, key=lambda lr: (finite[lr], lr))
                    floors[key] = int(max(s for lr, ok, s in results if lr == best and ok and s is not None))
            write_meta()
        report(done, total, "done")
    except BaseException as err:
        write_meta(status=stopped_status(err), runs_done=done, study_wall_s=time.perf_counter() - started)
        raise
    wall = time.perf_counter() - started
    write_meta(status="complete", runs_done=done, runs_total=done, study_wall_s=wall, load_average_end=load_average())
    return wall


NOISE_MEASUREMENTS_BEFORE_TARGET = 30


def measure_noise(the_plan: StudyPlan, dataset: str, batch_size: int, lr: float, median_steps: float,
                  seed: int | None = None, course: bool = True):
    """B_simple for one dataset along the study's model's run at (batch_size, lr), ``seed`` (default: the
    first seed): B_small and B_big are the grid's smallest and largest batch sizes; about
    NOISE_MEASUREMENTS_BEFORE_TARGET measurements before the target, and the course continues to twice
    the steps the grid needed. Runs on CPU (the noise scale is a property of the data and the model)."""
    from minibatch_core.running.noise import measure_noise_scale

    study = the_plan.study
    split = the_plan.splits[dataset]
    sizes = [size for _, size in resolve_study_batches(study.batch_sizes, split.train.n_samples)]
    b_small, b_big = min(sizes), max(sizes)
    if b_small == b_big:
        b_small, b_big = 1, split.train.n_samples
    steps = max(1, int(median_steps))
    every = max(1, steps // NOISE_MEASUREMENTS_BEFORE_TARGET)
    spe = -(-split.train.n_samples // batch_size)
    with torch_threads(study.threads):  # the study's thread count, as its runs (a helper workload is no exception)
        return measure_noise_scale(split.train, split.val, the_plan.targets[dataset], hidden=study.hidden,
                                   model=study.model, loss=study.loss, optimizer=study.optimizer,
                                   train_batch=batch_size, lr=lr, seed=study.seeds[0] if seed is None else seed,
                                   b_small=b_small, b_big=b_big, every=every,
                                   # the course on to twice the steps is for the plot: further seeds stop sooner
                                   max_steps=min((2 * steps if course else steps + steps // 2) + every,
                                                 max(study.max_epochs * spe, study.max_steps or 0)))
