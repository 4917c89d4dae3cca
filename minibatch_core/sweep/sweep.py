"""Sweeps: a grid of configurations x seeds, measured one timed run at a time, recorded as it goes.

``SweepConfig`` is what to run (every axis of ``records.axes``, validated at construction); ``plan``
expands it into jobs, the product over the axes, and checks every one of them before anything trains;
``execute`` measures the jobs in order and rewrites ``runs.csv`` / ``profile.csv`` atomically after each
one, so an interrupted sweep leaves valid files holding exactly the runs that completed. Nothing here
formats or plots.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from minibatch_core.engines import get_engine
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import MAX_SMALL_BYTES, atomic_write_csv, atomic_write_text, read_bytes_checked
from minibatch_core.input.config import MAX_EPOCHS, MAX_RUNS, RunConfig, resolve_batch_size
from minibatch_core.input.devices import expand_devices
from minibatch_core.records.axes import AXES, AXIS_BY_KEY
from minibatch_core.records.columns import PROFILE_COLUMNS, RUN_COLUMNS, names
from minibatch_core.records.io import CALIBRATION_JSON, ENV_JSON, PROFILE_CSV, RUNS_CSV
from minibatch_core.records.rows import profile_rows, run_rows
from minibatch_core.running import trainer
from minibatch_core.running.distributed import DistributedOptions, choose_backend
from minibatch_core.running.envinfo import load_average
from minibatch_core.sweep.eta import Estimate, RemainingTime
from minibatch_core.sweep.executors import Executor, LocalExecutor, Task, task_resources
from minibatch_core.sweep.feasibility import LeftOut, LeftOutTally, cannot_run

__all__ = ["CALIBRATION_JSON", "ENV_JSON", "PROFILE_CSV", "RUNS_CSV", "Job", "Plan", "SweepConfig", "execute",
           "load_toml", "plan"]


class SweepConfig:
    """What a sweep runs: the values of every axis (``records.axes.AXES``) plus ``profile``.

    Settings are the axes' keys, which are also the TOML keys and, with dashes, the ``run`` flags
    (``batch_sizes`` / ``--batch-sizes``). A multi-valued axis holds a tuple (the plan is their product), a
    single-valued one its value. Each is parsed and validated by its axis at construction; a setting not
    given takes the default sweep's value.
    """

    def __init__(self, *, profile: bool = True, **settings: Any) -> None:
        unknown = [k for k in settings if k not in AXIS_BY_KEY]
        if unknown:
            raise MinibatchError(f"unknown sweep setting {unknown[0]!r}: use "
                                 f"{', '.join(sorted([*AXIS_BY_KEY, 'profile']))}")
        if not isinstance(profile, bool):
            raise MinibatchError(f"profile {profile!r} is not valid: use true or false")
        self.profile = profile
        self.values: dict[str, Any] = {
            a.key: a.parse(settings[a.key]) if a.key in settings else a.sweep_value() for a in AXES}

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SweepConfig) and (self.values, self.profile) == (other.values, other.profile)

    def __repr__(self) -> str:
        return f"SweepConfig({self.to_dict()!r})"

    @property
    def engine_list(self) -> tuple[str, ...]:
        return self.values["engines"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (env.json's ``sweep``), readable back by ``from_mapping``."""
        def plain(value: Any) -> Any:
            return [plain(v) for v in value] if isinstance(value, tuple) else value

        out = {key: plain(value) for key, value in self.values.items()}
        out["batch_sizes"] = [str(b) for b in self.values["batch_sizes"]]
        out["profile"] = self.profile
        return out

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: SweepConfig | None = None) -> SweepConfig:
        """Keys as in a TOML file (``batch-sizes`` and ``batch_sizes`` both work); unknown keys are an
        error. Values override ``base`` (default: the default sweep)."""
        changes = {key.replace("-", "_"): value for key, value in values.items()}
        merged = {**(base.values if base else {}), **changes}
        profile = merged.pop("profile", base.profile if base else True)
        return cls(profile=profile, **merged)


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's sweep settings (top-level keys or a ``[sweep]`` table); its ``[executor]`` table is
    ``executors.ExecutorOptions``'s, read by ``read_toml``."""
    data = read_toml(path)
    data.pop("executor", None)
    # a [sweep] table is accepted as well as top-level keys
    if set(data) == {"sweep"} and isinstance(data["sweep"], dict):
        data = data["sweep"]
    return data


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(read_bytes_checked(path, limit=MAX_SMALL_BYTES, what="config file").decode("utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise MinibatchError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise MinibatchError(f"config file {str(path)!r} is not a TOML text file (undecodable byte at offset "
                             f"{err.start})") from None
    return data


def sweep_from_toml(path: str | Path, base: SweepConfig | None = None) -> SweepConfig:
    """A TOML file's settings over ``base``, each parsed by its axis (``records.axes``); a bad value is
    refused naming the file, the key and what it accepts."""
    data = load_toml(path)
    try:
        return SweepConfig.from_mapping(data, base=base)
    except MinibatchError as err:
        for key, value in data.items():  # which key: the first that fails on its own
            try:
                SweepConfig.from_mapping({key: value}, base=base)
            except MinibatchError as one:
                raise MinibatchError(f"config file {str(path)!r}: {key} = {value!r}: {one}") from None
        raise MinibatchError(f"config file {str(path)!r}: {err}") from None


# --- the plan: every job, checked before anything trains ---------------------------------------------

@dataclass(frozen=True)
class Job:
    """One timed call of ``train_seeds``: one seed, or every seed for a multi-seed engine."""

    config: RunConfig  # seed = the group's first seed
    seeds: tuple[int, ...]
    profile: bool


@dataclass(frozen=True)
class Plan:
    sweep: SweepConfig
    devices: tuple[str, ...]  # ``auto`` expanded
    jobs: tuple[Job, ...]
    n_samples: dict[str, int] = field(default_factory=dict)  # dataset -> rows (for resolved batch sizes)
    notes: tuple[str, ...] = ()  # what planning changed, one line each (batch sizes merged)
    left_out: tuple[LeftOut, ...] = ()  # combinations this machine or engine cannot run, with the reason

    @property
    def total_runs(self) -> int:
        return sum(len(j.seeds) for j in self.jobs)


def plan(sweep: SweepConfig) -> Plan:
    """Expand and validate the whole grid: the product over every axis, seeds grouped per engine. Raises
    MinibatchError (one line) on the first bad value, before any folder is made or anything trains."""
    devices = tuple(expand_devices(list(sweep.devices)))
    engines = {name: get_engine(name) for name in sweep.engines}
    axes = [a for a in AXES if a.key != "seeds"]
    choices = [devices if a.key == "devices" else (sweep.values[a.key] if a.multi else (sweep.values[a.key],))
               for a in axes]
    seeds = sweep.seeds
    n_samples: dict[str, int] = {}
    jobs: list[Job] = []
    merged: dict[tuple[str, int], list[str]] = {}  # (dataset, resolved size) -> the specs that gave it
    left = LeftOutTally()
    checked: dict[tuple, Any] = {}  # (model, dataset, loss, hidden, data settings) -> the model's facts
    for combination in itertools.product(*choices):
        base = RunConfig(**{a.field: v for a, v in zip(axes, combination, strict=True)}, seed=seeds[0])
        engine = engines[base.engine]
        if base.workers > 1 and not engine.distributed:
            continue  # the workers axis is the distributed engines': one-process engines run once, at W=1
        reason = cannot_run(engine, base)
        if reason:  # sklearn on CUDA, ddp on more GPUs than there are: left out, listed, the rest runs
            left.add(base, reason, len(seeds))
            continue
        if engine.distributed:
            choose_backend(base, DistributedOptions())  # W above the cores, batch below W: refused up front
        if base.dataset not in n_samples:
            n_samples[base.dataset] = trainer.load_for(base).n_samples
        reason = _model_cannot(base, sweep, checked)
        if reason:  # sklearn for a conv net: left out, listed, the rest runs
            left.add(base, reason, len(seeds))
            continue
        specs = merged.setdefault((base.dataset, resolve_batch_size(base.batch_size, n_samples[base.dataset])), [])
        if str(base.batch_size) not in specs:
            specs.append(str(base.batch_size))
        if _kept_spec(specs) != str(base.batch_size):
            continue  # the same batch as a spec already planned: measured once, under the kept spec
        if engines[base.engine].multi_seed:
            jobs.append(Job(base, seeds, sweep.profile))
        else:
            jobs += [Job(base.with_(seed=s), (s,), sweep.profile and i == 0) for i, s in enumerate(seeds)]
    notes = tuple(f"batch sizes {_listed(specs)} all resolve to {size} (all rows of {dataset}): measured once, "
                  f"as {_kept_spec(specs)}" for (dataset, size), specs in merged.items() if len(specs) > 1)
    if notes:  # a spec merged away after its twin was planned (full before 200): drop those jobs
        keep = {(d, _kept_spec(specs)) for (d, _), specs in merged.items()}
        jobs = [j for j in jobs if (j.config.dataset, str(j.config.batch_size)) in keep]
    if not jobs and left.result():
        raise MinibatchError("nothing to run on this machine: " + "; ".join(x.describe() for x in left.result()))
    return Plan(sweep, devices, tuple(jobs), n_samples, notes, left.result())


def _listed(specs: list[str], shown: int = 6) -> str:
    """A long list summarized: a note stays one readable line whatever the grid."""
    if len(specs) <= shown:
        return ", ".join(specs)
    return f"{', '.join(specs[:shown - 1])}, ... {specs[-1]} ({len(specs)} in all)"


def planned_size(sweep: SweepConfig) -> int:
    """The runs a sweep plans at most (the product of its axes and seeds), counted without expanding it."""
    size = len(sweep.seeds)
    for axis in AXES:
        if axis.key != "seeds" and axis.multi:
            size *= max(1, len(sweep.values[axis.key]))
    return size


def check_plan_size(sweep: SweepConfig, confirmed: bool, command: str = "run") -> None:
    """Refuse, before anything is expanded or loaded, a plan above MAX_RUNS runs or MAX_EPOCHS epochs
    unless ``confirmed`` (--yes)."""
    if confirmed:
        return
    runs = planned_size(sweep)
    if runs > MAX_RUNS:
        raise MinibatchError(f"this plan holds up to {runs:,} runs, above the {MAX_RUNS:,} that `{command}` starts "
                             "without asking: narrow the lists (seeds, batch sizes, lrs, ...) or add --yes")
    epochs = sweep.values.get("epochs")
    if isinstance(epochs, int) and epochs > MAX_EPOCHS:
        raise MinibatchError(f"epochs {epochs:,} is above the {MAX_EPOCHS:,} that `{command}` trains without "
                             "asking: give fewer, or add --yes")


_SKIP_WHY = {"sklearn": "it trains only the lesson's mlp with cross_entropy",
             "stacked": "their dropout or buffers cannot be reproduced by stacked replicas"}


def _model_cannot(base: RunConfig, sweep: SweepConfig, checked: dict[tuple, Any]) -> str | None:
    """Check a configuration's model on its data once (factory, output shape, targets vs loss: a one-line
    error before anything runs). Why the engine cannot train the model (it is then left out of the plan,
    listed), or None; refused outright when that engine is the sweep's only one."""
    from minibatch_core.engines import check_model_facts, check_model_support
    from minibatch_core.input.models import check_model_and_data

    key = (base.model, base.dataset, base.loss, base.hidden, base.target, base.scale, base.n_samples,
           base.n_features, base.n_classes, base.data_seed)
    if key not in checked:
        checked[key] = check_model_and_data(base.model, base.hidden, base.loss, trainer.load_for(base))
    facts = checked[key]
    try:
        check_model_support(base.engine, base.model, base.loss)
        check_model_facts(base.engine, base.model, facts.random, facts.buffers)
    except MinibatchError:
        if len(sweep.engines) == 1:
            raise
        return f"model {base.model}: {_SKIP_WHY.get(base.engine, 'this engine cannot train it')}"
    return None


def _kept_spec(specs: list[str]) -> str:
    """Of batch specs that resolve to the same size, the one recorded: ``full`` (it says what it is),
    else the first given."""
    return "full" if "full" in specs else specs[0]


# --- running ----------------------------------------------------------------------------------------------

ProgressCallback = Callable[[int, int, str], None]  # (runs done, runs total, what runs now)


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
    remote = executor_name != "local"
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
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {type(err).__name__}"
        write_env(status=status, runs_done=done, finished_utc=utc_now(),
                  sweep_wall_s=time.perf_counter() - started, load_average_end=load_average())
        raise
    wall = time.perf_counter() - started
    retried = getattr(executor, "retried", None)
    write_env(status="complete", runs_done=done, finished_utc=utc_now(), sweep_wall_s=wall,
              load_average_end=load_average(), **({"retried_runs": retried} if retried else {}))
    return SweepOutcome(out, done, total, wall, True)
