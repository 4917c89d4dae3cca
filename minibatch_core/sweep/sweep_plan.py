"""A sweep's plan: the product over every axis, seeds grouped per engine, every job checked before anything
trains (``plan``); and the size a plan would have, refused above the limits before it is expanded."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minibatch_core.engines import get_engine
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.data import data_key
from minibatch_core.input.devices import expand_devices
from minibatch_core.input.models import check_model_and_data
from minibatch_core.records.axes import AXES
from minibatch_core.running import trainer
from minibatch_core.running.distributed import DistributedOptions, choose_backend
from minibatch_core.sweep.feasibility import LeftOut, LeftOutTally, cannot_run
from minibatch_core.sweep.sweep_config import SweepConfig


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
    checked: dict[tuple, Any] = {}  # (model, loss, hidden, data settings) -> the model's facts
    loaded: dict[tuple, Any] = {}  # data settings (data_key) -> the Dataset, loaded once for the whole plan

    def data_for(config: RunConfig):
        key = data_key(config)
        if key not in loaded:
            loaded[key] = trainer.load_for(config)
        return loaded[key]

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
            n_samples[base.dataset] = data_for(base).n_samples
        reason = _model_cannot(base, sweep, checked, data_for)
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


_SKIP_WHY = {"sklearn": "it trains only the lesson's mlp with cross_entropy",
             "stacked": "their dropout or buffers cannot be reproduced by stacked replicas"}


def _model_cannot(base: RunConfig, sweep: SweepConfig, checked: dict[tuple, Any],
                  data_for: Callable[[RunConfig], Any]) -> str | None:
    """Check a configuration's model on its data once (factory, output shape, targets vs loss: a one-line
    error before anything runs). Why the engine cannot train the model (it is then left out of the plan,
    listed), or None; refused outright when that engine is the sweep's only one."""
    key = (base.model, base.loss, base.hidden, *data_key(base))
    if key not in checked:
        checked[key] = check_model_and_data(base.model, base.hidden, base.loss, data_for(base))
    facts = checked[key]
    try:
        trainer.check_engine_support(base.engine, base.model, base.loss, facts)
    except MinibatchError:
        if len(sweep.engines) == 1:
            raise
        return f"model {base.model}: {_SKIP_WHY.get(base.engine, 'this engine cannot train it')}"
    return None


def _kept_spec(specs: list[str]) -> str:
    """Of batch specs that resolve to the same size, the one recorded: ``full`` (it says what it is),
    else the first given."""
    return "full" if "full" in specs else specs[0]
