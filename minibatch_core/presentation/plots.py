"""THE registry of a sweep's plots (name, title, caption, drawing function, file name) and ``make_all``.

Each drawing function (``plots_loss``, ``plots_cost``) takes the prepared records and returns a matplotlib
Figure without saving it, so tests can count what it drew; ``make_all`` saves every registered plot
(``start_all``: the same, drawn in forked workers while the caller goes on). Nothing else lists plot names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from minibatch_core.presentation import plotkit as K
from minibatch_core.presentation.parallel import Pending
from minibatch_core.presentation.plotkit import PlotData
from minibatch_core.presentation.plots_cost import (
    RSS_RESOLUTION_BYTES,
    epoch_time_vs_batch,
    peak_memory_vs_batch,
    profile_split,
    throughput,
)
from minibatch_core.presentation.plots_loss import loss_vs_epoch, loss_vs_time

__all__ = ["REGISTRY", "RSS_RESOLUTION_BYTES", "Plot", "PlotData", "PlotSpec", "epoch_time_vs_batch",
           "loss_vs_epoch", "loss_vs_time", "make_all", "peak_memory_vs_batch", "profile_split", "throughput"]


@dataclass(frozen=True)
class Plot:
    name: str  # file stem
    title: str
    caption: str
    path: Path


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
             "multi-seed engines), every panel on the same time axis; one marker per epoch, the shaded band "
             "spans the lowest to the highest seed. Where curves overlap in time, the lowest one at a given "
             "time had reached the lowest loss by then; where they do not (the panel then names the curve that "
             "ends before another starts), compare the loss each reached and the time it took, not the curves "
             "at one time. Every swept axis besides batch size (learning rate, hidden widths, ...) has its own "
             "line style, named in the legend. The loss is the training loss; the answer above says whether it "
             "means the model learned.", loss_vs_time),
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
             "Left: the measured peak (resident-set growth on CPU; on CUDA the growth of "
             "torch.cuda.max_memory_allocated over the run's start, cuBLAS workspaces apart). "
             "RSS moves in 4 KiB pages and the allocator grabs memory in chunks, so below about 1 MiB it "
             "cannot resolve this model: such points are drawn without lines and marked as noise. Right: bytes "
             "counted from the tensors themselves, exact at any size.", peak_memory_vs_batch),
    PlotSpec("profile_split", "Where the time goes",
             "Each bar is one batch size's mean training step split into data loading, forward, backward and "
             "optimizer (share of the step; the step's length is written on top), from extra instrumented steps "
             "after training (synchronized on CUDA).", profile_split, needs_profile=True),
)


def make_all(runs: pd.DataFrame, profile_wide: pd.DataFrame | None, out_dir: str | Path, *,
             checked: bool = False, parallel: bool = True) -> list[Plot]:
    """Every registered plot into ``out_dir`` (created); returns them in the registry's order.

    ``checked``: see ``tables.with_defaults``. ``parallel``: draw them in forked workers, one per usable
    core, and here (``presentation.parallel``); False draws them here one after the other. Same files."""
    if not parallel:
        draw, specs = _jobs(runs, profile_wide, out_dir, checked)
        return [draw(spec) for spec in specs]
    return start_all(runs, profile_wide, out_dir, checked=checked).results()


def start_all(runs: pd.DataFrame, profile_wide: pd.DataFrame | None, out_dir: str | Path, *,
              checked: bool = False) -> Pending[PlotSpec, Plot]:
    """``make_all`` started in forked workers: ``.results()`` returns the plots (call it, or ``.close()``,
    in any case)."""
    return Pending(*_jobs(runs, profile_wide, out_dir, checked))


def _jobs(runs: pd.DataFrame, profile_wide: pd.DataFrame | None, out_dir: str | Path, checked: bool
          ) -> tuple[Callable[[PlotSpec], Plot], list[PlotSpec]]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    has_profile = profile_wide is not None and not profile_wide.empty
    data = PlotData(K.prepare(runs, checked=checked), profile_wide if has_profile else None)
    specs = [spec for spec in REGISTRY if has_profile or not spec.needs_profile]
    return partial(_render, data=data, out=out), specs


def _render(spec: PlotSpec, data: PlotData, out: Path) -> Plot:
    with K.themed():
        path = K.save(spec.draw(data), out / spec.file_name)
    return Plot(spec.name, spec.title, spec.caption, path)
