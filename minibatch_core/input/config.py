"""Run configuration: a plain dataclass, validated once, at construction."""

from __future__ import annotations

import math
import os
import struct
from dataclasses import asdict, dataclass, replace
from typing import Any

from minibatch_core.errors import MinibatchError

BUNDLED_DATASETS = ("wine", "iris", "breast_cancer", "digits", "synthetic")
OPTIMIZERS = ("adam", "sgd")
SCALERS = ("none", "standard")
LOSSES = ("cross_entropy", "mse")


def is_synthetic(dataset: str) -> bool:
    """Generated data, defined by its size and data seed rather than by its name."""
    return dataset == "synthetic"


def parse_batch_size(value: int | str) -> int | str:
    """A positive integer, or ``"full"`` for the whole dataset. Strings of digits become ints."""
    error = MinibatchError(f"batch size {value!r} is not valid: use a positive integer or 'full'")
    if isinstance(value, bool):
        raise error
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "full":
            return "full"
        try:
            value = int(text)
        except ValueError:
            raise error from None
    if not isinstance(value, int) or value < 1:
        raise error
    return value


def check_loss(value: str) -> str:
    """One of LOSSES, or one line naming them (RunConfig and the study's config both check with this)."""
    if value not in LOSSES:
        raise MinibatchError(f"loss {value!r} is not known: use one of {', '.join(LOSSES)}")
    return value


def resolve_batch_size(spec: int | str, n_samples: int) -> int:
    """``full`` and any size above N both mean N: the recorded size is what the loader really used."""
    return n_samples if spec == "full" else min(int(spec), n_samples)


def batch_sort_key(spec: int | str) -> tuple:
    """Batch specs from small to large: numbers ascending, then ``full``."""
    spec = str(spec)
    return (spec == "full", int(spec) if spec.isdecimal() else 0, spec)


def check_lr(value: Any, *, plural: bool = False) -> float:
    """A learning rate: a positive number that float32 (the models' dtype) can hold. 1e300 would pass a
    float64 check and then overflow to inf inside the optimizer; 1e-50 would round to 0 and never train."""
    example = "e.g. 0.001,0.01" if plural else "e.g. 0.001"
    error = MinibatchError(f"learning rate {value!r} is not valid: use a positive number, {example}")
    if isinstance(value, bool):
        raise error
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise error from None
    if not (lr > 0 and math.isfinite(lr)):
        raise MinibatchError(f"learning rate {lr!r} is not valid: use a positive number, {example}")
    try:
        as_float32 = struct.unpack("f", struct.pack("f", lr))[0]
    except OverflowError:
        as_float32 = math.inf
    if not (0 < as_float32 < math.inf):
        raise MinibatchError(f"learning rate {value!r} cannot be represented in float32 (the models' dtype): "
                             "use a value between about 1.2e-38 and 3.4e38")
    return lr


def parse_threads(value: Any) -> int | None:
    """An integer from 1 to the cores this process may use, or ``auto``/None for torch's default (one
    thread per core). More threads than cores only wait for each other (and 100,000 made libgomp crash
    the worker), so they are refused here, before any worker starts."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MinibatchError(f"threads {value!r} is not valid: use an integer >= 1 or auto (torch's default)")
    cores = usable_cores()
    if value > cores:
        raise MinibatchError(f"threads {value!r} is more than the {cores} core(s) this process may use: use 1 to "
                             f"{cores}, or auto")
    return value


def usable_cores() -> int:
    """The cores this process may use (its affinity)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# a plan larger than MAX_RUNS, or runs longer than MAX_EPOCHS, is refused unless the user confirms (--yes):
# 400,000 runs of a mistyped range, or 10**9 epochs, would otherwise start silently and run for days
MAX_RUNS = 10_000
MAX_EPOCHS = 100_000

MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed torch accepts: an integer from 0 to 2**63 - 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise MinibatchError(f"{name} {value!r} is not valid: use an integer from 0 to 2**63-1 ({MAX_SEED})")
    return value


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MinibatchError(f"{name} {value!r} is not valid: use an integer >= {minimum}")
    return value


@dataclass(frozen=True)
class RunConfig:
    """One training run. Field names are the public contract (CLI flags mirror them)."""

    dataset: str = "wine"
    batch_size: int | str = 32
    epochs: int = 10
    seed: int = 0
    device: str = "cpu"
    engine: str = "reference"
    lr: float = 0.001
    optimizer: str = "adam"
    hidden: tuple[int, ...] = (10, 10)
    target: str | None = None
    scale: str = "none"
    # synthetic data (sklearn.datasets.make_classification); data_seed fixes the data, not the training
    n_samples: int = 1000
    n_features: int = 20
    n_classes: int = 2
    data_seed: int = 0
    record_batches: bool = False
    # torch intra-op threads. One by default: this suite's models are tiny, a second thread only adds
    # wake-up latency and, on a shared machine, waits for descheduled threads. None = torch's default
    # (one per core; `--threads auto`). The count actually used is recorded either way.
    threads: int | None = 1
    workers: int = 1  # data-parallel processes (the ddp engine); 1 = a single process
    # the model: mlp (the lesson's, shaped by ``hidden``), linear, cnn, or a user's factory spec
    model: str = "mlp"
    loss: str = "cross_entropy"  # or mse (regression targets; no accuracy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", parse_batch_size(self.batch_size))
        _positive_int("epochs", self.epochs)
        check_seed(self.seed)
        check_seed(self.data_seed, "data seed")
        object.__setattr__(self, "lr", check_lr(self.lr))
        if self.optimizer not in OPTIMIZERS:
            raise MinibatchError(
                f"optimizer {self.optimizer!r} is not known: use one of {', '.join(OPTIMIZERS)}"
            )
        if self.scale not in SCALERS:
            raise MinibatchError(f"scale {self.scale!r} is not known: use one of {', '.join(SCALERS)}")
        hidden = tuple(self.hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise MinibatchError(
                f"hidden widths {self.hidden!r} are not valid: use positive integers, e.g. 10,10"
            )
        object.__setattr__(self, "hidden", hidden)
        object.__setattr__(self, "threads", parse_threads(self.threads))
        _positive_int("workers", self.workers)
        _positive_int("n_samples", self.n_samples, 2)
        _positive_int("n_features", self.n_features, 1)
        _positive_int("n_classes", self.n_classes, 2)
        if not isinstance(self.dataset, str) or not self.dataset:
            raise MinibatchError("dataset is empty: use one of " + ", ".join(BUNDLED_DATASETS) + " or a file")
        from minibatch_core.input.specs import BUILTIN_MODELS, MODEL_ACCEPTED, is_user_spec

        model = str(self.model).strip()
        model = model.lower() if model.lower() in BUILTIN_MODELS else model
        if not (model in BUILTIN_MODELS or is_user_spec(model)):
            raise MinibatchError(f"model {self.model!r} is not valid: use {MODEL_ACCEPTED}")
        object.__setattr__(self, "model", model)
        check_loss(self.loss)
        # engine names are checked against the registry by the trainer, which owns it

    @property
    def batch_spec(self) -> str:
        """What was asked for, as text: ``1``, ``32``, ``full``."""
        return str(self.batch_size)

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)
