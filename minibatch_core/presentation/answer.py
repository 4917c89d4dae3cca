"""The report's first paragraph: the lesson's question answered in plain words, numbers and spread.

Per dataset and device, one engine carries the headline (the lesson's own ``reference`` loop when it ran);
the other engines are then reconciled with it: losses per epoch agree or not, and where the winner per
second differs, the sentence says why (what an epoch costs at each batch size on that engine).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from minibatch_core.analysis.contention import Contention
from minibatch_core.analysis.outcomes import GROUP_KEYS
from minibatch_core.analysis.tables import CONFIG_KEYS, engine_order
from minibatch_core.presentation import labels as L
from minibatch_core.presentation.verdict import STUDY_HINT, figures_sentence, settings_sentence, verdict_sentence

_SHAPE = ("n_samples", "n_features", "n_classes")  # follow the dataset: never a setting of their own


def _batch(r: pd.Series) -> str:
    return L.batch_label(r["batch_spec"], r["batch_size"])


def _by_batch(group: pd.DataFrame) -> pd.DataFrame:
    return group.assign(_b=group["batch_spec"].map(L.batch_sort_key)).sort_values("_b").drop(columns="_b")


def _loss_sentence(group: pd.DataFrame, where: str, engine: str) -> str:
    epochs = L.plural(int(group["epochs"].iloc[0]), "epoch")
    ok = group.dropna(subset=["final_loss_median"])
    gone = group[group["n_diverged"] == group["n_seeds"]]
    if ok.empty:
        when = ", ".join(f"batch size {_batch(r)} at epoch {int(r['diverged_epoch'])}"
                         for _, r in _by_batch(gone).iterrows() if np.isfinite(r["diverged_epoch"]))
        return (f"{where}, every {engine} run diverged ({when}): the loss became non-finite, so no batch "
                "size has a final loss to compare.")
    best = ok.loc[ok["final_loss_median"].idxmin()]
    n = int(best["n_seeds"] - best["n_diverged"])
    spread = (f"median of {n} seeds, range {L.fmt_loss(best['final_loss_min'])}–"
              f"{L.fmt_loss(best['final_loss_max'])}" if n > 1 else "one seed")
    rest, gone_text = [], []
    for _, r in _by_batch(group).iterrows():
        if r.name == best.name:
            continue
        if r["n_diverged"] == r["n_seeds"]:
            gone_text.append(f"batch size {_batch(r)} {L.diverged_text(r['diverged_epoch'])} in every seed")
        elif r["n_seeds"] - r["n_diverged"] > 1 and r["final_loss_min"] != r["final_loss_max"]:
            rest.append(f"{L.fmt_loss(r['final_loss_median'])} ({L.fmt_loss(r['final_loss_min'])}–"
                        f"{L.fmt_loss(r['final_loss_max'])}) for batch size {_batch(r)}")
        else:
            rest.append(f"{L.fmt_loss(r['final_loss_median'])} for batch size {_batch(r)}")
    return (f"{where}, after {epochs} batch size {_batch(best)} reached the lowest training loss with the "
            f"{engine} engine: {L.fmt_loss(best['final_loss_median'])} ({spread})"
            + (", against " + " and ".join(rest) if rest else "")
            + ("; " + "; ".join(gone_text) if gone_text else "") + ".")


def _time_sentence(group: pd.DataFrame, engine: str) -> tuple[str, pd.Series | None]:
    reached = group[np.isfinite(group["time_median_s"].astype(float))]
    if reached.empty:
        return "", None
    best = reached.loc[reached["time_median_s"].idxmin()]
    source = group[group["batch_spec"] == best["target_from"]]
    if best["target_from"] == "32":
        target = f"{L.fmt_loss(best['target_loss'])} (batch size 32's median final loss)"
    elif not source.empty and "verdict" in group:
        target = (f"{L.fmt_loss(best['target_loss'])} (batch size {_batch(source.iloc[0])}'s median final loss, "
                  "the highest of the batch sizes that learned)")
    else:
        target = f"a loss of {L.fmt_loss(best['target_loss'])}"
    n = int(best["n_reached"])
    of = int(best["n_seeds"])
    span = L.fmt_seconds_range(best["time_min_s"], best["time_max_s"])
    if n == of:
        spread = f"median of {of} seeds, range {span}" if n > 1 else "one seed"
    else:
        spread = (f"median of {of} seeds, the {of - n} that never got there counted as slowest"
                  + (f"; range {span} over the {n} that did" if n > 1 else ""))
    rest = []
    for _, r in _by_batch(group).iterrows():
        if r.name == best.name:
            continue
        if r["n_reached"] == 0:
            rest.append(f"batch size {_batch(r)} did not get there in "
                        f"{L.plural(int(r['epochs']), 'epoch')}")
        elif not np.isfinite(r["time_median_s"]):
            rest.append(f"only {int(r['n_reached'])} of {int(r['n_seeds'])} seeds of batch size {_batch(r)} "
                        "got there")
        else:
            rest.append(f"{L.fmt_times(r['time_median_s'] / best['time_median_s'])} sooner than batch size "
                        f"{_batch(r)}")
    alone = len(reached) == 1 and len(group) > 1  # a race with one finisher names no winner "soonest"
    lead = (f"Only batch size {_batch(best)} got to {target} at all, in "
            if alone else f"Per second of training, batch size {_batch(best)} got to {target} soonest: ")
    return (lead + f"{L.fmt_seconds_short(best['time_median_s'])} ({spread})"
            + (", " + "; ".join(rest) if rest else "") + "."), best


def _why(group: pd.DataFrame, loss_best: pd.Series, time_best: pd.Series) -> str:
    """Why the winner per epoch is not the winner per second: what its epochs cost."""
    lw, tw = loss_best, time_best
    ratio = lw["epoch_time_s"] / tw["epoch_time_s"]
    return (f"Batch size {_batch(lw)} wins per epoch but not per second: it makes {int(lw['steps'])} "
            f"optimizer steps per epoch to batch size {_batch(tw)}'s {int(tw['steps'])}, so each of its epochs "
            f"took {L.fmt_times(ratio)} as long ({L.fmt_seconds_short(lw['epoch_time_s'])} vs "
            f"{L.fmt_seconds_short(tw['epoch_time_s'])}).")


def _other_engines(frame: pd.DataFrame, headline: str) -> str:
    winners: dict[str, list[str]] = {}
    ratios: dict[str, float] = {}
    for engine, group in frame.groupby("engine", sort=False):
        reached = group[np.isfinite(group["time_median_s"].astype(float))]
        if reached.empty:
            winners.setdefault("none", []).append(engine)
            continue
        best = reached.loc[reached["time_median_s"].idxmin()]
        winners.setdefault(_batch(best), []).append(engine)
        one, b32 = group[group["batch_spec"] == "1"], group[group["batch_spec"] == "32"]
        if not one.empty and not b32.empty:
            ratios[engine] = float(one["epoch_time_s"].iloc[0] / b32["epoch_time_s"].iloc[0])
    if len(frame["engine"].unique()) < 2 or list(winners) == ["none"]:
        return ""
    if len(winners) == 1:
        return f"Every engine agrees on the winner per second (batch size {next(iter(winners))})."
    parts = [f"batch size {b} for {', '.join(e)}" if b != "none" else
             f"none for {', '.join(e)} (no batch size got most of its seeds to the target)"
             for b, e in winners.items()]
    text = "The winner per second depends on the engine: " + "; ".join(parts) + "."
    # the cost of a step explains a different winner only where nothing diverged (else divergence does)
    if ratios and "1" in winners and len(winners) > 1 and not frame["n_diverged"].any():
        text += (" The engines differ in what a step costs: batch size 1's epoch took "
                 + ", ".join(f"{L.fmt_times(v)} batch 32's with {e}" for e, v in ratios.items())
                 + ", so engines with little per-step overhead let the many small steps of batch size 1 pay off.")
    return text


def headline_groups(configs: pd.DataFrame, learning: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Per setting (dataset, device, lr, ...), the headline engine's configurations with their learning
    figures, labelled by what varies ("" when one setting): the rows of the answer's table."""
    extra = [c for c in learning if c not in configs or c in CONFIG_KEYS]
    frame = configs.merge(learning[extra], on=CONFIG_KEYS, how="left")
    settings = [k for k in GROUP_KEYS if k != "engine"]
    varying = [k for k in settings if frame[k].nunique(dropna=False) > 1 and k not in _SHAPE]
    out = []
    for key, part in frame.groupby(settings, sort=False, dropna=False):
        setting = dict(zip(settings, key, strict=True))
        engines = engine_order(part["engine"].unique().tolist())
        headline = "reference" if "reference" in engines else engines[0]
        label = " · ".join(f"{k} {L.axis_value(setting[k])}" for k in varying)
        out.append((label + (f" · {headline}" if label and headline != "reference" else ""),
                    part[part["engine"] == headline]))
    return out


def answer_paragraphs(configs: pd.DataFrame, ttl: pd.DataFrame, n_samples: dict[str, int],
                      contention: Contention | None, learning: pd.DataFrame | None = None) -> list[str]:
    """One paragraph per dataset · device (and lr/optimizer setting), headline engine first. ``learning``
    (``analysis.learning.config_learning``): the paragraph then opens with whether each batch size learned,
    the settings it was judged at and the trivial baselines."""
    keys = [*GROUP_KEYS, "batch_spec", "batch_size"]
    if learning is not None:
        extra = [c for c in learning if c not in configs or c in CONFIG_KEYS]
        configs = configs.merge(learning[extra], on=CONFIG_KEYS, how="left")
    frame = configs.merge(ttl[[*keys, "target_loss", "target_from", "n_reached", "time_median_s", "time_min_s",
                               "time_max_s"]], on=keys, how="left")
    frame["n_reached"] = frame["n_reached"].fillna(0)
    settings = [k for k in GROUP_KEYS if k != "engine"]
    varying = [k for k in settings if k not in ("dataset", "device", *_SHAPE) and frame[k].nunique(dropna=False) > 1]
    out = []
    for key, part in frame.groupby(settings, sort=False, dropna=False):
        setting = dict(zip(settings, key, strict=True))
        engines = engine_order(part["engine"].unique().tolist())
        headline = "reference" if "reference" in engines else engines[0]
        group = part[part["engine"] == headline]
        n = n_samples.get(setting["dataset"])
        where = (f"On {setting['dataset']}" + (f" ({n:,} samples)" if n else "") + f", {setting['device']}"
                 + "".join(f", {k} {L.axis_value(setting[k])}" for k in varying))
        sentences = []
        if learning is not None and group["verdict"].notna().all():  # its own paragraph, first
            out.append(" ".join((verdict_sentence(group), STUDY_HINT, settings_sentence(group),
                                  figures_sentence(group))))
        sentences.append(_loss_sentence(group, where, headline))
        time_text, time_best = _time_sentence(group, headline)
        if not time_text and learning is not None and group["final_loss_median"].notna().any():
            time_text = ("No batch size learned in every seed, so no time to a target loss is given: a loss that "
                         "only a model no better than guessing reaches would time a race nobody finished.")
        if time_text:
            if contention is not None:
                time_text = time_text[:-1] + " (timings contended: see the warning above)."
            sentences.append(time_text)
        ok = group.dropna(subset=["final_loss_median"])
        if time_best is not None and not ok.empty:
            loss_best = ok.loc[ok["final_loss_median"].idxmin()]
            if loss_best["batch_spec"] != time_best["batch_spec"] and np.isfinite(loss_best["epoch_time_s"]):
                sentences.append(_why(group, loss_best, time_best))
        sentences.append(_other_engines(part, headline))
        out.append(" ".join(s for s in sentences if s))
    seeds = int(frame["n_seeds"].max())
    if seeds > 1:
        out.append(f"Each seed is a different initialization and shuffle order; the ranges over the {seeds} seeds "
                   "show how much that alone moves the result, so differences inside them are not findings.")
    return out
