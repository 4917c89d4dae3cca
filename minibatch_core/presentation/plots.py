"""The plots of a sweep and THE registry of them (name, title, caption, drawing function, file name).

Each drawing function takes the prepared records and returns a matplotlib Figure without saving it, so
tests can count what it drew; ``make_all`` saves every registered plot. Nothing else lists plot names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from minibatch_core.analysis.tables import PHASES, batch_order, engine_order, timed_epochs
from minibatch_core.presentation import labels as L
from minibatch_core.presentation import plotkit as K

# RSS moves in 4 KiB pages, glibc grows its heap in 128 KiB steps and torch keeps small caches: a growth
# below this is what a run of this model measures whatever its batch size (0 to ~500 KiB seen), i.e. noise
RSS_RESOLUTION_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PlotData:
    runs: pd.DataFrame  # plotkit.prepare(runs.csv)
    split: pd.DataFrame | None = None  # tables.profile_split(profile.csv)


@dataclass(frozen=True)
class Plot:
    name: str  # file stem
    title: str
    caption: str
    path: Path


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


def loss_vs_epoch(data: PlotData) -> plt.Figure:
    runs = data.runs
    styles = K.batch_styles(runs.attrs["batch_order"])
    panels = _panels(runs)
    fig, axes = K.grid(len(panels), sharey=True)
    for ax, (setup, engine) in zip(axes, panels, strict=True):
        part = runs[(runs["setup"] == setup) & (runs["engine"] == engine)]
        finite = part[np.isfinite(part["epoch_loss"])]
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
    K.legend_right(fig, axes, "batch size")
    K.title(fig, "Training loss per epoch by batch size (thick: median over seeds; thin: each seed)")
    fig.tight_layout()
    return fig


def loss_vs_time(data: PlotData) -> plt.Figure:
    runs = data.runs
    styles = K.batch_styles(runs.attrs["batch_order"])
    panels = _panels(runs)
    fig, axes = K.grid(len(panels), sharey=True)
    for ax, (setup, engine) in zip(axes, panels, strict=True):
        part = runs[(runs["setup"] == setup) & (runs["engine"] == engine)]
        finite = part[np.isfinite(part["epoch_loss"])]
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
    K.legend_right(fig, axes, "batch size")
    K.title(fig, "Loss against training time: the curve furthest down-left gets low soonest "
                 "(median over seeds; one marker per epoch)")
    fig.tight_layout()
    return fig


def _per_setup_x(runs: pd.DataFrame, setup: str) -> tuple[list[int], list[str]]:
    part = runs[runs["setup"] == setup].drop_duplicates("batch_spec")
    part = part.assign(_o=part["batch_spec"].map(L.batch_sort_key)).sort_values("_o")
    return part["batch_size"].astype(int).tolist(), [L.batch_label(s, n) for s, n in
                                                      zip(part["batch_spec"], part["batch_size"], strict=True)]


def _dodge(x: np.ndarray, i: int, n: int) -> np.ndarray:
    """Nudge engine i of n sideways on a log axis so equal values stay visible as separate markers."""
    return x * 1.07 ** (i - (n - 1) / 2)


def epoch_time_vs_batch(data: PlotData) -> plt.Figure:
    runs = data.runs
    timed = timed_epochs(runs)
    engines = runs.attrs["engine_order"]
    styles = K.engine_styles(engines)
    setups = runs.attrs["setup_order"]
    fig, axes = K.grid(len(setups), ncols=min(len(setups), 2), height=K.PANEL_H + 0.3)
    for ax, setup in zip(axes, setups, strict=True):
        sizes, names = _per_setup_x(runs, setup)
        for i, engine in enumerate(engines):
            rows = timed[(timed["setup"] == setup) & (timed["engine"] == engine)]
            if rows.empty:
                continue
            g = rows.groupby("batch_size")["per_model_epoch_s"]
            med, q1, q3 = g.median(), g.quantile(0.25), g.quantile(0.75)
            x = _dodge(med.index.to_numpy(float), i, len(engines))
            st = styles[engine]
            ax.errorbar(x, med.values * 1e3, yerr=[(med - q1).values * 1e3, (q3 - med).values * 1e3],
                        color=st.color, linestyle=st.linestyle, marker=st.marker, markersize=6, capsize=3,
                        label=engine)
        K.batch_axis(ax, sizes, names)
        K.plain_log_y(ax)
        ax.set_xlabel(L.axis_label("batch_size"))
        ax.set_ylabel(L.axis_label("epoch_time_per_model" if (runs["replicas"] > 1).any() else "epoch_time"))
        ax.set_title(setup)
    K.legend_right(fig, axes, "engine")
    K.title(fig, "Epoch time vs batch size (median over seeds and epochs after warm-up; bars: interquartile range)")
    fig.tight_layout()
    return fig


def peak_memory_vs_batch(data: PlotData) -> plt.Figure:
    runs = data.runs
    per_run = runs.groupby("run_id").first().reset_index()
    tensor_cols = [c for c in ("param_bytes", "grad_bytes", "optimizer_state_bytes", "activation_bytes")
                   if c in per_run]
    engines = runs.attrs["engine_order"]
    styles = K.engine_styles(engines)
    setups = runs.attrs["setup_order"]
    measures = [("peak_memory_bytes", "peak memory, measured (KiB)")]
    if tensor_cols:
        per_run["tensor_bytes"] = per_run[tensor_cols].sum(axis=1)
        measures.append(("tensor_bytes", "tensor bytes: params + grads + optimizer state + activations (KiB)"))
    rss = per_run["memory_method"].astype(str).str.contains("RSS") if "memory_method" in per_run else \
        per_run["device"].str.startswith("cpu")
    fig, axes = K.grid(len(setups) * len(measures), ncols=len(measures), height=K.PANEL_H + 0.3,
                       width=K.PANEL_W + 0.6)
    for k, (setup, (column, ylabel)) in enumerate((s, m) for s in setups for m in measures):
        ax = axes[k]
        sizes, names = _per_setup_x(runs, setup)
        part = per_run[per_run["setup"] == setup]
        unresolved = column == "peak_memory_bytes" and rss[part.index].all() and \
            part[column].max() < RSS_RESOLUTION_BYTES
        for i, engine in enumerate(engines):
            rows = part[part["engine"] == engine]
            if rows.empty:
                continue
            med = rows.groupby("batch_size")[column].median()
            x = _dodge(med.index.to_numpy(float), i, len(engines))
            st = styles[engine]
            ax.plot(x, med.values / 1024, color=st.color, marker=st.marker, markersize=7, label=engine,
                    linestyle="none" if unresolved else st.linestyle)  # noise gets no trend line
        if unresolved:
            ax.axhspan(0, RSS_RESOLUTION_BYTES / 1024, color="0.92", zorder=0)
            ax.set_ylim(-8, RSS_RESOLUTION_BYTES / 1024 * 1.1)
            ax.text(0.5, 0.97, f"every value is within RSS noise (< {L.fmt_bytes(RSS_RESOLUTION_BYTES)}: "
                    "4 KiB pages, allocator chunks):\nno trend can be read here; see the tensor bytes",
                    transform=ax.transAxes, ha="center", va="top", fontsize=8, color="dimgray")
        K.batch_axis(ax, sizes, names)
        ax.set_xlabel(L.axis_label("batch_size"))
        ax.set_ylabel(ylabel if len(ylabel) < 32 else ylabel.split(":")[0] + " (KiB)")
        ax.set_title((f"{setup}\n" if len(setups) > 1 else "") + ylabel.replace(" (KiB)", ""), fontsize=10)
    K.legend_right(fig, axes, "engine")
    K.title(fig, "Memory vs batch size (median over seeds; engines nudged sideways so equal values stay visible)")
    fig.tight_layout()
    return fig


def throughput(data: PlotData) -> plt.Figure:
    runs = data.runs
    timed = timed_epochs(runs)
    engines = runs.attrs["engine_order"]
    styles = K.engine_styles(engines)
    setups = runs.attrs["setup_order"]
    fig, axes = K.grid(len(setups), ncols=min(len(setups), 2), height=K.PANEL_H + 0.3, width=K.PANEL_W + 1)
    width = 0.8 / len(engines)
    for ax, setup in zip(axes, setups, strict=True):
        _, names = _per_setup_x(runs, setup)
        specs = batch_order(runs[runs["setup"] == setup])
        for i, engine in enumerate(engines):
            rows = timed[(timed["setup"] == setup) & (timed["engine"] == engine)]
            g = rows.groupby("batch_spec")["model_samples_per_s"]
            med = g.median().reindex(specs)
            x = np.arange(len(specs)) + (i - (len(engines) - 1) / 2) * width
            ax.bar(x, med.values, width=width * 0.95, color=styles[engine].color, label=engine)
        ax.set_xticks(np.arange(len(specs)))
        ax.set_xticklabels(names)
        K.plain_log_y(ax, counts=True)
        ax.set_xlabel(L.axis_label("batch"))
        ax.set_ylabel(L.axis_label("samples_per_s_replicas" if (runs["replicas"] > 1).any() else "samples_per_s"))
        ax.set_title(setup)
    K.legend_right(fig, axes, "engine")
    K.title(fig, "Training throughput (median over epochs after warm-up)")
    fig.tight_layout()
    return fig


def profile_split(data: PlotData) -> plt.Figure:
    """100 % stacked bars (each batch size's step split into phases), the step's total written above: a
    slow full-batch step cannot flatten the others."""
    split = data.split.assign(setup=[L.setup_label(d, v) for d, v in
                                     zip(data.split["dataset"], data.split["device"], strict=True)])
    engines = engine_order(split["engine"].unique().tolist())
    setups = list(dict.fromkeys(split["setup"]))
    phases = [p for p in PHASES if f"{p}_share" in split]
    colors = K.PHASE_COLORS
    panels = [(s, e) for s in setups for e in engines if ((split["setup"] == s) & (split["engine"] == e)).any()]
    fig, axes = K.grid(len(panels), sharey=True, height=K.PANEL_H + 0.4)
    for ax, (setup, engine) in zip(axes, panels, strict=True):
        part = split[(split["setup"] == setup) & (split["engine"] == engine)]
        part = part.assign(_o=part["batch_spec"].map(L.batch_sort_key)).sort_values("_o")
        names = [L.batch_label(b, n) for b, n in zip(part["batch_spec"], part["batch_size"], strict=True)]
        bottom = np.zeros(len(part))
        for phase, color in zip(phases, colors, strict=False):
            share = part[f"{phase}_share"].fillna(0).to_numpy() * 100
            ax.bar(names, share, bottom=bottom, color=color, label=L.phase_label(phase), width=0.6)
            bottom += share
        for x, total in enumerate(part["total_step_s"]):
            ax.text(x, 101, L.fmt_seconds_short(total) + "/step", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, 112)
        ax.set_yticks(range(0, 101, 20))
        ax.set_title(f"{engine} | {setup}" if len(setups) > 1 else engine)
        ax.set_xlabel(L.axis_label("batch"))
        ax.set_ylabel(L.axis_label("step_share"))
    K.legend_right(fig, axes, "phase")
    K.title(fig, "Where a training step's time goes, per batch size (share of the mean step; its length on top)")
    fig.tight_layout()
    return fig


# --- THE registry -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlotSpec:
    name: str
    title: str
    caption: str
    draw: Callable[[PlotData], plt.Figure]
    needs_profile: bool = False

    @property
    def file_name(self) -> str:
        return f"{self.name}.png"


REGISTRY: tuple[PlotSpec, ...] = (
    PlotSpec("loss_vs_time", "Loss against training time",
             "The hero plot. Median epoch loss over seeds against the training time it took (per model for "
             "multi-seed engines); one marker per epoch. Read it left to right: the batch size whose curve is "
             "lowest at a given time had reached the lowest loss by then. A short curve means fast epochs; a "
             "curve far right means slow ones.", loss_vs_time),
    PlotSpec("loss_vs_epoch", "Loss per epoch",
             "The lesson's epoch loss after each pass over the data. Thick line: median over seeds; thin lines: "
             "each seed on its own (a different initialization and shuffle order), so their spread is how much "
             "the seed alone moves the curve. An ✕ at the top marks where runs diverged.", loss_vs_epoch),
    PlotSpec("epoch_time_vs_batch_size", "Epoch time vs batch size",
             "Median wall time of one epoch (warm-up epoch excluded), log-log; bars span the interquartile range "
             "over seeds and epochs. A line falling to the right means bigger batches make epochs cheaper.",
             epoch_time_vs_batch),
    PlotSpec("throughput", "Throughput",
             "Training samples processed per second of wall time (median over epochs after warm-up); higher is "
             "better.", throughput),
    PlotSpec("peak_memory_vs_batch_size", "Memory vs batch size",
             "Left: the measured peak (resident-set growth on CPU, torch.cuda.max_memory_allocated on CUDA). "
             "RSS moves in 4 KiB pages and the allocator grabs memory in chunks, so below about 1 MiB it "
             "cannot resolve this model: such points are drawn without lines and marked as noise. Right: bytes "
             "counted from the tensors themselves, exact at any size.", peak_memory_vs_batch),
    PlotSpec("profile_split", "Where the time goes",
             "Each bar is one batch size's mean training step split into data loading, forward, backward and "
             "optimizer (share of the step; the step's length is written on top), from extra instrumented steps "
             "after training (synchronized on CUDA).", profile_split, needs_profile=True),
)


def make_all(runs: pd.DataFrame, profile_wide: pd.DataFrame | None, out_dir: str | Path) -> list[Plot]:
    """Every registered plot into ``out_dir`` (created); returns them in the registry's order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    has_profile = profile_wide is not None and not profile_wide.empty
    data = PlotData(K.prepare(runs), profile_wide if has_profile else None)
    plots = []
    for spec in REGISTRY:
        if spec.needs_profile and not has_profile:
            continue
        with K.themed():
            path = K.save(spec.draw(data), out / spec.file_name)
        plots.append(Plot(spec.name, spec.title, spec.caption, path))
    return plots
