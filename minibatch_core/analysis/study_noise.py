"""B_simple along training, pooled over the measuring runs (one per seed), with bootstrap intervals.

Three readings of the same measurements (noise.csv: one row per run x measurement):
- ``start``: at step 0 (the initialization's noise scale);
- ``at_target``: the measurement at the step each run first met the target;
- ``window``: every measurement before that step.
Each pools the runs as McCandlish et al. do within one run: the ratio of the averaged tr(Sigma) and
|G|^2 estimates (single estimates are noisy and can be negative). ``window`` is the one compared with
B_crit: steps to target integrate over the whole way to the target, along which the noise scale grows,
so the critical batch of that stretch corresponds to its average rather than to either end.
The interval resamples the runs (seeds) with replacement.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from minibatch_core.analysis.study_bootstrap import (
    BOOTSTRAP_SEED,
    MIN_SEEDS,
    RESAMPLES,
    interval,
    too_few_seeds_note,
)

READINGS = ("start", "at_target", "window")
COMPARED = "window"


def _select(run: pd.DataFrame, reading: str) -> pd.DataFrame:
    reached = run["steps_to_target"].iloc[0] if "steps_to_target" in run else math.nan
    if reading == "start":
        return run[run["step"] == run["step"].min()]
    if pd.isna(reached):
        return run.iloc[0:0] if reading == "at_target" else run
    if reading == "at_target":
        return run[run["step"] == reached]
    before = run[run["step"] < reached]
    return before if not before.empty else run.iloc[:1]


def _sums(points: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per reading: per run, (sum of tr(Sigma), sum of |G|^2, count) so resamples are cheap."""
    runs = [run for _, run in points.sort_values("step").groupby("seed", sort=True)]
    out = {}
    for reading in READINGS:
        rows = []
        for run in runs:
            sel = _select(run, reading)
            rows.append((float(sel["trace"].sum()), float(sel["grad_sq"].sum()), len(sel)))
        out[reading] = np.array(rows, dtype=float).reshape(-1, 3)
    return out


def _pooled(sums: np.ndarray) -> float:
    trace, grad, count = sums.sum(axis=0)
    if count == 0 or grad <= 0:
        return math.nan
    value = (trace / count) / (grad / count)
    return value if value > 0 else math.nan


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def noise_summary(points: pd.DataFrame, *, resamples: int = RESAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> tuple[dict[str, Any], np.ndarray | None]:
    """(fields for critical_batch.json, the window's bootstrap draws or None). ``points`` has a row per
    run x measurement with ``seed``, ``step``, ``trace``, ``grad_sq`` and the run's ``steps_to_target``."""
    if points is None or points.empty:
        return {}, None
    points = points if "seed" in points else points.assign(seed=0)
    sums = _sums(points)
    n_runs = len(sums["start"])
    seeds = sorted(int(s) for s in points["seed"].unique())
    fields: dict[str, Any] = {"b_simple_runs": n_runs, "b_simple_seeds": seeds, "b_simple_compared": COMPARED}
    draws = None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_runs, (resamples, n_runs)) if n_runs >= MIN_SEEDS else None
    for reading in READINGS:
        name = "b_simple" if reading == COMPARED else f"b_simple_{reading}"
        fields[name] = _num(_pooled(sums[reading]))
        if picks is None:
            fields[f"{name}_median"] = fields[f"{name}_interval"] = None
            continue
        values = np.array([_pooled(sums[reading][p]) for p in picks])
        finite = values[np.isfinite(values)]
        fields[f"{name}_median"] = float(np.median(finite)) if len(finite) else None
        fields[f"{name}_interval"] = interval(values)
        if reading == COMPARED:
            draws = values
    if picks is None:
        fields["b_simple_interval_note"] = too_few_seeds_note(n_runs)
    return fields, draws
