"""The study's own axes as users write them: ``pow2`` batch sizes, ``A:B:K`` learning-rate ranges,
learning-rate policies (``lr_policy``, ``warmup_epochs``) and per-dataset default targets. A study run's
identity is a sweep run's (``records.identity``) plus ``STUDY_IDENTITY``; study.csv records them all."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import parse_batch_size, resolve_batch_size
from minibatch_core.records.axes import items, parse_lrs, unique

LR_POLICIES = ("constant", "linear", "sqrt")
# the study's axes beyond a sweep's, with the value that leaves them out of a run id
STUDY_IDENTITY = {"lr_policy": "constant", "warmup_epochs": 0.0, "val_fraction": 0.2, "target_metric": None,
                  "target_value": None}
POLICY_BASE_BATCH = 32  # linear/sqrt scale the grid's rates, which are set for batch size 32 (Goyal et al.)

# per dataset: (metric, value) used when neither --target-accuracy nor --target-loss is given; each is a
# level the best configuration reaches well within the default budget (40 epochs) on the default split
DEFAULT_TARGETS: dict[str, tuple[str, float]] = {
    "wine": ("accuracy", 0.9),
    "iris": ("accuracy", 0.9),
    "breast_cancer": ("accuracy", 0.9),
    "digits": ("accuracy", 0.9),
    "synthetic": ("accuracy", 0.7),
}
FILE_DEFAULT_TARGET = ("accuracy", 0.8)


def parse_study_batch_sizes(value: Any) -> tuple[int | str, ...]:
    """Integers, ``full`` and ``pow2`` (= 1, 2, 4, ... below the training rows, plus ``full``)."""
    out: list[int | str] = []
    for item in items("batch sizes", value):
        if isinstance(item, str) and item.strip().lower() == "pow2":
            out.append("pow2")
        else:
            out.append(parse_batch_size(item))
    return unique(out)


def resolve_study_batches(specs: tuple[int | str, ...], n_train: int) -> list[tuple[str, int]]:
    """(spec as written, rows per step) in increasing size, ``pow2`` expanded, duplicates after
    resolution (e.g. 256 and full on 200 rows) kept once, as the smaller spelling."""
    expanded: list[int | str] = []
    for spec in specs:
        if spec == "pow2":
            expanded += [2 ** i for i in range(int(math.log2(n_train)) + 1) if 2 ** i < n_train] + ["full"]
        else:
            expanded.append(spec)
    seen: dict[int, str] = {}
    for spec in expanded:
        size = resolve_batch_size(spec, n_train)
        if size not in seen:
            seen[size] = "full" if size == n_train else str(spec)
    return sorted(((s, b) for b, s in seen.items()), key=lambda pair: pair[1])


def parse_lr_grid(value: Any) -> tuple[float, ...]:
    """A list (``0.001,0.01``) and/or ranges ``A:B:K`` = K log-spaced values from A to B inclusive."""
    out: list[float] = []
    for item in items("lrs", value):
        if isinstance(item, str) and ":" in item:
            parts = item.split(":")
            bad = (f"learning-rate range {item!r} is not valid: use A:B:K with 0 < A <= B and an integer "
                   "K >= 1, e.g. 1e-3:1e-1:5")
            if len(parts) != 3:
                raise MinibatchError(bad)
            try:
                lo, hi, count = float(parts[0]), float(parts[1]), int(parts[2])
            except ValueError:
                raise MinibatchError(bad) from None
            if not (0 < lo <= hi < math.inf) or count < 1:
                raise MinibatchError(bad)
            if count == 1 and lo != hi:
                raise MinibatchError(f"learning-rate range {item!r} asks for 1 value between two different "
                                     "ends: use K >= 2, or A:A:1")
            out += [float(v) for v in np.geomspace(lo, hi, count)] if count > 1 else [lo]
        else:
            out += list(parse_lrs([item]))
    return unique(float(f"{v:.6g}") for v in out)


def policy_factor(policy: str, batch_size: int) -> float:
    """The multiplier a policy applies to a base rate (set at batch 32) at ``batch_size``."""
    if policy == "constant":
        return 1.0
    ratio = batch_size / POLICY_BASE_BATCH
    return ratio if policy == "linear" else math.sqrt(ratio)


def check_policy(policy: str) -> str:
    if policy not in LR_POLICIES:
        raise MinibatchError(f"learning-rate policy {policy!r} is not known: use one of {', '.join(LR_POLICIES)}")
    return policy


def default_target(dataset: str) -> tuple[str, float]:
    return DEFAULT_TARGETS.get(dataset, FILE_DEFAULT_TARGET)
