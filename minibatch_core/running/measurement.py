"""One configuration's timed epochs, defined once (like torch.utils.benchmark's ``Measurement``).

The rule, the same for ``train``'s line, summary.csv, the report's answer, compare's verdicts and the
bench: the first ``WARMUP_EPOCHS`` epoch(s) of every run are the warm-up (lazy initialization, allocator
growth, caches) and never count; every later epoch is a timed sample. A one-epoch run has no timed sample,
so its median is NaN ("no timed epoch"), never the warm-up passed off as one.

Pure numpy/pandas (no torch): the records, analysis and presentation layers read it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WARMUP_EPOCHS = 1
# IQR / median above this: the samples disagree enough that one figure hides it (cf. torch.utils.benchmark's
# "significant variance" warning)
SPREAD_WARNING_RATIO = 0.25


def timed_rows(runs):
    """The rows of a runs frame (runs.csv) whose epoch times are timed samples: all but the warm-up."""
    return runs[~runs["warmup"].astype(bool)]


def bootstrap_medians(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` medians of resamples (with replacement) of ``x``: a percentile bootstrap's raw material."""
    if len(x) == 1:
        return np.full(n, x[0])
    return np.median(x[rng.integers(0, len(x), size=(n, len(x)))], axis=1)


@dataclass(frozen=True)
class Measurement:
    """The timed samples (seconds) of one configuration and their statistics; ``warmup_s`` kept apart."""

    samples: tuple[float, ...]
    warmup_s: float = math.nan

    @classmethod
    def from_epochs(cls, times: Sequence[float]) -> Measurement:
        """One run's epoch times in order, the warm-up first."""
        times = [float(t) for t in times]
        return cls(tuple(times[WARMUP_EPOCHS:]), times[0] if times else math.nan)

    @classmethod
    def from_rows(cls, rows) -> Measurement:
        """The runs.csv rows of one configuration (any seeds). Sorted by seed and epoch, so a seeded
        bootstrap sees the same sequence however the rows were ordered. A multi-seed engine times every
        seed in one pass: that pass's time, repeated on each seed's row, is one sample."""
        warm = rows[rows["warmup"].astype(bool)]["epoch_time_s"].dropna()
        timed = timed_rows(rows).dropna(subset=["epoch_time_s"]).sort_values(["seed", "epoch"])
        if "replicas" in timed and (timed["replicas"].fillna(1) > 1).any():
            timed = timed.drop_duplicates(subset=["epoch", "epoch_time_s"])
        return cls(tuple(timed["epoch_time_s"].astype(float)), float(warm.median()) if len(warm) else math.nan)

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.samples, dtype=float)

    @property
    def n(self) -> int:
        return len(self.samples)

    def _stat(self, fn, *args) -> float:
        return float(fn(self.array, *args)) if self.samples else math.nan

    @property
    def median(self) -> float:
        return self._stat(np.median)

    @property
    def q1(self) -> float:
        return self._stat(np.quantile, 0.25)

    @property
    def q3(self) -> float:
        return self._stat(np.quantile, 0.75)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def min(self) -> float:
        return self._stat(np.min)

    @property
    def max(self) -> float:
        return self._stat(np.max)

    def interval(self, confidence: float = 0.95, n_boot: int = 2000,
                 rng: np.random.Generator | None = None) -> tuple[float, float]:
        """A percentile-bootstrap interval for the median (NaN, NaN without samples)."""
        if not self.samples:
            return math.nan, math.nan
        medians = bootstrap_medians(self.array, n_boot, rng or np.random.default_rng(0))
        alpha = 1 - confidence
        low, high = np.quantile(medians, [alpha / 2, 1 - alpha / 2])
        return float(low), float(high)

    @property
    def spread_warning(self) -> str:
        """A sentence where the spread is large (IQR above ``SPREAD_WARNING_RATIO`` of the median), else ""."""
        if self.n < 2 or not self.median > 0:
            return ""
        ratio = self.iqr / self.median
        if ratio <= SPREAD_WARNING_RATIO:
            return ""
        return (f"large spread: the interquartile range is {ratio:.0%} of the median over {self.n} timed "
                "epochs (a busy machine?); the median is uncertain")
