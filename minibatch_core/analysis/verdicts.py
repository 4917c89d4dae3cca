"""The speed and memory metric plug-ins: speed is a bootstrap ratio of median epoch times (not judged on a
side measured above its core count), memory the growth of the peak. Pure functions of the two sides' rows
and ``CompareOptions``; the bootstrap RNG is seeded per configuration, so the same inputs always give the
same verdicts. Loss and divergence: ``loss_verdicts``."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from minibatch_core.analysis.compare_options import (
    IMPROVED,
    MIN_TIME_SAMPLES,
    NOT_JUDGED,
    REGRESSED,
    UNCHANGED,
    CompareOptions,
    Metric,
    Sides,
    Verdict,
)
from minibatch_core.analysis.contention import group_contention, side_cores
from minibatch_core.analysis.loss_verdicts import diverged_seeds
from minibatch_core.analysis.result_sets import ResultSet
from minibatch_core.errors import MinibatchError
from minibatch_core.running.measurement import Measurement, bootstrap_medians


@dataclass
class SpeedVerdict(Verdict):
    verdict: str
    ratio: float = float("nan")  # current / baseline of the (normalized) median epoch time
    low: float = float("nan")
    high: float = float("nan")
    base_median: float = float("nan")  # seconds, or normalized units when normalize != none
    cur_median: float = float("nan")
    n_base: int = 0
    n_cur: int = 0
    note: str = ""
    contended: str = ""  # "" or which side ran above its core count ("current load 5.2 on 2 cores")

    def settle(self, status: str) -> str:
        return NOT_JUDGED if self.contended and status == UNCHANGED else status  # never passes unjudged


@dataclass
class MemoryVerdict(Verdict):
    verdict: str
    base_bytes: float = float("nan")  # median across seeds of each run's peak
    cur_bytes: float = float("nan")
    ratio: float = float("nan")
    note: str = ""


def _rng(options: CompareOptions, key: tuple) -> np.random.Generator:
    # seeded by the configuration, not its position, so adding rows never changes another row's verdict
    return np.random.default_rng([options.rng_seed, zlib.crc32("|".join(map(str, key)).encode())])


def bootstrap_ratio(base: np.ndarray, cur: np.ndarray, *, base_den: np.ndarray | None = None,
                    cur_den: np.ndarray | None = None, n_boot: int = 2000, confidence: float = 0.95,
                    rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Ratio of medians current/baseline, each optionally divided by the median of a normalizer's
    samples, with a percentile bootstrap interval. Each sample set is resampled on its own (the two
    sides, and a normalizer, are independent measurements)."""
    rng = rng or np.random.default_rng(0)

    def point(x, den):
        return float(np.median(x)) / (float(np.median(den)) if den is not None else 1.0)

    def boot(x, den):
        b = bootstrap_medians(x, n_boot, rng)
        return b / bootstrap_medians(den, n_boot, rng) if den is not None else b

    ratio = point(cur, cur_den) / point(base, base_den)
    ratios = boot(cur, cur_den) / boot(base, base_den)
    alpha = 1 - confidence
    low, high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return ratio, float(low), float(high)


def _normalizer(rs: ResultSet, side: str, key: dict[str, Any], groups: dict[tuple, pd.DataFrame],
                keys: tuple[str, ...], options: CompareOptions) -> tuple[np.ndarray | None, str]:
    """Samples to divide this configuration's times by (None: no normalization), or a reason why none."""
    if options.normalize == "none":
        return None, ""
    if options.normalize == "calibration":
        steps = rs.calibration.get(key["device"])
        if not steps:
            raise MinibatchError(
                f"--normalize calibration: the {side} ({rs.source}) has no calibration for device "
                f"{key['device']} (no calibration_step_s column, calibration.json or minibatch_calibration)")
        return np.asarray(steps, dtype=float), ""
    ref_key = tuple(options.reference_engine if k == "engine" else key[k] for k in keys)
    ref = groups.get(ref_key)
    if ref is None:
        return None, f"no {options.reference_engine} run of this configuration in the {side} to normalize by"
    samples = Measurement.from_rows(ref).array
    if len(samples) == 0:
        return None, f"the {options.reference_engine} run in the {side} has no timed epochs"
    return samples, ""


def judge_speed(key: dict, b: pd.DataFrame, c: pd.DataFrame, sides: Sides) -> SpeedVerdict:
    return _unless_contended(_speed(key, b, c, sides), b, c, sides)


def _unless_contended(speed: SpeedVerdict, b: pd.DataFrame, c: pd.DataFrame, sides: Sides) -> SpeedVerdict:
    """A side measured above its core count cannot tell a slowdown from other work's: its speed is not
    judged (the ratio is still shown), whatever the ratio says. Loss and memory do not move with load."""
    found = [(name, f) for name, rs, g in (("baseline", sides.baseline, b), ("current", sides.current, c))
             if (f := group_contention(g, rs.env_data, side_cores(rs.frame, rs.env_data))) is not None]
    if not found:
        return speed
    what = "; ".join(f"{name} load {f.max_load:.1f} on {f.cores} cores" for name, f in found)
    speed.verdict = NOT_JUDGED
    speed.contended = what
    speed.note = f"speed not judged (contended: {what})"
    return speed


def _speed(key: dict, b: pd.DataFrame, c: pd.DataFrame, sides: Sides) -> SpeedVerdict:
    options = sides.options
    if options.reference_engine is not None and key["engine"] == options.reference_engine:
        return SpeedVerdict(NOT_JUDGED, ratio=1.0, base_median=1.0, cur_median=1.0,
                            note=f"speed not judged: {key['engine']} is the normalizer (its ratios are 1.0)")
    if diverged_seeds(b) or diverged_seeds(c):
        return SpeedVerdict(NOT_JUDGED, note="speed not judged: a run diverged (its epochs are not the same work)")
    base, cur = Measurement.from_rows(b).array, Measurement.from_rows(c).array
    if min(len(base), len(cur)) < MIN_TIME_SAMPLES:
        return SpeedVerdict(NOT_JUDGED, n_base=len(base), n_cur=len(cur),
                            note=f"speed not judged: fewer than {MIN_TIME_SAMPLES} timed epochs on a side "
                                 f"(baseline {len(base)}, current {len(cur)})")
    base_den, why_b = _normalizer(sides.baseline, "baseline", key, sides.base_groups, sides.keys, options)
    cur_den, why_c = _normalizer(sides.current, "current", key, sides.cur_groups, sides.keys, options)
    if why_b or why_c:
        return SpeedVerdict(NOT_JUDGED, n_base=len(base), n_cur=len(cur),
                            note=f"speed not judged: {why_b or why_c}")
    ratio, low, high = bootstrap_ratio(base, cur, base_den=base_den, cur_den=cur_den,
                                       n_boot=options.bootstrap, confidence=options.confidence,
                                       rng=_rng(options, tuple(key.values())))
    scale_b = float(np.median(base_den)) if base_den is not None else 1.0
    scale_c = float(np.median(cur_den)) if cur_den is not None else 1.0
    # the whole interval beyond the threshold, not just the point estimate
    if low > options.max_slowdown:
        verdict = REGRESSED
    elif high < 1 / options.max_slowdown:
        verdict = IMPROVED
    else:
        verdict = UNCHANGED
    return SpeedVerdict(verdict, ratio, low, high, float(np.median(base)) / scale_b,
                        float(np.median(cur)) / scale_c, len(base), len(cur))


def _peak_per_seed(g: pd.DataFrame) -> pd.Series:
    return g.groupby("seed")["peak_memory_bytes"].max().dropna()


def judge_memory(key: dict, b: pd.DataFrame, c: pd.DataFrame, sides: Sides) -> MemoryVerdict:
    options = sides.options
    pb, pc = _peak_per_seed(b), _peak_per_seed(c)
    if pb.empty or pc.empty:
        return MemoryVerdict(NOT_JUDGED, note="no peak memory on a side")
    base, cur = float(pb.median()), float(pc.median())
    ratio = cur / base if base > 0 else (1.0 if cur == base else math.inf)
    floor = options.memory_floor_bytes
    if cur - base > floor and ratio > options.max_memory_growth:
        verdict = REGRESSED
    elif base - cur > floor and ratio < 1 / options.max_memory_growth:
        verdict = IMPROVED
    else:
        verdict = UNCHANGED
    return MemoryVerdict(verdict, base, cur, ratio)


SPEED = Metric("speed", ("epoch_time_s", "warmup", "load_1m"), judge_speed)
MEMORY = Metric("memory", ("peak_memory_bytes",), judge_memory)
