"""Uncertainty of a study's figures: a bootstrap over seeds.

Each draw resamples, independently per batch size, that batch size's seeds with replacement (every rate
of the batch size keeps the same drawn seeds, as a rerun with other seeds would), selects the best rate
again by median steps to target, refits S(B) = S_min + E_min / B and the two regimes' slopes. The
figures' medians and percentile intervals over the draws are reported. The same is done for the noise
scale B_simple over the seeds of its measuring runs (``study_noise``). With fewer than
``MIN_SEEDS`` seeds a resample can only reshuffle one or two values, so no interval is given and the
reason is said instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CONFIDENCE = 0.9  # central percentile interval of the bootstrap draws
RESAMPLES = 1000
BOOTSTRAP_SEED = 0  # fixed: the same study gives the same intervals
MIN_SEEDS = 3
FIGURES = ("b_crit", "s_min", "e_min", "slope_small", "slope_large")


@dataclass
class BatchGrid:
    """One batch size's steps to target: rows = learning rates, columns = seeds (inf: not reached)."""

    batch_size: int
    lrs: np.ndarray
    steps: np.ndarray  # shape (n_lrs, n_seeds)


def batch_grids(group: pd.DataFrame) -> list[BatchGrid]:
    """The per-batch-size (rate x seed) matrices of one dataset x engine x device group. A rate missing
    some seed (never the case for a complete study) counts that seed as not reached."""
    steps = pd.to_numeric(group["steps_to_target"], errors="coerce").astype(float)
    frame = group.assign(_s=steps.where(group["reached"].astype(bool), math.inf))
    out = []
    for size, per in frame.groupby("batch_size", sort=True):
        table = per.pivot_table(index="lr", columns="seed", values="_s", aggfunc="min").sort_index()
        out.append(BatchGrid(int(size), table.index.to_numpy(float), table.fillna(math.inf).to_numpy(float)))
    return out


def best_median_steps(grid: BatchGrid, seeds: np.ndarray | None = None) -> float:
    """min over rates of the median over (the drawn) seeds: the study's best-rate selection."""
    steps = grid.steps if seeds is None else grid.steps[:, seeds]
    return float(np.min(np.median(steps, axis=1)))


def interval(values: np.ndarray, level: float = CONFIDENCE) -> list[float] | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


@dataclass
class Bootstrap:
    """Per figure, its draws (NaN where a draw could not fit), the median and the interval."""

    n_seeds: int
    resamples: int
    draws: dict[str, np.ndarray] = field(default_factory=dict)
    note: str = ""

    @property
    def estimable(self) -> bool:
        return self.n_seeds >= MIN_SEEDS and bool(self.draws)

    def median(self, name: str) -> float | None:
        values = self.draws.get(name)
        if values is None or not self.estimable:
            return None
        finite = values[np.isfinite(values)]
        return float(np.median(finite)) if len(finite) else None

    def interval(self, name: str) -> list[float] | None:
        return interval(self.draws[name]) if self.estimable and name in self.draws else None

    def fields(self, names: tuple[str, ...] = FIGURES) -> dict[str, Any]:
        """``<figure>_median`` and ``<figure>_interval`` for critical_batch.json (None when not estimable)."""
        out: dict[str, Any] = {}
        for name in names:
            out[f"{name}_median"] = self.median(name)
            out[f"{name}_interval"] = self.interval(name)
        return out


def too_few_seeds_note(n_seeds: int) -> str:
    return (f"an interval cannot be estimated from {n_seeds} seed{'s' if n_seeds != 1 else ''}: the bootstrap "
            f"over seeds needs at least {MIN_SEEDS}")


def bootstrap_fit(grids: list[BatchGrid], *, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Bootstrap:
    """Resample each batch size's seeds, reselect the best rate, refit B_crit, S_min, E_min and the slopes."""
    from minibatch_core.analysis.study import fit_critical_batch, regime_slopes

    n_seeds = min((g.steps.shape[1] for g in grids), default=0)
    out = Bootstrap(n_seeds, resamples)
    if n_seeds < MIN_SEEDS:
        out.note = too_few_seeds_note(n_seeds)
        return out
    rng = np.random.default_rng(seed)
    draws = {name: np.full(resamples, np.nan) for name in FIGURES}
    batch = np.array([g.batch_size for g in grids], dtype=float)
    # every draw's best median steps per batch size at once: (batch sizes, resamples)
    best = np.array([np.min(np.median(g.steps[:, rng.integers(0, g.steps.shape[1], (resamples, g.steps.shape[1]))],
                                      axis=2), axis=0) for g in grids])
    start = fit_critical_batch(batch, np.array([best_median_steps(g) for g in grids]))
    warm = (start.s_min, start.e_min) if start.b_crit is not None else None
    cache: dict[bytes, tuple[float, ...]] = {}
    for i in range(resamples):
        steps = best[:, i]
        key = steps.tobytes()
        if key not in cache:  # few seeds repeat the same resample often
            fit = fit_critical_batch(batch, steps, start=warm)
            slopes = regime_slopes(batch, steps, fit.b_crit) if fit.b_crit is not None else None
            cache[key] = (np.nan,) * len(FIGURES) if slopes is None else tuple(
                np.nan if v is None else v for v in (fit.b_crit, fit.s_min, fit.e_min, slopes.small, slopes.large))
        for name, value in zip(FIGURES, cache[key], strict=True):
            draws[name][i] = value
    out.draws = draws
    failed = int(np.isnan(draws["b_crit"]).sum())
    if failed:
        out.note = f"{failed} of {resamples} resamples could not be fitted (fewer than 3 batch sizes reached)"
    return out


def ratio_draws(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Per draw, numerator / denominator (independent bootstraps paired by draw index)."""
    n = min(len(numerator), len(denominator))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator[:n], float) / np.asarray(denominator[:n], float)
