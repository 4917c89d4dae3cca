"""Epoch time of every engine x device x batch size, with pytest-benchmark.

Each case builds a fresh engine session (the same Session protocol the trainer drives), trains one
untimed warm-up epoch, then times one epoch per round (``rounds = --mb-epochs - 1``), synchronizing CUDA
before the clock stops. ``extra_info`` carries what a reader of the JSON needs beside the times.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from minibatch_core.engines import engine_names, get_engine
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.devices import resolve_device
from minibatch_core.running.measure import MemoryProbe, device_name, synchronize
from minibatch_core.running.trainer import load_for

BATCH_SIZES = [1, 32, "full"]
DEVICES = ["cpu", "cuda"]
NO_CUDA = "needs a CUDA GPU; torch.cuda.is_available() is False on this machine"


@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=[str(b) for b in BATCH_SIZES])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("engine", engine_names())
def test_train_epoch(benchmark, mb_options: dict, engine: str, device: str, batch_size) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip(NO_CUDA)
    eng = get_engine(engine)
    if eng.distributed:
        pytest.skip("the ddp engine trains in W launched processes, outside one session: measure it with "
                    "`minibatch-bench run --engines ddp --workers 1,2`")
    config = RunConfig(dataset=mb_options["dataset"], batch_size=batch_size, epochs=mb_options["epochs"],
                       seed=mb_options["seed"], device=device, engine=engine)
    data = load_for(config)
    dev = resolve_device(device)
    seeds = [config.seed + k for k in range(mb_options["replicas"] if eng.multi_seed else 1)]
    resolved = resolve_batch_size(batch_size, data.n_samples)
    rounds = config.epochs - 1

    losses: list[list[float]] = []  # per epoch, per replica
    session = None
    probe = MemoryProbe(dev)

    def setup():
        # first round only: a fresh session and its warm-up epoch, both outside the timed region
        nonlocal session
        if session is None:
            session = eng.start(config, data, dev, seeds)
            losses.append(list(session.run_epoch().losses))
            synchronize(dev)
            probe.start()

    def timed_epoch():
        out = session.run_epoch()
        synchronize(dev)  # run_epoch returns host floats; this makes sure no queued work escapes the clock
        losses.append(list(out.losses))
        return out

    benchmark.group = f"{data.name} {device} batch {batch_size}"
    benchmark.pedantic(timed_epoch, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    probe.sample()

    stats = getattr(benchmark, "stats", None)
    epoch_times = list(stats.stats.data) if stats is not None else []
    median = statistics.median(epoch_times) if epoch_times else float("nan")
    curve = [epoch[0] for epoch in losses]
    benchmark.extra_info.update({
        "engine": engine,
        "dataset": data.name,
        "device": str(dev),
        "device_name": device_name(dev),
        "batch_size": resolved,
        "batch_spec": str(batch_size),
        "seed": config.seed,
        "seeds": seeds,
        "replicas": len(seeds),
        "epochs": config.epochs,
        "n_samples": data.n_samples,
        "final_epoch_loss": curve[-1],
        "loss_curve": curve,
        "loss_curves": [[epoch[k] for epoch in losses] for k in range(len(seeds))],
        "epoch_times_s": epoch_times,
        "samples_per_s": data.n_samples / median if epoch_times else None,
        "peak_memory_bytes": probe.peak,
        "memory_method": (probe.method if dev.type == "cuda" else
                          "peak RSS growth over the timed rounds, in the benchmark process (not a fresh worker)"),
        "torch_threads": torch.get_num_threads(),
    })
    if epoch_times:  # absent under --benchmark-disable, which runs one round untimed
        assert len(epoch_times) == rounds and len(curve) == rounds + 1
    assert all(loss == loss for loss in curve), "a loss is NaN"
