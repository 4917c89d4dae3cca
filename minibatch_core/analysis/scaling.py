"""Data-parallel scaling: how time per epoch changes with the number of workers at a fixed global batch.

scaling efficiency at W = samples/s at W / (W x samples/s at W=1), both of the same engine and
configuration (W=1 of ``ddp`` is one process with DDP's machinery and a trivial all-reduce). The
all-reduce share is the time the gradient all-reduce took over the epoch time, timed epochs only.
"""

from __future__ import annotations

import pandas as pd

from minibatch_core.analysis.tables import _by, timed_epochs, with_defaults
from minibatch_core.records.identity import IDENTITY_COLUMNS

# a configuration across W: everything but the workers (and the threads, which a launcher shares out
# among the workers when the user left them to torch)
SCALING_KEYS = [c for c in IDENTITY_COLUMNS if c not in ("workers", "torch_threads")] + ["batch_size"]


def scaling(runs: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
    """One row per configuration x W, for the configurations measured at more than one W; empty otherwise.

    Columns: the configuration, ``workers``, ``worker_batch_size``, ``epoch_time_median_s``,
    ``samples_per_s_median``, ``speedup`` and ``scaling_efficiency`` (against W=1 of the same
    configuration; NaN without it), ``allreduce_share``, ``peak_memory_sum_median_bytes``, ``n_runs``.
    ``checked``: see ``tables.with_defaults``.
    """
    runs = with_defaults(runs, checked=checked)
    if "workers" not in runs or runs["workers"].nunique() < 2:
        return pd.DataFrame()
    runs = runs.assign(worker_batch_size=runs.get("worker_batch_size", runs["batch_size"]),
                       allreduce_time_s=runs.get("allreduce_time_s", 0.0),
                       peak_memory_sum_bytes=runs.get("peak_memory_sum_bytes", runs["peak_memory_bytes"]))
    runs = runs.assign(worker_batch_size=runs["worker_batch_size"].fillna(runs["batch_size"]),
                       allreduce_time_s=runs["allreduce_time_s"].fillna(0.0),
                       peak_memory_sum_bytes=runs["peak_memory_sum_bytes"].fillna(runs["peak_memory_bytes"]))
    several = _by(runs, SCALING_KEYS)["workers"].transform("nunique") > 1
    runs = runs[several]
    if runs.empty:
        return pd.DataFrame()
    keys = SCALING_KEYS + ["workers"]
    timed = _by(timed_epochs(runs), keys)
    out = pd.DataFrame({
        "worker_batch_size": _by(runs, keys)["worker_batch_size"].max(),
        "n_runs": _by(runs, keys)["run_id"].nunique(),
        "epoch_time_median_s": timed["epoch_time_s"].median(),
        "samples_per_s_median": timed["samples_per_s"].median(),
        "allreduce_share": timed["allreduce_time_s"].sum() / timed["epoch_time_s"].sum(),
        "peak_memory_sum_median_bytes": _by(runs, keys)["peak_memory_sum_bytes"].median(),
    }).reset_index()
    one = out[out["workers"] == 1][SCALING_KEYS + ["samples_per_s_median"]]
    one = one.rename(columns={"samples_per_s_median": "_one"})
    out = out.merge(one, on=SCALING_KEYS, how="left")
    out["speedup"] = out["samples_per_s_median"] / out["_one"]
    out["scaling_efficiency"] = out["speedup"] / out["workers"]
    out = out.drop(columns="_one")
    return out.sort_values(SCALING_KEYS + ["workers"], kind="stable").reset_index(drop=True)
