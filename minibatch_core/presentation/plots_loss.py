"""The loss plots: loss per epoch and loss against training time, divergence marked on both."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from minibatch_core.presentation import labels as L
from minibatch_core.presentation import plotkit as K
from minibatch_core.presentation.plotkit import PlotData


def _panels(runs: pd.DataFrame) -> list[tuple[str, str]]:
    return [(setup, engine) for setup in runs.attrs["setup_order"] for engine in runs.attrs["engine_order"]
            if ((runs["setup"] == setup) & (runs["engine"] == engine)).any()]


def _panel_title(ax, runs: pd.DataFrame, setup: str, engine: str) -> None:
    ax.set_title(f"{engine} | {setup}" if len(runs.attrs["setup_order"]) > 1 else engine)


def _mark_diverged(ax, part: pd.DataFrame, styles: dict, x: str = "epoch") -> int:
    """An ✕ on the top edge where each batch size's runs diverged, and one boxed line per batch size
    ("1: diverged at epoch 2") in the panel's corner. Returns the number of batch sizes marked."""
    gone = part[part["diverged"]].groupby(["batch", "run_id"])["diverged_epoch"].first().reset_index()
    lines = []
    for batch, rows in gone.groupby("batch", sort=False):
        first = int(rows["diverged_epoch"].min())
        where = first if x == "epoch" else part.loc[(part["batch"] == batch) & (part["epoch"] == first),
                                                    "per_model_time_s"].median()
        ax.plot([where], [0.97], marker="X", markersize=11, color=styles[batch].color, linestyle="none",
                transform=ax.get_xaxis_transform(), clip_on=False, zorder=5)
        seeds = part.loc[part["batch"] == batch, "run_id"].nunique()
        lines.append(f"✕ {batch}: {L.diverged_text(first, len(rows), seeds)}")
    if lines:
        ax.text(0.98, 0.88, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=8,
                color="firebrick", zorder=6, bbox={"facecolor": "white", "edgecolor": "firebrick", "alpha": 0.9})
    return len(lines)


def _loss_panels(runs: pd.DataFrame) -> tuple[plt.Figure, list, list[tuple]]:
    """The figure, its axes, and per panel (setup x engine) its rows and those with a finite loss."""
    panels = _panels(runs)
    fig, axes = K.grid(len(panels), sharey=True)
    parts = []
    for ax, (setup, engine) in zip(axes, panels, strict=True):
        part = runs[(runs["setup"] == setup) & (runs["engine"] == engine)]
        parts.append((ax, setup, engine, part, part[np.isfinite(part["epoch_loss"])]))
    return fig, axes, parts


def loss_vs_epoch(data: PlotData) -> plt.Figure:
    runs = data.runs
    styles = K.batch_styles(runs.attrs["batch_order"])
    fig, axes, parts = _loss_panels(runs)
    for ax, setup, engine, part, finite in parts:
        for batch in runs.attrs["batch_order"]:
            rows = finite[finite["batch"] == batch]
            if rows.empty:
                continue
            st = styles[batch]
            for _, seed in rows.groupby("run_id"):  # each seed faint: the spread is the seeds' own
                ax.plot(seed["epoch"], seed["epoch_loss"], color=st.color, linestyle=st.linestyle, alpha=0.3,
                        linewidth=0.9)
            median = rows.groupby("epoch")["epoch_loss"].median()
            ax.plot(median.index, median.values, color=st.color, linestyle=st.linestyle, marker=st.marker,
                    markersize=5, linewidth=2.2, label=batch)
        if not finite.empty:
            K.plain_log_y(ax)
        _mark_diverged(ax, part, styles)
        if finite.empty:
            ax.set_yticks([])
            K.note(ax, "every run diverged:\nno finite loss to draw")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_xlabel(L.axis_label("epoch"))
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(L.axis_label("epoch_loss"))
        _panel_title(ax, runs, setup, engine)
    return K.finish(fig, axes, "batch size",
                    "Training loss per epoch by batch size (thick: median over seeds; thin: each seed)")


def loss_vs_time(data: PlotData) -> plt.Figure:
    runs = data.runs
    styles = K.batch_styles(runs.attrs["batch_order"])
    fig, axes, parts = _loss_panels(runs)
    for ax, setup, engine, part, finite in parts:
        for batch in runs.attrs["batch_order"]:
            rows = finite[finite["batch"] == batch]
            if rows.empty:
                continue
            curve = rows.groupby("epoch").agg(loss=("epoch_loss", "median"), t=("per_model_time_s", "median"))
            st = styles[batch]
            ax.plot(curve["t"], curve["loss"], color=st.color, linestyle=st.linestyle, marker=st.marker,
                    markersize=4, linewidth=2, label=batch)
        K.seconds_log_x(ax)
        if not finite.empty:
            K.plain_log_y(ax)
        _mark_diverged(ax, part, styles, x="time")
        if finite.empty:
            ax.set_yticks([])
            K.note(ax, "every run diverged:\nno finite loss to draw")
        ax.set_xlabel(L.axis_label("cumulative_time"))
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(L.axis_label("epoch_loss"))
        _panel_title(ax, runs, setup, engine)
    return K.finish(fig, axes, "batch size",
                    "Loss against training time: the curve furthest down-left gets low soonest "
                    "(median over seeds; one marker per epoch)")
