"""Tables from records: pure pandas, no training, no plotting.

Conventions used throughout (and documented in results/README.md):
- epoch time statistics exclude the warm-up epoch (epoch 1) always: a one-epoch run has no timed epoch, and
  its time statistics are NaN (shown as "no timed epoch"), never the warm-up passed off as a median;
- a diverged run's last row is its diverged epoch, with NaN losses: its final loss is NaN, and
  ``n_diverged`` / ``diverged_epoch_first`` say so;
- the spread of epoch time is the interquartile range (25th-75th percentile) over all timed epochs of
  all seeds of a configuration;
- for multi-seed engines (``replicas`` > 1) one timed pass trains every replica, so the per-model time
  is ``epoch_time / replicas``; speedups between engines compare per-model times.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from minibatch_core.input.config import batch_sort_key
from minibatch_core.records.identity import IDENTITY_COLUMNS
from minibatch_core.records.io import check_runs, load_runs
from minibatch_core.running.measurement import Measurement, timed_rows

# one configuration = one row of summary.csv (seeds are aggregated over): its identity, plus the resolved
# batch size (a function of batch_spec and the data) kept for display
CONFIG_KEYS = [*IDENTITY_COLUMNS, "batch_size"]
# what two configurations must share to be compared on batch size or engine
MATCH_KEYS = [c for c in IDENTITY_COLUMNS if c not in ("engine", "batch_spec")]
LESSON_BATCH = "32"
BASELINE_ENGINES = ("reference", "sklearn")
# "allreduce": the gradient all-reduce of a distributed (ddp) step; 0 for single-process engines
PHASES = ("data", "forward", "backward", "allreduce", "optimizer")


def _by(frame: pd.DataFrame, keys: list[str]):
    """Grouped by configuration. An identity column a file did not record is NaN, which must still form
    a group rather than drop the rows."""
    return frame.groupby(keys, sort=False, dropna=False)


# --- reading ----------------------------------------------------------------------------------------------

def read_runs(path: str | Path) -> pd.DataFrame:
    """runs.csv through the records loader (checked, typed)."""
    return load_runs(path)


def with_defaults(frame: pd.DataFrame, source: str = "runs", *, checked: bool = False) -> pd.DataFrame:
    """A runs frame that may not have come through the loader (tests, notebooks), checked and typed.

    ``checked=True`` is the caller's word that ``frame`` is what ``read_runs`` / ``check_runs`` returned
    (not modified since): it is returned as it is. ``report.build`` loads runs.csv once and passes that
    frame down with ``checked=True`` instead of checking it again in every table and plot."""
    return frame if checked else check_runs(frame, source)


# --- ordering ----------------------------------------------------------------------------------------------

def engine_order(engines: list[str]) -> list[str]:
    """Registered engines in registry order, then any others alphabetically."""
    from minibatch_core.engines import engine_names

    known = [e for e in engine_names() if e in engines]
    return known + sorted(set(engines) - set(known))


def batch_order(frame: pd.DataFrame) -> list[str]:
    """Batch specs from small to large: numbers ascending, then ``full``."""
    specs = frame["batch_spec"].astype(str).unique().tolist()
    return sorted(specs, key=batch_sort_key)


def _sort(frame: pd.DataFrame) -> pd.DataFrame:
    engines = engine_order(frame["engine"].unique().tolist())
    specs = batch_order(frame)
    key = frame.assign(_e=frame["engine"].map(engines.index), _b=frame["batch_spec"].map(specs.index))
    cols = [c for c in ["dataset", "device", "lr", "optimizer", "hidden", "epochs", "_b", "_e"] if c in key]
    return key.sort_values(cols, kind="stable").drop(columns=["_e", "_b"]).reset_index(drop=True)


# --- summary ---------------------------------------------------------------------------------------------

def timed_epochs(runs: pd.DataFrame) -> pd.DataFrame:
    """The epochs plots draw times of: the timed ones (``Measurement``'s rule), plus the warm-up of a run
    that has nothing else (a plot needs a point; its one-epoch runs are marked there). Statistics use
    ``Measurement``."""
    only_warmup = runs.groupby("run_id")["warmup"].transform("all")
    return runs[runs.index.isin(timed_rows(runs).index) | only_warmup]


def _time_stats(rows: pd.DataFrame) -> pd.Series:
    m = Measurement.from_rows(rows)
    return pd.Series({"epoch_time_median_s": m.median, "epoch_time_q1_s": m.q1, "epoch_time_q3_s": m.q3,
                      "epoch_time_min_s": m.min, "epoch_time_max_s": m.max, "warmup_time_median_s": m.warmup_s})


def final_epochs(runs: pd.DataFrame) -> pd.DataFrame:
    last = runs.groupby("run_id")["epoch"].transform("max")
    return runs[runs["epoch"] == last]


def summarize(runs: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
    """summary.csv: one row per configuration, aggregated across seeds (``checked``: see ``with_defaults``)."""
    runs = with_defaults(runs, checked=checked)
    timed = timed_rows(runs)
    final = final_epochs(runs)
    g_timed = _by(timed, CONFIG_KEYS)
    g_final = _by(final, CONFIG_KEYS)
    g_all = _by(runs, CONFIG_KEYS)
    per_run_total = _by(runs, CONFIG_KEYS + ["run_id"])["epoch_time_s"].sum().reset_index()
    times = g_all[["seed", "epoch", "warmup", "replicas", "epoch_time_s"]].apply(_time_stats)
    summary = pd.DataFrame({
        "device_name": g_all["device_name"].first(),
        "replicas": g_all["replicas"].max(),
        "n_seeds": g_all["seed"].nunique(),
        "steps": g_all["steps"].median(),
        **{c: times[c] for c in ("epoch_time_median_s", "epoch_time_q1_s", "epoch_time_q3_s", "epoch_time_min_s",
                                 "epoch_time_max_s")},
        "n_timed_epochs": g_timed["epoch_time_s"].count(),  # every seed's rows (a multi-seed pass on each)
        "warmup_time_median_s": times["warmup_time_median_s"],
        "total_time_median_s": _by(per_run_total, CONFIG_KEYS)["epoch_time_s"].median(),
        "samples_per_s_median": g_timed["samples_per_s"].median(),
        "final_loss_mean": g_final["epoch_loss"].mean(),
        "final_loss_std": g_final["epoch_loss"].std(ddof=1),
        "final_eval_loss_mean": g_final["eval_loss"].mean(),
        "final_eval_accuracy_mean": g_final["eval_accuracy"].mean(),
        "peak_memory_median_bytes": g_final["peak_memory_bytes"].median(),
        "n_diverged": _by(final[final["diverged"]], CONFIG_KEYS)["seed"].nunique(),
        "diverged_epoch_first": g_final["diverged_epoch"].min(),
    })
    for count in ("n_diverged", "n_timed_epochs"):  # a configuration with none is absent from its group-by
        summary[count] = summary[count].fillna(0).astype(int)
    if "calibration_step_s" in runs:
        summary["calibration_step_s"] = g_all["calibration_step_s"].first()
    summary = summary.reset_index()
    summary["epoch_time_per_model_s"] = summary["epoch_time_median_s"] / summary["replicas"]
    summary["model_samples_per_s_median"] = summary["samples_per_s_median"] * summary["replicas"]
    summary = _add_ratios_to_lesson(summary)
    summary = _add_engine_speedups(summary)
    return _sort(summary)


def _add_ratios_to_lesson(summary: pd.DataFrame) -> pd.DataFrame:
    """Each row against batch 32 on the same engine, dataset, device (and lr, optimizer, epochs, model)."""
    keys = ["engine", *MATCH_KEYS]
    lesson = summary[summary["batch_spec"] == LESSON_BATCH][keys + ["epoch_time_median_s", "final_loss_mean"]]
    lesson = lesson.rename(columns={"epoch_time_median_s": "_t32", "final_loss_mean": "_l32"})
    merged = summary.merge(lesson, on=keys, how="left")
    merged["time_ratio_vs_b32"] = merged["epoch_time_median_s"] / merged["_t32"]
    merged["loss_ratio_vs_b32"] = merged["final_loss_mean"] / merged["_l32"]
    return merged.drop(columns=["_t32", "_l32"])


def _add_engine_speedups(summary: pd.DataFrame) -> pd.DataFrame:
    """speedup_vs_<engine> = that engine's per-model epoch time / this row's, same batch size and setup.
    Above 1: this row is faster. Only for baseline engines present in the sweep."""
    keys = [*MATCH_KEYS, "batch_spec"]
    for base in BASELINE_ENGINES:
        rows = summary[summary["engine"] == base]
        if rows.empty:
            continue
        ref = rows[keys + ["epoch_time_per_model_s"]].rename(columns={"epoch_time_per_model_s": "_base"})
        summary = summary.merge(ref, on=keys, how="left")
        summary[f"speedup_vs_{base}"] = summary["_base"] / summary["epoch_time_per_model_s"]
        summary = summary.drop(columns=["_base"])
    return summary


# --- questions the report answers -------------------------------------------------------------------------

def profile_split(profile: pd.DataFrame) -> pd.DataFrame:
    """profile.csv long -> one row per configuration with ``<phase>_s`` (mean s/step) and
    ``<phase>_share`` per phase, and ``total_step_s``."""
    keys = [c for c in ["config_id", "engine", "dataset", "device", "batch_spec", "batch_size", "lr", "optimizer",
                        "hidden", "replicas", "workers"] if c in profile.columns and profile[c].notna().all()]
    long = profile.assign(phase=profile["phase"].astype(str) + "_s")
    wide = long.pivot_table(index=keys, columns="phase", values="mean_step_s", aggfunc="mean").reset_index()
    wide.columns.name = None
    found = [p for p in PHASES if f"{p}_s" in wide.columns]
    wide[[f"{p}_s" for p in found]] = wide[[f"{p}_s" for p in found]].fillna(0.0)  # not split: no time there
    wide["total_step_s"] = wide[[f"{p}_s" for p in found]].sum(axis=1)
    for p in found:
        wide[f"{p}_share"] = wide[f"{p}_s"] / wide["total_step_s"]
    return _sort(wide)
