"""Epoch time of every engine x device x batch size, with pytest-benchmark, on the trainer's own API.

Each case opens one measured run (``running.trainer.open_run``: the engine session under the trainer's
clock, exactly what ``train`` and the sweeps drive), trains one untimed warm-up epoch, then times one
epoch per round (``rounds = --mb-epochs - 1``): ``Run.train_epoch`` is the timed region and
``Run.finish_epoch`` (evaluation on the whole dataset, recording the epoch) runs as the round's setup,
outside it. The runs.csv rows of every seed (``records.rows.run_rows``, the sweeps' writer) are stored in
``extra_info["runs"]``, so ``minibatch-bench compare`` reads a bench JSON as the same records as a
results folder and matches it with a sweep of the same configuration.

Peak memory is measured on a second, untimed run of the same configuration in a fresh worker process, on
every device: inside the long-lived pytest process the resident set rarely grows after earlier cases, and
CUDA's allocator figures would depend on the calibration and the cases before (their cuBLAS workspaces,
their cached blocks). That run's loss curves must equal the timed session's (bit for bit on the CPU; on
CUDA within float rounding, as cuBLAS may pick other kernels in another process).
"""

from __future__ import annotations

import dataclasses
import os

import pandas as pd
import pytest

from minibatch_core.engines import engine_names, get_engine
from minibatch_core.input.config import RunConfig
from minibatch_core.records.rows import json_records, run_rows
from minibatch_core.running.results import RunResult
from minibatch_core.running.trainer import open_run, torch_threads, train_seeds

BATCH_SIZES = [1, 32, "full"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

FRESH_WORKER = ("measured on an untimed run of the same configuration (same seeds and epochs, losses checked "
                "equal to the timed session's) in a fresh worker process; the timed rounds ran inside pytest")


def case_seeds(engine: str, options: dict) -> list[int]:
    replicas = options["replicas"] if get_engine(engine).multi_seed else 1
    return [options["seed"] + k for k in range(replicas)]


def with_fresh_worker_memory(config: RunConfig, results: list[RunResult]) -> list[RunResult]:
    """``results`` with the peak memory of the same configuration trained in a fresh worker."""
    twins = train_seeds(config, [r.seed for r in results], isolate=True)
    exact = results[0].device.startswith("cpu")
    for timed, twin in zip(results, twins, strict=True):
        # the memory must belong to the very training that was timed: same seed, same curve (bit for bit on CPU)
        same = twin.epoch_losses == (timed.epoch_losses if exact else pytest.approx(timed.epoch_losses, rel=1e-4))
        assert same, (
            f"the fresh-worker run of {config.engine} batch {config.batch_spec} seed {timed.seed} trained a "
            f"different loss curve: {twin.epoch_losses} vs {timed.epoch_losses}")
    # the worker's label says "one fresh worker process per run"; FRESH_WORKER says which run that was
    method = twins[0].memory_method.removesuffix(", one fresh worker process per run")
    return [dataclasses.replace(r, peak_memory_bytes=twin.peak_memory_bytes, memory_method=f"{method}; {FRESH_WORKER}",
                                cuda_workspace_bytes=twin.cuda_workspace_bytes)
            for r, twin in zip(results, twins, strict=True)]


@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=[str(b) for b in BATCH_SIZES])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("engine", engine_names())
def test_train_epoch(benchmark, mb_options: dict, mb_calibration_step_s: dict, mb_record_case,
                     engine: str, device: str, batch_size) -> None:
    if get_engine(engine).distributed:
        pytest.skip("the ddp engine trains in W launched processes, outside one session: measure it with "
                    "`minibatch-bench run --engines ddp --workers 1,2`")
    if not get_engine(engine).runs_on(device):  # a sweep leaves this combination out of its plan too
        pytest.skip(f"the {engine} engine trains on {' and '.join(get_engine(engine).devices)} only")
    config = RunConfig(dataset=mb_options["dataset"], batch_size=batch_size, epochs=mb_options["epochs"],
                       seed=mb_options["seed"], device=device, engine=engine)
    seeds = case_seeds(engine, mb_options)
    with torch_threads(config.threads):  # the sweeps' thread count, recorded as torch_threads
        run = open_run(config, seeds)
        run.train_epoch()  # the untimed warm-up epoch, recorded as epoch 1 (warmup=True) like a sweep's
        run.finish_epoch()
        # a round of a multi-replica engine trains len(seeds) models: its own group, so pytest-benchmark's
        # table never ranks it against one model's epoch (per model: its time / replicas, in extra_info)
        benchmark.group = f"{run.data.name} {device} batch {batch_size}" + (
            f", {len(seeds)} models per round (multi-replica)" if len(seeds) > 1 else "")
        benchmark.pedantic(run.train_epoch, setup=run.finish_epoch, rounds=config.epochs - 1, iterations=1,
                           warmup_rounds=0)
        run.finish_epoch()
        while run.epochs_done < config.epochs:  # --benchmark-disable runs one round: train the rest untimed
            run.train_epoch()
            run.finish_epoch()
        results = run.results()
    results = with_fresh_worker_memory(config, results)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    frame = pd.concat([run_rows(r, calibration_step_s=mb_calibration_step_s.get(r.device), load_1m=load)
                       for r in results], ignore_index=True)
    first = results[0]
    timed = first.measurement  # the timed rounds (the trainer's clock), the warm-up excluded
    benchmark.extra_info.update({
        "engine": engine,
        "dataset": first.dataset,
        "device": first.device,
        "device_name": first.device_name,
        "batch_size": first.batch_size,
        "batch_spec": first.batch_spec,
        "seed": first.seed,
        "seeds": seeds,
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
    mb_record_case(f"{engine}-{device}-{batch_size}", results)
    assert len(first.records) == config.epochs
    assert all(loss == loss for r in results for loss in r.epoch_losses), "a loss is NaN"

