"""Speed of the engines' generic paths, as ratios measured in one run (a benchmark, not a test).

A small conv net (the built-in ``cnn``, 3.35k parameters) on 600 digits as 1x8x8 images, one torch thread:

- generic ``fast`` vs ``reference`` epochs per second, at batch 1 and batch 32;
- ``stacked`` with 16 seeds vs one ``fast`` run: replica-steps per second, at batch 32.

Epochs of every case are interleaved round by round (so load on a shared machine hits them alike) and the
ratios are of median epoch times. Prints the figures and the machine's load average before and after.

    python bench/generic_speed.py [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from minibatch_core.engines import get_engine
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import Dataset, load_dataset


def digits600() -> Dataset:
    full = load_dataset("digits-images")
    return Dataset("digits-images[:600]", full.X[:600].contiguous(), full.y[:600].contiguous(), full.n_classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops per session")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, cpu = digits600(), torch.device("cpu")
    seeds = list(range(args.replicas))
    cases = {
        "reference b1": ("reference", 1, [0]), "fast b1": ("fast", 1, [0]),
        "reference b32": ("reference", 32, [0]), "fast b32": ("fast", 32, [0]),
        f"stacked x{args.replicas} b32": ("stacked", 32, seeds),
    }
    sessions = {name: get_engine(engine).start(RunConfig(dataset="digits-images", model="cnn", engine=engine,
                                                         batch_size=batch), data, cpu, s)
                for name, (engine, batch, s) in cases.items()}
    load_before = os.getloadavg()
    for session in sessions.values():  # warm-up epoch, untimed
        session.run_epoch()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, session in sessions.items():
            t0 = time.perf_counter()
            session.run_epoch()
            times[name].append(time.perf_counter() - t0)
    load_after = os.getloadavg()
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in med.items():
        print(f"{name:>18}: median epoch {t * 1e3:8.1f} ms over {args.rounds} rounds")
    stacked = f"stacked x{args.replicas} b32"
    print(f"fast / reference, batch 1:   {med['reference b1'] / med['fast b1']:.2f}x")
    print(f"fast / reference, batch 32:  {med['reference b32'] / med['fast b32']:.2f}x")
    print(f"stacked x{args.replicas} / one fast run, replica-steps per second (batch 32): "
          f"{args.replicas * med['fast b32'] / med[stacked]:.2f}x")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}; cores {os.cpu_count()}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name in ("fast b1", stacked):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                sessions[name].run_epoch()
            print(f"--- {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
