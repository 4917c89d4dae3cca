"""The core that ``fast`` (one replica) and ``stacked`` (K replicas) share: the lesson's MLP for each seed,
its parameters as views into one flat tensor with one fused optimizer over it, the data resident on the
device, the DataLoader's batch plan, and the shells around an engine's own kernels (threads, profile,
memory, evaluation). An engine adds its step (``_prepare_epoch``, ``_run_epoch``, ``_epoch_output``,
``_segment_step``, ``_step_phases``) and its activation bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F

from minibatch_core.engines.base import EpochOutput, MemoryBreakdown, PhaseClock, evaluate_logits
from minibatch_core.engines.flat import FlatParams, make_flat_optimizer, step_work, threads_for
from minibatch_core.engines.segments import SegmentedTraining
from minibatch_core.engines.shuffle import LoaderShuffle
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.data import Dataset
from minibatch_core.input.devices import synchronize
from minibatch_core.input.models import build_mlp

Op = Callable[[], object]


def batch_plan(n: int, batch_size: int) -> tuple[int, int]:
    """(full-size steps, size of the last shorter batch or 0), as the DataLoader batches N rows."""
    full, rest = divmod(n, batch_size)
    return full, rest


class FlatMLPSession(SegmentedTraining):
    def _start(self, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int]) -> None:
        """Replica k is seed k's model with the reference engine's order of RNG use: seed, build the model,
        then the loader's shuffle."""
        self.seeds, self.config, self.device = list(seeds), config, device
        n = self.n = data.n_samples
        self.k = len(self.seeds)
        self.batch_size = resolve_batch_size(config.batch_size, n)
        models, self.shuffles = [], []
        for seed in self.seeds:
            torch.manual_seed(seed)
            models.append(build_mlp(data.n_features, config.hidden, data.n_classes))
            self.shuffles.append(LoaderShuffle(n))
        self.params = FlatParams(models, device)
        self.optimizer = make_flat_optimizer(config.optimizer, self.params, config.lr)
        self.step_work = step_work(self.k, self.batch_size, self.params.shapes)
        self.X = data.X.to(device)
        self.y = data.y.to(device)
        self.neg_onehot = -F.one_hot(self.y, data.n_classes).float()
        self.full_steps, self.rest = batch_plan(n, self.batch_size)

    def run_epoch(self) -> EpochOutput:
        with threads_for(self.step_work):
            return self._run_epoch()

    def _run_epoch(self) -> EpochOutput:
        raise NotImplementedError

    def _step_phases(self, j: int) -> tuple[Op, Op, Op, Op]:
        """Step j of the current epoch as its four phases (data, forward, backward, optimizer), each a
        call: the profile times them one by one."""
        raise NotImplementedError

    def _activation_bytes(self) -> int:
        raise NotImplementedError

    def _segment_step(self, j: int) -> None:
        """Step j of the current epoch, every replica (studies train in segments): its phases in order."""
        for phase in self._step_phases(j):
            phase()

    def evaluate(self) -> list[tuple[float, float]]:
        return [evaluate_logits(self.params.forward_fn(r), self.X, self.y) for r in range(self.k)]

    def memory(self) -> MemoryBreakdown:
        p = self.params
        return MemoryBreakdown(
            parameters=p.param.numel() * p.param.element_size(),
            gradients=p.grad.numel() * p.grad.element_size(),
            optimizer_state=self.optimizer.state_bytes(),
            activations=self._activation_bytes(),
        )

    def profile(self, steps: int) -> dict[str, float]:
        """Mean seconds per step (all replicas) per phase, with a synchronized clock read between phases;
        ``data`` is the per-epoch preparation spread over the epoch's steps plus each step's own gather."""
        with threads_for(self.step_work):
            phases = PhaseClock()
            clock, dev = time.perf_counter, self.device
            while phases.steps < steps:
                t0 = clock()
                self._prepare_epoch()
                synchronize(dev)
                phases.add("data", clock() - t0)
                for j in range(min(self.steps_per_epoch, steps - phases.steps)):
                    marks = [clock()]
                    for phase in self._step_phases(j):
                        phase()
                        synchronize(dev)
                        marks.append(clock())
                    phases.step(*(b - a for a, b in pairwise(marks)))
            return phases.means()
