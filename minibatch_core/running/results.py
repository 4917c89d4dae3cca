"""What a run produces: plain dataclasses every engine fills the same way (their rows: ``records.rows``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from minibatch_core.engines.breakdown import MemoryBreakdown
from minibatch_core.input.config import RunConfig
from minibatch_core.running.measurement import Measurement


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
    class_names: tuple[str, ...] = ()  # class_names[i]: the dataset's label that became class number i
    extra: dict[str, Any] = field(default_factory=dict)
    workers: int = 1  # processes that trained the model together (ddp); 1 for every other engine
    worker_batch_size: int = 0  # the largest per-worker share of the global batch (= batch_size at W=1)
    worker_peak_memory_bytes: list[int] = field(default_factory=list)  # per rank, rank 0 first
    cuda_workspace_bytes: int | None = None  # cuBLAS workspaces held at the end (CUDA), not in the peak
    # the accuracy of always predicting the largest class on the rows accuracy is measured on (a baseline)
    majority_accuracy: float | None = None
    n_parameters: int = 0  # trainable values of one model (one replica)
    model_hash: str = ""  # content hash of a user model's source file (empty for the built-ins)

    @property
    def peak_memory_sum_bytes(self) -> int:
        """All ranks' peaks together (= peak_memory_bytes for a single process)."""
        return sum(self.worker_peak_memory_bytes) if self.worker_peak_memory_bytes else self.peak_memory_bytes

    @property
    def allreduce_time_s(self) -> list[float] | None:
        """Per epoch, rank 0's seconds in the gradient all-reduce (ddp only)."""
        return self.extra.get("allreduce_s")

    @property
    def epoch_losses(self) -> list[float]:
        return [r.loss for r in self.records]

    @property
    def measurement(self) -> Measurement:
        """The run's epoch times: the warm-up apart, the timed samples and their statistics."""
        return Measurement.from_epochs([r.time_s for r in self.records])

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
        """runs.csv's rows of this run, one per epoch with the identity on every row: the records layer's one
        writer (``records.rows.run_rows``), reached from here so that ``result.to_frame()`` keeps working."""
        from minibatch_core.records.rows import run_rows  # the one upward import tests/test_layering.py allows

        return run_rows(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["epoch_losses"] = self.epoch_losses
        d["warmup_time_s"] = self.warmup_time_s
        d["total_time_s"] = self.total_time_s
        d["peak_memory_sum_bytes"] = self.peak_memory_sum_bytes
        d["diverged"] = self.diverged
        return d

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        derived = ("epoch_losses", "warmup_time_s", "total_time_s", "peak_memory_sum_bytes", "diverged")
        d = {k: v for k, v in d.items() if k not in derived}
        d["config"] = RunConfig.from_dict(d["config"])
        d["records"] = [EpochRecord(**r) for r in d["records"]]
        d["memory"] = MemoryBreakdown(**d["memory"])
        d["class_names"] = tuple(d.get("class_names", ()))
        return cls(**d)
