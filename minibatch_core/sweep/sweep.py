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
from minibatch_core.fsio import atomic_write_csv, atomic_write_text
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.devices import expand_devices
from minibatch_core.records.axes import AXES, AXIS_BY_KEY
from minibatch_core.records.columns import PROFILE_COLUMNS, RUN_COLUMNS, names
from minibatch_core.records.io import CALIBRATION_JSON, ENV_JSON, PROFILE_CSV, RUNS_CSV
from minibatch_core.records.rows import profile_rows, run_rows
from minibatch_core.running import trainer
from minibatch_core.running.distributed import DistributedOptions, WorkerFailed, choose_backend
from minibatch_core.running.envinfo import load_average

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
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise MinibatchError(f"config file {str(path)!r} does not exist") from None
    except OSError as err:
        raise MinibatchError(f"config file {str(path)!r} cannot be read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise MinibatchError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise MinibatchError(f"config file {str(path)!r} is not a TOML text file (undecodable byte at offset "
                             f"{err.start})") from None
    # a [sweep] table is accepted as well as top-level keys
    if set(data) == {"sweep"} and isinstance(data["sweep"], dict):
        data = data["sweep"]
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
    checked: dict[tuple, Any] = {}  # (model, dataset, loss, hidden, data settings) -> the model's facts
    skipped: dict[str, set[str]] = {}  # engine -> models it cannot train (left out of the plan)
    for combination in itertools.product(*choices):
        base = RunConfig(**{a.field: v for a, v in zip(axes, combination, strict=True)}, seed=seeds[0])
        engine = engines[base.engine]
        if base.workers > 1 and not engine.distributed:
            continue  # the workers axis is the distributed engines': one-process engines run once, at W=1
        if engine.distributed:
            choose_backend(base, DistributedOptions())  # W above the cores, batch below W: refused up front
        if base.dataset not in n_samples:
            n_samples[base.dataset] = trainer.load_for(base).n_samples
        if not _model_fits(base, sweep, checked, skipped):
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
    skip_notes = [f"engine {engine} left out for model(s) {', '.join(sorted(models))}: "
                  f"{_SKIP_WHY.get(engine, 'it cannot train them')}" for engine, models in skipped.items()]
    notes = tuple(f"batch sizes {', '.join(specs)} all resolve to {size} (all rows of {dataset}): measured once, "
                  f"as {_kept_spec(specs)}" for (dataset, size), specs in merged.items() if len(specs) > 1)
    if notes:  # a spec merged away after its twin was planned (full before 200): drop those jobs
        keep = {(d, _kept_spec(specs)) for (d, _), specs in merged.items()}
        jobs = [j for j in jobs if (j.config.dataset, str(j.config.batch_size)) in keep]
    notes = tuple(skip_notes) + notes
    return Plan(sweep, devices, tuple(jobs), n_samples, notes)


_SKIP_WHY = {"sklearn": "it trains only the lesson's mlp with cross_entropy",
             "stacked": "their dropout or buffers cannot be reproduced by stacked replicas"}


def _model_fits(base: RunConfig, sweep: SweepConfig, checked: dict[tuple, Any],
                skipped: dict[str, set[str]]) -> bool:
    """Check a configuration's model on its data once (factory, output shape, targets vs loss: a one-line
    error before anything runs). An engine that cannot train the model is left out of the plan with a note
    when the sweep has other engines, and refused when it is the sweep's only one."""
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
        skipped.setdefault(base.engine, set()).add(base.model)
        return False
    return True


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


def calibrate(devices: Iterable[str], *, isolate: bool = True) -> list[dict[str, Any]]:
    """The fixed calibration workload once per device, in a fresh worker like the runs themselves."""
    from minibatch_core.running.calibration import measure_calibration
    from minibatch_core.running.isolation import run_isolated

    return [(run_isolated(measure_calibration, d) if isolate else measure_calibration(d)).to_dict()
            for d in devices]


def execute(the_plan: Plan, out_dir: str | Path, env: dict[str, Any], *,
            on_progress: ProgressCallback | None = None, isolate: bool = True,
            kept_runs: pd.DataFrame | None = None, kept_profiles: pd.DataFrame | None = None,
            calibration: list[dict[str, Any]] | None = None) -> SweepOutcome:
    """Measure every job, one at a time, into ``out_dir``. Writes env.json first, then calibration.json,
    then runs.csv/profile.csv after every job (atomically: a reader or an interruption never sees half a
    file). An interruption or error propagates after env.json records how far the sweep got.

    Resuming: ``kept_runs`` / ``kept_profiles`` are recorded rows to keep (every rewrite holds them
    first), and ``calibration`` the recorded calibration, reused so old and new runs share one."""
    import json

    out = Path(out_dir)
    started = time.perf_counter()
    kept = int(kept_runs["run_id"].nunique()) if kept_runs is not None else 0
    env = {**env, "status": "running", "runs_total": the_plan.total_runs + kept, "runs_done": kept}

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
            calibration = calibrate(the_plan.devices, isolate=isolate)
            atomic_write_text(out / CALIBRATION_JSON, json.dumps(calibration, indent=2) + "\n")
        step_by_device = {c["device"]: c["step_s"] for c in calibration}
        runs: list[pd.DataFrame] = [] if kept_runs is None else [kept_runs[names(RUN_COLUMNS)]]
        profiles: list[pd.DataFrame] = [] if kept_profiles is None else [kept_profiles[names(PROFILE_COLUMNS)]]
        failed: list[dict[str, str]] = []
        for job in the_plan.jobs:
            report(done, total, job_label(job))
            try:
                results = trainer.train_seeds(job.config, list(job.seeds), isolate=isolate, profile=job.profile)
            except WorkerFailed as failure:  # a ddp worker died or hung: that run is lost, the sweep goes on
                failed.append({"run": job_label(job), "error": str(failure)})
                write_env(failed_runs=failed)
                print(f"minibatch-bench run: {job_label(job)}: {failure} (the sweep goes on)", file=sys.stderr)
                continue
            load = load_average()  # contention during this run shows in the report and compare
            runs += [run_rows(r, calibration_step_s=step_by_device.get(r.device),
                              load_1m=load[0] if load else None) for r in results]
            if job.profile and results[0].profile:
                profiles.append(profile_rows(results[0]))
            atomic_write_csv(out / RUNS_CSV, pd.concat(runs, ignore_index=True))
            if profiles:
                atomic_write_csv(out / PROFILE_CSV, pd.concat(profiles, ignore_index=True))
            done += len(results)
            env["runs_done"] = done
        report(done, total, "done")
    except BaseException as err:
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {type(err).__name__}"
        write_env(status=status, runs_done=done, finished_utc=utc_now(),
                  sweep_wall_s=time.perf_counter() - started, load_average_end=load_average())
        raise
    wall = time.perf_counter() - started
    write_env(status="complete", runs_done=done, finished_utc=utc_now(), sweep_wall_s=wall,
              load_average_end=load_average())
    return SweepOutcome(out, done, total, wall, True)
