"""Training in segments, for studies that check a target between steps.

A study must resolve *when* a run reaches its validation target, which is usually inside an epoch (at
small batch sizes often inside the first one). So an engine that supports studies exposes, besides
``run_epoch``, the epoch cut into step ranges: ``begin_epoch()`` (the shuffle), ``run_steps(start,
stop)`` (steps ``start..stop-1`` of the epoch), ``end_epoch()`` (the lesson's epoch loss, once every
step ran), plus ``evaluate_on(X, y)`` for held-out data and ``set_schedule`` for per-replica learning
rates and warm-up. Running every segment of an epoch performs exactly the steps ``run_epoch`` does.

``SegmentedTraining`` implements these for the flat-parameter engines (``fast``, ``stacked``); an engine
provides ``_prepare_epoch``, ``_epoch_output``, ``_segment_step(j)`` and the attributes they use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from minibatch_core.engines.base import EpochOutput, evaluate_logits
from minibatch_core.engines.flat import threads_for
from minibatch_core.engines.schedule import Warmup, optimizer_for_rates


def supports_segments(session: object) -> bool:
    return all(hasattr(session, name) for name in ("begin_epoch", "run_steps", "end_epoch", "evaluate_on",
                                                   "set_schedule"))


class SegmentedTraining:
    _warmup: Warmup | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.full_steps + (1 if self.rest else 0)

    def set_schedule(self, lrs: Sequence[float], warmup_steps: int = 0) -> None:
        """One learning rate per replica (in seed order) and a linear warm-up over ``warmup_steps``.
        Call before the first step: the optimizer state starts afresh."""
        if getattr(self, "graphs", None):
            raise ValueError("segments and schedules need the eager step (no CUDA graphs)")
        self.optimizer = optimizer_for_rates(self.config.optimizer, self.params, list(lrs))
        self._warmup = Warmup(self.optimizer, warmup_steps) if warmup_steps > 0 else None
        self._rebind_optimizer()

    def _rebind_optimizer(self) -> None:
        """Engines that bind the optimizer's step into prepared call lists rebuild them here."""

    def begin_epoch(self) -> None:
        self._prepare_epoch()

    def run_steps(self, start: int, stop: int) -> None:
        warm, step = self._warmup, self._segment_step
        with threads_for(self.step_work):
            for j in range(start, min(stop, self.steps_per_epoch)):
                if warm is not None:
                    warm.before_step()
                step(j)

    def end_epoch(self) -> EpochOutput:
        return self._epoch_output()

    def evaluate_on(self, X: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
        """(loss, accuracy) per replica on (X, y): no grad, nothing in the training state changes."""
        X, y = X.to(self.device), y.to(self.device)
        return [evaluate_logits(self.params.forward_fn(r), X, y) for r in range(self.params.replicas)]
