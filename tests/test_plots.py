"""Each plot draws the data it is given: lines, points and bars counted from the figure before saving."""

from __future__ import annotations

import multiprocessing
import os
import threading

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from test_report import N, synthetic_profile, synthetic_runs

from minibatch_core.analysis.tables import profile_split
from minibatch_core.presentation import parallel, plotkit
from minibatch_core.presentation.plots import (
    REGISTRY,
    RSS_RESOLUTION_BYTES,
    PlotData,
    epoch_time_vs_batch,
    loss_vs_epoch,
    loss_vs_time,
    make_all,
    peak_memory_vs_batch,
    start_all,
    throughput,
)
from minibatch_core.presentation.plots import profile_split as profile_plot


def _data(runs: pd.DataFrame, profile: pd.DataFrame | None = None) -> PlotData:
    return PlotData(plotkit.prepare(runs), profile_split(profile) if profile is not None else None)


def _panels(fig: plt.Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def _labelled(ax) -> list:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def _texts(fig: plt.Figure) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def _two_datasets() -> pd.DataFrame:
    wine = synthetic_runs()
    iris = synthetic_runs()
    iris["dataset"] = "iris"
    iris["run_id"] = iris["run_id"].str.replace("wine", "iris")
    iris.loc[iris["batch_spec"] == "full", "batch_size"] = 150
    return pd.concat([wine, iris], ignore_index=True)


def _diverge(runs: pd.DataFrame, mask: pd.Series, at: int) -> pd.DataFrame:
    """What the recording writes for a diverged run: rows stop at the epoch, whose losses are NaN."""
    runs = runs.copy()
    runs["diverged"] = runs.get("diverged", False)
    runs["diverged_epoch"] = runs.get("diverged_epoch", np.nan)
    ids = runs.loc[mask, "run_id"].unique()
    hit = runs["run_id"].isin(ids)
    runs = runs[~(hit & (runs["epoch"] > at))].copy()
    hit = runs["run_id"].isin(ids)
    runs.loc[hit, "diverged"] = True
    runs.loc[hit, "diverged_epoch"] = at
    runs.loc[hit & (runs["epoch"] == at), ["epoch_loss", "eval_loss", "eval_accuracy"]] = np.nan
    return runs


def test_loss_vs_epoch_draws_every_seed_and_a_median_per_batch_size() -> None:
    fig = loss_vs_epoch(_data(synthetic_runs()))
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["reference", "fast", "stacked"]
    for ax in panels:
        medians = _labelled(ax)
        assert [line.get_label() for line in medians] == ["1", "32", "full (178)"]
        assert len({line.get_color() for line in medians}) == 3  # no two batch sizes share a colour
        assert len({line.get_linestyle() for line in medians}) == 3  # nor a line style
        assert len(ax.get_lines()) - len(medians) == 6  # one thin line per run: 3 batch sizes x 2 seeds
    b1 = _labelled(panels[0])[0]
    assert list(b1.get_xdata()) == [1, 2, 3]
    assert list(b1.get_ydata()) == pytest.approx([1.05, 0.525, 0.35])  # median of (1.0, 1.1) / epoch
    plt.close(fig)


def test_loss_vs_time_puts_each_epoch_at_its_training_time() -> None:
    fig = loss_vs_time(_data(synthetic_runs()))
    panels = _panels(fig)
    for ax in panels:
        assert [line.get_label() for line in _labelled(ax)] == ["1", "32", "full (178)"]
    b1 = _labelled(panels[0])[0]
    assert list(b1.get_xdata()) == pytest.approx([1.2, 1.6, 2.0])  # warm-up 3 x 0.4 s, then 0.4 s per epoch
    stacked_b1 = _labelled(panels[2])[0]
    assert list(stacked_b1.get_xdata()) == pytest.approx([0.3, 0.4, 0.5])  # the pass ÷ 2 replicas
    plt.close(fig)


def test_epoch_time_ticks_are_each_panels_own_batch_sizes() -> None:
    fig = epoch_time_vs_batch(_data(_two_datasets()))
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["wine · cpu", "iris · cpu"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["1", "32", "full (178)"]
    assert [t.get_text() for t in panels[1].get_xticklabels()] == ["1", "32", "full (150)"]
    for ax in panels:
        assert len(ax.containers) == 3  # one error-bar line per engine
    reference = panels[0].containers[0].lines[0]
    assert list(reference.get_ydata()) == pytest.approx([400, 100, 50])  # ms
    plt.close(fig)


def test_memory_below_rss_resolution_is_not_drawn_as_a_trend() -> None:
    runs = synthetic_runs()
    assert runs["peak_memory_bytes"].max() < RSS_RESOLUTION_BYTES
    runs["memory_method"] = "peak RSS growth over the run's start"
    fig = peak_memory_vs_batch(_data(runs))
    measured, tensors = _panels(fig)
    assert all(line.get_linestyle() == "None" for line in _labelled(measured))  # points, no lines
    assert len(_labelled(measured)) == 3 and all(len(line.get_xdata()) == 3 for line in _labelled(measured))
    assert "within RSS noise" in _texts(fig)
    assert all(line.get_linestyle() != "None" for line in _labelled(tensors))
    # tensor bytes of reference at batch 1: 1132 + 1132 + 2288 + 172
    assert _labelled(tensors)[0].get_ydata()[0] == pytest.approx((1132 + 1132 + 2288 + 172) / 1024)
    assert measured.get_ylabel() and tensors.get_ylabel()  # every panel labelled
    plt.close(fig)

    runs["peak_memory_bytes"] *= 100  # now far above the resolution: a trend worth a line
    fig = peak_memory_vs_batch(_data(runs))
    measured, _ = _panels(fig)
    assert all(line.get_linestyle() != "None" for line in _labelled(measured))
    assert "within RSS noise" not in _texts(fig)
    plt.close(fig)


def test_equal_memory_values_stay_visible_side_by_side() -> None:
    fig = peak_memory_vs_batch(_data(synthetic_runs()))
    _, tensors = _panels(fig)
    x_by_engine = [tuple(line.get_xdata()) for line in _labelled(tensors)]
    assert len(set(x_by_engine)) == 3  # the engines are nudged apart, so none hides another
    plt.close(fig)


def test_throughput_draws_one_bar_per_engine_and_batch_size() -> None:
    fig = throughput(_data(synthetic_runs()))
    (ax,) = _panels(fig)
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 9
    assert heights[0] == pytest.approx(N / 0.4)  # reference, batch 1: N samples per 0.4 s epoch
    plt.close(fig)


def test_profile_split_shows_shares_so_no_bar_flattens_another() -> None:
    fig = profile_plot(_data(synthetic_runs(), synthetic_profile()))
    (ax,) = _panels(fig)
    assert len(ax.patches) == 4 * 3  # phases x batch sizes
    tops = {}
    for p in ax.patches:
        tops[round(p.get_x(), 3)] = tops.get(round(p.get_x(), 3), 0) + p.get_height()
    assert list(tops.values()) == pytest.approx([100, 100, 100])
    assert [t.get_text() for t in ax.texts] == ["10 µs/step", "10 µs/step", "20 µs/step"]
    plt.close(fig)


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_every_axis_is_labelled_with_a_unit_or_scale(spec) -> None:
    fig = spec.draw(_data(_two_datasets(), synthetic_profile()))
    for ax in _panels(fig):
        assert "(" in ax.get_xlabel(), (spec.name, ax.get_xlabel())
        if ax.get_subplotspec().is_first_col():
            assert "(" in ax.get_ylabel(), (spec.name, ax.get_ylabel())
    assert spec.caption and spec.title
    plt.close(fig)


def test_divergence_is_drawn_and_never_crashes(tmp_path) -> None:
    runs = synthetic_runs()
    some = _diverge(runs, (runs["batch_spec"] == "1") & (runs["engine"] == "reference"), at=2)
    fig = loss_vs_epoch(_data(some))
    assert "1: diverged at epoch 2" in _texts(fig)
    b1 = _labelled(_panels(fig)[0])[0]
    assert list(b1.get_xdata()) == [1]  # the finite epoch before it diverged, nothing after
    plt.close(fig)

    every = _diverge(runs, runs["run_id"].notna(), at=1)
    plots = make_all(every, profile_split(synthetic_profile()), tmp_path)
    assert [p.name for p in plots] == [s.name for s in REGISTRY]
    fig = loss_vs_time(_data(every))
    assert _texts(fig).count("every run diverged") == 3
    assert all(not _labelled(ax) for ax in _panels(fig))
    plt.close(fig)


# --- drawing in forked workers (presentation.parallel) ----------------------------------------------------

needs_fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="no fork start method on this platform")


@needs_fork
def test_forked_and_serial_drawing_write_the_same_plots_in_the_same_order(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)  # the forked path even on a one-core machine
    runs, split = _two_datasets(), profile_split(synthetic_profile())
    serial = make_all(runs, split, tmp_path / "serial", parallel=False)
    drawing = start_all(runs, split, tmp_path / "forked")
    assert drawing.workers == 2
    forked = drawing.results()
    assert [p.name for p in forked] == [p.name for p in serial] == [s.name for s in REGISTRY]
    assert [(p.title, p.caption, p.path.name) for p in forked] == [(p.title, p.caption, p.path.name) for p in serial]
    assert all(p.path.parent == tmp_path / "forked" for p in forked)
    assert sorted(f.name for f in (tmp_path / "forked").iterdir()) == sorted(f.name for f in
                                                                          (tmp_path / "serial").iterdir())
    for s, f in zip(serial, forked, strict=True):
        assert f.path.read_bytes() == s.path.read_bytes(), s.name


def _fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"no plot for {x}")
    return x * 10


@needs_fork
def test_an_error_in_a_worker_is_the_serial_paths_error(monkeypatch) -> None:
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    failing = parallel.Pending(_fails_on_three, [1, 2, 3, 4])
    assert failing.workers == 2
    with pytest.raises(ValueError, match="^no plot for 3$"):
        failing.results()
    assert parallel.Pending(_fails_on_three, [4, 1, 2]).results() == [40, 10, 20]  # in the items' order


@needs_fork
def test_a_worker_that_dies_costs_only_a_rerun_here(monkeypatch) -> None:
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    parent = os.getpid()

    def dies_in_a_worker(x: int) -> int:
        if os.getpid() != parent and x == 2:
            os._exit(3)  # killed mid-job: the pool breaks
        return x + 1

    dying = parallel.Pending(dies_in_a_worker, [1, 2, 3, 4])
    assert dying.workers == 2
    assert dying.results() == [2, 3, 4, 5]


def test_one_usable_core_or_another_thread_draws_here(monkeypatch) -> None:
    parent = os.getpid()
    monkeypatch.setattr(parallel, "usable_cores", lambda: 1)
    alone = parallel.Pending(lambda x: (x, os.getpid() == parent), [1, 2])
    assert alone.workers == 0 and alone.results() == [(1, True), (2, True)]

    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:  # a lock that thread held at a fork would stay held in the child: no fork
        threaded = parallel.Pending(lambda x: (x, os.getpid() == parent), [1, 2])
    finally:
        stop.set()
        other.join()
    assert threaded.workers == 0 and threaded.results() == [(1, True), (2, True)]
