"""The cost plots: epoch time, throughput, memory and the split of a step, against batch size."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from minibatch_core.analysis.tables import PHASES, batch_order, engine_order, timed_epochs
from minibatch_core.presentation import labels as L
from minibatch_core.presentation import plot_styles as S
from minibatch_core.presentation import plotkit as K
from minibatch_core.presentation.plotkit import PlotData

# RSS moves in 4 KiB pages, glibc grows its heap in 128 KiB steps and torch keeps small caches: a growth
# below this is what a run of this model measures whatever its batch size (0 to ~500 KiB seen), i.e. noise
RSS_RESOLUTION_BYTES = 1024 * 1024


def _per_setup_x(runs: pd.DataFrame, setup: str) -> tuple[list[int], list[str]]:
    part = runs[runs["setup"] == setup].drop_duplicates("batch_spec")
    part = part.assign(_o=part["batch_spec"].map(L.batch_sort_key)).sort_values("_o")
    return part["batch_size"].astype(int).tolist(), [L.batch_label(s, n) for s, n in
                                                      zip(part["batch_spec"], part["batch_size"], strict=True)]


def _heading(runs: pd.DataFrame) -> str:
    return "engine" + "".join(f" · {K.axis_name(a)}" for a in runs.attrs.get("variant_axes", []))


def _dodge(x: np.ndarray, i: int, n: int) -> np.ndarray:
    """Nudge engine i of n sideways on a log axis so equal values stay visible as separate markers."""
    return x * 1.07 ** (i - (n - 1) / 2)


def epoch_time_vs_batch(data: PlotData) -> plt.Figure:
    runs = data.runs
    timed = timed_epochs(runs)
    engines = runs.attrs["engine_series_order"]  # engine x every other swept axis (lr, hidden, ...)
    styles = S.styles_of(runs, "engine_series")
    setups = runs.attrs["setup_order"]
    # a lone panel gets the room of two: the report shows it at full width
    fig, axes = K.grid(len(setups), ncols=min(len(setups), 2), height=K.PANEL_H + 0.3 + (len(setups) == 1),
                       width=K.PANEL_W + 2.5 * (len(setups) == 1))
    for ax, setup in zip(axes, setups, strict=True):
        sizes, names = _per_setup_x(runs, setup)
        for i, engine in enumerate(engines):
            rows = timed[(timed["setup"] == setup) & (timed["engine_series"] == engine)]
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
    return K.finish(fig, axes, _heading(runs),
                    "Epoch time vs batch size (median over seeds and epochs after warm-up; bars: interquartile range)")


def peak_memory_vs_batch(data: PlotData) -> plt.Figure:
    runs = data.runs
    per_run = runs.groupby("run_id").first().reset_index()
    tensor_cols = [c for c in ("param_bytes", "grad_bytes", "optimizer_state_bytes", "activation_bytes")
                   if c in per_run]
    engines = runs.attrs["engine_series_order"]
    styles = S.styles_of(runs, "engine_series")
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
            rows = part[part["engine_series"] == engine]
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
    return K.finish(fig, axes, _heading(runs),
                    "Memory vs batch size (median over seeds; engines nudged sideways so equal values stay visible)")


def throughput(data: PlotData) -> plt.Figure:
    runs = data.runs
    timed = timed_epochs(runs)
    engines = runs.attrs["engine_series_order"]
    styles = S.styles_of(runs, "engine_series")
    setups = runs.attrs["setup_order"]
    fig, axes = K.grid(len(setups), ncols=min(len(setups), 2), height=K.PANEL_H + 0.3 + (len(setups) == 1),
                       width=K.PANEL_W + 1 + 2.5 * (len(setups) == 1) + 0.12 * len(engines) * len(batch_order(runs)))
    width = 0.8 / len(engines)
    for ax, setup in zip(axes, setups, strict=True):
        _, names = _per_setup_x(runs, setup)
        specs = batch_order(runs[runs["setup"] == setup])
        for i, engine in enumerate(engines):
            rows = timed[(timed["setup"] == setup) & (timed["engine_series"] == engine)]
            g = rows.groupby("batch_spec")["model_samples_per_s"]
            med = g.median().reindex(specs)
            x = np.arange(len(specs)) + (i - (len(engines) - 1) / 2) * width
            st = styles[engine]
            variant = S.variant_count(runs) > 1  # the other axes' values as hatching, so bars differ in print too
            ax.bar(x, med.values, width=width * 0.95, color=st.color, label=engine,
                   hatch=S.hatch(st.linestyle) if variant else None, edgecolor="white" if variant else None)
        ax.set_xticks(np.arange(len(specs)))
        ax.set_xticklabels(names)
        K.plain_log_y(ax, counts=True)
        ax.set_xlabel(L.axis_label("batch"))
        ax.set_ylabel(L.axis_label("samples_per_s_replicas" if (runs["replicas"] > 1).any() else "samples_per_s"))
        ax.set_title(setup)
    return K.finish(fig, axes, _heading(runs), "Training throughput (median over epochs after warm-up)")


def profile_split(data: PlotData) -> plt.Figure:
    """100 % stacked bars (each batch size's step split into phases), the step's total written above: a
    slow full-batch step cannot flatten the others."""
    split = data.split.assign(setup=[L.setup_label(d, v) for d, v in
                                     zip(data.split["dataset"], data.split["device"], strict=True)])
    if "workers" in split and (split["workers"] > 1).any():  # a data-parallel run: its own panel per W
        split = split.assign(engine=split["engine"] + split["workers"].map(lambda w: f" (W={w})" if w > 1 else ""))
    # every other swept axis (lr, hidden, ...) names each bar, so no two bars of a panel share a label
    variant_axes = [a for a in K.varying_axes(split) if a != "workers"]
    split = split.assign(_variant=K.variant_labels(split, variant_axes))
    engines = engine_order(split["engine"].unique().tolist())
    setups = list(dict.fromkeys(split["setup"]))
    phases = [p for p in PHASES if f"{p}_share" in split]
    colors = S.PHASE_COLORS
    panels = [(s, e) for s in setups for e in engines if ((split["setup"] == s) & (split["engine"] == e)).any()]
    most = max(((split["setup"] == s) & (split["engine"] == e)).sum() for s, e in panels)
    # a panel grows with its bars (0.55 in each) so that many rows stay bars, not slivers
    fig, axes = K.grid(len(panels), sharey=True, height=K.PANEL_H + 0.4 + 0.3 * bool(variant_axes),
                       width=max(K.PANEL_W, 1.5 + (0.8 if variant_axes else 0.55) * most),
                       ncols=min(len(panels), 3 if most <= 6 else 2))
    for ax, (setup, engine) in zip(axes, panels, strict=True):
        part = split[(split["setup"] == setup) & (split["engine"] == engine)]
        part = part.assign(_o=part["batch_spec"].map(L.batch_sort_key)).sort_values(["_o", "_variant"])
        names = [L.batch_label(b, n) + (f"\n{v}" if v else "")
                 for b, n, v in zip(part["batch_spec"], part["batch_size"], part["_variant"], strict=True)]
        bottom = np.zeros(len(part))
        for phase, color in zip(phases, colors, strict=False):
            share = part[f"{phase}_share"].fillna(0).to_numpy() * 100
            ax.bar(names, share, bottom=bottom, color=color, label=L.phase_label(phase), width=0.6)
            bottom += share
        for x, total in enumerate(part["total_step_s"]):
            ax.text(x, 101, L.fmt_seconds_short(total) + ("/step" if len(part) <= 4 else ""), ha="center",
                    va="bottom", fontsize=8 if len(part) <= 6 else 7, rotation=0 if len(part) <= 8 else 90)
        ax.set_ylim(0, 112)
        ax.set_yticks(range(0, 101, 20))
        ax.set_title(f"{engine} | {setup}" if len(setups) > 1 else engine)
        ax.set_xlabel(L.axis_label("batch") + "".join(f" · {K.axis_name(a)}" for a in variant_axes))
        ax.set_ylabel(L.axis_label("step_share"))
    return K.finish(fig, axes, "phase",
                    "Where a training step's time goes, per batch size (share of the mean step; its length on top)")
