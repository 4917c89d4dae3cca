"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), measured in training.

The prediction of the critical batch comes from gradient norms at two batch sizes B_small < B_big,
measured every few steps along a training run of the study's model (any ``nn.Module``: the two-batch
estimator needs only the gradient of a batch's mean loss; autograd, ``torch.optim``, the lesson's DataLoader
loop) with the study's loss, the engines' own ``batch_loss_fn`` (cross_entropy, or mse on float targets).
With E|G_B|^2 = |G|^2 + tr(Sigma)/B (their App. A):

    |G|^2     ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big)

Each is averaged over the measurements first and B_simple is the ratio of the averages (single
measurements are noisy and can even be negative). The noise scale grows as the loss falls, so the
prediction uses the measurements taken *before* the run first meets the target; the per-measurement
course is kept for the plot. Measurement batches come from a private generator: the training run's
own batches and initialization are those of the reference engine. The measurement's seconds are
reported separately from the training's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from minibatch_core.engines.base import batch_loss_fn, evaluate_logits
from minibatch_core.engines.reference import make_optimizer
from minibatch_core.input.data import Dataset
from minibatch_core.input.models import build_model
from minibatch_core.running.to_target import Target

SMALL_DRAWS = 32  # batches of B_small per measurement (B_big: 4 draws, or 1 when B_big is every row)
BIG_DRAWS = 4


@dataclass
class NoisePoint:
    step: int
    g2_small: float  # mean |G_B_small|^2 over the draws
    g2_big: float
    grad_sq: float  # the |G|^2 estimate
    trace: float  # the tr(Sigma) estimate
    val_loss: float
    val_accuracy: float  # NaN with mse (no classes)


@dataclass
class NoiseScale:
    b_small: int
    b_big: int
    train_batch: int
    lr: float
    seed: int
    every: int
    steps_to_target: int | None  # of this measuring run (None: not reached within its steps)
    b_simple: float | None  # ratio of the averages over the measurements before the target
    b_simple_whole_run: float | None
    n_before_target: int
    measure_s: float  # seconds spent measuring gradients (the cost of the prediction)
    train_s: float
    points: list[NoisePoint] = field(default_factory=list)

    def to_dict(self, with_points: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_points:
            d.pop("points")
        return d


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _grad_sq(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(X), y), params)
    return float(sum((g.double() ** 2).sum() for g in grads))


def _mean_grad_sq(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch: int, draws: int,
                  rng: torch.Generator, loss_fn: LossFn) -> float:
    n = X.shape[0]
    if batch >= n:
        return _grad_sq(model, X, y, loss_fn)  # every row: the exact gradient, one draw suffices
    total = 0.0
    for _ in range(draws):
        idx = torch.randperm(n, generator=rng)[:batch]
        total += _grad_sq(model, X[idx], y[idx], loss_fn)
    return total / draws


def two_batch_estimates(g2_small: float, g2_big: float, b_small: int, b_big: int) -> tuple[float, float]:
    """(|G|^2, tr(Sigma)) from mean squared gradient norms at batch sizes b_small < b_big (App. A)."""
    grad_sq = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
    trace = (g2_small - g2_big) / (1 / b_small - 1 / b_big)
    return grad_sq, trace


def ratio(trace: list[float], grad_sq: list[float]) -> float | None:
    if not trace:
        return None
    g = sum(grad_sq) / len(grad_sq)
    return (sum(trace) / len(trace)) / g if g > 0 else None


def measure_noise_scale(train: Dataset, val: Dataset, target: Target, *, hidden: tuple[int, ...],
                        optimizer: str, train_batch: int, lr: float, seed: int, b_small: int, b_big: int,
                        every: int, max_steps: int, model: str = "mlp", loss: str = "cross_entropy") -> NoiseScale:
    """Train ``model`` (seed, batch ``train_batch``, rate ``lr``, the mean ``loss`` of a batch) for up to
    ``max_steps`` steps, measuring the two-batch gradient norms at step 0 and every ``every`` steps."""
    if not 1 <= b_small < b_big:
        raise ValueError(f"need 1 <= B_small < B_big, got {b_small}, {b_big}")
    X, y = train.X, train.y
    b_big = min(b_big, train.n_samples)
    torch.manual_seed(seed)
    spec = model
    model = build_model(spec, train.input_shape, train.n_outputs, hidden)  # mlp on a table: the lesson's
    opt = make_optimizer(optimizer, model.parameters(), lr)
    loader = DataLoader(TensorDataset(X, y), batch_size=train_batch, shuffle=True)
    rng = torch.Generator().manual_seed(10_000 + seed)
    criterion = batch_loss_fn(loss)  # the engines' loss, so B_simple is the noise of what they train
    points: list[NoisePoint] = []
    measure_s = train_s = 0.0
    step, reached_at = 0, None

    def measure() -> None:
        nonlocal measure_s, reached_at
        started = time.perf_counter()
        g2s = _mean_grad_sq(model, X, y, b_small, SMALL_DRAWS, rng, criterion)
        g2b = _mean_grad_sq(model, X, y, b_big, BIG_DRAWS, rng, criterion)
        measure_s += time.perf_counter() - started
        model.eval()
        val_loss, acc = evaluate_logits(model, val.X, val.y, loss)
        model.train()
        grad_sq, trace = two_batch_estimates(g2s, g2b, b_small, b_big)
        points.append(NoisePoint(step, g2s, g2b, grad_sq, trace, val_loss, acc))
        if reached_at is None and target.met(val_loss, acc):
            reached_at = step

    measure()
    while step < max_steps:
        started = time.perf_counter()
        for batch_X, batch_y in loader:
            opt.zero_grad()
            criterion(model(batch_X), batch_y).backward()
            opt.step()
            step += 1
            if step % every == 0 or step == max_steps:
                train_s += time.perf_counter() - started
                measure()
                started = time.perf_counter()
            if step >= max_steps:
                break
        train_s += time.perf_counter() - started
    before = [p for p in points if reached_at is None or p.step < reached_at] or points[:1]
    return NoiseScale(
        b_small=b_small, b_big=b_big, train_batch=train_batch, lr=lr, seed=seed, every=every,
        steps_to_target=reached_at,
        b_simple=_positive(ratio([p.trace for p in before], [p.grad_sq for p in before])),
        b_simple_whole_run=_positive(ratio([p.trace for p in points], [p.grad_sq for p in points])),
        n_before_target=len(before), measure_s=measure_s, train_s=train_s, points=points,
    )


def _positive(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None
