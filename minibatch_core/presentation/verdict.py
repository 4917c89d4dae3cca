"""The answer's honest opening: did each batch size learn, against which trivial baselines, at which settings.

A sweep trains one learning rate, untuned, for a fixed number of epochs and judges the loss on the rows it
trained on; so the opening says that, says how many optimizer steps each batch size got from that budget,
compares accuracy with always guessing the largest class and the loss with ln k, and names the command
that makes the comparison fair. Every word follows from ``analysis.learning``'s figures.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from minibatch_core.analysis.learning import DIVERGED, LEARNED, NOT_LEARNED, PARTLY, margin
from minibatch_core.presentation import labels as L

STUDY_HINT = ("For a fair comparison (a tuned learning rate per batch size, a held-out target, budgets in "
              "steps), run `minibatch-bench study`.")
LEARNED_NOTE = ("The answer's figures per batch size (the lesson's loop where it ran), beside the two trivial "
                "predictors. A run learned when its accuracy beat always guessing the largest class by more than "
                "two standard errors of an accuracy on N rows and its loss ended below ln k (k classes); \"learned "
                "in 1 of 3 seeds\" means the seed alone decided it.")
LESSON = {"lr": 0.001, "optimizer": "adam", "hidden": "10-10", "epochs": 10}


def _b(r: pd.Series) -> str:
    return L.batch_label(r["batch_spec"], r["batch_size"])


def _sizes(rows: list[pd.Series]) -> str:
    names = [_b(r) for r in rows]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return ("batch size " if len(names) == 1 else "batch sizes ") + text


def _settings(r: pd.Series) -> str:
    epochs = L.plural(int(r["epochs"]), "epoch")
    lesson = all(str(r[k]) == str(v) if k != "lr" else math.isclose(float(r[k]), v) for k, v in LESSON.items())
    if lesson:
        return f"At the lesson's settings (lr {float(r['lr']):g} untuned, {epochs})"
    return f"At lr {float(r['lr']):g} (one rate, untuned) with {r['optimizer']} for {epochs}"


def _acc(x: float) -> str:
    return L.MISSING if x is None or not np.isfinite(x) else f"{x:.2f}"


def _acc_spread(r: pd.Series) -> str:
    n = int(r["n_seeds"] - r["n_diverged"])
    if n == 0:
        return L.diverged_text(np.nan)
    if n == 1 or r["accuracy_min"] == r["accuracy_max"]:
        return _acc(r["accuracy_median"])
    return f"{_acc(r['accuracy_median'])} ({_acc(r['accuracy_min'])}–{_acc(r['accuracy_max'])})"


def _near_guessing(r: pd.Series) -> bool:
    """Every seed's accuracy within two standard errors of the majority share, or below it."""
    m = r["majority_accuracy"]
    n = float(r["n_samples"]) if pd.notna(r["n_samples"]) else np.nan
    return bool(np.isfinite(m) and r["accuracy_max"] <= m + margin(m, n))


def verdict_sentence(group: pd.DataFrame) -> str:
    """One sentence, true of ``group`` (one engine's batch sizes at one setting, ``config_learning`` rows
    merged with the configuration's identity): which batch sizes learned the dataset and which did not."""
    rows = [r for _, r in group.assign(_o=group["batch_spec"].map(L.batch_sort_key)).sort_values("_o").iterrows()]
    first = rows[0]
    by = {v: [r for r in rows if r["verdict"] == v] for v in (LEARNED, PARTLY, NOT_LEARNED, DIVERGED)}
    data = first["dataset"]
    lead = _settings(first) + ", "
    parts = []
    if len(by[LEARNED]) == len(rows):
        return (lead + f"every batch size learned {data}: each seed ended above always guessing the largest class "
                "in accuracy and below ln k in loss.")
    if by[LEARNED]:
        parts.append(("only " if len(by[LEARNED]) == 1 else "") + f"{_sizes(by[LEARNED])} learned {data}")
    elif by[PARTLY]:
        parts.append(f"no batch size learned {data} in every seed")
    else:
        lead += f"no batch size learned {data}: "
    for r in by[PARTLY]:
        parts.append(f"batch size {_b(r)} learned it in {int(r['n_learned'])} of "
                     f"{int(r['n_seeds'] - r['n_diverged'])} seeds")
    near = [r for r in by[NOT_LEARNED] if _near_guessing(r)]
    high = [r for r in by[NOT_LEARNED] if not _near_guessing(r)]
    if near:
        parts.append(f"{_sizes(near)} ended near or below always guessing the largest class")
    if high:
        parts.append(f"{_sizes(high)} did not beat both trivial predictors (accuracy above the largest class's "
                     "share and a loss below ln k)")
    if by[DIVERGED]:
        parts.append(f"{_sizes(by[DIVERGED])} diverged in every seed")
    return lead + "; ".join(parts) + "."


def settings_sentence(group: pd.DataFrame) -> str:
    """What the comparison is: one untuned rate, a fixed epoch budget, and where loss and accuracy come from."""
    on = group["accuracy_on"].iloc[0]
    where = ("accuracy on held-out rows" if on == "held-out"
             else "loss and accuracy measured on the rows it trained on (no held-out split)")
    return (f"This is one learning rate, not tuned for any batch size, a fixed budget of "
            f"{L.plural(int(group['epochs'].iloc[0]), 'epoch')} whatever the steps it gives, and {where}.")


def figures_sentence(group: pd.DataFrame) -> str:
    """Per batch size: accuracy beside loss and the optimizer steps it got; then the trivial baselines."""
    rows = group.assign(_o=group["batch_spec"].map(L.batch_sort_key)).sort_values("_o")
    r0 = rows.iloc[0]
    parts = []
    for _, r in rows.iterrows():
        n = int(r["n_seeds"] - r["n_diverged"])
        if n == 0:
            parts.append(f"batch size {_b(r)} diverged in every seed")
            continue
        parts.append(f"batch size {_b(r)} accuracy {_acc_spread(r)}, loss {L.fmt_loss(r['final_loss_median'])}, "
                     f"in {L.fmt_count(r['total_steps'])} optimizer steps")
    seeds = int(rows["n_seeds"].max())
    head = (f"After {L.plural(int(r0['epochs']), 'epoch')} ({r0['accuracy_on']} accuracy"
            + (f"; median of {seeds} seeds, lowest–highest in brackets" if seeds > 1 else "") + "): ")
    baselines = []
    if np.isfinite(r0["majority_accuracy"]):
        baselines.append(f"accuracy {_acc(r0['majority_accuracy'])} for always guessing the largest class")
    if np.isfinite(r0["classes"]) and r0["classes"] >= 2:
        k = int(r0["classes"])
        baselines.append(f"loss ln {k} = {math.log(k):.3f} for predicting each of the {k} classes with equal "
                         "probability")
    return head + "; ".join(parts) + ("; against the trivial baselines, " + " and ".join(baselines)
                                      if baselines else "") + "."


def verdict_table(groups: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Per batch size of each headline group: accuracy beside loss, steps and the verdict, with the two
    trivial predictors as rows of their own. ``groups``: (setting label, or "" for one group; rows)."""
    records = []
    for label, group in groups:
        rows = group.assign(_o=group["batch_spec"].map(L.batch_sort_key)).sort_values("_o")
        on = rows["accuracy_on"].iloc[0]
        head = {"setting": label} if label else {}
        for _, r in rows.iterrows():
            n = int(r["n_seeds"] - r["n_diverged"])
            loss = (L.fmt_loss(r["final_loss_median"]) if n <= 1 or r["final_loss_min"] == r["final_loss_max"]
                    else f"{L.fmt_loss(r['final_loss_median'])} ({L.fmt_loss(r['final_loss_min'])}–"
                         f"{L.fmt_loss(r['final_loss_max'])})") if n else L.diverged_text(np.nan)
            verdict = {LEARNED: "learned", NOT_LEARNED: "did not learn", DIVERGED: "diverged",
                       PARTLY: f"learned in {int(r['n_learned'])} of {n} seeds"}[r["verdict"]]
            records.append({**head, "batch size": _b(r), f"accuracy ({on})": _acc_spread(r),
                            "final loss (training)": loss, "optimizer steps": L.fmt_count(r["total_steps"]),
                            "verdict": verdict})
        r = rows.iloc[0]
        if np.isfinite(r["majority_accuracy"]):
            records.append({**head, "batch size": "always the largest class",
                            f"accuracy ({on})": _acc(r["majority_accuracy"]), "final loss (training)": L.MISSING,
                            "optimizer steps": "0", "verdict": "trivial baseline"})
        if np.isfinite(r["classes"]) and r["classes"] >= 2:
            k = int(r["classes"])
            records.append({**head, "batch size": f"each class 1/{k}", f"accuracy ({on})": L.MISSING,
                            "final loss (training)": f"{math.log(k):.3f} (ln {k})", "optimizer steps": "0",
                            "verdict": "trivial baseline"})
    return pd.DataFrame.from_records(records).fillna(L.MISSING)
