"""The tensor-bytes breakdown every engine reports: a plain dataclass, kept apart from ``base`` (which
needs torch) so that a command reading a run's result back from its worker never imports torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MemoryBreakdown:
    """Bytes counted from the tensors themselves (RSS moves in pages; this model is tiny)."""

    parameters: int = 0
    gradients: int = 0
    optimizer_state: int = 0
    activations: int = 0  # one forward pass of the largest batch

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations
