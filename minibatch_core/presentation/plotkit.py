"""What every plot shares: the prepared frame, panel grids, titles and legends, readable axes, saving.

Colours and line styles are ``plot_styles``'.
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
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator  # noqa: E402

from minibatch_core.analysis.outcomes import run_outcomes  # noqa: E402
from minibatch_core.analysis.tables import batch_order, engine_order, with_defaults  # noqa: E402
from minibatch_core.fsio import atomic_write_bytes  # noqa: E402
from minibatch_core.presentation import labels as L  # noqa: E402
from minibatch_core.records.identity import IDENTITY_COLUMNS  # noqa: E402

DPI = 120
PANEL_W, PANEL_H = 5.0, 3.7


@dataclass(frozen=True)
class PlotData:
    runs: pd.DataFrame  # plotkit.prepare(runs.csv)
    split: pd.DataFrame | None = None  # tables.profile_split(profile.csv)


# axes that plots facet by (panels) or that follow the dataset; every other identity axis with more than
# one value in a sweep (lr, hidden, optimizer, workers, a future model axis, ...) is a "variant"
FACETED = ("engine", "dataset", "device", "batch_spec", "n_samples", "n_features", "n_classes", "target")


def varying_axes(frame: pd.DataFrame) -> list[str]:
    """The identity axes other than those plots facet by that take more than one value in ``frame``."""
    return [c for c in IDENTITY_COLUMNS if c in frame and c not in FACETED and frame[c].nunique(dropna=False) > 1]


def axis_name(column: str) -> str:
    return {"torch_threads": "threads"}.get(column, column)


def variant_labels(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    """Per row, the values of ``axes`` as "lr 0.01 · hidden 64-64" ("" when nothing else varies)."""
    if not axes:
        return pd.Series("", index=frame.index)
    return frame[axes].apply(lambda r: " · ".join(f"{axis_name(c)} {L.axis_value(r[c])}" for c in axes), axis=1)


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
    axes = varying_axes(runs)
    out["variant"] = variant_labels(out, axes)
    variants = list(dict.fromkeys(out.sort_values(axes, kind="stable")["variant"])) if axes else [""]
    out["series"] = [b + (f" · {v}" if v else "") for b, v in zip(out["batch"], out["variant"], strict=True)]
    out["engine_series"] = [e + (f" · {v}" if v else "") for e, v in zip(out["engine"], out["variant"], strict=True)]
    out.attrs["variant_axes"] = axes
    out.attrs["variant_order"] = variants
    out.attrs["batch_order"] = [label[s] for s in specs]
    present = set(out["series"])
    out.attrs["series_order"] = [s for b in out.attrs["batch_order"] for v in variants
                                 if (s := b + (f" · {v}" if v else "")) in present]
    engines_present = set(out["engine_series"])
    out.attrs["engine_series_order"] = [s for e in engine_order(runs["engine"].unique().tolist()) for v in variants
                                        if (s := e + (f" · {v}" if v else "")) in engines_present]
    out.attrs["engine_order"] = engine_order(runs["engine"].unique().tolist())
    out.attrs["setup_order"] = list(dict.fromkeys(out["setup"]))
    return out


def grid(n_panels: int, ncols: int | None = None, sharey: bool = False, width: float = PANEL_W,
         height: float = PANEL_H, sharex: bool = False) -> tuple[plt.Figure, list]:
    """A figure of ``n_panels`` axes (unused cells hidden), row-major."""
    ncols = ncols or (2 if n_panels == 4 else min(n_panels, 3))
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=sharey, sharex=sharex,
                             figsize=(width * ncols, height * nrows))
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def title(fig: plt.Figure, text: str) -> None:
    width = max(50, int(fig.get_figwidth() * 10))
    fig.suptitle("\n".join(textwrap.fill(p, width) for p in text.split("\n")), fontsize=12, fontweight="bold")


def legend_right(fig: plt.Figure, axes: list, heading: str, extra: dict | None = None) -> None:
    """One legend for the figure, from the first panel that has labelled artists, plus ``extra`` entries
    (label -> a proxy artist drawn nowhere, e.g. what the faint lines are)."""
    for ax in axes:
        handles, names = ax.get_legend_handles_labels()
        if handles:
            seen = {**dict(zip(names, handles, strict=True)), **(extra or {})}
            fig.legend(list(seen.values()), list(seen.keys()), title=heading, loc="center left",
                       bbox_to_anchor=(1.0, 0.5), frameon=False)
            return


def finish(fig: plt.Figure, axes: list, legend_heading: str, text: str, extra: dict | None = None) -> plt.Figure:
    """Every multi-panel plot ends the same way: one legend on the right, the title, a tight layout, tick
    labels that do not run into each other."""
    legend_right(fig, axes, legend_heading, extra)
    title(fig, text)
    fig.tight_layout()
    readable_ticks(fig)
    return fig


def tick_overlaps(ax, renderer=None) -> list[tuple[str, str]]:
    """Pairs of visible tick labels of ``ax`` whose drawn boxes overlap (after a draw: positions are set
    there), on either axis."""
    renderer = renderer or ax.figure.canvas.get_renderer()
    pairs = []
    for axis in (ax.xaxis, ax.yaxis):
        texts = shown_labels(axis)
        boxes = [t.get_window_extent(renderer) for t in texts]
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if boxes[i].overlaps(boxes[j]):
                    pairs.append((texts[i].get_text(), texts[j].get_text()))
    return pairs


def readable_ticks(fig: plt.Figure) -> None:
    """Tick labels that run into each other: labels at chosen places (batch sizes) are turned upright;
    then, on either axis, every other one (every third, ...) is shown until none overlap. Works for any
    set of batch sizes. The figure is laid out (``draw_without_rendering``: tick positions and label
    sizes, no pixels) once: turning or hiding a label changes no tick's position, and a label's box is
    computed from its own rotation and text."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    changed = False
    for ax in fig.axes:
        if not ax.get_visible() or not tick_overlaps(ax, renderer):
            continue
        changed = True
        # labels at chosen places (batch sizes, categories) are all needed: turn them first; labels a
        # locator chose (times, counts) are only a scale: keep them level and thin them first
        chosen = isinstance(ax.xaxis.get_major_locator(), FixedLocator)
        if chosen and _axis_overlaps(ax.xaxis, renderer):  # upright: a label's box is then one line wide
            for t in shown_labels(ax.xaxis):
                t.set_rotation(90)
                t.set_horizontalalignment("center")
        for axis in (ax.xaxis, ax.yaxis):
            step = 2
            labels = shown_labels(axis)
            while _axis_overlaps(axis, renderer) and step < len(labels):
                for k, t in enumerate(labels):
                    t.set_visible(k % step == 0)
                step += 1
    if changed:
        fig.tight_layout()


def shown_labels(axis) -> list:
    """The tick labels a reader sees: visible, not empty, at a tick inside the axis's view (matplotlib
    keeps labels of ticks outside it, which are never drawn)."""
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) * 1e-9
    ticks = axis.get_major_ticks(len(axis.get_majorticklocs()))
    return [t.label1 for t, loc in zip(ticks, axis.get_majorticklocs(), strict=False)
            if lo - span <= loc <= hi + span and t.label1.get_visible() and t.label1.get_text()]


def _axis_overlaps(axis, renderer) -> bool:
    texts = shown_labels(axis)
    boxes = [t.get_window_extent(renderer) for t in texts]
    return any(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes)))


class SpanLogLocator(LogLocator):
    """Log ticks at ``subs`` (1-2-5, 1-3), else at whole decades, else at every integer multiple of a decade:
    the first of these that puts two ticks on the axis. Given several subs over more decades than the axis
    has room for, matplotlib's LogLocator places none (a learning rate whose loss spiked to 1e9 left its panel
    with a blank y axis); an axis narrower than the gap between two subs (0.65 to 1.6 ms) had one tick."""

    def __init__(self, subs: tuple[float, ...]) -> None:
        super().__init__(base=10, subs=subs)
        self.fine_subs = subs

    def tick_values(self, vmin: float, vmax: float):
        lo, hi = sorted((vmin, vmax))
        for subs in (self.fine_subs, (1.0,), tuple(float(k) for k in range(1, 10))):
            self.set_params(subs=subs)
            ticks = super().tick_values(vmin, vmax)
            if ((ticks >= lo) & (ticks <= hi)).sum() >= 2:
                return ticks
        return ticks


def plain_log_y(ax, counts: bool = False) -> None:
    """Log y axis with plain numbers (0.5, 1, 2; or 20k, 1M for counts) rather than 5x10^-1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(SpanLogLocator((1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(L.count_tick if counts else L.plain_tick))
    ax.yaxis.set_minor_formatter(NullFormatter())


def seconds_log_x(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(SpanLogLocator((1.0, 3.0)))
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
