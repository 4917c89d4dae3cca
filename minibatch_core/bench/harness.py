"""One benchmarked case: a measured run (``running.trainer.open_run``, what ``train`` and the sweeps drive)
timed epoch by epoch through pytest-benchmark's ``benchmark`` fixture, its runs.csv rows in ``extra_info``.

The untimed warm-up epoch is recorded as epoch 1 (``warmup=True``, as a sweep's); each round times one
epoch (``Run.train_epoch``) and the round's setup (``Run.finish_epoch``: evaluation, recording) runs
outside it. The runs.csv rows of every seed (``records.rows.run_rows``, the sweeps' writer) go into
``extra_info["runs"]``, so ``minibatch-bench compare`` reads a bench JSON as the same records as a results
folder. Peak memory is measured on a second, untimed run of the same configuration in a fresh worker
process, on every device: inside the long-lived pytest process the resident set rarely grows after earlier
cases, and CUDA's allocator figures would depend on the calibration and the cases before (their cuBLAS
workspaces, their cached blocks). That run's loss curves must equal the timed session's (bit for bit on
the CPU; on CUDA within float rounding, as cuBLAS may pick other kernels in another process).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

FRESH_WORKER = ("measured on an untimed run of the same configuration (same seeds and epochs, losses checked "
                "equal to the timed session's) in a fresh worker process; the timed rounds ran inside pytest")


def with_fresh_worker_memory(config: Any, results: list) -> list:
    """``results`` with the peak memory of the same configuration trained in a fresh worker."""
    import math

    from minibatch_core.running.trainer import train_seeds

    twins = train_seeds(config, [r.seed for r in results], isolate=True)
    exact = results[0].device.startswith("cpu")
    for timed, twin in zip(results, twins, strict=True):
        # the memory must belong to the very training that was timed: same seed, same curve (bit for bit on CPU)
        same = twin.epoch_losses == timed.epoch_losses if exact else all(
            math.isclose(a, b, rel_tol=1e-4) for a, b in zip(twin.epoch_losses, timed.epoch_losses, strict=True))
        if not same:
            raise AssertionError(
                f"the fresh-worker run of {config.engine} batch {config.batch_spec} seed {timed.seed} trained a "
                f"different loss curve: {twin.epoch_losses} vs {timed.epoch_losses}")
    # the worker's label says "one fresh worker process per run"; FRESH_WORKER says which run that was
    method = twins[0].memory_method.removesuffix(", one fresh worker process per run")
    return [dataclasses.replace(r, peak_memory_bytes=twin.peak_memory_bytes, memory_method=f"{method}; {FRESH_WORKER}",
                                cuda_workspace_bytes=twin.cuda_workspace_bytes)
            for r, twin in zip(results, twins, strict=True)]


def benchmark_case(benchmark: Any, config: Any, seeds: list[int], calibration_step_s: dict[str, float],
                   *, group: str | None = None, fresh_worker_memory: bool = True) -> list:
    """Train ``config`` for ``seeds`` with every epoch after the first timed as one pytest-benchmark round;
    fill ``benchmark.extra_info`` (runs.csv rows under ``runs``) and return one RunResult per seed."""
    import pandas as pd

    from minibatch_core.records.rows import json_records, run_rows
    from minibatch_core.running.trainer import open_run, torch_threads

    if config.epochs < 2:
        raise ValueError("epochs must be >= 2: the first epoch is an untimed warm-up")
    with torch_threads(config.threads):  # the sweeps' thread count, recorded as torch_threads
        run = open_run(config, seeds)
        run.train_epoch()  # the untimed warm-up epoch, recorded as epoch 1 (warmup=True) like a sweep's
        run.finish_epoch()
        # a round of a multi-replica engine trains len(seeds) models: its own group, so pytest-benchmark's
        # table never ranks it against one model's epoch (per model: its time / replicas, in extra_info)
        benchmark.group = (group or f"{run.data.name} {config.device} batch {config.batch_spec}") + (
            f", {len(seeds)} models per round (multi-replica)" if len(seeds) > 1 else "")
        benchmark.pedantic(run.train_epoch, setup=run.finish_epoch, rounds=config.epochs - 1, iterations=1,
                           warmup_rounds=0)
        run.finish_epoch()
        while run.epochs_done < config.epochs:  # --benchmark-disable runs one round: train the rest untimed
            run.train_epoch()
            run.finish_epoch()
        results = run.results()
    if fresh_worker_memory:
        results = with_fresh_worker_memory(config, results)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    frame = pd.concat([run_rows(r, calibration_step_s=calibration_step_s.get(r.device), load_1m=load)
                       for r in results], ignore_index=True)
    first = results[0]
    timed = first.measurement  # the timed rounds (the trainer's clock), the warm-up excluded
    benchmark.extra_info.update({
        "engine": config.engine,
        "dataset": first.dataset,
        "model": config.model,
        "n_parameters": first.n_parameters,
        "device": first.device,
        "device_name": first.device_name,
        "batch_size": first.batch_size,
        "batch_spec": first.batch_spec,
        "seed": first.seed,
        "seeds": list(seeds),
        "replicas": first.replicas,
        "epochs": config.epochs,
        "n_samples": first.n_samples,
        "final_epoch_loss": first.epoch_losses[-1],
        "loss_curve": first.epoch_losses,
        "loss_curves": [r.epoch_losses for r in results],
        "epoch_times_s": list(timed.samples),
        "epoch_times_per_model_s": [t / first.replicas for t in timed.samples],
        "samples_per_s": first.n_samples / timed.median,
        "epoch_time_iqr_s": timed.iqr,
        "spread_warning": timed.spread_warning,
        "peak_memory_bytes": first.peak_memory_bytes,
        "memory_method": first.memory_method,
        "torch_threads": first.torch_threads,
        "runs": json_records(frame),
    })
    return results
