"""A short fixed workload timed beside every sweep, so times can be compared across machines.

Its shape mirrors what the suite measures (a small MLP, Adam, many small steps: dispatch-bound on a
CPU), so the ratio epoch_time / calibration_step_s cancels most of a machine's speed. It is neither
the lesson nor any engine: changes to the engines must not move it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from minibatch_core.input.devices import resolve_device, synchronize, torch_threads

WORKLOAD = "mlp-13-64-64-3 adam, batch 32, 200 steps, fixed data; median of 7 repeats after 1 warm-up"


@dataclass
class Calibration:
    workload: str
    device: str
    step_s: float  # median seconds per step
    repeats_step_s: list[float]
    torch_threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def measure_calibration(device: str = "cpu", steps: int = 200, repeats: int = 7,
                        threads: int | None = None) -> Calibration:
    """``threads``: the sweep's torch threads (None: torch's default). The workload runs at the runs' own
    count: at torch's default (a thread per core) four sweeps started together on two cores spun in an
    OpenMP barrier for minutes, and a calibration at another count than the runs describes other work."""
    with torch_threads(threads):
        return _measure(device, steps, repeats)


def _measure(device: str, steps: int, repeats: int) -> Calibration:
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(1234)
    X = torch.randn(32, 13, generator=gen).to(dev)
    y = torch.randint(0, 3, (32,), generator=gen).to(dev)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(1234)
        model = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def block() -> float:
        synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn(model(X), y)
            loss.backward()
            opt.step()
        synchronize(dev)
        return (time.perf_counter() - t0) / steps

    block()  # warm-up, excluded
    samples = [block() for _ in range(repeats)]
    return Calibration(WORKLOAD, str(dev), statistics.median(samples), samples, torch.get_num_threads())
