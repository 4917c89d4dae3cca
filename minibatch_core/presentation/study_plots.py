"""A study's plots (matplotlib, Agg, PNG): steps and time to target vs batch size, best learning rate vs
batch size, and the gradient noise scale over training. Reads tables; never trains."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from minibatch_core.fsio import atomic_write_bytes  # noqa: E402
from minibatch_core.presentation.plotkit import plain_log_y, readable_ticks  # noqa: E402

DPI = 110
PANEL_W, PANEL_H = 5.6, 4.2
GROUP = ["dataset", "engine", "device"]


def _save(fig: plt.Figure, path: Path) -> Path:
    readable_ticks(fig)  # many batch sizes on a log axis: no label may run into the next
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _panels(best: pd.DataFrame) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    return [(key, g.sort_values("batch_size")) for key, g in best.groupby(GROUP, sort=True)]


def _figure(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_W * cols, PANEL_H * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _batch_axis(ax: plt.Axes, sizes: np.ndarray) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(int(s)) for s in sizes], fontsize=8)
    ax.minorticks_off()
    if sizes.min() == sizes.max():
        ax.set_xlim(sizes.min() / 2, sizes.max() * 2)
    ax.set_xlabel("batch size (rows per step)")
    ax.grid(True, which="major", alpha=0.3)


def _title(key: tuple[str, str, str]) -> str:
    return " · ".join(key)


def _censored_level(study: pd.DataFrame, key: tuple[str, str, str], column: str) -> pd.Series:
    """Per batch size, the budget its runs used (where no rate reached the target): the censored marker."""
    rows = study[(study["dataset"] == key[0]) & (study["engine"] == key[1]) & (study["device"] == key[2])]
    return rows.groupby("batch_size")[column].max()


def plot_steps_to_target(best: pd.DataFrame, study: pd.DataFrame, critical: list[dict[str, Any]],
                         path: Path) -> Path:
    """The hero plot: best-rate median steps to target (bars: the seeds' range), perfect scaling
    (slope -1 from the smallest batch), the fitted S_min + E_min/B, B_crit and B_simple."""
    panels = _panels(best)
    fig, axes = _figure(len(panels))
    crit = {(c["dataset"], c["engine"], c["device"]): c for c in critical}
    for ax, (key, g) in zip(axes, panels, strict=True):
        ok = g[g["status"] != "none reached"]
        sizes = g["batch_size"].to_numpy(dtype=float)
        if not ok.empty:
            b, s = ok["batch_size"].to_numpy(dtype=float), ok["median_steps"].to_numpy(dtype=float)
            err = np.vstack([s - ok["min_steps"].to_numpy(dtype=float), ok["max_steps"].to_numpy(dtype=float) - s])
            ax.errorbar(b, s, yerr=err, fmt="o", color="C0", capsize=3, zorder=3,
                        label="measured (best lr; median, range over seeds)")
            ax.plot(sizes, s[0] * b[0] / sizes, ls=":", color="grey", label="perfect scaling (slope −1)")
        c = crit.get(key, {})
        if c.get("b_crit"):
            grid = np.geomspace(sizes.min(), sizes.max(), 200)
            ax.plot(grid, c["s_min"] + c["e_min"] / grid, color="C1",
                    label=f"fit S_min + E_min/B (S_min {c['s_min']:.3g}, E_min {c['e_min']:.3g})")
            ax.axvline(c["b_crit"], color="C1", ls="--", lw=1, label=f"B_crit (measured) {c['b_crit']:.3g}")
            band = c.get("b_crit_interval")
            if band:
                ax.axvspan(band[0], band[1], color="C1", alpha=0.12,
                           label=f"B_crit {c.get('confidence_level', 0.9):.0%} interval {band[0]:.3g}–{band[1]:.3g}")
        if c.get("b_simple"):
            ax.axvline(c["b_simple"], color="C2", ls="-.", lw=1, label=f"B_simple (predicted) {c['b_simple']:.3g}")
            band = c.get("b_simple_interval")
            if band:
                ax.axvspan(band[0], band[1], color="C2", alpha=0.10, label="B_simple interval")
        censored = g[g["status"] == "none reached"]
        if not censored.empty:
            budget = _censored_level(study, key, "steps_run")
            ys = [budget.get(bs, np.nan) for bs in censored["batch_size"]]
            ax.scatter(censored["batch_size"], ys, marker="^", s=70, facecolors="none", edgecolors="C3",
                       zorder=3, label="no rate reached the target (marker at the budget)")
        plain_log_y(ax, counts=True)  # steps often span less than a decade: 2, 5, 10, not a lone 10^0
        _batch_axis(ax, sizes)
        ax.set_ylabel("steps to target")
        ax.set_title(_title(key), fontsize=10)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Steps to the validation target vs batch size (each batch size at its best learning rate)",
                 fontsize=11)
    return _save(fig, path)


def plot_time_to_target(best: pd.DataFrame, study: pd.DataFrame, path: Path) -> Path:
    panels = _panels(best)
    fig, axes = _figure(len(panels))
    for ax, (key, g) in zip(axes, panels, strict=True):
        ok = g[g["status"] != "none reached"]
        sizes = g["batch_size"].to_numpy(dtype=float)
        if not ok.empty:
            t = ok["median_time_s"].to_numpy(dtype=float) * 1e3
            err = np.vstack([t - ok["min_time_s"].to_numpy(dtype=float) * 1e3,
                             ok["max_time_s"].to_numpy(dtype=float) * 1e3 - t])
            ax.errorbar(ok["batch_size"], t, yerr=err, fmt="o-", color="C0", capsize=3,
                        label="best lr: median, range over seeds")
            win = ok.loc[ok["median_time_s"].astype(float).idxmin()]
            ax.scatter([win["batch_size"]], [win["median_time_s"] * 1e3], s=160, facecolors="none",
                       edgecolors="C1", lw=2, zorder=4, label=f"fastest: batch {win['batch_spec']}")
        censored = g[g["status"] == "none reached"]
        if not censored.empty:
            budget = _censored_level(study, key, "train_time_s") * 1e3
            ax.scatter(censored["batch_size"], [budget.get(bs, np.nan) for bs in censored["batch_size"]],
                       marker="^", s=70, facecolors="none", edgecolors="C3", label="not reached (at budget)")
        plain_log_y(ax)
        _batch_axis(ax, sizes)
        ax.set_ylabel("training time to target (ms)")
        ax.set_title(_title(key), fontsize=10)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Wall time to the validation target (training only, evaluation excluded)", fontsize=11)
    return _save(fig, path)


def plot_best_lr(best: pd.DataFrame, study: pd.DataFrame, path: Path) -> Path:
    """Best rate per batch size, with linear (∝ B) and square-root (∝ √B) scaling through batch 32's
    best rate (or the nearest batch size's), and the grid's ends (a best rate on an end may be cut off)."""
    panels = _panels(best)
    fig, axes = _figure(len(panels))
    for ax, (key, g) in zip(axes, panels, strict=True):
        ok = g[g["status"] != "none reached"]
        sizes = g["batch_size"].to_numpy(dtype=float)
        rows = study[(study["dataset"] == key[0]) & (study["engine"] == key[1]) & (study["device"] == key[2])]
        lo, hi = float(rows["lr"].min()), float(rows["lr"].max())
        if not ok.empty:
            b, lr = ok["batch_size"].to_numpy(dtype=float), ok["best_lr"].to_numpy(dtype=float)
            ax.plot(b, lr, "o-", color="C0", label="best lr (lowest median steps)")
            edge = ok[ok["lr_at_grid_edge"].astype(bool)]
            if not edge.empty:
                ax.scatter(edge["batch_size"], edge["best_lr"], s=130, facecolors="none", edgecolors="C3",
                           label="at the grid's end (true best may lie beyond)")
            anchor = int(np.argmin(np.abs(np.log(b / 32))))
            grid = np.geomspace(sizes.min(), sizes.max(), 100)
            if len(sizes) > 1:  # one batch size: no scaling to draw
                ax.plot(grid, lr[anchor] * grid / b[anchor], ls=":", color="grey", label="linear scaling ∝ B")
                ax.plot(grid, lr[anchor] * np.sqrt(grid / b[anchor]), ls="--", color="grey",
                        label="sqrt scaling ∝ √B")
        ax.axhspan(lo, hi, color="C0", alpha=0.06, label=f"learning rates tried ({lo:.3g}–{hi:.3g})")
        ax.set_yscale("log")
        ax.set_ylim(lo / 3, hi * 3)
        _batch_axis(ax, sizes)
        ax.set_ylabel("learning rate")
        ax.set_title(_title(key), fontsize=10)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Best learning rate vs batch size", fontsize=11)
    return _save(fig, path)


def plot_noise_scale(noise_points: pd.DataFrame, critical: list[dict[str, Any]], path: Path) -> Path:
    """B_simple over training: each measurement's ratio (dots), a rolling ratio of averages over five
    measurements (line), the prediction (average before the target) and the measured B_crit."""
    datasets = list(dict.fromkeys(noise_points["dataset"]))
    fig, axes = _figure(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        p = noise_points[noise_points["dataset"] == dataset].sort_values("step")
        point = p["trace"] / p["grad_sq"]
        runs = p["seed"].nunique() if "seed" in p else 1
        ax.scatter(p["step"], point.where(point > 0), s=10, color="C0", alpha=0.35,
                   label="one measurement: tr(Σ)/|G|²")
        # pooled over the runs (seeds) at each step, then a rolling ratio of averages
        pooled = p.groupby("step")[["trace", "grad_sq"]].mean()
        rolling = pooled["trace"].rolling(5, center=True, min_periods=2).mean() / \
            pooled["grad_sq"].rolling(5, center=True, min_periods=2).mean()
        ax.plot(pooled.index, rolling.where(rolling > 0), color="C0",
                label=f"rolling (5 measurements, {runs} run{'s' if runs != 1 else ''})")
        entries = [c for c in critical if c["dataset"] == dataset]
        noise = entries[0].get("noise", {}) if entries else {}
        first = entries[0] if entries else {}
        if noise.get("steps_to_target") is not None:
            ax.axvline(noise["steps_to_target"], color="k", lw=1, ls=":", label="target reached (first seed)")
        b_simple = first.get("b_simple") or noise.get("b_simple")
        if b_simple:
            ax.axhline(b_simple, color="C2", ls="-.", label=f"B_simple before target {b_simple:.3g}")
            band = first.get("b_simple_interval")
            if band:
                ax.axhspan(band[0], band[1], color="C2", alpha=0.12,
                           label=f"its {first.get('confidence_level', 0.9):.0%} interval")
        for c in entries:
            if c.get("b_crit"):
                ax.axhline(c["b_crit"], color="C1", ls="--", lw=1, label=f"B_crit measured ({c['engine']}) "
                           f"{c['b_crit']:.3g}")
        ax.set_yscale("log")
        ax.set_xlabel(f"training step (reference loop, batch {noise.get('train_batch', '?')}, "
                      f"lr {noise.get('lr', float('nan')):.3g})")
        ax.set_ylabel("gradient noise scale B_simple")
        ax.set_title(f"{dataset}: B_small {noise.get('b_small', '?')}, B_big {noise.get('b_big', '?')}",
                     fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Gradient noise scale over training (McCandlish et al. 2018, App. A)", fontsize=11)
    return _save(fig, path)
