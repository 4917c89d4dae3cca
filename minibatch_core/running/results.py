"""What a run produces: plain dataclasses every engine fills the same way, plus their tidy frame."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from minibatch_core.engines.base import MemoryBreakdown
from minibatch_core.input.config import RunConfig


@dataclass
class EpochRecord:
    epoch: int  # 1-based, as the lesson prints it
    loss: float  # the lesson's epoch loss: sum(batch loss * batch size) / N
    eval_loss: float  # whole dataset, eval mode, no grad, after the epoch (outside the timed region)
    eval_accuracy: float
    time_s: float  # wall time of the epoch's training (synchronized on CUDA)
    steps: int
    samples_per_s: float
    batch_losses: list[float] | None = None


@dataclass
class RunResult:
    config: RunConfig
    engine: str
    dataset: str
    n_samples: int
    n_features: int
    n_classes: int
    device: str  # resolved, e.g. "cpu" or "cuda:0"
    device_name: str
    batch_spec: str  # as asked: "1", "32", "full"
    batch_size: int  # resolved integer
    seed: int
    records: list[EpochRecord]
    peak_memory_bytes: int
    memory_method: str
    memory: MemoryBreakdown
    replicas: int = 1  # models trained in the same timed pass (the stacked engine trains many)
    torch_threads: int = 0
    profile: dict[str, float] | None = None
    diverged_epoch: int | None = None  # the epoch whose loss or weights became non-finite; training stopped
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch_losses(self) -> list[float]:
        return [r.loss for r in self.records]

    @property
    def warmup_time_s(self) -> float:
        """The first epoch's time, kept apart: it pays for allocator warm-up, lazy init, caches."""
        return self.records[0].time_s if self.records else 0.0

    @property
    def total_time_s(self) -> float:
        return sum(r.time_s for r in self.records)

    @property
    def steps_per_epoch(self) -> int:
        return self.records[0].steps if self.records else 0

    def to_frame(self):
        """One row per epoch, with the run's identity repeated on every row (tidy)."""
        import pandas as pd

        rows = []
        cumulative = 0.0
        for r in self.records:
            cumulative += r.time_s
            rows.append(
                {
                    "engine": self.engine,
                    "dataset": self.dataset,
                    "device": self.device,
                    "device_name": self.device_name,
                    "batch_spec": self.batch_spec,
                    "batch_size": self.batch_size,
                    "seed": self.seed,
                    "lr": self.config.lr,
                    "optimizer": self.config.optimizer,
                    "epochs": self.config.epochs,
                    "epoch": r.epoch,
                    "epoch_loss": r.loss,
                    "eval_loss": r.eval_loss,
                    "eval_accuracy": r.eval_accuracy,
                    "epoch_time_s": r.time_s,
                    "cumulative_time_s": cumulative,
                    "warmup": r.epoch == 1,
                    "steps": r.steps,
                    "samples_per_s": r.samples_per_s,
                    "peak_memory_bytes": self.peak_memory_bytes,
                    "param_bytes": self.memory.parameters,
                    "grad_bytes": self.memory.gradients,
                    "optimizer_state_bytes": self.memory.optimizer_state,
                    "activation_bytes": self.memory.activations,
                    "replicas": self.replicas,
                    "n_samples": self.n_samples,
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["epoch_losses"] = self.epoch_losses
        d["warmup_time_s"] = self.warmup_time_s
        d["total_time_s"] = self.total_time_s
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        d = {k: v for k, v in d.items() if k not in ("epoch_losses", "warmup_time_s", "total_time_s")}
        d["config"] = RunConfig.from_dict(d["config"])
        d["records"] = [EpochRecord(**r) for r in d["records"]]
        d["memory"] = MemoryBreakdown(**d["memory"])
        return cls(**d)
