"""Seaborn plots of a sweep's records, saved as PNG (Agg backend, fixed dpi). Reads records; never trains."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, identical output everywhere

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator  # noqa: E402

from minibatch_core.analysis.tables import PHASES, batch_order, engine_order, timed_epochs, with_defaults  # noqa: E402
from minibatch_core.fsio import atomic_write_bytes  # noqa: E402

DPI = 110
PANEL_W, PANEL_H = 4.6, 3.5


@dataclass(frozen=True)
class Plot:
    name: str  # file stem
    title: str
    caption: str
    path: Path


# --- shared preparation --------------------------------------------------------------------------------------

def _prepare(runs: pd.DataFrame) -> pd.DataFrame:
    """Adds the labels the plots facet and colour by."""
    runs = with_defaults(runs)
    specs = batch_order(runs)
    one_dataset = runs["dataset"].nunique() == 1
    full_n = int(runs.loc[runs["batch_spec"] == "full", "batch_size"].max()) if "full" in specs else 0
    label = {s: (f"full ({full_n})" if s == "full" and one_dataset else s) for s in specs}
    out = runs.assign(
        batch=runs["batch_spec"].map(label),
        setup=runs["dataset"] + " · " + runs["device"],
        per_model_epoch_ms=runs["epoch_time_s"] / runs["replicas"] * 1e3,
        model_samples_per_s=runs["samples_per_s"] * runs["replicas"],
    )
    out.attrs["batch_order"] = [label[s] for s in specs]
    out.attrs["engine_order"] = engine_order(runs["engine"].unique().tolist())
    out.attrs["setup_order"] = list(dict.fromkeys(out["setup"]))
    return out


def _save(fig: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _facet_titles(grid: sns.FacetGrid, frame: pd.DataFrame) -> None:
    grid.set_titles("{col_name} | {row_name}" if "row" in _facets(frame) else "{col_name}")


def _facets(frame: pd.DataFrame) -> dict:
    """Engines across, dataset·device down; wrap a single row of many engines."""
    engines, setups = frame.attrs["engine_order"], frame.attrs["setup_order"]
    kw: dict = {"col": "engine", "col_order": engines, "height": PANEL_H, "aspect": PANEL_W / PANEL_H}
    if len(setups) > 1:
        kw.update(row="setup", row_order=setups)
    elif len(engines) > 3:
        kw["col_wrap"] = 2 if len(engines) == 4 else 3
    return kw


def _title(grid, text: str) -> None:
    """A bold title wrapped to the figure's width (single panels are narrow)."""
    width = max(40, int(grid.figure.get_figwidth() * 9))
    lines = [textwrap.fill(part, width) for part in text.split("\n")]
    wrapped = "\n".join(lines)
    grid.figure.suptitle(wrapped, fontsize=12, fontweight="bold")
    n_lines = wrapped.count("\n") + 1
    height = grid.figure.get_figheight()
    # room for the title's lines and the panels' own titles below it
    grid.figure.subplots_adjust(top=1 - (0.45 + 0.24 * n_lines) / height)


def _plain_log_y(ax) -> None:
    """Log y axis with plain numbers (0.5, 1, 2) rather than 5x10^-1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _batch_axis(ax, sizes: list[int]) -> None:
    """Log x axis labelled at exactly the batch sizes measured."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(sizes)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _themed(draw: Callable[[], Path]) -> Path:
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.95):
        return draw()


# --- the plots -------------------------------------------------------------------------------------------------

def loss_vs_epoch(runs: pd.DataFrame, path: Path) -> Path:
    def draw() -> Path:
        grid = sns.relplot(data=runs, x="epoch", y="epoch_loss", hue="batch", hue_order=runs.attrs["batch_order"],
                           kind="line", estimator="mean", errorbar=("pi", 100), marker="o", markersize=4,
                           palette="viridis", facet_kws={"sharey": True}, **_facets(runs))
        for ax in grid.axes.flat:
            _plain_log_y(ax)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        grid.set_axis_labels("epoch", "epoch loss (cross-entropy, log)")
        _facet_titles(grid, runs)
        grid.legend.set_title("batch size")
        _title(grid, "Training loss per epoch by batch size (line: mean over seeds, band: min–max)")
        return _save(grid.figure, path)

    return _themed(draw)


def loss_vs_time(runs: pd.DataFrame, path: Path) -> Path:
    keys = ["engine", "setup", "batch", "epoch"]
    curve = runs.groupby(keys, sort=False, dropna=False).agg(loss=("epoch_loss", "mean"),
                                               time_s=("cumulative_time_s", "median")).reset_index()
    curve.attrs.update(runs.attrs)

    def draw() -> Path:
        grid = sns.relplot(data=curve, x="time_s", y="loss", hue="batch", hue_order=runs.attrs["batch_order"],
                           kind="line", marker="o", markersize=4, palette="viridis", sort=True,
                           facet_kws={"sharex": True, "sharey": True}, **_facets(curve))
        for ax in grid.axes.flat:
            ax.set_xscale("log")
            _plain_log_y(ax)
        grid.set_axis_labels("cumulative training time (s, log)", "epoch loss (log)")
        _facet_titles(grid, curve)
        grid.legend.set_title("batch size")
        _title(grid, "Loss vs wall time: which batch size gets low fastest (mean loss, median time over seeds)")
        return _save(grid.figure, path)

    return _themed(draw)


def _per_setup(frame: pd.DataFrame) -> dict:
    setups = frame.attrs["setup_order"]
    kw: dict = {"col": "setup", "col_order": setups, "height": PANEL_H + 0.3, "aspect": 1.25}
    if len(setups) > 3:
        kw["col_wrap"] = 3
    return kw


def epoch_time_vs_batch(runs: pd.DataFrame, path: Path) -> Path:
    timed = timed_epochs(runs)
    timed.attrs.update(runs.attrs)
    sizes = sorted(runs["batch_size"].unique().tolist())
    multi = (runs["replicas"] > 1).any()

    def draw() -> Path:
        grid = sns.relplot(data=timed, x="batch_size", y="per_model_epoch_ms", hue="engine",
                           hue_order=runs.attrs["engine_order"], style="engine", markers=True, dashes=False,
                           kind="line", estimator="median", errorbar=("pi", 50), markersize=7,
                           **_per_setup(timed))
        for ax in grid.axes.flat:
            _batch_axis(ax, sizes)
            _plain_log_y(ax)
        ylabel = "epoch time per model (ms, log)" if multi else "epoch time (ms, log)"
        grid.set_axis_labels("batch size (log)", ylabel)
        grid.set_titles("{col_name}")
        _title(grid, "Epoch time vs batch size (median over seeds and epochs after warm-up; band: IQR)"
               + ("\nmulti-seed engines: pass time ÷ replicas" if multi else ""))
        return _save(grid.figure, path)

    return _themed(draw)


def peak_memory_vs_batch(runs: pd.DataFrame, path: Path) -> Path:
    per_run = runs.groupby("run_id").first().reset_index()
    tensor_cols = [c for c in ("param_bytes", "grad_bytes", "optimizer_state_bytes", "activation_bytes")
                   if c in per_run]
    frames = [per_run.assign(measure="peak memory (measured)", kib=per_run["peak_memory_bytes"] / 1024)]
    if tensor_cols:
        frames.append(per_run.assign(measure="tensor bytes (params+grads+opt. state+activations)",
                                     kib=per_run[tensor_cols].sum(axis=1) / 1024))
    data = pd.concat(frames, ignore_index=True)
    data.attrs.update(runs.attrs)
    sizes = sorted(runs["batch_size"].unique().tolist())

    def draw() -> Path:
        grid = sns.relplot(data=data, x="batch_size", y="kib", hue="engine", hue_order=runs.attrs["engine_order"],
                           style="engine", markers=True, dashes=False, kind="line", estimator="median",
                           errorbar=("pi", 100), markersize=7, col="measure", row="setup"
                           if len(runs.attrs["setup_order"]) > 1 else None,
                           facet_kws={"sharey": False}, height=PANEL_H + 0.3, aspect=1.3)
        for ax in grid.axes.flat:
            _batch_axis(ax, sizes)
        grid.set_axis_labels("batch size (log)", "KiB")
        grid.set_titles("{col_name}" if len(runs.attrs["setup_order"]) == 1 else "{col_name} | {row_name}")
        _title(grid, "Peak memory vs batch size (median over seeds; band: min–max)")
        return _save(grid.figure, path)

    return _themed(draw)


def throughput(runs: pd.DataFrame, path: Path) -> Path:
    timed = timed_epochs(runs)
    timed.attrs.update(runs.attrs)
    multi = (runs["replicas"] > 1).any()

    def draw() -> Path:
        grid = sns.catplot(data=timed, x="batch", y="model_samples_per_s", order=runs.attrs["batch_order"],
                           hue="engine", hue_order=runs.attrs["engine_order"], kind="bar", estimator="median",
                           errorbar=("pi", 50), capsize=0.1, err_kws={"linewidth": 1}, **_per_setup(timed))
        grid.set(yscale="log")
        ylabel = "samples/s × replicas (log)" if multi else "samples/s (log)"
        grid.set_axis_labels("batch size", ylabel)
        grid.set_titles("{col_name}")
        _title(grid, "Training throughput (median over epochs after warm-up; whiskers: IQR)")
        return _save(grid.figure, path)

    return _themed(draw)


def profile_split(split: pd.DataFrame, path: Path) -> Path:
    """Stacked bars: mean step time split into data / forward / backward / optimizer, per batch size."""
    split = split.assign(setup=split["dataset"] + " · " + split["device"])
    engines = engine_order(split["engine"].unique().tolist())
    setups = list(dict.fromkeys(split["setup"]))
    phases = [p for p in PHASES if f"{p}_s" in split]
    colors = sns.color_palette("Set2", len(phases))

    panels = [(setup, engine) for setup in setups for engine in engines]
    ncols = min(len(panels), 2 if len(panels) == 4 else 3)
    nrows = -(-len(panels) // ncols)

    def draw() -> Path:
        # each panel its own y scale: engines differ by orders of magnitude per step
        fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                                 figsize=(PANEL_W * ncols, (PANEL_H + 0.4) * nrows))
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for k, (setup, engine) in enumerate(panels):
            ax = axes.flat[k]
            part = split[(split["setup"] == setup) & (split["engine"] == engine)]
            part = part.assign(_o=part["batch_spec"].map(batch_order(split).index)).sort_values("_o")
            labels = [b if b != "full" else f"full ({n})"
                      for b, n in zip(part["batch_spec"], part["batch_size"], strict=True)]
            bottom = [0.0] * len(part)
            for phase, color in zip(phases, colors, strict=True):
                values = (part[f"{phase}_s"] * 1e6).tolist()
                ax.bar(labels, values, bottom=bottom, color=color, label=phase, width=0.6)
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            ax.set_title(f"{engine} | {setup}" if len(setups) > 1 else engine)
            ax.set_xlabel("batch size")
            if k % ncols == 0:
                ax.set_ylabel("mean time per step (µs)")
            if part.empty:
                ax.text(0.5, 0.5, "no profile\n(engine cannot split its step)", ha="center", va="center",
                        transform=ax.transAxes, color="gray")
        handles, names = axes[0][0].get_legend_handles_labels()
        if not handles:
            for ax in axes.flat:
                handles, names = ax.get_legend_handles_labels()
                if handles:
                    break
        fig.legend(handles, names, title="phase", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        title = "Where a training step's time goes, per batch size (first seed, instrumented steps)"
        fig.suptitle(textwrap.fill(title, max(40, int(fig.get_figwidth() * 9))), fontsize=12, fontweight="bold")
        fig.tight_layout()
        return _save(fig, path)

    return _themed(draw)


# --- all of them -------------------------------------------------------------------------------------------------

CAPTIONS = {
    "loss_vs_epoch": ("Loss per epoch", "The lesson's epoch loss per epoch for each batch size; the line is the mean "
                      "over seeds and the band spans the lowest to the highest seed."),
    "loss_vs_time": ("Loss vs wall time", "The same losses against cumulative training time: the curve that drops "
                     "furthest to the left reaches a low loss soonest in real time."),
    "epoch_time_vs_batch_size": ("Epoch time vs batch size", "Median wall time of one epoch (warm-up excluded), "
                                 "log-log; the band is the interquartile range over seeds and epochs."),
    "peak_memory_vs_batch_size": ("Peak memory vs batch size", "Left: the measured peak (resident-set growth on "
                                  "CPU, torch.cuda.max_memory_allocated on CUDA); right: bytes counted from the "
                                  "tensors. RSS moves in 4 KiB pages, so small models show page-level noise."),
    "throughput": ("Throughput", "Training samples processed per second of wall time (median over epochs after "
                   "warm-up)."),
    "profile_split": ("Where the time goes", "Mean step time split into data loading, forward, backward and "
                      "optimizer, from extra instrumented steps after training (synchronized on CUDA)."),
}


def make_all(runs: pd.DataFrame, profile_wide: pd.DataFrame | None, out_dir: str | Path) -> list[Plot]:
    """Every plot into ``out_dir`` (created); returns them in the order the report shows them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _prepare(runs)
    makers: list[tuple[str, Callable[[Path], Path]]] = [
        ("loss_vs_epoch", lambda p: loss_vs_epoch(data, p)),
        ("loss_vs_time", lambda p: loss_vs_time(data, p)),
        ("epoch_time_vs_batch_size", lambda p: epoch_time_vs_batch(data, p)),
        ("peak_memory_vs_batch_size", lambda p: peak_memory_vs_batch(data, p)),
        ("throughput", lambda p: throughput(data, p)),
    ]
    if profile_wide is not None and not profile_wide.empty:
        makers.append(("profile_split", lambda p: profile_split(profile_wide, p)))
    plots = []
    for name, make in makers:
        title, caption = CAPTIONS[name]
        plots.append(Plot(name, title, caption, make(out / f"{name}.png")))
    return plots
