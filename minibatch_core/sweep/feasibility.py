"""What a plan leaves out: combinations this machine or the engine cannot run, with the reason.

A sweep's grid is a product over its axes, so ``--devices auto`` on a GPU machine pairs every engine with
CUDA, and ``--workers 1,2`` pairs ddp on CUDA with two GPUs that may not be there. Such a combination is
not the user's mistake (each value is valid on its own): it is left out of the plan, listed with its
reason before anything trains, and the rest of the grid runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from minibatch_core.engines.base import Engine
from minibatch_core.input.config import RunConfig
from minibatch_core.running.distributed import DistributedOptions, machine_cannot


@dataclass(frozen=True)
class LeftOut:
    """Configurations of one engine x device (x workers) left out of a plan, and why."""

    engine: str
    device: str
    workers: int
    reason: str
    configurations: int
    runs: int

    def describe(self) -> str:
        workers = f" with {self.workers} workers" if self.workers > 1 else ""
        plural = "s" if self.configurations != 1 else ""
        return (f"{self.engine} on {self.device}{workers}: {self.configurations} configuration{plural} "
                f"({self.runs} runs) left out: {self.reason}")


def cannot_run(engine: Engine, config: RunConfig) -> str | None:
    """Why ``engine`` cannot run ``config`` on this machine, or None when it can."""
    if not engine.runs_on(config.device):
        return f"the {engine.name} engine trains on {' and '.join(engine.devices)} only, not {config.device}"
    if engine.distributed:
        return machine_cannot(config, DistributedOptions())
    return None


class LeftOutTally:
    """Counts left-out configurations per (engine, device, workers, reason), in the order first seen."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int, str], list[int]] = {}

    def add(self, config: RunConfig, reason: str, runs: int) -> None:
        key = (config.engine, config.device, config.workers, reason)
        counts = self._counts.setdefault(key, [0, 0])
        counts[0] += 1
        counts[1] += runs

    def result(self) -> tuple[LeftOut, ...]:
        return tuple(LeftOut(e, d, w, r, n, runs) for (e, d, w, r), (n, runs) in self._counts.items())
