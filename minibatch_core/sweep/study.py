"""Studies: for each batch size, a grid of learning rates x seeds trained to a validation target.

``StudyConfig`` (``study_config.py``) is what to run; ``plan`` loads and splits every dataset and
checks every value before anything trains; ``execute`` trains each job to the target and rewrites
study.csv, runs.csv and checks.csv atomically after each one, so an interruption leaves valid files
holding exactly the jobs that completed. ``run_study`` (``commands/study.py``, also
``minibatch_core.run_study``) is the whole thing from Python, analysis and report included. Nothing here
formats or plots.

One *job* is one timed pass: with the ``stacked`` engine every (learning rate, seed) pair of a batch
size trains in one pass as replicas; with ``fast`` each pair is its own pass.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from minibatch_core.engines import get_engine
from minibatch_core.engines.segments import supports_segments
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_csv, atomic_write_text
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import Dataset
from minibatch_core.input.devices import expand_devices, resolve_device
from minibatch_core.input.split import Split, held_out_split
from minibatch_core.records.study_axes import policy_factor, resolve_study_batches
from minibatch_core.records.study_rows import CHECKS_CSV, RUNS_CSV, STUDY_CSV, check_rows, epoch_rows, study_rows
from minibatch_core.running import trainer
from minibatch_core.running.envinfo import load_average
from minibatch_core.running.measure import device_name
from minibatch_core.running.to_target import Target, ToTargetRun, train_to_target
from minibatch_core.sweep.executors import Executor, LocalExecutor, Task, task_resources
from minibatch_core.sweep.study_config import StudyConfig
from minibatch_core.sweep.study_search import LrSearch, median_steps, step_budget

STUDY_JSON = "study.json"
__all__ = ["StudyConfig", "StudyJob", "StudyPlan", "execute", "measure_noise", "plan", "run_job"]


@dataclass(frozen=True)
class StudyJob:
    dataset: str
    engine: str
    device: str
    batch_spec: str
    batch_size: int
    pairs: tuple[tuple[float, float, int], ...]  # (effective lr, base lr, seed) per replica
    warmup_steps: int
    search_round: int = 0  # 0: the grid; 1, 2, ...: rates the learning-rate search added
    step_budget: int | None = None  # steps the pass may train (None: max_epochs epochs)
    budget_rule: str = "max epochs"  # what set the budget (study_search.step_budget)


@dataclass
class StudyPlan:
    study: StudyConfig
    devices: tuple[str, ...]
    splits: dict[str, Split]
    targets: dict[str, Target]
    jobs: list[StudyJob] = field(default_factory=list)
    n_samples: dict[str, int] = field(default_factory=dict)  # dataset -> rows before the split

    @property
    def total_runs(self) -> int:
        return sum(len(j.pairs) for j in self.jobs)


def plan(study: StudyConfig) -> StudyPlan:
    """Every dataset loaded and split, every engine and device checked, every job listed: a bad value
    raises MinibatchError (one line) here, before any folder exists."""
    for name in study.engines:
        engine = get_engine(name)
        if not supports_segments(engine.start):
            raise MinibatchError(f"engine {name!r} cannot train to a target in segments: use fast or stacked")
    devices = tuple(expand_devices(list(study.devices)))
    splits: dict[str, Split] = {}
    targets: dict[str, Target] = {}
    n_samples: dict[str, int] = {}
    jobs: list[StudyJob] = []
    for dataset in study.datasets:
        # loaded unscaled: the split scales both sides with the training rows' statistics only
        data = trainer.load_for(study.run_config(dataset, study.engines[0], "cpu", 1, 1e-3, 0).with_(scale="none"))
        # targets that fit the loss, a model the engines train: one line if not, as train and run check
        trainer.check_model_engines(study.model, study.hidden, study.loss, data, study.engines)
        split = splits[dataset] = held_out_split(data, study.val_fraction, study.data_seed, scale=study.scale)
        n_samples[dataset] = data.n_samples
        targets[dataset] = study.target_for(dataset)
        n_train = split.train.n_samples
        for device, engine, (spec, size) in itertools.product(
                devices, study.engines, resolve_study_batches(study.batch_sizes, n_train)):
            factor = policy_factor(study.lr_policy, size)
            pairs = [(base * factor, base, seed) for base in study.lrs for seed in study.seeds]
            steps_per_epoch = -(-n_train // size)
            warm = round(study.warmup_epochs * steps_per_epoch)
            groups = [pairs] if get_engine(engine).multi_seed else [[p] for p in pairs]
            jobs += [StudyJob(dataset, engine, device, spec, size, tuple(g), warm) for g in groups]
    return StudyPlan(study, devices, splits, targets, jobs, n_samples)


def start_session(engine_name: str, config: RunConfig, data: Dataset, device: torch.device, seeds: list[int]):
    """The engine's session, eager: a study steps in segments of varying length, which CUDA graphs
    captured for whole epochs cannot do."""
    start = get_engine(engine_name).start
    eager = {"use_graphs": False} if "use_graphs" in inspect.signature(start).parameters else {}
    return start(config, data, device, seeds, **eager)


def _prewarm(engine_name: str, config: RunConfig, train: Dataset, device: torch.device, seeds: list[int]) -> None:
    """A few steps on a few rows first, so the first job does not pay for lazy initialization."""
    rows = slice(None, None, max(1, train.n_samples // 16))
    tiny = Dataset(train.name, train.X[rows], train.y[rows], train.n_classes)
    start_session(engine_name, config, tiny, device, seeds).run_epoch()


def run_job(study: StudyConfig, job: StudyJob, split: Split, target: Target) -> ToTargetRun:
    device = resolve_device(job.device)
    lrs = [lr for lr, _, _ in job.pairs]
    seeds = [seed for _, _, seed in job.pairs]
    config = study.run_config(job.dataset, job.engine, job.device, job.batch_spec, lrs[0], seeds[0])
    previous = torch.get_num_threads()
    if study.threads is not None:
        torch.set_num_threads(study.threads)
    try:
        _prewarm(job.engine, config, split.train, device, seeds)
        session = start_session(job.engine, config, split.train, device, seeds)
        session.set_schedule(lrs, job.warmup_steps)
        return _to_target(study, job, split, target, session, device)
    finally:
        torch.set_num_threads(previous)


def _to_target(study: StudyConfig, job: StudyJob, split: Split, target: Target, session,
               device: torch.device) -> ToTargetRun:
    by_steps = job.step_budget is not None and job.budget_rule != "max epochs"
    return train_to_target(session, split.val, target, batch_size=job.batch_size, n_train=split.train.n_samples,
                           device=device, max_epochs=10 ** 9 if by_steps else study.max_epochs,
                           time_budget_s=study.time_budget_s, full_budget=study.full_budget,
                           eval_every=study.eval_every, max_steps=job.step_budget if by_steps else None)


ProgressCallback = Callable[[int, int, str], None]


def job_label(job: StudyJob) -> str:
    return f"{job.engine} | {job.dataset} | {job.device} | batch {job.batch_spec} | {len(job.pairs)} run(s)"


def job_in_context(study: StudyConfig, job: StudyJob, split: Split, target: Target
                   ) -> tuple[ToTargetRun, str, int]:
    """An executor's task: one job, plus what its rows record of the process that trained it."""
    result = run_job(study, job, split, target)
    return result, device_name(resolve_device(job.device)), study.threads or torch.get_num_threads()


def _units(jobs: list[StudyJob]) -> list[list[StudyJob]]:
    """The grid's jobs grouped per dataset x device x engine x batch size, in plan order (smallest batch
    size first within each dataset x device x engine)."""
    units: dict[tuple, list[StudyJob]] = {}
    for job in jobs:
        units.setdefault((job.dataset, job.device, job.engine, job.batch_size), []).append(job)
    return list(units.values())


def _search_jobs(study: StudyConfig, like: StudyJob, bases: list[float], factor: float, round_: int) -> list[StudyJob]:
    pairs = [(base * factor, base, seed) for base in bases for seed in study.seeds]
    groups = [pairs] if get_engine(like.engine).multi_seed else [[p] for p in pairs]
    return [replace(like, pairs=tuple(g), search_round=round_) for g in groups]


def execute(the_plan: StudyPlan, out_dir: str | Path, env: dict[str, Any], *,
            on_progress: ProgressCallback | None = None, executor: Executor | None = None) -> float:
    """Train every job into ``out_dir`` on ``executor`` (default: local, in plan order); returns the wall
    seconds. study.json first, then study.csv, runs.csv and checks.csv rewritten atomically after every
    job. Per batch size: the grid, then (with ``lr_search``) the rates the search adds, round by round;
    the passes of one round go to the executor together (a cluster trains them at once), and the search
    waits for them; each pass's step budget per ``study_search.step_budget``. study.json records the
    search (``lr_search``) and the budgets."""
    from contextlib import closing

    executor = executor or LocalExecutor()
    out = Path(out_dir)
    study = the_plan.study
    started = time.perf_counter()
    meta = {**env, "study": study.to_dict(), "devices_expanded": list(the_plan.devices),
            "splits": {d: s.describe() for d, s in the_plan.splits.items()},
            "targets": {d: {"metric": t.metric, "value": t.value, "text": t.describe()}
                        for d, t in the_plan.targets.items()},
            "status": "running", "runs_total": the_plan.total_runs, "runs_done": 0, "lr_search": []}

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
        tasks = [Task(job_in_context, (study, job, the_plan.splits[job.dataset], the_plan.targets[job.dataset]),
                      job_label(job), **task_resources(job.device, study.threads)) for job in jobs]
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
        for unit in _units(the_plan.jobs):
            first = unit[0]
            key = (first.dataset, first.engine, first.device)
            spe = -(-the_plan.splits[first.dataset].train.n_samples // first.batch_size)
            budget, rule = step_budget(study.max_steps, study.max_epochs, spe, floors.get(key))
            unit = [replace(job, step_budget=budget, budget_rule=rule) for job in unit]
            results = train(unit)
            factor = policy_factor(study.lr_policy, first.batch_size)
            search = LrSearch(factor=factor, tried=list(study.lrs))
            while study.lr_search:
                step = search.next_round(median_steps(results))
                if step is None:
                    break
                jobs = _search_jobs(study, unit[0], step[0], factor, len(search.rounds))
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
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {type(err).__name__}"
        write_meta(status=status, runs_done=done, study_wall_s=time.perf_counter() - started)
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
    previous = torch.get_num_threads()
    if study.threads is not None:  # the study's thread count, as its runs (a helper workload is no exception)
        torch.set_num_threads(study.threads)
    try:
        return measure_noise_scale(split.train, split.val, the_plan.targets[dataset], hidden=study.hidden,
                                   model=study.model, loss=study.loss, optimizer=study.optimizer,
                                   train_batch=batch_size, lr=lr, seed=study.seeds[0] if seed is None else seed,
                                   b_small=b_small, b_big=b_big, every=every,
                                   # the course on to twice the steps is for the plot: further seeds stop sooner
                                   max_steps=min((2 * steps if course else steps + steps // 2) + every,
                                                 max(study.max_epochs * spe, study.max_steps or 0)))
    finally:
        torch.set_num_threads(previous)
