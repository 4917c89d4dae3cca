"""What compare judges by: the verdict words, the options (thresholds, normalization, loss mode), and the
shape of a metric plug-in (``Metric``) with the two sides it judges (``Sides``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from minibatch_core.errors import MinibatchError
from minibatch_core.records.identity import IDENTITY_COLUMNS

# A configuration is its full identity (every axis but the seed, from the records layer) and its set of
# seeds: runs that differ in any axis are never compared as the same thing.
# (the resolved batch size follows from batch_spec and the data; it is kept for display)
KEYS = (*IDENTITY_COLUMNS, "batch_size", "seeds")

IMPROVED, UNCHANGED, REGRESSED, MISSING, NEW = "improved", "unchanged", "regressed", "missing", "new"
NOT_JUDGED = "not judged"
LOSS_MODES = ("tolerance", "exact")
MIN_TIME_SAMPLES = 3  # below this a bootstrap interval is degenerate (and would look falsely certain)
# Counts of the same code repeat to well under 0.5% (docs/gates.md): a fixed growth threshold needs no
# confidence interval
DEFAULT_MAX_GROWTH = 1.02


@dataclass(frozen=True)
class CompareOptions:
    # Flags a 2x slowdown between two quiet sides (regressed when the whole interval lies above it).
    # Sides measured above their core count are not judged at all (verdicts._unless_contended): that,
    # not a huge threshold, is what keeps a busy shared machine from raising false alarms.
    max_slowdown: float = 1.25
    normalize: str = "none"  # none | calibration | engine:NAME
    loss_mode: str = "tolerance"  # tolerance | exact
    loss_rtol: float = 0.05
    max_memory_growth: float = 1.20
    # CPU peak memory is an RSS delta: it moves by whole pages and allocator arenas, tens to hundreds
    # of KiB for this model, with run-to-run jitter of a few pages. Differences below this never regress.
    memory_floor_bytes: int = 1 << 20
    confidence: float = 0.95
    bootstrap: int = 2000
    rng_seed: int = 0

    def __post_init__(self) -> None:
        if not (self.max_slowdown > 1 and math.isfinite(self.max_slowdown)):
            raise MinibatchError(f"--max-slowdown {self.max_slowdown!r} is not valid: use a number > 1")
        if not (self.max_memory_growth > 1 and math.isfinite(self.max_memory_growth)):
            raise MinibatchError(
                f"--max-memory-growth {self.max_memory_growth!r} is not valid: use a number > 1")
        if not (self.loss_rtol >= 0 and math.isfinite(self.loss_rtol)):
            raise MinibatchError(f"--loss-rtol {self.loss_rtol!r} is not valid: use a number >= 0")
        if self.memory_floor_bytes < 0:
            raise MinibatchError(f"--memory-floor-bytes {self.memory_floor_bytes!r} is not valid: use >= 0")
        if not 0.5 <= self.confidence < 1:
            raise MinibatchError(f"--confidence {self.confidence!r} is not valid: use a number in [0.5, 1)")
        if self.bootstrap < 100:
            raise MinibatchError(f"--bootstrap {self.bootstrap!r} is not valid: use at least 100 resamples")
        if self.loss_mode not in LOSS_MODES:
            raise MinibatchError(
                f"--loss-mode {self.loss_mode!r} is not known: use one of {', '.join(LOSS_MODES)}")
        if not (self.normalize in ("none", "calibration") or
                (self.normalize.startswith("engine:") and self.normalize[len("engine:"):])):
            raise MinibatchError(
                f"--normalize {self.normalize!r} is not known: use none, calibration or engine:NAME "
                "(e.g. engine:reference)"
            )

    @property
    def reference_engine(self) -> str | None:
        return self.normalize[len("engine:"):] if self.normalize.startswith("engine:") else None


@dataclass(frozen=True)
class InstructionOptions:
    max_growth: float = DEFAULT_MAX_GROWTH  # regressed above it, improved below its inverse

    def __post_init__(self) -> None:
        if not (self.max_growth > 1 and math.isfinite(self.max_growth)):
            raise MinibatchError(f"--max-instruction-growth {self.max_growth!r} is not valid: use a number > 1, "
                                 "e.g. 1.02 for +2%")


@dataclass(frozen=True)
class Sides:
    """The two sides of a comparison, grouped by configuration (``keys``): what a metric judges with."""

    baseline: Any  # result_sets.ResultSet, or records.instructions.CountSet
    current: Any
    base_groups: dict[tuple, pd.DataFrame]
    cur_groups: dict[tuple, pd.DataFrame]
    keys: tuple[str, ...]
    options: Any  # CompareOptions | InstructionOptions: the thresholds the metrics judge by


@dataclass(frozen=True)
class Metric:
    """A metric plug-in: one verdict part of every matched configuration (speed, loss, memory,
    instructions). ``judge(key, baseline rows, current rows, sides)`` returns a verdict dataclass with
    ``verdict`` (one of the words above) and ``note``; its thresholds come from ``sides.options``."""

    name: str  # the row attribute that holds its verdict, and its columns' prefix in to_frame
    columns: tuple[str, ...]  # the rows' columns it reads
    judge: Callable[[dict[str, Any], pd.DataFrame, pd.DataFrame, Sides], Any]


class Verdict:
    """What every verdict part can do to its row's status, beyond its own word: nothing by default."""

    def settle(self, status: str) -> str:
        return status


class StatusCounts:
    """What a comparison of rows with a ``status`` says as a whole."""

    rows: list

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def regressed(self) -> bool:
        return any(r.status == REGRESSED for r in self.rows)
