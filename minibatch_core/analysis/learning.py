"""Did a configuration learn? Its accuracy and loss against the trivial predictors of its data.

Two baselines need no model at all: always predicting the largest class (its accuracy is that class's
share of the rows, ``majority_accuracy``) and predicting every class with equal probability (its
cross-entropy is ln k, ``uniform_loss``). A run *learned* when it beats both: its accuracy exceeds the
majority share by more than two binomial standard errors of an accuracy on N rows (so 0.41 against 0.40
on 178 rows is not a finding) and its final loss is below ln k. A configuration learned when every seed
that did not diverge learned, did not when none did, and "partly" otherwise.

Accuracy is the held-out one where the records have it (``val_accuracy``, a study), else the one on the
training rows (``eval_accuracy``, a sweep evaluates the whole dataset it trained on); ``accuracy_on`` says
which.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from minibatch_core.analysis.tables import CONFIG_KEYS, with_defaults

LEARNED, PARTLY, NOT_LEARNED, DIVERGED = "learned", "partly", "not learned", "diverged"
STANDARD_ERRORS = 2.0  # how far above the majority share an accuracy must be to count as learned


def majority_fallback(dataset: str) -> float | None:
    """The largest class's share of a bundled dataset, for folders written before ``majority_accuracy``
    was recorded; None for anything else (a file may have changed, synthetic data has its own seed)."""
    from minibatch_core.input.data import BUNDLED

    if dataset not in BUNDLED:
        return None
    import sklearn.datasets

    y = np.asarray(getattr(sklearn.datasets, BUNDLED[dataset])().target)
    return float(np.bincount(y).max() / len(y))


def margin(majority: float, n_rows: float) -> float:
    """Two binomial standard errors of an accuracy near ``majority`` on ``n_rows`` rows."""
    if not (np.isfinite(majority) and np.isfinite(n_rows)) or n_rows <= 0:
        return 0.0
    return STANDARD_ERRORS * math.sqrt(majority * (1 - majority) / n_rows)


def run_learning(runs: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
    """One row per run: its configuration, seed, ``diverged``, ``final_loss``, ``accuracy`` (held-out
    where recorded, else training), ``accuracy_on``, ``majority_accuracy``, ``uniform_loss`` and
    ``learned`` (bool; False for a diverged run)."""
    runs = with_defaults(runs, checked=checked)
    last = runs.sort_values("epoch", kind="stable").groupby("run_id", sort=False).tail(1)
    loss = pd.to_numeric(last["epoch_loss"], errors="coerce")
    flagged = last["diverged"].astype(str).str.lower().isin(["true", "1", "1.0"]) if "diverged" in last \
        else pd.Series(False, index=last.index)
    diverged = flagged | ~np.isfinite(loss)
    val = pd.to_numeric(last["val_accuracy"], errors="coerce") if "val_accuracy" in last else None
    held_out = val.notna() if val is not None else pd.Series(False, index=last.index)
    accuracy = val.where(held_out, pd.to_numeric(last["eval_accuracy"], errors="coerce")) if val is not None \
        else pd.to_numeric(last["eval_accuracy"], errors="coerce")
    recorded = pd.to_numeric(last["majority_accuracy"], errors="coerce") if "majority_accuracy" in last \
        else pd.Series(np.nan, index=last.index)
    missing = recorded.isna() & ~held_out  # a study's held-out share is not the whole dataset's
    if missing.any():
        fallback = {d: majority_fallback(str(d)) for d in last.loc[missing, "dataset"].unique()}
        recorded = recorded.where(~missing, last["dataset"].map(fallback).astype(float))
    k = pd.to_numeric(last["n_classes"], errors="coerce").astype(float)  # NA (not recorded) -> NaN
    out = last[[*CONFIG_KEYS, "run_id", "seed"]].copy()
    out["diverged"] = diverged.to_numpy()
    out["final_loss"] = loss.where(~diverged)
    out["accuracy"] = accuracy.where(~diverged)
    out["accuracy_on"] = np.where(held_out, "held-out", "training")
    out["majority_accuracy"] = recorded
    out["uniform_loss"] = np.log(k.where(k >= 2))
    out["classes"] = k
    n_rows = pd.to_numeric(last["n_samples"], errors="coerce").astype(float)
    bar = [m + margin(m, n) if np.isfinite(m) else -np.inf for m, n in zip(recorded, n_rows, strict=True)]
    beats_guess = out["accuracy"] > np.asarray(bar)
    beats_uniform = out["final_loss"] < out["uniform_loss"].fillna(np.inf)
    out["learned"] = (~out["diverged"]) & beats_guess & beats_uniform
    return out.reset_index(drop=True)


def config_learning(runs: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
    """One row per configuration (``CONFIG_KEYS``): ``n_seeds``, ``n_learned``, ``verdict`` (learned /
    partly / not learned / diverged), the accuracy's median, min and max over the seeds that did not
    diverge, ``accuracy_on``, ``majority_accuracy``, ``uniform_loss`` and ``total_steps`` (optimizer steps
    over the whole run, per model)."""
    runs = with_defaults(runs, checked=checked)
    per_run = run_learning(runs, checked=True)
    g = per_run.groupby(CONFIG_KEYS, sort=False, dropna=False)
    out = pd.DataFrame({
        "n_seeds": g["seed"].nunique(),
        "n_diverged": g["diverged"].sum().astype(int),
        "n_learned": g["learned"].sum().astype(int),
        "accuracy_median": g["accuracy"].median(),
        "accuracy_min": g["accuracy"].min(),
        "accuracy_max": g["accuracy"].max(),
        "accuracy_on": g["accuracy_on"].first(),
        "majority_accuracy": g["majority_accuracy"].first(),
        "uniform_loss": g["uniform_loss"].first(),
        "classes": g["classes"].first(),
    })
    # steps a run got: the sum over its epochs (a diverged run stopped early; the median run is reported)
    steps = runs.groupby("run_id", sort=False)["steps"].sum()
    keyed = runs.groupby("run_id", sort=False)[CONFIG_KEYS].first().assign(_steps=steps)
    out["total_steps"] = keyed.groupby(CONFIG_KEYS, sort=False, dropna=False)["_steps"].median()
    alive = out["n_seeds"] - out["n_diverged"]
    out["verdict"] = np.select(
        [alive == 0, out["n_learned"] == alive, out["n_learned"] == 0],
        [DIVERGED, LEARNED, NOT_LEARNED], default=PARTLY)
    return out.reset_index()
