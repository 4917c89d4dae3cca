"""The engines' speed targets, measured as ratios in one run.

Every engine x batch size x device epoch time is benchmarked case by case in test_bench_training.py
(which parametrizes over every registered engine). This module measures what those separate cases
cannot: ratios between engines taken in the *same* rounds, so that machine load drifting between
cases does not bias them. Per round, every session trains one epoch, one after the other (interleaved),
each timed alone (CUDA synchronized); ratios are of the per-engine median epoch times. The first epoch
of every session is an untimed warm-up.

Targets (issue: engines that compete), on Wine on the CPU: ``fast`` at least 4x / 3x / 2x faster per
epoch than ``reference`` at batch size 1 / 32 / full, at least 1.5x faster than ``sklearn`` at 1 and
32; ``stacked`` with 64 seeds at least 20x the replica-steps per second of one ``fast`` run at batch
size 1. On a GPU: ``fast`` at least 5x faster than ``reference`` at batch size 1. The ratios and
whether each target is met go into ``extra_info``; they are not asserted (a loaded shared machine
must not fail a build on timing).
"""

from __future__ import annotations

import statistics

import pytest
import torch

from minibatch_core.engines import get_engine
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.devices import resolve_device
from minibatch_core.running.measure import Stopwatch, device_name
from minibatch_core.running.trainer import load_for, torch_threads

BATCH_SIZES = (1, 32, "full")
STACKED_SEEDS = 64
MIN_ROUNDS = 7  # ratios of medians want a few more rounds than one case's timing

CPU_TARGETS = {
    ("fast/reference", "1"): 4.0,
    ("fast/reference", "32"): 3.0,
    ("fast/reference", "full"): 2.0,
    ("fast/sklearn", "1"): 1.5,
    ("fast/sklearn", "32"): 1.5,
    ("stacked/fast replica-steps", "1"): 20.0,
}
CUDA_TARGETS = {("fast/reference", "1"): 5.0}


def speed_ratios(medians: dict[tuple[str, str], float], replicas: int) -> dict[tuple[str, str], float]:
    """Ratios of median epoch times (how many times faster the first engine is); for stacked, of
    replica-steps per second (K replicas per epoch against one)."""
    out: dict[tuple[str, str], float] = {}
    for (engine, batch), t in medians.items():
        if engine == "fast":
            continue
        fast = medians.get(("fast", batch))
        if fast is None or t <= 0 or fast <= 0:
            continue
        if engine == "stacked":
            out[("stacked/fast replica-steps", batch)] = replicas * fast / t
        else:
            out[(f"fast/{engine}", batch)] = t / fast
    return out


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_engine_speed_ratios(benchmark, mb_options: dict, device: str) -> None:
    dev = resolve_device(device)
    base = RunConfig(dataset=mb_options["dataset"], seed=mb_options["seed"], device=device)
    data = load_for(base)
    seed = base.seed
    plan = [(engine, batch) for batch in BATCH_SIZES for engine in ("reference", "fast", "sklearn")
            if not (engine == "sklearn" and dev.type != "cpu")]
    plan.append(("stacked", 1))
    with torch_threads(base.threads):  # the thread count the training cases and the sweeps use
        sessions = {}
        losses: dict[tuple[str, str], list[float]] = {}
        for engine, batch in plan:
            config = base.with_(engine=engine, batch_size=batch)
            seeds = list(range(seed, seed + STACKED_SEEDS)) if engine == "stacked" else [seed]
            key = (engine, str(batch))
            sessions[key] = get_engine(engine).start(config, data, dev, seeds)
            losses[key] = [sessions[key].run_epoch().losses[0]]  # untimed warm-up epoch
        times: dict[tuple[str, str], list[float]] = {key: [] for key in sessions}
        clock = Stopwatch(dev)

        def one_round() -> None:
            for key, session in sessions.items():
                with clock.region():
                    out = session.run_epoch()
                times[key].append(clock.elapsed_s)
                losses[key].append(out.losses[0])

        rounds = max(mb_options["epochs"] - 1, MIN_ROUNDS)
        benchmark.group = f"{data.name} {device} engine ratios (one round = every engine, one epoch)"
        benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)

    medians = {key: statistics.median(ts) for key, ts in times.items()}
    ratios = speed_ratios(medians, STACKED_SEEDS)
    targets = CPU_TARGETS if dev.type == "cpu" else CUDA_TARGETS
    label = " ".join
    benchmark.extra_info.update({
        "dataset": data.name,
        "device": str(dev),
        "device_name": device_name(dev),
        "torch_threads": base.threads or torch.get_num_threads(),
        "rounds": rounds,
        "replicas": {label(k): (STACKED_SEEDS if k[0] == "stacked" else 1) for k in sessions},
        "batch_size": {label(k): resolve_batch_size(k[1] if k[1] == "full" else int(k[1]), data.n_samples)
                       for k in sessions},
        "median_epoch_s": {label(k): v for k, v in medians.items()},
        "samples_per_s": {label(k): data.n_samples / v for k, v in medians.items()},
        "loss_curve": {label(k): v for k, v in losses.items()},
        "ratios": {label(k): v for k, v in ratios.items()},
        "targets": {label(k): v for k, v in targets.items()},
        "targets_met": {label(k): ratios.get(k, 0.0) >= v for k, v in targets.items()},
    })
    assert all(len(ts) == rounds for ts in times.values())
    assert all(loss == loss for curve in losses.values() for loss in curve), "a loss is NaN"
