"""The run report's answer and its per-question tables, in words and cells, from analysed records.

Everything here formats numbers computed in ``analysis.outcomes``; nothing is measured or assumed.
Tables put batch sizes across and engines (or engine · setup) down, so one glance answers a question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from minibatch_core.analysis.outcomes import GROUP_KEYS
from minibatch_core.analysis.tables import LESSON_BATCH, engine_order
from minibatch_core.presentation import labels as L


@dataclass(frozen=True)
class Question:
    title: str
    answer: str  # one sentence above the table
    table: pd.DataFrame


def _ordered(configs: pd.DataFrame, datasets: list[str] | None = None) -> pd.DataFrame:
    """Datasets (as given, else first seen) and devices in the sweep's order, engines in registry order,
    batch sizes ascending."""
    engines = engine_order(configs["engine"].unique().tolist())
    datasets = datasets or list(dict.fromkeys(configs["dataset"]))
    devices = list(dict.fromkeys(configs["device"]))
    key = configs.assign(_e=configs["engine"].map(engines.index), _b=configs["batch_spec"].map(L.batch_sort_key),
                         _d=configs["dataset"].map(datasets.index), _v=configs["device"].map(devices.index))
    return key.sort_values(["_d", "_v", "lr", "optimizer", "_e", "_b"], kind="stable").drop(
        columns=["_e", "_b", "_d", "_v"])


def _row_labels(configs: pd.DataFrame) -> Callable[[pd.Series], str]:
    """row -> the engine, plus whatever else varies in the sweep (dataset · device, lr, optimizer, ...);
    what varies is read off ``configs`` once, not per row."""
    setups = configs[["dataset", "device"]].drop_duplicates().shape[0] > 1
    shape = ("engine", "dataset", "device", "n_samples", "n_features", "n_classes")  # follow the dataset
    varying = [key for key in GROUP_KEYS
               if key not in shape and key in configs and configs[key].nunique(dropna=False) > 1]

    def label(row: pd.Series) -> str:
        parts = [str(row["engine"])]
        if setups:
            parts.append(L.setup_label(row["dataset"], row["device"]))
        parts += [f"{key} {L.axis_value(row[key])}" for key in varying]
        return " · ".join(parts)

    return label


def _columns(configs: pd.DataFrame) -> dict[str, str]:
    """batch_spec -> column header; "full (N)" only when N is the same everywhere."""
    out = {}
    for spec in sorted(configs["batch_spec"].unique(), key=L.batch_sort_key):
        sizes = configs.loc[configs["batch_spec"] == spec, "batch_size"].unique()
        out[spec] = L.batch_label(spec, sizes[0]) if len(sizes) == 1 else spec
    return out


def _pivot(configs: pd.DataFrame, cell, datasets: list[str] | None = None) -> pd.DataFrame:
    """Rows: engine (· setup); columns: batch sizes; cells: ``cell(row)``."""
    configs = _ordered(configs, datasets)
    columns = _columns(configs)
    row_label = _row_labels(configs)
    rows: dict[str, dict[str, str]] = {}
    for _, r in configs.iterrows():
        rows.setdefault(row_label(r), {})[columns[r["batch_spec"]]] = cell(r)
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(columns.values())).fillna(L.MISSING)
    return frame.rename_axis("engine").reset_index()


def _spread(median: float, lo: float, hi: float, n: int, fmt) -> str:
    if n <= 1 or lo == hi:
        return fmt(median)
    span = L.fmt_seconds_range(lo, hi) if fmt is L.fmt_seconds_short else f"{fmt(lo)}–{fmt(hi)}"
    return f"{fmt(median)} ({span})"


def loss_cell(r: pd.Series) -> str:
    n, bad = int(r["n_seeds"]), int(r["n_diverged"])
    if bad == n:
        return L.diverged_text(r["diverged_epoch"])
    text = _spread(r["final_loss_median"], r["final_loss_min"], r["final_loss_max"], n - bad, L.fmt_loss)
    return text + (f"; {L.diverged_text(r['diverged_epoch'], bad, n)}" if bad else "")


def time_cell(r: pd.Series) -> str:
    n, reached = int(r["n_seeds"]), int(r["n_reached"])
    if int(r.get("n_diverged", 0)) == n:
        return L.diverged_text(r["diverged_epoch"])
    if reached == 0:
        return f"not reached in {L.plural(int(r['epochs']), 'epoch')}"
    if not np.isfinite(r["time_median_s"]):  # fewer than half the seeds got there: no median
        return (f"{reached} of {n} seeds, in {L.fmt_seconds_short(r['time_min_s'])}" if reached == 1 else
                f"{reached} of {n} seeds, in {L.fmt_seconds_range(r['time_min_s'], r['time_max_s'])}")
    text = _spread(r["time_median_s"], r["time_min_s"], r["time_max_s"], reached, L.fmt_seconds_short)
    return text + (f"; {reached} of {n} seeds" if reached < n else "")


def _b32(configs: pd.DataFrame, column: str) -> pd.Series:
    lesson = configs.loc[configs["batch_spec"] == LESSON_BATCH, [*GROUP_KEYS, column]]
    merged = configs[GROUP_KEYS].merge(lesson.rename(columns={column: "_ref"}), on=GROUP_KEYS, how="left")
    return merged["_ref"].set_axis(configs.index)


def _winners(configs: pd.DataFrame, column: str) -> dict[tuple, pd.Series]:
    """Per group, the configuration with the lowest finite ``column``."""
    out = {}
    for key, group in configs.groupby(GROUP_KEYS, sort=False, dropna=False):
        finite = group[np.isfinite(group[column].astype(float))]
        if not finite.empty:
            out[key] = finite.loc[finite[column].astype(float).idxmin()]
    return out


def _who(winners: dict[tuple, pd.Series], configs: pd.DataFrame) -> str:
    """"batch size 1 for every engine", or per setting when several were swept: "on wine · cpu, batch size
    32 for every engine; on iris · cpu, batch size 32 for reference, fast; batch size 1 for stacked"."""
    settings: dict[str, dict[str, list[str]]] = {}
    row_label = _row_labels(configs)
    for w in winners.values():
        label = row_label(w)
        engine, _, setting = label.partition(" · ")
        by_batch = settings.setdefault(setting, {})
        by_batch.setdefault(L.batch_label(w["batch_spec"], w["batch_size"]), []).append(engine)
    texts = {}
    for setting, by_batch in settings.items():
        if len(by_batch) == 1:
            (batch, engines), = by_batch.items()
            text = f"batch size {batch} for " + ("every engine" if len(engines) > 1 else engines[0])
        else:
            text = "; ".join(f"batch size {b} for {', '.join(e)}" for b, e in by_batch.items())
        texts[setting] = text
    if len(set(texts.values())) == 1 and len(texts) > 1:
        return next(iter(texts.values())) + f" on {' and '.join(texts)} alike"
    return "; ".join(f"on {setting}, {text}" if setting else text for setting, text in texts.items())


def epoch_time_question(configs: pd.DataFrame) -> Question:
    configs = configs.assign(_ratio=configs["epoch_time_s"] / _b32(configs, "epoch_time_s"))

    def cell(r: pd.Series) -> str:
        ratio = r["_ratio"]
        return L.fmt_seconds_short(r["epoch_time_s"]) + (
            f" ({L.fmt_times(ratio)})" if np.isfinite(ratio) and r["batch_spec"] != LESSON_BATCH else "")

    answer = f"Shortest epochs: {_who(_winners(configs, 'epoch_time_s'), configs)}."
    ones = configs.loc[configs["batch_spec"] == "1", "_ratio"].dropna()
    if not ones.empty:
        span = (L.fmt_times(ones.min()) if np.isclose(ones.min(), ones.max(), rtol=0.05)
                else f"{L.fmt_times(ones.min())} to {L.fmt_times(ones.max())}")
        answer += (f" Batch size 1 makes one optimizer step per sample, so its epochs took {span} as long as "
                   "batch 32's.")
    return Question("Time per epoch", answer, _pivot(configs, cell))


def loss_question(configs: pd.DataFrame) -> Question:
    epochs = sorted(configs["epochs"].unique())
    budget = L.plural(int(epochs[0]), "epoch") if len(epochs) == 1 else "the epoch budget"
    winners = _winners(configs, "final_loss_median")
    if winners:
        answer = f"Lowest training loss after {budget}: {_who(winners, configs)}."
    else:
        answer = f"Every run diverged before the end of {budget}: there is no final loss to compare."
    bad = configs[configs["n_diverged"] > 0]
    if not bad.empty and winners:
        answer += f" {int(bad['n_diverged'].sum())} of {int(configs['n_seeds'].sum())} runs diverged."
    return Question(f"Loss after {budget}", answer + " Cells: median over seeds (lowest–highest seed).",
                    _pivot(configs, loss_cell))


def time_to_target_question(configs: pd.DataFrame, ttl: pd.DataFrame) -> Question:
    frame = configs.merge(ttl[[*GROUP_KEYS, "batch_spec", "batch_size", "target_loss", "target_from",
                               "n_reached", "time_median_s", "time_min_s", "time_max_s"]],
                          on=[*GROUP_KEYS, "batch_spec", "batch_size"], how="left")
    frame["n_reached"] = frame["n_reached"].fillna(0)
    winners = _winners(frame, "time_median_s")
    sources = frame.dropna(subset=["target_from"]).drop_duplicates(GROUP_KEYS)
    if sources.empty:
        return Question("Time to a target loss",
                        "No batch size learned in every seed (beat always guessing the largest class, with a loss "
                        "below ln k), so there is no target a learning model reaches and no race is timed.",
                        _pivot(frame, time_cell))
    lesson = (sources["target_from"] == LESSON_BATCH).all()
    what = ("batch size 32's median final loss (the lesson's choice)" if lesson else
            "batch size 32's median final loss where it learned, else the highest median final loss among the "
            "batch sizes that learned (a target only a model that beat the trivial predictors reaches)")
    answer = (f"Soonest in training time to {what}: {_who(winners, frame)}. Cells: median training time over "
              "seeds (fastest–slowest seed that got there); a seed that never got there counts as slower than "
              "any, so a median needs at least half the seeds. Only a batch size that learned (beat always guessing "
              "the largest class, with a loss below ln k) sets the target.")
    table = _pivot(frame, time_cell)
    row_label = _row_labels(frame)
    targets = {row_label(r): L.fmt_loss(r["target_loss"]) for _, r in sources.iterrows()}
    table.insert(1, "target loss", table["engine"].map(targets).fillna(L.MISSING))
    return Question("Time to a target loss", answer, table)


def engine_question(summary: pd.DataFrame, datasets: list[str] | None = None) -> Question | None:
    if "speedup_vs_reference" not in summary or summary["engine"].nunique() < 2:
        return None
    others = summary[summary["engine"] != "reference"].dropna(subset=["speedup_vs_reference"])
    if others.empty:
        return None
    parts = []
    for engine, group in others.groupby("engine", sort=False):
        lo, hi = group["speedup_vs_reference"].min(), group["speedup_vs_reference"].max()
        parts.append(f"{engine} {L.fmt_times(lo)}" + ("" if np.isclose(lo, hi, rtol=0.05) else
                                                      f" to {L.fmt_times(hi)}"))
    answer = ("Per-model epoch time of the reference engine divided by each engine's (above 1× = faster): "
              + "; ".join(parts) + ".")
    return Question("Engines against the lesson's loop", answer,
                    _pivot(others, lambda r: L.fmt_times(r["speedup_vs_reference"]), datasets))
