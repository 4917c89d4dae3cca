"""The columns of runs.csv and profile.csv: name, type, unit and meaning, in the order they are written.

This list is the contract. The writer (``records.rows``) writes these columns and no others, the loader
(``records.io``) checks and types them, and results/README.md's tables are generated from it
(``python3 -m minibatch_core.records.columns`` prints them; a test keeps the README in step). Every
identity axis (``records.axes.AXES``) has its column: described below, or generated from the axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minibatch_core.records.axes import AXES

STR, INT, FLOAT, BOOL = "str", "int", "float", "bool"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # str | int | float | bool
    meaning: str
    unit: str = ""
    required: bool = False  # a runs.csv without it is refused; others are filled with ``fill`` when absent
    fill: Any = None  # what a file written before the column existed meant (the defaults of that time)
    nullable: bool = True  # False: an empty cell is a malformed file


def _c(name: str, dtype: str, meaning: str, unit: str = "", *, required: bool = False, fill: Any = None,
       nullable: bool | None = None) -> Column:
    return Column(name, dtype, meaning, unit, required, fill,
                  (not required) if nullable is None else nullable)


RUN_COLUMNS: tuple[Column, ...] = (
    _c("run_id", STR, "readable unique id of the run: `config_id` plus `|s<seed>` after the batch, e.g. "
       "`reference|wine|cpu|b32|s0|lr0.001`", required=True),
    _c("config_id", STR, "the configuration's identity (every axis but the seed): `engine|dataset|device|b<batch_spec>"
       "|lr<lr>`, then `|<optimizer>` when not adam, `|h<hidden>` when not 10-10, and `|<axis>=<value>` for "
       "every other axis off its default (e.g. `|scale=standard`, `|torch_threads=2`); the epochs (one per sweep) "
       "are in their own column"),
    _c("engine", STR, "training engine (`reference` = the lesson's loop; see the main README)", required=True),
    _c("dataset", STR, "dataset name (a file dataset: its path as given)", required=True),
    _c("target", STR, "label column of a file dataset (empty for the bundled ones)", fill=""),
    _c("scale", STR, "feature scaling: `none` (the lesson's) or `standard`", fill="none", nullable=False),
    _c("data_seed", INT, "seed of generated data (synthetic)", fill=0, nullable=False),
    _c("device", STR, "resolved device: `cpu`, `cuda:0`, ...", required=True),
    _c("device_name", STR, "CPU model or GPU name", fill=""),
    _c("batch_spec", STR, "batch size as asked: `1`, `32`, `full` (text)", required=True),
    _c("batch_size", INT, "resolved batch size (`full` and anything above N become N)", "samples", required=True),
    _c("seed", INT, "`torch.manual_seed` before the model is built (`random_state` for sklearn)", required=True),
    _c("lr", FLOAT, "learning rate", required=True),
    _c("optimizer", STR, "`adam` or `sgd`", fill="adam", nullable=False),
    _c("hidden", STR, "hidden layer widths joined by `-`, e.g. `10-10`", fill="10-10", nullable=False),
    _c("epochs", INT, "epochs of the run (as planned)", fill=None),
    _c("workers", INT, "data-parallel processes that trained the run (1 = one process)", fill=1, nullable=False),
    _c("worker_batch_size", INT, "rows of the global batch each worker trains on per step: the largest of the "
       "`workers` contiguous shards (= `batch_size` for one process)", "samples"),
    _c("epoch", INT, "1-based epoch number", required=True),
    _c("epoch_loss", FLOAT, "the lesson's epoch loss of this epoch (training, as the loop saw it); NaN once the "
       "run diverged", "nats", required=True, nullable=True),
    _c("eval_loss", FLOAT, "mean cross-entropy on the whole dataset after the epoch (eval mode, no grad, outside "
       "the timed region)", "nats", required=True, nullable=True),
    _c("eval_accuracy", FLOAT, "accuracy on the whole dataset after the epoch", "0..1", required=True,
       nullable=True),
    _c("epoch_time_s", FLOAT, "wall time of the epoch's training (CUDA synchronized). Multi-seed engines: the "
       "time of the one pass that trained all `replicas` models; per-model time = `epoch_time_s / replicas`",
       "s", required=True, nullable=False),
    _c("cumulative_time_s", FLOAT, "sum of `epoch_time_s` up to and including this epoch (training only)", "s",
       required=True, nullable=False),
    _c("warmup", BOOL, "`True` for epoch 1: kept apart from epoch-time statistics (lazy initialization, caches)",
       fill=None),
    _c("steps", INT, "optimizer steps in the epoch (ceil(N / batch_size))", required=True),
    _c("samples_per_s", FLOAT, "N / `epoch_time_s` (per pass; x `replicas` for samples of all models)",
       "samples/s", required=True),
    _c("diverged", BOOL, "`True` on every row of a run whose loss or weights became non-finite; training stopped "
       "there", fill=False, nullable=False),
    _c("diverged_epoch", INT, "the epoch at which the run diverged (empty when it did not)"),
    _c("peak_memory_bytes", INT, "the run's peak memory: on CPU the growth of the resident set's high-water mark "
       "over the training regions in a fresh worker process; on CUDA the growth of "
       "`torch.cuda.max_memory_allocated` over the bytes allocated at the run's start, also in a fresh worker, "
       "without the cuBLAS workspaces (`cuda_workspace_bytes`) (same value on every row of a run; empty in a "
       "study's runs.csv, which does not measure memory)", "bytes",
       required=True, nullable=True),
    _c("peak_memory_sum_bytes", INT, "`peak_memory_bytes` of every worker process added up (ddp: each rank "
       "measured in its own process; = `peak_memory_bytes` for one process)", "bytes"),
    _c("worker_peak_memory_bytes", STR, "each worker's peak memory, rank 0 first, joined by `;` (rank 0's is "
       "`peak_memory_bytes`)", "bytes"),
    _c("allreduce_time_s", FLOAT, "rank 0's time in the gradient all-reduce during this epoch (ddp, timed by a "
       "DDP comm hook from launch to completion; part of `epoch_time_s`; 0 for one process)", "s"),
    _c("param_bytes", INT, "bytes of the parameters, counted from the tensors", "bytes"),
    _c("grad_bytes", INT, "bytes of the gradients", "bytes"),
    _c("optimizer_state_bytes", INT, "bytes of the optimizer state", "bytes"),
    _c("activation_bytes", INT, "bytes of every module output of one forward pass of the largest batch", "bytes"),
    _c("replicas", INT, "models trained in the same timed pass (1, or the seeds of a multi-seed engine)",
       fill=1, nullable=False),
    _c("n_samples", INT, "N, rows of the dataset", "rows"),
    _c("n_features", INT, "the dataset's width", "features"),
    _c("n_classes", INT, "the dataset's number of classes"),
    _c("calibration_step_s", FLOAT, "the calibration workload's median seconds per step on this device, measured "
       "at the start of the sweep; `epoch_time_s / calibration_step_s` is comparable across machines", "s"),
    _c("torch_threads", INT, "`torch.get_num_threads()` in the process that trained the run (the `threads` "
       "axis: 1 by default, torch's own default with `--threads auto`)"),
    _c("val_loss", FLOAT, "mean cross-entropy on the held-out rows after the epoch (`study` only: its split; empty "
       "in a sweep, whose eval columns cover the whole dataset)", "nats"),
    _c("val_accuracy", FLOAT, "accuracy on the held-out rows after the epoch (`study` only)", "0..1"),
    _c("majority_accuracy", FLOAT, "the accuracy of always predicting the largest class on the rows the "
       "accuracy columns are measured on (a trivial baseline: a model that learned beats it; empty in folders "
       "written before the column existed, where the report computes it for the bundled datasets)", "0..1"),
    _c("load_1m", FLOAT, "the machine's 1-minute load average when the run finished: above the core count, "
       "other work competed for the CPU during the run"),
    _c("memory_method", STR, "how `peak_memory_bytes` was measured", fill=""),
    _c("cuda_workspace_bytes", INT, "CUDA: bytes of cuBLAS workspace the run's streams held at its end (one per "
       "stream that ran a matmul; its size is cuBLAS's, settable with CUBLAS_WORKSPACE_CONFIG), reported apart "
       "from `peak_memory_bytes` so engines compare on what training itself uses; empty on CPU", "bytes"),
    _c("host", STR, "name of the machine that trained the run (its hardware: env.json's `hosts`)", fill=""),
    _c("executor", STR, "where the sweep ran its runs: `local` (this command's processes, one at a time) or "
       "`ray` (one Ray task per run)", fill="local"),
    _c("model", STR, "the model: `mlp` (the lesson's, shaped by `hidden`), `linear`, `cnn`, or a user's factory "
       "`package.module:function` / `path/file.py:function` (as given, normalized)", fill="mlp", nullable=False),
    _c("model_hash", STR, "first 12 hex digits of the sha256 of a user model's source file (empty for the "
       "built-ins): a changed model file is a different configuration", fill=""),
    _c("n_parameters", INT, "trainable values of one model"),
    _c("loss", STR, "`cross_entropy` (classes; accuracy reported) or `mse` (float targets; no accuracy)",
       fill="cross_entropy", nullable=False),
)



def _axis_columns(listed: tuple[Column, ...]) -> tuple[Column, ...]:
    """A column for every identity axis the list above does not describe (a new axis is recorded without
    a line here): typed by its default, meaning its help, and a file without it meant the default."""
    known = {c.name for c in listed}
    kinds = {bool: BOOL, int: INT, float: FLOAT}
    out = []
    for axis in AXES:
        if axis.in_identity and axis.record_column not in known:
            fill = axis.record(axis.default)
            out.append(_c(axis.record_column, kinds.get(type(fill), STR), axis.help, fill=fill))
    return tuple(out)


RUN_COLUMNS += _axis_columns(RUN_COLUMNS)

PROFILE_COLUMNS: tuple[Column, ...] = (
    _c("config_id", STR, "the configuration, as in runs.csv"),
    _c("engine", STR, "as in runs.csv", required=True),
    _c("dataset", STR, "as in runs.csv", required=True),
    _c("device", STR, "as in runs.csv", required=True),
    _c("batch_spec", STR, "as in runs.csv", required=True),
    _c("batch_size", INT, "as in runs.csv", required=True),
    _c("phase", STR, "`data` (batch assembly / loading), `forward`, `backward`, `allreduce` (ddp only: the "
       "gradient all-reduce, taken out of backward), `optimizer` (incl. zero_grad)", required=True),
    _c("mean_step_s", FLOAT, "mean seconds per step spent in the phase", "s", required=True),
    _c("lr", FLOAT, "as in runs.csv"),
    _c("optimizer", STR, "as in runs.csv", fill="adam"),
    _c("hidden", STR, "as in runs.csv", fill="10-10"),
    _c("epochs", INT, "as in runs.csv"),
    _c("replicas", INT, "models in the profiled pass", fill=1),
    _c("workers", INT, "data-parallel processes of the profiled run (rank 0's split)", fill=1),
    _c("seed", INT, "the profiled seed (the configuration's first)"),
)


def names(columns: tuple[Column, ...]) -> list[str]:
    return [c.name for c in columns]


def markdown(columns: tuple[Column, ...]) -> str:
    """The README table of a file's columns."""
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    for c in columns:
        meaning = c.meaning.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {c.dtype} | {c.unit} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print("## runs.csv\n\n" + markdown(RUN_COLUMNS) + "\n\n## profile.csv\n\n" + markdown(PROFILE_COLUMNS))
