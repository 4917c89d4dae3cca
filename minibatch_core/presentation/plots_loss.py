"""The loss plots: loss per epoch and loss against training time, divergence marked on both."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from minibatch_core.presentation import labels as L
from minibatch_core.presentation import plot_styles as S
from minibatch_core.presentation import plotkit as K
from minibatch_core.presentation.plotkit import PlotData


def _panels(runs: pd.DataFrame) -> list[tuple[str, str]]:
    return [(setup, engine) for setup in runs.attrs["setup_order"] for engine in runs.attrs["engine_order"]
            if ((runs["setup"] == setup) & (runs["engine"] == engine)).any()]


def _panel_title(ax, runs: pd.DataFrame, setup: str, engine: str) -> None:
    ax.set_title(f"{engine} | {setup}" if len(runs.attrs["setup_order"]) > 1 else engine)


def _mark_diverged(ax, part: pd.DataFrame, styles: dict, x: str = "epoch") -> int:
    """An ✕ on the top edge where each series' runs diverged, and one boxed line per series
    ("1: diverged at epoch 2") in the panel's corner. Returns the number of series marked."""
    gone = part[part["diverged"]].groupby(["series", "run_id"])["diverged_epoch"].first().reset_index()
    lines = []
    for series, rows in gone.groupby("series", sort=False):
        first = int(rows["diverged_epoch"].min())
        where = first if x == "epoch" else part.loc[(part["series"] == series) & (part["epoch"] == first),
                                                    "per_model_time_s"].median()
        ax.plot([where], [0.97], marker="X", markersize=11, color=styles[series].color, linestyle="none",
                transform=ax.get_xaxis_transform(), clip_on=False, zorder=5)
        seeds = part.loc[part["series"] == series, "run_id"].nunique()
        lines.append(f"✕ {series}: {L.diverged_text(first, len(rows), seeds)}")
    if lines:
        ax.text(0.98, 0.88, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=8,
                color="firebrick", zorder=6, bbox={"facecolor": "white", "edgecolor": "firebrick", "alpha": 0.9})
    return len(lines)


def _loss_panels(runs: pd.DataFrame, sharex: bool = False) -> tuple[plt.Figure, list, list[tuple]]:
    """The figure, its axes, and per panel (setup x engine) its rows and those with a finite loss."""
    panels = _panels(runs)
    fig, axes = K.grid(len(panels), sharey=True, sharex=sharex)
    parts = []
    for ax, (setup, engine) in zip(axes, panels, strict=True):
        part = runs[(runs["setup"] == setup) & (runs["engine"] == engine)]
        parts.append((ax, setup, engine, part, part[np.isfinite(part["epoch_loss"])]))
    return fig, axes, parts


def _heading(runs: pd.DataFrame) -> str:
    axes = runs.attrs.get("variant_axes", [])
    return "batch size" + "".join(f" · {K.axis_name(a)}" for a in axes)


def _seed_proxy(text: str, band: bool = False) -> dict:
    """A legend entry that says what the faint lines (or bands) are, drawn in no panel."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return {text: Patch(color="0.6", alpha=0.3) if band else Line2D([], [], color="0.4", alpha=0.5, linewidth=0.9)}


def loss_vs_epoch(data: PlotData) -> plt.Figure:
    runs = data.runs
    styles = S.styles_of(runs)
    fig, axes, parts = _loss_panels(runs)
    extra: dict = {}
    for ax, setup, engine, part, finite in parts:
        for series in runs.attrs["series_order"]:
            rows = finite[finite["series"] == series]
            if rows.empty:
                continue
            st = styles[series]
            for _, seed in rows.groupby("run_id"):  # each seed faint: the spread is the seeds' own
                ax.plot(seed["epoch"], seed["epoch_loss"], color=st.color, linestyle=st.linestyle, alpha=0.3,
                        linewidth=0.9)
            median = rows.groupby("epoch")["epoch_loss"].median()
            ax.plot(median.index, median.values, color=st.color, linestyle=st.linestyle, marker=st.marker,
                    markersize=5, linewidth=2.2, label=series)
        if not finite.empty:
            K.plain_log_y(ax)
            if finite["run_id"].nunique() > finite["series"].nunique():
                extra = _seed_proxy("thin lines: one per seed")
        _mark_diverged(ax, part, styles)
        if finite.empty:
            ax.set_yticks([])
            K.note(ax, "every run diverged:\nno finite loss to draw")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_xlabel(L.axis_label("epoch"))
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(L.axis_label("epoch_loss"))
        _panel_title(ax, runs, setup, engine)
    return K.finish(fig, axes, _heading(runs),
                    "Training loss per epoch by batch size (thick: median over seeds; thin: each seed)", extra)


def overlap_note(curves: dict[str, tuple[float, float]]) -> str | None:
    """None when some time lies inside every curve's [first, last] time; else which curve ends before
    which starts, so the reader compares the loss each reached, not the curves at one time."""
    if len(curves) < 2:
        return None
    start = max(curves.items(), key=lambda kv: kv[1][0])
    end = min(curves.items(), key=lambda kv: kv[1][1])
    if start[1][0] <= end[1][1]:
        return None
    return (f"no common time: {end[0]} ends at {L.fmt_seconds_short(end[1][1])},\n"
            f"before {start[0]} starts at {L.fmt_seconds_short(start[1][0])}")


def loss_vs_time(data: PlotData) -> plt.Figure:
    runs = data.runs
    styles = S.styles_of(runs)
    fig, axes, parts = _loss_panels(runs, sharex=True)
    extra: dict = {}
    for ax, setup, engine, part, finite in parts:
        spans: dict[str, tuple[float, float]] = {}
        for series in runs.attrs["series_order"]:
            rows = finite[finite["series"] == series]
            if rows.empty:
                continue
            curve = rows.groupby("epoch").agg(loss=("epoch_loss", "median"), t=("per_model_time_s", "median"),
                                              lo=("epoch_loss", "min"), hi=("epoch_loss", "max"))
            st = styles[series]
            if rows["run_id"].nunique() > 1:  # the seeds' spread around the median, at the median's time
                ax.fill_between(curve["t"], curve["lo"], curve["hi"], color=st.color, alpha=0.15, linewidth=0)
            ax.plot(curve["t"], curve["loss"], color=st.color, linestyle=st.linestyle, marker=st.marker,
                    markersize=4, linewidth=2, label=series)
            spans[series] = (float(curve["t"].min()), float(curve["t"].max()))
        K.seconds_log_x(ax)
        if not finite.empty:
            K.plain_log_y(ax)
            if finite["run_id"].nunique() > finite["series"].nunique():
                extra = _seed_proxy("band: lowest–highest seed", band=True)
        _mark_diverged(ax, part, styles, x="time")
        note = overlap_note(spans)
        if note:  # under the panel's x label: inside the panel it covered curves wherever it stood
            ax.annotate(note, xy=(0.5, 0), xycoords=ax.xaxis.label, xytext=(0, -3), textcoords="offset points",
                        ha="center", va="top", fontsize=7.5, color="dimgray")
        if finite.empty:
            ax.set_yticks([])
            K.note(ax, "every run diverged:\nno finite loss to draw")
        ax.set_xlabel(L.axis_label("cumulative_time"))
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(L.axis_label("epoch_loss"))
        _panel_title(ax, runs, setup, engine)
    return K.finish(fig, axes, _heading(runs),
                    "Loss against training time, all panels on one time axis (median over seeds, band: lowest–"
                    "highest seed; one marker per epoch)", extra)
