"""Per run and per configuration outcomes the report's answers rest on, divergence included.

A run diverged when runs.csv says so (``diverged`` / ``diverged_epoch``) or, for folders written before
those columns existed, when one of its epoch losses is not finite. A diverged run has no final loss: it
is counted as diverged, never averaged in and never silently dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from minibatch_core.analysis.tables import (
    CONFIG_KEYS,
    MATCH_KEYS,
    batch_order,
    engine_order,
    with_defaults,
)
from minibatch_core.running.measurement import Measurement

GROUP_KEYS = ["engine", *MATCH_KEYS]  # the batch sizes inside one group are compared with each other


def _truthy(column: pd.Series) -> pd.Series:
    return column.astype(str).str.strip().str.lower().isin(["true", "1", "1.0"])


def run_outcomes(runs: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
    """One row per run: its configuration, seed, ``diverged``, ``diverged_epoch``, ``final_loss`` (NaN when
    diverged), ``final_accuracy``, ``epochs_done``, ``total_time_s``. ``checked``: see
    ``tables.with_defaults``."""
    runs = with_defaults(runs, checked=checked)
    nonfinite = ~np.isfinite(pd.to_numeric(runs["epoch_loss"], errors="coerce"))
    flagged = _truthy(runs["diverged"]) if "diverged" in runs else pd.Series(False, index=runs.index)
    frame = runs.assign(_bad=nonfinite | flagged)
    first_bad = frame[nonfinite].groupby("run_id")["epoch"].min()
    recorded = (pd.to_numeric(frame["diverged_epoch"], errors="coerce").groupby(frame["run_id"]).min()
                if "diverged_epoch" in frame else pd.Series(dtype=float))
    last = frame.sort_values("epoch", kind="stable").groupby("run_id", sort=False).tail(1).set_index("run_id")
    out = last[[*CONFIG_KEYS, "seed"]].copy()
    out["diverged"] = frame.groupby("run_id")["_bad"].any()
    out["diverged_epoch"] = recorded.reindex(out.index).fillna(first_bad.reindex(out.index))
    out.loc[~out["diverged"], "diverged_epoch"] = np.nan
    out["final_loss"] = last["epoch_loss"].where(~out["diverged"])
    out["final_accuracy"] = last["eval_accuracy"].where(~out["diverged"])
    out["epochs_done"] = last["epoch"]
    out["total_time_s"] = frame.groupby("run_id")["epoch_time_s"].sum()
    return out.reset_index()


def config_outcomes(runs: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
    """One row per configuration: seeds, diverged seeds and the first diverging epoch, the final loss's
    median and range over the seeds that did not diverge, and the median timed epoch time."""
    runs = with_defaults(runs, checked=checked)
    per_run = run_outcomes(runs, checked=True)
    g = per_run.groupby(CONFIG_KEYS, sort=False, dropna=False)
    out = pd.DataFrame({
        "n_seeds": g["seed"].nunique(),
        "n_diverged": g["diverged"].sum().astype(int),
        "diverged_epoch": g["diverged_epoch"].min(),
        "final_loss_median": g["final_loss"].median(),
        "final_loss_min": g["final_loss"].min(),
        "final_loss_max": g["final_loss"].max(),
        "final_accuracy_median": g["final_accuracy"].median(),
    })
    # the timed epochs' median (``Measurement``: warm-up excluded, so NaN for a one-epoch run) per model
    g_runs = runs.groupby(CONFIG_KEYS, sort=False, dropna=False)
    out["epoch_time_s"] = (g_runs[["seed", "epoch", "warmup", "replicas", "epoch_time_s"]]
                           .apply(lambda rows: Measurement.from_rows(rows).median) / g_runs["replicas"].max())
    out["steps"] = runs.groupby(CONFIG_KEYS, sort=False, dropna=False)["steps"].median()
    return _sorted(out.reset_index())


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Datasets and devices in the sweep's order, then engines in registry order, then batch sizes."""
    engines = engine_order(frame["engine"].unique().tolist())
    specs = batch_order(frame)
    datasets, devices = list(dict.fromkeys(frame["dataset"])), list(dict.fromkeys(frame["device"]))
    key = frame.assign(_e=frame["engine"].map(engines.index), _b=frame["batch_spec"].map(specs.index),
                       _d=frame["dataset"].map(datasets.index), _v=frame["device"].map(devices.index))
    return key.sort_values(["_d", "_v", "lr", "optimizer", "hidden", "epochs", "_e", "_b"],
                           kind="stable").drop(columns=["_e", "_b", "_d", "_v"]).reset_index(drop=True)


def target_losses(configs: pd.DataFrame, lesson_batch: str = "32",
                  learning: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per group, the loss to race to: the lesson's batch size's median final loss where it has one (so
    the race asks "who gets to where the lesson's choice ends, soonest?"), else the highest median final
    loss of the group (a loss every converging batch size reached). ``target_from`` names the choice.

    ``learning`` (``analysis.learning.config_learning``): only a configuration that learned (every seed
    beat always guessing the largest class, with a loss below ln k) may set the target, so that the race
    is to a loss that means the model learned; a group where none did gets no target (nobody finished)."""
    if learning is not None:
        keep = learning.loc[learning["verdict"] == "learned", [*CONFIG_KEYS, "uniform_loss"]]
        configs = configs.merge(keep, on=CONFIG_KEYS, how="inner")
        configs = configs[configs["final_loss_median"] < configs["uniform_loss"].fillna(np.inf)]
    picked: list[tuple[int, float, str]] = []  # (a row of the group, target, source)
    for _, group in configs.groupby(GROUP_KEYS, sort=False, dropna=False):
        finite = group.dropna(subset=["final_loss_median"])
        if finite.empty:
            continue
        lesson = finite[finite["batch_spec"] == lesson_batch]
        if not lesson.empty:
            picked.append((lesson.index[0], float(lesson["final_loss_median"].iloc[0]), lesson_batch))
        else:
            worst = finite["final_loss_median"].idxmax()
            picked.append((worst, float(finite.loc[worst, "final_loss_median"]), str(finite.loc[worst, "batch_spec"])))
    # the group's own rows keep the identity columns' dtypes (nullable ints, NaN text), so merges match
    out = configs.loc[[i for i, _, _ in picked], GROUP_KEYS].reset_index(drop=True)
    out["target_loss"] = [t for _, t, _ in picked]
    out["target_from"] = [src for _, _, src in picked]
    return out


def time_to_loss(runs: pd.DataFrame, targets: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
    """Per configuration: each seed's training time (``cumulative_time_s``, per model for multi-seed
    engines) at the first epoch whose loss is at or below its group's target; how many seeds got there
    (``n_reached`` of ``n_seeds``), the range over those that did, and the median over all seeds with the
    others counted as "later than any" (censored): NaN unless at least half got there."""
    runs = with_defaults(runs, checked=checked)
    frame = runs.merge(targets, on=GROUP_KEYS)
    frame = frame.assign(_t=frame["cumulative_time_s"] / frame["replicas"])
    hit = frame[np.isfinite(frame["epoch_loss"]) & (frame["epoch_loss"] <= frame["target_loss"])]
    first = hit.sort_values("epoch", kind="stable").groupby("run_id", sort=False).head(1)
    per_run = first.set_index("run_id")[["_t", "epoch"]]
    runs_cfg = frame.groupby("run_id", sort=False)[[*CONFIG_KEYS, "target_loss", "target_from"]].first()
    runs_cfg = runs_cfg.join(per_run)
    g = runs_cfg.groupby(CONFIG_KEYS, sort=False, dropna=False)
    out = pd.DataFrame({
        "target_loss": g["target_loss"].first(),
        "target_from": g["target_from"].first(),
        "n_seeds": g.size(),
        "n_reached": g["_t"].count(),
        "time_median_s": g["_t"].agg(_censored_median),
        "time_min_s": g["_t"].min(),
        "time_max_s": g["_t"].max(),
        "epoch_median": g["epoch"].median(),
    })
    return out.reset_index()


def _censored_median(times: pd.Series) -> float:
    """Median of times where NaN means "never": the usual median when every seed got there, else the
    lower-middle value, which is known as soon as at least half did (e.g. 1 of 2 seeds)."""
    n, got = len(times), times.dropna().sort_values()
    if len(got) == n:
        return float(got.median()) if n else np.nan
    k = -(-n // 2)  # the ceil(n/2)-th smallest
    return float(got.iloc[k - 1]) if len(got) >= k else np.nan


def with_divergence(summary: pd.DataFrame, runs: pd.DataFrame, *, checked: bool = False,
                    configs: pd.DataFrame | None = None) -> pd.DataFrame:
    """summary.csv plus ``n_diverged`` (seeds that diverged) and ``diverged_epoch`` (the first).
    ``configs``: ``config_outcomes(runs)`` where the caller has it already."""
    if configs is None:
        configs = config_outcomes(runs, checked=checked)
    configs = configs[[*CONFIG_KEYS, "n_diverged", "diverged_epoch"]]
    summary = summary.drop(columns=[c for c in ("n_diverged", "diverged_epoch") if c in summary])
    merged = summary.merge(configs, on=CONFIG_KEYS, how="left")
    merged["n_diverged"] = merged["n_diverged"].fillna(0).astype(int)
    return merged
