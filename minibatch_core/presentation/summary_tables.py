"""Summary tables rendered for people (Markdown/HTML): units in the headers, seeds as mean ± std."""

from __future__ import annotations

import pandas as pd

from minibatch_core.analysis.tables import BASELINE_ENGINES, PHASES
from minibatch_core.presentation.labels import (
    DIVERGED,
    axis_value,
    batch_label,
    diverged_text,
    fmt_bytes,
    fmt_count,
    fmt_num,
    fmt_ratio,
    fmt_seconds,
)
from minibatch_core.records.identity import IDENTITY_COLUMNS

SUMMARY_NOTE = (
    "One row per configuration across seeds. Epoch time: median over every epoch of every seed with the "
    "warm-up epoch (epoch 1) excluded; IQR = 25th–75th percentile of the same epochs. Final loss: the "
    "lesson's epoch loss at the last epoch, mean ± standard deviation across the seeds that did not diverge; "
    "\"diverged\" means the loss became non-finite (a result), \"–\" means not available. Peak memory: median "
    "across seeds. \"vs b32\": ratio to batch size 32 (the lesson's choice) on the same engine, dataset and "
    "device.")


def _loss_cells(r: pd.Series) -> tuple[str, str]:
    """Final loss and accuracy, or how the configuration diverged."""
    n, bad = int(r["n_seeds"]), int(r.get("n_diverged", 0) or 0)
    if bad and bad == n:
        text = diverged_text(r.get("diverged_epoch"))
        return text, DIVERGED
    loss = f"{fmt_num(r['final_loss_mean'])} ± {fmt_num(r['final_loss_std'])}"
    if bad:
        loss += f"; {diverged_text(r.get('diverged_epoch'), bad, n)}"
    return loss, fmt_num(r["final_eval_accuracy_mean"], 3)


def display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """summary.csv rendered for people: units in the headers, seeds aggregated as mean ± std."""
    multi = (summary["replicas"] > 1).any()
    parallel = "workers" in summary and (summary["workers"] > 1).any()  # data-parallel rows: show W
    rows = []
    for _, r in summary.iterrows():
        loss, accuracy = _loss_cells(r)
        row = {
            "engine": r["engine"],
            "dataset": r["dataset"],
            "device": r["device"],
            "batch": batch_label(r["batch_spec"], int(r["batch_size"])),
            **({"workers": int(r["workers"])} if parallel else {}),
            "seeds": int(r["n_seeds"]),
            "epoch time (median)": fmt_seconds(r["epoch_time_median_s"]),
            "IQR": f"{fmt_seconds(r['epoch_time_q1_s'])} – {fmt_seconds(r['epoch_time_q3_s'])}",
        }
        if multi:
            row["per-model epoch time"] = (fmt_seconds(r["epoch_time_per_model_s"])
                                           + (f" (÷{int(r['replicas'])})" if r["replicas"] > 1 else ""))
        row.update({
            "samples/s": fmt_count(r["model_samples_per_s_median"]),
            "final loss (mean ± std)": loss,
            "eval accuracy": accuracy,
            "peak memory": fmt_bytes(r["peak_memory_median_bytes"]),
            "time vs b32": fmt_ratio(r["time_ratio_vs_b32"]),
            "loss vs b32": fmt_ratio(r["loss_ratio_vs_b32"]),
        })
        for base in BASELINE_ENGINES:
            if f"speedup_vs_{base}" in summary:
                row[f"speedup vs {base}"] = fmt_ratio(r[f"speedup_vs_{base}"])
        rows.append(row)
    return pd.DataFrame(rows)


def display_profile(split: pd.DataFrame) -> pd.DataFrame:
    shown = ("engine", "dataset", "device", "batch_spec", "workers", "n_samples", "n_features", "n_classes")
    others = [c for c in IDENTITY_COLUMNS if c in split and c not in shown and split[c].nunique(dropna=False) > 1]
    rows = []
    for _, r in split.iterrows():
        row = {"engine": r["engine"], "dataset": r["dataset"], "device": r["device"],
               "batch": batch_label(r["batch_spec"], int(r["batch_size"]))}
        if "workers" in split and (split["workers"] > 1).any():
            row["workers"] = int(r["workers"])
        for axis in others:  # lr, hidden, ...: what tells two rows of one batch size apart
            row[axis] = axis_value(r[axis])
        for p in PHASES:
            if f"{p}_s" in split:
                row[f"{p} (µs/step)"] = f"{r[f'{p}_s'] * 1e6:.1f} ({r[f'{p}_share']:.0%})"
        row["total (µs/step)"] = f"{r['total_step_s'] * 1e6:.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes escaped), without needing tabulate."""
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def summary_markdown(summary: pd.DataFrame, machine: str, warning: str | None = None) -> str:
    """summary.md; ``warning`` (contended timings) goes right under the machine line."""
    multi = (summary["replicas"] > 1).any()
    notes = [
        "# Summary",
        "",
        f"Measured on: {machine}.",
        *(["", f"> **⚠ {warning}**"] if warning else []),
        "",
        SUMMARY_NOTE,
    ]
    if any(f"speedup_vs_{b}" in summary for b in BASELINE_ENGINES):
        notes.append("")
        notes.append("\"speedup vs X\": X's per-model epoch time divided by this row's, same dataset, device and "
                     "batch size (above 1 = faster than X).")
    if multi:
        notes.append("")
        notes.append("Multi-seed engines train several models (replicas) in one timed pass: their per-model "
                     "epoch time is the pass's time ÷ replicas, and samples/s counts samples × replicas.")
    return "\n".join(notes) + "\n\n" + markdown_table(display_summary(summary)) + "\n"
