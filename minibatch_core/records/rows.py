"""The one writer of records: a ``RunResult`` -> its runs.csv rows and profile.csv rows, in schema order."""

from __future__ import annotations

from typing import Any

import pandas as pd

from minibatch_core.records import identity as ident
from minibatch_core.records.columns import PROFILE_COLUMNS, RUN_COLUMNS, names


def run_rows(result: Any, *, calibration_step_s: float | None = None, load_1m: float | None = None
             ) -> pd.DataFrame:
    """One row per epoch of ``result`` with every runs.csv column (and no other)."""
    identity = ident.of_result(result)
    config_id = ident.config_id(identity)
    run_id = ident.run_id(identity, result.seed)
    diverged_epoch = getattr(result, "diverged_epoch", None)
    memory = result.memory
    rows: list[dict[str, Any]] = []
    cumulative = 0.0
    peaks = list(getattr(result, "worker_peak_memory_bytes", None) or [result.peak_memory_bytes])
    allreduce = getattr(result, "allreduce_time_s", None) or [0.0] * len(result.records)
    for i, r in enumerate(result.records):
        cumulative += r.time_s
        rows.append({
            **identity,
            "run_id": run_id, "config_id": config_id, "device_name": result.device_name,
            "batch_size": result.batch_size, "seed": result.seed,
            "epoch": r.epoch, "epoch_loss": r.loss, "eval_loss": r.eval_loss, "eval_accuracy": r.eval_accuracy,
            "epoch_time_s": r.time_s, "cumulative_time_s": cumulative, "warmup": r.epoch == 1,
            "steps": r.steps, "samples_per_s": r.samples_per_s,
            "diverged": diverged_epoch is not None, "diverged_epoch": diverged_epoch,
            "peak_memory_bytes": result.peak_memory_bytes, "param_bytes": memory.parameters,
            "grad_bytes": memory.gradients, "optimizer_state_bytes": memory.optimizer_state,
            "activation_bytes": memory.activations, "replicas": result.replicas,
            "calibration_step_s": calibration_step_s, "load_1m": load_1m,
            "memory_method": result.memory_method,
            "worker_batch_size": getattr(result, "worker_batch_size", 0) or result.batch_size,
            "peak_memory_sum_bytes": sum(peaks), "worker_peak_memory_bytes": ";".join(map(str, peaks)),
            "allreduce_time_s": allreduce[i],
            "cuda_workspace_bytes": getattr(result, "cuda_workspace_bytes", None),
            "majority_accuracy": getattr(result, "majority_accuracy", None),
            "n_parameters": getattr(result, "n_parameters", 0) or None,
        })
    frame = pd.DataFrame(rows, columns=names(RUN_COLUMNS))
    frame["diverged_epoch"] = frame["diverged_epoch"].astype("Int64")
    return frame


def profile_rows(result: Any) -> pd.DataFrame:
    """The step-time split of ``result`` (mean seconds per step per phase), or no rows."""
    if not result.profile:
        return pd.DataFrame(columns=names(PROFILE_COLUMNS))
    identity = ident.of_result(result)
    base = {"config_id": ident.config_id(identity), "engine": result.engine, "dataset": result.dataset,
            "device": result.device, "batch_spec": result.batch_spec, "batch_size": result.batch_size,
            "lr": result.config.lr, "optimizer": result.config.optimizer, "hidden": identity["hidden"],
            "epochs": result.config.epochs, "replicas": result.replicas, "seed": result.seed,
            "workers": getattr(result, "workers", 1)}
    return pd.DataFrame([{**base, "phase": phase, "mean_step_s": float(seconds)}
                         for phase, seconds in result.profile.items()], columns=names(PROFILE_COLUMNS))


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (a bench JSON's ``extra_info["runs"]``): Python scalars only, and NaN / NA
    as None, so the file is strict JSON (null) and ``records.io.rows_frame`` reads the cells back as empty."""
    plain = frame.astype(object).where(frame.notna(), None)
    return plain.to_dict("records")
