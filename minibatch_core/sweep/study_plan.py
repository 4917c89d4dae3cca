"""A study's plan: every dataset loaded and split, every value checked, every timed pass listed, before
anything trains (``plan``); and the passes the learning-rate search adds (``search_jobs``).

One *job* is one timed pass: with the ``stacked`` engine every (learning rate, seed) pair of a batch
size trains in one pass as replicas; with ``fast`` each pair is its own pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from minibatch_core.engines import get_engine
from minibatch_core.engines.segments import supports_segments
from minibatch_core.errors import MinibatchError
from minibatch_core.input.devices import expand_devices
from minibatch_core.input.split import Split, held_out_split
from minibatch_core.records.study_axes import policy_factor, resolve_study_batches
from minibatch_core.running import trainer
from minibatch_core.running.to_target import Target
from minibatch_core.sweep.study_config import StudyConfig


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
            jobs += [StudyJob(dataset, engine, device, spec, size, tuple(g), warm) for g in _passes(engine, pairs)]
    return StudyPlan(study, devices, splits, targets, jobs, n_samples)


def _passes(engine: str, pairs: list[tuple[float, float, int]]) -> list[list[tuple[float, float, int]]]:
    """The pairs' timed passes: all in one for a multi-seed engine (stacked), else one pass each."""
    return [pairs] if get_engine(engine).multi_seed else [[p] for p in pairs]


def units(jobs: list[StudyJob]) -> list[list[StudyJob]]:
    """The grid's jobs grouped per dataset x device x engine x batch size, in plan order (smallest batch
    size first within each dataset x device x engine)."""
    grouped: dict[tuple, list[StudyJob]] = {}
    for job in jobs:
        grouped.setdefault((job.dataset, job.device, job.engine, job.batch_size), []).append(job)
    return list(grouped.values())


def search_jobs(study: StudyConfig, like: StudyJob, bases: list[float], factor: float, round_: int) -> list[StudyJob]:
    """The passes of one learning-rate search round: ``like``'s batch size at the base rates ``bases``."""
    pairs = [(base * factor, base, seed) for base in bases for seed in study.seeds]
    return [replace(like, pairs=tuple(g), search_round=round_) for g in _passes(like.engine, pairs)]
