"""Sweeps: a grid of configurations x seeds, measured one timed run at a time, recorded as it goes.

``SweepConfig`` is what to run (validated at construction); ``plan`` expands it into jobs and checks
every one of them before anything trains; ``execute`` measures the jobs in order and rewrites
``runs.csv`` / ``profile.csv`` atomically after each one, so an interrupted sweep leaves valid files
holding exactly the runs that completed. Nothing here formats or plots.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from minibatch_core.engines import engine_names, get_engine
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_csv, atomic_write_text
from minibatch_core.input.config import RunConfig, parse_batch_size
from minibatch_core.input.devices import expand_devices
from minibatch_core.running import trainer
from minibatch_core.running.envinfo import load_average
from minibatch_core.running.results import RunResult

RUNS_CSV = "runs.csv"
PROFILE_CSV = "profile.csv"
CALIBRATION_JSON = "calibration.json"
ENV_JSON = "env.json"

# runs.csv columns in the order they are written; RunResult.to_frame() columns not named here follow
RUN_ID_COLUMNS = ["run_id", "engine", "dataset", "device", "device_name", "batch_spec", "batch_size", "seed",
                  "lr", "optimizer", "hidden", "epochs"]
PROFILE_COLUMNS = ["engine", "dataset", "device", "batch_spec", "batch_size", "phase", "mean_step_s",
                   "lr", "optimizer", "hidden", "epochs", "replicas", "seed"]


# --- parsing the list-valued settings (CLI text or TOML values) --------------------------------------

def _items(name: str, value: Any) -> list[Any]:
    """A comma-separated string or a list/tuple -> a flat list of non-empty items."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        items: list[Any] = [p for p in parts if p]
    elif isinstance(value, (list, tuple)):
        items = [p.strip() if isinstance(p, str) else p for p in value]
        items = [p for p in items if p != ""]
    else:
        items = [value]
    if not items:
        raise MinibatchError(f"{name} is empty: give at least one value")
    return items


def _unique(values: Iterable[Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return tuple(out)


def parse_seeds(value: Any) -> tuple[int, ...]:
    """``"0-9"``, ``"0,1,2"``, ``"0-2,7"`` or a list of ints -> distinct non-negative ints, in order."""
    seeds: list[int] = []
    for item in _items("seeds", value):
        if isinstance(item, bool):
            raise MinibatchError(f"seed {item!r} is not valid: use non-negative integers, e.g. 0,1,2 or 0-9")
        if isinstance(item, int):
            seeds.append(item)
            continue
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", str(item))
        if not match:
            raise MinibatchError(f"seed {item!r} is not valid: use non-negative integers, e.g. 0,1,2 or 0-9")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise MinibatchError(f"seed range {item!r} is empty: write it low-high, e.g. 0-9")
        seeds.extend(range(lo, hi + 1))
    if any(s < 0 for s in seeds):
        raise MinibatchError(f"seeds {value!r} are not valid: use non-negative integers")
    return _unique(seeds)


def parse_lrs(value: Any) -> tuple[float, ...]:
    out = []
    for item in _items("lrs", value):
        bad = f"learning rate {item!r} is not valid: use positive numbers, e.g. 0.001,0.01"
        try:
            lr = float(item)
        except (TypeError, ValueError):
            raise MinibatchError(bad) from None
        if not lr > 0 or lr == float("inf"):
            raise MinibatchError(bad)
        out.append(lr)
    return _unique(out)


def _widths(item: Any) -> tuple[int, ...]:
    if isinstance(item, (list, tuple)):
        parts: list[Any] = list(item)
    else:
        parts = [p for p in re.split(r"[,x-]", str(item)) if p.strip()]
    try:
        widths = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        widths = ()
    if not widths or any(isinstance(p, bool) for p in parts) or any(w < 1 for w in widths):
        raise MinibatchError(f"hidden widths {item!r} are not valid: use positive integers, e.g. 10,10")
    return widths


def parse_hidden_list(value: Any) -> tuple[tuple[int, ...], ...]:
    """One architecture (``"10,10"``, ``[10, 10]``) or several (``["10,10", "32,32"]``, ``[[10,10],[32]]``,
    ``"10,10;32,32"``)."""
    if isinstance(value, str):
        specs: list[Any] = [s for s in value.split(";") if s.strip()]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        specs = [value]
    elif isinstance(value, (list, tuple)):
        specs = list(value)
    else:
        specs = [value]
    if not specs:
        raise MinibatchError("hidden is empty: give widths, e.g. 10,10")
    return _unique(_widths(s) for s in specs)


def hidden_label(hidden: Iterable[int]) -> str:
    """``(10, 10)`` -> ``"10-10"``: how runs.csv writes an architecture."""
    return "-".join(str(w) for w in hidden)


def _int(name: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, bool) or number is None or number < minimum or (isinstance(value, float)
                                                                           and value != number):
        raise MinibatchError(f"{name} {value!r} is not valid: use an integer >= {minimum}")
    return number


# --- the sweep's configuration ------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs. Field names are also the keys of a ``--config`` TOML file."""

    datasets: tuple[str, ...] = ("wine",)
    batch_sizes: tuple[int | str, ...] = (1, 32, "full")
    devices: tuple[str, ...] = ("auto",)
    engines: tuple[str, ...] = ()  # empty: every registered engine
    seeds: tuple[int, ...] = (0, 1, 2)
    lrs: tuple[float, ...] = (0.001,)
    epochs: int = 10
    optimizer: tuple[str, ...] = ("adam",)
    hidden: tuple[tuple[int, ...], ...] = ((10, 10),)
    target: str | None = None
    scale: str = "none"
    n_samples: int = 1000
    n_features: int = 20
    n_classes: int = 2
    data_seed: int = 0
    threads: int | None = None  # torch intra-op threads for every run; None: torch's default
    profile: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "datasets", _unique(str(d) for d in _items("datasets", self.datasets)))
        set_(self, "batch_sizes", _unique(parse_batch_size(b) for b in _items("batch sizes", self.batch_sizes)))
        set_(self, "devices", _unique(str(d).strip().lower() for d in _items("devices", self.devices)))
        engines = () if self.engines in ((), [], None, "", "all") else _items("engines", self.engines)
        set_(self, "engines", _unique(str(e) for e in engines))
        set_(self, "seeds", parse_seeds(self.seeds))
        set_(self, "lrs", parse_lrs(self.lrs))
        set_(self, "epochs", _int("epochs", self.epochs, 1))
        set_(self, "optimizer", _unique(str(o).lower() for o in _items("optimizer", self.optimizer)))
        set_(self, "hidden", parse_hidden_list(self.hidden))
        for name, minimum in (("n_samples", 2), ("n_features", 1), ("n_classes", 2), ("data_seed", 0)):
            set_(self, name, _int(name.replace("_", " "), getattr(self, name), minimum))
        if self.threads is not None:
            set_(self, "threads", _int("threads", self.threads, 1))
        if not isinstance(self.profile, bool):
            raise MinibatchError(f"profile {self.profile!r} is not valid: use true or false")

    @property
    def engine_list(self) -> tuple[str, ...]:
        return self.engines or tuple(engine_names())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_sizes"] = [str(b) for b in self.batch_sizes]
        d["engines"] = list(self.engine_list)
        d["hidden"] = [list(h) for h in self.hidden]
        return d

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: SweepConfig | None = None) -> SweepConfig:
        """Keys as in a TOML file (``batch-sizes`` and ``batch_sizes`` both work); unknown keys are an
        error. Values override ``base`` (default: the defaults)."""
        known = {f.name for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                raise MinibatchError(f"unknown sweep setting {key!r}: use {', '.join(sorted(known))}")
            changes[name] = value
        merged = {**(asdict(base) if base else {}), **changes}
        return cls(**merged)


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
    # a [sweep] table is accepted as well as top-level keys
    if set(data) == {"sweep"} and isinstance(data["sweep"], dict):
        data = data["sweep"]
    return data


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

    @property
    def total_runs(self) -> int:
        return sum(len(j.seeds) for j in self.jobs)


def plan(sweep: SweepConfig) -> Plan:
    """Expand and validate the whole grid: every engine, device, dataset and run configuration. Raises
    MinibatchError (one line) on the first bad value, before any folder is made or anything trains."""
    engines = [get_engine(name) for name in sweep.engine_list]
    devices = tuple(expand_devices(list(sweep.devices)))
    n_samples: dict[str, int] = {}
    jobs: list[Job] = []
    for dataset in sweep.datasets:
        for device in devices:
            for lr in sweep.lrs:
                for optimizer in sweep.optimizer:
                    for hidden in sweep.hidden:
                        for batch in sweep.batch_sizes:
                            # engines side by side per batch size: their ratios come from neighbouring runs
                            for engine in engines:
                                base = RunConfig(
                                    dataset=dataset, batch_size=batch, epochs=sweep.epochs,
                                    seed=sweep.seeds[0], device=device, engine=engine.name, lr=lr,
                                    optimizer=optimizer, hidden=hidden, target=sweep.target,
                                    scale=sweep.scale, n_samples=sweep.n_samples,
                                    n_features=sweep.n_features, n_classes=sweep.n_classes,
                                    data_seed=sweep.data_seed, threads=sweep.threads,
                                )
                                if dataset not in n_samples:
                                    n_samples[dataset] = trainer.load_for(base).n_samples
                                if engine.multi_seed:
                                    jobs.append(Job(base, sweep.seeds, sweep.profile))
                                else:
                                    jobs += [Job(base.with_(seed=s), (s,), sweep.profile and i == 0)
                                             for i, s in enumerate(sweep.seeds)]
    return Plan(sweep, devices, tuple(jobs), n_samples)


# --- records --------------------------------------------------------------------------------------------

def run_id(result: RunResult) -> str:
    """Readable and unique within a sweep: ``reference|wine|cpu|b32|s0|lr0.001`` (+ optimizer and
    architecture when they differ from the lesson's)."""
    parts = [result.engine, result.dataset, result.device, f"b{result.batch_spec}", f"s{result.seed}",
             f"lr{result.config.lr:g}"]
    if result.config.optimizer != "adam":
        parts.append(result.config.optimizer)
    if tuple(result.config.hidden) != (10, 10):
        parts.append("h" + hidden_label(result.config.hidden))
    return "|".join(parts)


def run_rows(result: RunResult, calibration_step_s: float | None) -> pd.DataFrame:
    """The run's epochs as runs.csv rows."""
    frame = result.to_frame()
    frame.insert(0, "run_id", run_id(result))
    frame["hidden"] = hidden_label(result.config.hidden)
    frame["calibration_step_s"] = calibration_step_s
    frame["n_features"] = result.n_features
    frame["n_classes"] = result.n_classes
    frame["torch_threads"] = result.torch_threads
    frame["memory_method"] = result.memory_method
    ordered = RUN_ID_COLUMNS + [c for c in frame.columns if c not in RUN_ID_COLUMNS]
    return frame[ordered]


def profile_rows(result: RunResult) -> pd.DataFrame:
    if not result.profile:
        return pd.DataFrame(columns=PROFILE_COLUMNS)
    base = {"engine": result.engine, "dataset": result.dataset, "device": result.device,
            "batch_spec": result.batch_spec, "batch_size": result.batch_size}
    extra = {"lr": result.config.lr, "optimizer": result.config.optimizer,
             "hidden": hidden_label(result.config.hidden), "epochs": result.config.epochs,
             "replicas": result.replicas, "seed": result.seed}
    return pd.DataFrame([{**base, "phase": phase, "mean_step_s": float(seconds), **extra}
                         for phase, seconds in result.profile.items()], columns=PROFILE_COLUMNS)


# --- running ----------------------------------------------------------------------------------------------

ProgressCallback = Callable[[int, int, str], None]  # (runs done, runs total, what runs now)


def job_label(job: Job) -> str:
    c = job.config
    seeds = f"seed {job.seeds[0]}" if len(job.seeds) == 1 else f"seeds {job.seeds[0]}..{job.seeds[-1]}"
    return f"{c.engine} | {c.dataset} | {c.device} | batch {c.batch_spec} | lr {c.lr:g} | {seeds}"


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
            on_progress: ProgressCallback | None = None, isolate: bool = True) -> SweepOutcome:
    """Measure every job, one at a time, into ``out_dir``. Writes env.json first, then calibration.json,
    then runs.csv/profile.csv after every job (atomically: a reader or an interruption never sees half a
    file). An interruption or error propagates after env.json records how far the sweep got."""
    import json

    out = Path(out_dir)
    started = time.perf_counter()
    env = {**env, "status": "running", "runs_total": the_plan.total_runs, "runs_done": 0}

    def write_env(**changes: Any) -> None:
        env.update(changes)
        atomic_write_text(out / ENV_JSON, json.dumps(env, indent=2, default=str) + "\n")

    write_env()
    report = on_progress or (lambda done, total, label: None)
    done = 0
    try:
        report(0, the_plan.total_runs, "calibration workload")
        calibration = calibrate(the_plan.devices, isolate=isolate)
        atomic_write_text(out / CALIBRATION_JSON, json.dumps(calibration, indent=2) + "\n")
        step_by_device = {c["device"]: c["step_s"] for c in calibration}
        runs: list[pd.DataFrame] = []
        profiles: list[pd.DataFrame] = []
        for job in the_plan.jobs:
            report(done, the_plan.total_runs, job_label(job))
            results = trainer.train_seeds(job.config, list(job.seeds), isolate=isolate, profile=job.profile)
            runs += [run_rows(r, step_by_device.get(r.device)) for r in results]
            if job.profile and results[0].profile:
                profiles.append(profile_rows(results[0]))
            atomic_write_csv(out / RUNS_CSV, pd.concat(runs, ignore_index=True))
            if profiles:
                atomic_write_csv(out / PROFILE_CSV, pd.concat(profiles, ignore_index=True))
            done += len(results)
            env["runs_done"] = done
        report(done, the_plan.total_runs, "done")
    except BaseException as err:
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {type(err).__name__}"
        write_env(status=status, runs_done=done, finished_utc=utc_now(),
                  sweep_wall_s=time.perf_counter() - started, load_average_end=load_average())
        raise
    wall = time.perf_counter() - started
    write_env(status="complete", runs_done=done, finished_utc=utc_now(), sweep_wall_s=wall,
              load_average_end=load_average())
    return SweepOutcome(out, done, the_plan.total_runs, wall, True)
