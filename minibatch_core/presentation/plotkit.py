"""What every plot shares: the prepared frame, colours and styles, panel grids, axes, saving.

Colours: batch sizes get Okabe-Ito colours that stay distinguishable for colour-blind readers and in
greyscale (each also has its own line style and marker); engines get their own fixed palette.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, identical output everywhere

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator  # noqa: E402

from minibatch_core.analysis.outcomes import run_outcomes  # noqa: E402
from minibatch_core.analysis.tables import batch_order, engine_order, with_defaults  # noqa: E402
from minibatch_core.fsio import atomic_write_bytes  # noqa: E402
from minibatch_core.presentation import labels as L  # noqa: E402

DPI = 120
PANEL_W, PANEL_H = 5.0, 3.7
BATCH_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
PHASE_COLORS = ["#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854"]
ENGINE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


@dataclass(frozen=True)
class PlotData:
    runs: pd.DataFrame  # plotkit.prepare(runs.csv)
    split: pd.DataFrame | None = None  # tables.profile_split(profile.csv)


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: str
    marker: str


def batch_styles(specs: list[str]) -> dict[str, Style]:
    return {s: Style(BATCH_COLORS[i % len(BATCH_COLORS)], LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)])
            for i, s in enumerate(specs)}


def engine_styles(engines: list[str]) -> dict[str, Style]:
    return {e: Style(ENGINE_COLORS[i % len(ENGINE_COLORS)], LINESTYLES[i % len(LINESTYLES)],
                     MARKERS[i % len(MARKERS)]) for i, e in enumerate(engines)}


def prepare(runs: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
    """runs.csv plus the labels plots facet and colour by, and each run's divergence (``checked``: see
    ``tables.with_defaults``)."""
    runs = with_defaults(runs, checked=checked)
    specs = batch_order(runs)
    sizes = runs.groupby("batch_spec")["batch_size"].unique()
    label = {s: (L.batch_label(s, sizes[s][0]) if len(sizes[s]) == 1 else s) for s in specs}
    outcome = run_outcomes(runs, checked=True).set_index("run_id")[["diverged", "diverged_epoch"]]
    out = runs.drop(columns=[c for c in ("diverged", "diverged_epoch") if c in runs]).join(outcome, on="run_id")
    out = out.assign(
        batch=runs["batch_spec"].map(label),
        setup=[L.setup_label(d, v) for d, v in zip(runs["dataset"], runs["device"], strict=True)],
        per_model_epoch_s=runs["epoch_time_s"] / runs["replicas"],
        per_model_time_s=runs["cumulative_time_s"] / runs["replicas"],
        model_samples_per_s=runs["samples_per_s"] * runs["replicas"],
    )
    out.attrs["batch_order"] = [label[s] for s in specs]
    out.attrs["engine_order"] = engine_order(runs["engine"].unique().tolist())
    out.attrs["setup_order"] = list(dict.fromkeys(out["setup"]))
    return out


def grid(n_panels: int, ncols: int | None = None, sharey: bool = False, width: float = PANEL_W,
         height: float = PANEL_H) -> tuple[plt.Figure, list]:
    """A figure of ``n_panels`` axes (unused cells hidden), row-major."""
    ncols = ncols or (2 if n_panels == 4 else min(n_panels, 3))
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=sharey, figsize=(width * ncols, height * nrows))
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def title(fig: plt.Figure, text: str) -> None:
    width = max(50, int(fig.get_figwidth() * 10))
    fig.suptitle("\n".join(textwrap.fill(p, width) for p in text.split("\n")), fontsize=12, fontweight="bold")


def legend_right(fig: plt.Figure, axes: list, heading: str) -> None:
    """One legend for the figure, from the first panel that has labelled artists."""
    for ax in axes:
        handles, names = ax.get_legend_handles_labels()
        if handles:
            seen = dict(zip(names, handles, strict=True))
            fig.legend(list(seen.values()), list(seen.keys()), title=heading, loc="center left",
                       bbox_to_anchor=(1.0, 0.5), frameon=False)
            return


def finish(fig: plt.Figure, axes: list, legend_heading: str, text: str) -> plt.Figure:
    """Every multi-panel plot ends the same way: one legend on the right, the title, a tight layout."""
    legend_right(fig, axes, legend_heading)
    title(fig, text)
    fig.tight_layout()
    return fig


def plain_log_y(ax, counts: bool = False) -> None:
    """Log y axis with plain numbers (0.5, 1, 2; or 20k, 1M for counts) rather than 5x10^-1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(L.count_tick if counts else lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def seconds_log_x(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(L.seconds_tick))
    ax.xaxis.set_minor_formatter(NullFormatter())


def batch_axis(ax, sizes: list[int], labels: list[str] | None = None) -> None:
    """Log x axis labelled at exactly this panel's batch sizes (so 150 and 178 never share a panel)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(sizes)
    ax.set_xticklabels(labels or [f"{s:g}" for s in sizes])
    ax.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)


def note(ax, text: str) -> None:
    """Grey text in the middle of a panel: why it shows less than expected."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="dimgray", fontsize=9,
            wrap=True, bbox={"facecolor": "white", "edgecolor": "lightgray", "boxstyle": "round"})


def save(fig: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def themed():
    """The context every plot draws in."""
    return _Theme()


class _Theme:
    def __enter__(self):
        self._style = sns.axes_style("whitegrid")
        self._ctx = sns.plotting_context("notebook", font_scale=0.95)
        self._rc = plt.rc_context({**self._style, **self._ctx})
        self._rc.__enter__()
        return self

    def __exit__(self, *exc):
        return self._rc.__exit__(*exc)
