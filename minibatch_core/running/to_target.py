"""Train until a validation target is reached: the measurement behind ``minibatch-bench study``.

The session trains in segments (see ``engines/segments.py``); between segments, outside the clock,
every replica is evaluated on the held-out rows. The check schedule is fine enough to resolve when the
target is crossed inside an epoch: checks at geometrically spaced step counts (each at most ~19% after
the previous one), at least ``CHECKS_PER_EPOCH`` per epoch, and at every epoch end; or every
``eval_every`` steps (and epoch ends) when that is given. The gap between the check that first met the
target and the one before it is the run's ``eval_resolution_steps``: steps-to-target is known to
within it (it is an upper bound by at most that many steps).

Clock: training segments only (the epoch's shuffle included), synchronized on CUDA; evaluation and the
epoch-loss bookkeeping are excluded.

``train_pass`` is one study pass run as the trainer runs every other: in a fresh worker, at the run's
torch threads, the engine prewarmed first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from minibatch_core.engines import get_engine
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import Dataset
from minibatch_core.input.devices import resolve_device, torch_threads
from minibatch_core.running.isolation import run_isolated
from minibatch_core.running.measure import Stopwatch
from minibatch_core.running.trainer import prewarm_engine, start_session

CHECKS_PER_EPOCH = 8
GEOMETRIC_RATIO = 2 ** 0.25


@dataclass(frozen=True)
class Target:
    """``accuracy``: validation accuracy >= value; ``loss``: validation loss <= value."""

    metric: str
    value: float

    def __post_init__(self) -> None:
        if self.metric == "accuracy":
            if not (0.0 < self.value <= 1.0):
                raise MinibatchError(f"target accuracy {self.value!r} is not valid: use a number in (0, 1]")
        elif self.metric == "loss":
            if not (self.value > 0.0 and math.isfinite(self.value)):
                raise MinibatchError(f"target loss {self.value!r} is not valid: use a number > 0")
        else:
            raise MinibatchError(f"target metric {self.metric!r} is not known: use accuracy or loss")

    def met(self, loss: float, accuracy: float) -> bool:
        return accuracy >= self.value if self.metric == "accuracy" else loss <= self.value

    def describe(self) -> str:
        if self.metric == "accuracy":
            return f"validation accuracy >= {self.value:g}"
        return f"validation loss <= {self.value:g}"


def next_check(done: int, steps_per_epoch: int, eval_every: int | None) -> int:
    """The step count (global, 1-based) of the next check after ``done`` steps."""
    epoch_end = (done // steps_per_epoch + 1) * steps_per_epoch
    if eval_every:
        return min(epoch_end, (done // eval_every + 1) * eval_every)
    geometric = max(done + 1, math.floor(done * GEOMETRIC_RATIO))
    spacing = max(1, steps_per_epoch // CHECKS_PER_EPOCH)
    uniform = (done // spacing + 1) * spacing
    return min(epoch_end, geometric, uniform)


@dataclass
class Check:
    step: int  # global steps done when checked
    val_loss: float
    val_accuracy: float
    train_time_s: float


@dataclass
class EpochRow:
    epoch: int
    train_loss: float  # the lesson's epoch loss over the training rows
    val_loss: float
    val_accuracy: float
    time_s: float  # training time of the epoch
    steps: int


@dataclass
class ReplicaOutcome:
    reached: bool = False
    steps_to_target: int | None = None
    epochs_to_target: float | None = None
    samples_to_target: int | None = None
    time_to_target_s: float | None = None
    eval_resolution_steps: int = 0  # reached: gap to the previous check; not reached: the last gap
    checks: list[Check] = field(default_factory=list)
    epochs: list[EpochRow] = field(default_factory=list)


@dataclass
class ToTargetRun:
    replicas: list[ReplicaOutcome]
    steps_per_epoch: int
    steps_run: int
    epochs_run: float
    train_time_s: float
    eval_time_s: float
    n_checks: int
    stopped: str  # "target reached", "max epochs", "time budget"


def _samples(done: int, steps_per_epoch: int, batch_size: int, n_train: int) -> int:
    epochs, within = divmod(done, steps_per_epoch)
    return epochs * n_train + min(within * batch_size, n_train)


def train_to_target(session, val: Dataset, target: Target, *, batch_size: int, n_train: int,
                    device: torch.device, max_epochs: int, time_budget_s: float | None = None,
                    full_budget: bool = False, eval_every: int | None = None,
                    max_steps: int | None = None) -> ToTargetRun:
    """Train ``session`` (a segmented session, see ``engines/segments.py``) until every replica met
    ``target`` on ``val`` (then finish that epoch, so its record is whole), or ``max_epochs``, or
    ``max_steps`` optimizer steps (a budget in steps: the pass may end inside an epoch, checked there),
    or ``time_budget_s`` of training time. ``full_budget`` trains to the budget regardless."""
    spe = session.steps_per_epoch
    if max_steps is not None:
        max_epochs = min(max_epochs, -(-max_steps // spe))
    k = len(session.seeds)
    outcomes = [ReplicaOutcome() for _ in range(k)]
    clock = Stopwatch(device)
    train_s = eval_s = 0.0
    done, last_check, n_checks = 0, 0, 0
    stopped = "max epochs"
    epoch_time = 0.0
    for epoch in range(1, max_epochs + 1):
        epoch_time = 0.0
        within = 0
        while within < spe:
            stop_at = next_check(done, spe, eval_every)
            if max_steps is not None:
                stop_at = min(stop_at, max_steps)
            with clock.region():
                if within == 0:
                    session.begin_epoch()
                session.run_steps(within, within + stop_at - done)
            train_s += clock.elapsed_s
            epoch_time += clock.elapsed_s
            within += stop_at - done
            done = stop_at
            started = time.perf_counter()
            results = session.evaluate_on(val.X, val.y)
            eval_s += time.perf_counter() - started
            n_checks += 1
            for out, (loss, acc) in zip(outcomes, results, strict=True):
                out.checks.append(Check(done, loss, acc, train_s))
                if not out.reached and target.met(loss, acc):
                    out.reached = True
                    out.steps_to_target = done
                    out.epochs_to_target = done / spe
                    out.samples_to_target = _samples(done, spe, batch_size, n_train)
                    out.time_to_target_s = train_s
                    out.eval_resolution_steps = done - last_check
                elif not out.reached:
                    out.eval_resolution_steps = done - last_check
            last_check = done
            if max_steps is not None and done >= max_steps and within < spe:
                stopped = "target reached" if not full_budget and all(o.reached for o in outcomes) else "max steps"
                break
            if time_budget_s is not None and train_s >= time_budget_s and within < spe:
                stopped = "time budget"
                break
        if within >= spe:
            started = time.perf_counter()
            epoch_out = session.end_epoch()
            eval_s += time.perf_counter() - started
            for r, out in enumerate(outcomes):
                last = out.checks[-1]
                out.epochs.append(EpochRow(epoch, float(epoch_out.losses[r]), last.val_loss,
                                           last.val_accuracy, epoch_time, spe))
        if stopped == "time budget" or within < spe:  # the budget ended the pass inside the epoch
            break
        if time_budget_s is not None and train_s >= time_budget_s and epoch < max_epochs:
            stopped = "time budget"
            break
        if not full_budget and all(o.reached for o in outcomes):
            stopped = "target reached"
            break
        if max_steps is not None and done >= max_steps:
            stopped = "max steps"
            break
    return ToTargetRun(outcomes, spe, done, done / spe, train_s, eval_s, n_checks, stopped)


def train_pass(config: RunConfig, lrs: Sequence[float], seeds: Sequence[int], warmup_steps: int, train: Dataset,
               val: Dataset, target: Target, *, isolate: bool = True, **limits: Any) -> ToTargetRun:
    """One pass (replica k: ``lrs[k]``, ``seeds[k]``) trained on ``train`` to ``target`` on ``val`` as the
    trainer trains every run: in a fresh worker (``isolate``; else here, in a process that is itself fresh
    or whose memory nobody reads), at ``config.threads``, the engine prewarmed on a few rows first. The
    session is eager (``trainer.start_session``). ``limits``: ``train_to_target``'s keywords (batch size,
    budgets, checks)."""
    args = (config, list(lrs), list(seeds), warmup_steps, train, val, target, limits)
    return run_isolated(_train_pass, *args) if isolate else _train_pass(*args)


def _train_pass(config: RunConfig, lrs: list[float], seeds: list[int], warmup_steps: int, train: Dataset,
                val: Dataset, target: Target, limits: dict[str, Any]) -> ToTargetRun:
    engine, device = get_engine(config.engine), resolve_device(config.device)
    with torch_threads(config.threads):
        prewarm_engine(engine, config, train, device, seeds, eager=True)
        session = start_session(engine, config, train, device, seeds, eager=True)
        session.set_schedule(lrs, warmup_steps)
        return train_to_target(session, val, target, n_train=train.n_samples, device=device, **limits)
