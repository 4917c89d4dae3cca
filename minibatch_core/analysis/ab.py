"""The A/B verdict of ``minibatch-bench ab``: paired per-trial ratios B/A of two code versions measured
interleaved on the same machine (asv's ``continuous``; Abedi and Brecht, ICPE 2017; duet benchmarking).

Each trial pair ran a fresh worker of A and one of B side by side, taking turns (back to back, in a random
order) to train each configuration, so the ratio of two adjacent turns cancels most of whatever load the
machine had then; a pair's ratio is the median over its turns. The verdict per configuration is the median of the
pairs' ratios with a percentile bootstrap interval resampling the pairs: regressed when the whole
interval lies above ``max_slowdown``, improved when it lies below its inverse. Pure functions.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from minibatch_core.analysis.compare_options import IMPROVED, NOT_JUDGED, REGRESSED, UNCHANGED

DEFAULT_MAX_SLOWDOWN = 1.05
MIN_PAIRS = 4  # fewer pairs give a bootstrap interval that looks falsely certain
MEMORY_GROWTH, MEMORY_FLOOR = 1.20, 1 << 20  # as compare: RSS moves by pages and arenas


@dataclass(frozen=True)
class Trial:
    """One configuration measured in one trial (one fresh worker of one version)."""

    version: str  # "A" | "B"
    pair: int
    config: str  # the configuration's label
    time_s: float  # the trial's figure: its fastest timed epoch (running/ab_runner.py says why)
    losses: tuple[float, ...]  # the epoch losses, for the bit-for-bit check
    peak_memory_bytes: float
    median_time_s: float = float("nan")  # the trial's median timed epoch, recorded beside it
    timed_epochs: int = 0
    turn_times_s: tuple[float, ...] = ()  # the fastest epoch of each turn, in turn order
    epoch_times_s: tuple[float, ...] = ()  # every timed epoch, in order


@dataclass
class ABRow:
    config: str
    a_time_s: float  # median over A's trials of their fastest epoch
    b_time_s: float
    ratio: float = float("nan")  # median of the per-pair ratios B/A
    low: float = float("nan")
    high: float = float("nan")
    pairs: int = 0
    speed: str = NOT_JUDGED
    loss: str = "not checked"  # identical | differs | not checked
    memory: str = NOT_JUDGED
    a_memory: float = float("nan")
    b_memory: float = float("nan")
    verdict: str = NOT_JUDGED
    notes: list[str] = field(default_factory=list)


def pair_ratio(a: Trial, b: Trial) -> float:
    """B/A of one trial pair: the median over its turns of B's turn / A's turn (the two ran back to back, so
    whatever the machine did then hit both); where the turns are not recorded, B's fastest epoch / A's."""
    if a.turn_times_s and len(a.turn_times_s) == len(b.turn_times_s):
        ta, tb = np.asarray(a.turn_times_s, dtype=float), np.asarray(b.turn_times_s, dtype=float)
        ok = (ta > 0) & np.isfinite(ta) & np.isfinite(tb)
        return float(np.median(tb[ok] / ta[ok])) if ok.any() else math.nan
    return b.time_s / a.time_s if a.time_s > 0 else math.nan


def paired_ratios(trials: list[Trial], config: str) -> np.ndarray:
    """B/A of each pair in which both versions measured ``config``, in pair order."""
    a = {t.pair: t for t in trials if t.config == config and t.version == "A"}
    b = {t.pair: t for t in trials if t.config == config and t.version == "B"}
    ratios = [pair_ratio(a[p], b[p]) for p in sorted(set(a) & set(b))]
    return np.array([r for r in ratios if math.isfinite(r)], dtype=float)


def bootstrap_median(ratios: np.ndarray, *, confidence: float = 0.95, n_boot: int = 4000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Median ratio and a percentile bootstrap interval over the pairs (each resample draws whole pairs)."""
    rng = np.random.default_rng(seed)
    boots = np.median(ratios[rng.integers(0, len(ratios), size=(n_boot, len(ratios)))], axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(np.median(ratios)), float(low), float(high)


def speed_verdict(low: float, high: float, max_slowdown: float) -> str:
    if low > max_slowdown:
        return REGRESSED
    if high < 1 / max_slowdown:
        return IMPROVED
    return UNCHANGED


def _loss_check(trials: list[Trial], exact: bool) -> tuple[str, str]:
    curves = {v: {t.losses for t in trials if t.version == v} for v in ("A", "B")}
    if not exact or not curves["A"] or not curves["B"]:
        return "not checked", ""
    if curves["A"] == curves["B"] and len(curves["A"]) == 1:
        return "identical", ""
    if len(curves["A"]) > 1 or len(curves["B"]) > 1:
        return "differs", "the loss curve differs between trials of the same version (not deterministic)"
    return "differs", "the loss curves of A and B differ (same seed, CPU: expected bit for bit)"


def _memory(trials: list[Trial]) -> tuple[str, float, float]:
    a = [t.peak_memory_bytes for t in trials if t.version == "A" and math.isfinite(t.peak_memory_bytes)]
    b = [t.peak_memory_bytes for t in trials if t.version == "B" and math.isfinite(t.peak_memory_bytes)]
    if not a or not b:
        return NOT_JUDGED, float("nan"), float("nan")
    ma, mb = float(np.median(a)), float(np.median(b))
    ratio = mb / ma if ma > 0 else (1.0 if mb == ma else math.inf)
    if mb - ma > MEMORY_FLOOR and ratio > MEMORY_GROWTH:
        return REGRESSED, ma, mb
    if ma - mb > MEMORY_FLOOR and ratio < 1 / MEMORY_GROWTH:
        return IMPROVED, ma, mb
    return UNCHANGED, ma, mb


def judge(trials: list[Trial], *, max_slowdown: float = DEFAULT_MAX_SLOWDOWN, confidence: float = 0.95,
          exact_loss: dict[str, bool] | None = None) -> list[ABRow]:
    """One row per configuration, in the order configurations first appear. ``exact_loss`` says per
    configuration whether bit-identical loss curves are expected (CPU); default: yes."""
    rows = []
    for config in dict.fromkeys(t.config for t in trials):
        mine = [t for t in trials if t.config == config]
        a = [t.time_s for t in mine if t.version == "A"]
        b = [t.time_s for t in mine if t.version == "B"]
        row = ABRow(config, float(np.median(a)) if a else math.nan, float(np.median(b)) if b else math.nan)
        ratios = paired_ratios(mine, config)
        row.pairs = len(ratios)
        if row.pairs >= MIN_PAIRS:
            seed = zlib.crc32(config.encode())  # per configuration: adding rows never moves another's verdict
            row.ratio, row.low, row.high = bootstrap_median(ratios, confidence=confidence, seed=seed)
            row.speed = speed_verdict(row.low, row.high, max_slowdown)
        else:
            row.notes.append(f"speed not judged: {row.pairs} complete pairs (at least {MIN_PAIRS} needed)")
            if row.pairs:
                row.ratio = float(np.median(ratios))
        row.loss, why = _loss_check(mine, (exact_loss or {}).get(config, True))
        if why:
            row.notes.append(why)
        row.memory, row.a_memory, row.b_memory = _memory(mine)
        parts = [row.speed, REGRESSED if row.loss == "differs" else UNCHANGED, row.memory]
        row.verdict = (REGRESSED if REGRESSED in parts else IMPROVED if IMPROVED in parts else
                       NOT_JUDGED if row.speed == NOT_JUDGED else UNCHANGED)
        rows.append(row)
    return rows
