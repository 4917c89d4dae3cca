"""What every engine provides, so sweeps, reports, compare and bench treat engines alike.

An engine builds a *session* for one configuration and one or more seeds. The trainer owns the clock
and the memory probe; a session only trains and evaluates. ``run_epoch`` is the timed region: it
returns host floats, so any device work it queued is finished by the time it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from minibatch_core.engines.breakdown import MemoryBreakdown  # noqa: F401 - re-exported: engines import it here
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import Dataset
from minibatch_core.input.models import build_model

PROFILE_PHASES = ("data", "forward", "backward", "optimizer")


@dataclass
class PhaseClock:
    """Accumulates the seconds of instrumented steps per phase; ``means()`` is what profile() returns."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PROFILE_PHASES, 0.0))
    steps: int = 0

    def add(self, phase: str, seconds: float) -> None:
        self.totals[phase] += seconds

    def step(self, data: float, forward: float, backward: float, optimizer: float) -> None:
        for phase, seconds in zip(PROFILE_PHASES, (data, forward, backward, optimizer), strict=True):
            self.totals[phase] += seconds
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {phase: total / max(1, self.steps) for phase, total in self.totals.items()}


@dataclass
class EpochOutput:
    losses: list[float]  # one per replica: the lesson's epoch loss
    steps: int
    batch_losses: list[list[float]] | None = None  # per replica, when config.record_batches


class Session(Protocol):
    seeds: Sequence[int]

    def run_epoch(self) -> EpochOutput: ...

    def evaluate(self) -> list[tuple[float, float]]:
        """(loss, accuracy) on the whole dataset per replica: eval mode, no grad."""
        ...

    def memory(self) -> MemoryBreakdown:
        """Bytes of parameters, gradients, optimizer state and the largest batch's activations."""
        ...

    def profile(self, steps: int) -> dict[str, float] | None:
        """Mean seconds per step in each of PROFILE_PHASES over ``steps`` extra instrumented steps
        (synchronized on CUDA), or None where the engine cannot split its step."""
        ...


@dataclass(frozen=True)
class Engine:
    name: str
    summary: str
    start: Callable[[RunConfig, Dataset, torch.device, Sequence[int]], Session]
    multi_seed: bool = False  # True: all seeds train in one timed pass
    distributed: bool = False  # True: trains over config.workers processes (running/distributed.py)
    # device types the engine trains on; a sweep leaves the others out of its plan (with the reason)
    devices: tuple[str, ...] = ("cpu", "cuda")

    def runs_on(self, device: str | torch.device) -> bool:
        """Whether this engine trains on ``device`` ("cpu", "cuda", "cuda:1", or a torch.device)."""
        kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0].strip().lower()
        return kind in self.devices


@dataclass
class WorkerReport:
    """What a multi-process session knows that one process's probe cannot see. Optional: sessions
    that train in several processes provide ``worker_report(peak_memory_bytes)``, called once after the timed
    epochs on every process with its own probe's peak (a collective)."""

    workers: int
    worker_batch_size: int  # the largest per-worker share of the global batch
    other_peak_memory_bytes: list[int]  # ranks 1..W-1, each measured in its own process
    extra: dict[str, Any] = field(default_factory=dict)


EVAL_CHUNK = 65536


def is_mlp_kernel_case(config: RunConfig, data: Dataset) -> bool:
    """Where the hand-written MLP kernels (fast, stacked) apply: the lesson's model on a table, classes."""
    return config.model == "mlp" and data.X.dim() == 2 and config.loss == "cross_entropy" \
        and not data.is_regression


def make_model(config: RunConfig, data: Dataset) -> nn.Module:
    """The configuration's model, built with whatever the global RNG holds (callers seed it first)."""
    return build_model(config.model, data.input_shape, data.n_outputs, config.hidden)


def batch_loss_fn(loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The mean loss of a batch: the lesson's ``nn.CrossEntropyLoss()``, or the mean squared error with the
    output shaped like the targets ((B, 1) outputs against (B,) targets)."""
    if loss == "cross_entropy":
        return nn.CrossEntropyLoss()

    def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.reshape(targets.shape), targets)

    return mse


@torch.no_grad()
def evaluate_logits(forward: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor,
                    y: torch.Tensor, loss: str = "cross_entropy") -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (X, y), chunked so evaluation memory stays bounded. With
    ``loss="mse"``: the mean squared error, and NaN accuracy (there are no classes)."""
    total_loss = torch.zeros((), dtype=torch.float64, device=X.device)
    correct = torch.zeros((), dtype=torch.int64, device=X.device)
    for start in range(0, X.shape[0], EVAL_CHUNK):
        xb, yb = X[start:start + EVAL_CHUNK], y[start:start + EVAL_CHUNK]
        logits = forward(xb)
        if loss == "mse":
            total_loss += F.mse_loss(logits.reshape(yb.shape), yb, reduction="sum").double()
            continue
        total_loss += F.cross_entropy(logits, yb, reduction="sum").double()
        correct += (logits.argmax(1) == yb).sum()
    if loss == "mse":
        return float(total_loss) / max(1, y.numel()), float("nan")
    n = X.shape[0]
    return float(total_loss) / n, int(correct) / n
