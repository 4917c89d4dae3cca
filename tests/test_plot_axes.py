"""Every swept axis is visible in the plots, and no two tick labels overlap, from the figure objects."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from test_report import synthetic_profile, synthetic_runs

from minibatch_core.analysis.tables import profile_split
from minibatch_core.presentation import plotkit
from minibatch_core.presentation.plots import REGISTRY, PlotData
from minibatch_core.presentation.plots_loss import overlap_note
from minibatch_core.presentation.summary_tables import display_profile

TWELVE = ["1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024", "full"]


def _two_lrs(frame: pd.DataFrame) -> pd.DataFrame:
    other = frame.copy()
    other["lr"] = 0.01
    other["run_id"] = other["run_id"].str.replace("lr0.001", "lr0.01")
    other["epoch_loss"] = other["epoch_loss"] * 0.5
    return pd.concat([frame, other], ignore_index=True)


def _twelve_batches() -> pd.DataFrame:
    """Reference runs at 12 batch sizes on 1,600 rows (times and losses made up, shapes as recorded)."""
    base = synthetic_runs(epochs=2, seeds=(0,))
    base = base[(base["engine"] == "reference") & (base["batch_spec"] == "32")]
    parts = []
    for spec in TWELVE:
        size = 1600 if spec == "full" else int(spec)
        part = base.copy()
        part["batch_spec"], part["batch_size"], part["n_samples"] = spec, size, 1600
        part["run_id"] = part["run_id"].str.replace("|b32|", f"|b{spec}|", regex=False)
        part["steps"] = -(-1600 // size)
        part["epoch_time_s"] = part["epoch_time_s"] * part["steps"] / 50
        part["cumulative_time_s"] = part.groupby("run_id")["epoch_time_s"].cumsum()
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _profile_two_lrs() -> pd.DataFrame:
    prof = synthetic_profile()
    prof["lr"] = 0.001
    other = prof.copy()
    other["lr"] = 0.01
    return pd.concat([prof, other], ignore_index=True)


def _styles(ax) -> set[tuple]:
    return {(line.get_color(), str(line.get_linestyle()), line.get_marker()) for line in ax.get_lines()
            if not line.get_label().startswith("_") and len(line.get_xdata())}


@pytest.mark.parametrize("name", ["loss_vs_epoch", "loss_vs_time"])
def test_each_batch_size_and_lr_has_its_own_named_style(name: str) -> None:
    runs = _two_lrs(synthetic_runs())
    spec = next(s for s in REGISTRY if s.name == name)
    fig = spec.draw(PlotData(plotkit.prepare(runs)))
    for ax in [a for a in fig.axes if a.get_visible()]:
        assert len(_styles(ax)) == 3 * 2  # 3 batch sizes x 2 learning rates
    legend = fig.legends[0]
    names = [t.get_text() for t in legend.get_texts()]
    assert {"1 · lr 0.001", "1 · lr 0.01", "full (178) · lr 0.01"} <= set(names)
    assert "lr" in legend.get_title().get_text()
    plt.close(fig)


def test_engine_plots_tell_the_learning_rates_apart() -> None:
    runs = _two_lrs(synthetic_runs())
    spec = next(s for s in REGISTRY if s.name == "epoch_time_vs_batch_size")
    fig = spec.draw(PlotData(plotkit.prepare(runs)))
    ax = fig.axes[0]
    lines = [c for c in ax.containers]  # one errorbar container per engine x lr
    assert len(lines) == 3 * 2
    assert len({(c.lines[0].get_color(), str(c.lines[0].get_linestyle())) for c in lines}) == 6
    plt.close(fig)


def test_seed_spread_is_drawn_and_named() -> None:
    fig = next(s for s in REGISTRY if s.name == "loss_vs_time").draw(PlotData(plotkit.prepare(synthetic_runs())))
    ax = fig.axes[0]
    assert len(ax.collections) >= 3  # a band per batch size (2 seeds each)
    assert "band: lowest–highest seed" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)


def test_curves_that_never_share_a_time_are_named() -> None:
    assert overlap_note({"1": (0.27, 2.0), "32": (0.01, 0.125)}) == (
        "no common time: 32 ends at 125 ms,\nbefore 1 starts at 270 ms")
    assert overlap_note({"1": (0.1, 2.0), "32": (0.01, 0.125)}) is None


@pytest.mark.parametrize("name", ["loss_vs_epoch", "loss_vs_time"])
def test_a_loss_axis_over_nine_decades_still_has_ticks(name: str) -> None:
    runs = synthetic_runs()
    runs.loc[runs["epoch"] == 1, "epoch_loss"] *= 1e9  # an lr whose loss spiked, then came back
    fig = next(s for s in REGISTRY if s.name == name).draw(PlotData(plotkit.prepare(runs)))
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert len([t for t in ax.yaxis.get_majorticklocs() if lo <= t <= hi]) >= 2
    assert all(label.get_text() for label in ax.get_yticklabels() if lo <= label.get_position()[1] <= hi)
    plt.close(fig)


def test_the_no_common_time_note_stands_under_its_panel_clear_of_curves_and_labels() -> None:
    fig = next(s for s in REGISTRY if s.name == "loss_vs_time").draw(PlotData(plotkit.prepare(synthetic_runs())))
    fig.canvas.draw()
    noted = [(ax, t) for ax in fig.axes for t in ax.texts if t.get_text().startswith("no common time")]
    assert noted  # batch "full" ends before batch 1 starts in every engine of the synthetic runs
    texts = [t for ax in fig.axes for t in (ax.xaxis.label, *ax.get_xticklabels(), *ax.texts) if t.get_text()]
    for ax, note in noted:
        box = note.get_window_extent()
        assert box.y1 <= ax.get_window_extent().y0  # below the panel: it covers no curve
        assert box.y0 >= fig.get_window_extent().y0  # and inside the figure
        assert not any(box.overlaps(t.get_window_extent()) for t in texts if t is not note), ax.get_title()
    plt.close(fig)


@pytest.mark.slow  # draws every registered plot twice
@pytest.mark.parametrize("frame", ["twelve", "twelve_two_lrs"])
def test_no_two_tick_labels_overlap_in_any_plot(frame: str) -> None:
    runs = _twelve_batches() if frame == "twelve" else _two_lrs(_twelve_batches())
    data = PlotData(plotkit.prepare(runs), profile_split(_profile_two_lrs()))
    with plotkit.themed():
        for spec in REGISTRY:
            fig = spec.draw(data)
            fig.canvas.draw()
            for ax in [a for a in fig.axes if a.get_visible()]:
                assert plotkit.tick_overlaps(ax) == [], (spec.name, ax.get_title())
            plt.close(fig)


def test_batch_size_ticks_stay_apart_on_a_narrow_log_axis() -> None:
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16000]
    fig, ax = plt.subplots(figsize=(4, 3))
    plotkit.batch_axis(ax, sizes)
    fig.canvas.draw()
    assert plotkit.tick_overlaps(ax)  # as drawn: 1024, 2048, 4096 ... run together
    plotkit.readable_ticks(fig)
    assert plotkit.tick_overlaps(ax) == []
    assert len(plotkit.shown_labels(ax.xaxis)) == len(sizes)  # turned upright, none dropped
    plt.close(fig)


def test_profile_bars_and_rows_name_the_learning_rate() -> None:
    split = profile_split(_profile_two_lrs())
    fig = next(s for s in REGISTRY if s.name == "profile_split").draw(PlotData(plotkit.prepare(synthetic_runs()),
                                                                              split))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) == 6 and len(set(labels)) == 6 and "32\nlr 0.01" in labels
    table = display_profile(split)
    assert table["lr"].tolist().count("0.01") == 3
    plt.close(fig)


@pytest.mark.parametrize(("lo", "hi", "expected"), [
    (0.3, 40.0, [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]),  # 1-2-5 where they give two ticks
    (1e-3, 1e9, None),  # twelve decades: whole decades (1-2-5 there gave none at all)
    (0.65, 1.6, [0.7, 0.8, 0.9, 1.0]),  # narrower than 1 to 2: every integer multiple (gave 1 alone)
])
def test_a_log_axis_gets_two_ticks_at_least(lo, hi, expected):
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    plotkit.plain_log_y(ax)
    ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
    plt.close(fig)
    if expected is None:
        assert len(ticks) >= 2 and all(math.log10(t) == pytest.approx(round(math.log10(t))) for t in ticks)
    else:
        assert ticks == pytest.approx(expected)
