"""Per-configuration verdicts: speed (bootstrap ratio of median epoch times), loss (tolerance or exact,
divergence), memory. Pure functions of the two sides' rows and ``CompareOptions``; the bootstrap RNG is
seeded per configuration, so the same inputs always give the same verdicts."""

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
)
from minibatch_core.analysis.result_sets import Environment, ResultSet
from minibatch_core.errors import MinibatchError
from minibatch_core.running.measurement import Measurement, bootstrap_medians


@dataclass
class SpeedVerdict:
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


@dataclass
class LossVerdict:
    verdict: str
    base_final: float = float("nan")  # final epoch loss, mean across seeds
    cur_final: float = float("nan")
    rel_change: float = float("nan")
    exact: str = "not checked"  # identical | differs | not checked | fallback
    differing: int = 0  # (seed, epoch) losses that differ, exact mode
    compared: int = 0
    first_difference: tuple[int, int, float, float] | None = None  # seed, epoch, baseline, current
    note: str = ""
    diverged: str = ""  # which side has a diverged seed: "current" | "baseline" | "both" | ""


@dataclass
class MemoryVerdict:
    verdict: str
    base_bytes: float = float("nan")  # median across seeds of each run's peak
    cur_bytes: float = float("nan")
    ratio: float = float("nan")
    note: str = ""


def config_groups(rs: ResultSet, keys: tuple[str, ...]) -> dict[tuple, pd.DataFrame]:
    frame = rs.frame.copy()
    for col in keys:
        # a key that one run lacks is "" rather than NaN, which never equals itself
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "")
    return {k if isinstance(k, tuple) else (k,): g for k, g in frame.groupby(list(keys), sort=False)}


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


def judge_speed(key: dict, b: pd.DataFrame, c: pd.DataFrame, ctx: dict,
                 options: CompareOptions) -> SpeedVerdict:
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
    base_den, why_b = _normalizer(ctx["baseline"], "baseline", key, ctx["base_groups"], ctx["keys"], options)
    cur_den, why_c = _normalizer(ctx["current"], "current", key, ctx["cur_groups"], ctx["keys"], options)
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


def _final_losses(g: pd.DataFrame) -> pd.Series:
    """Each seed's loss at its last recorded epoch, NaN included: a missing final loss is never replaced by
    the epoch before (a NaN there is a divergence, see ``diverged_seeds``)."""
    last = g.sort_values("epoch").groupby("seed").tail(1)
    return last.set_index("seed")["epoch_loss"].sort_index()


def diverged_seeds(g: pd.DataFrame) -> dict[int, int]:
    """seed -> the epoch it diverged at: recorded as diverged, or (files from before the column, or
    doctored ones) any non-finite epoch loss, which counts from its first such epoch."""
    out: dict[int, int] = {}
    for seed, runs in g.sort_values("epoch").groupby("seed"):
        flagged = runs[runs["diverged"].astype(bool)]
        bad = runs[~np.isfinite(runs["epoch_loss"].astype(float))]
        epochs = [int(e) for e in flagged["diverged_epoch"].dropna()] + [int(e) for e in bad["epoch"]]
        if len(flagged) or epochs:
            out[int(seed)] = min(epochs) if epochs else int(runs["epoch"].max())
    return out


def _describe_divergence(found: dict[int, int]) -> str:
    return ", ".join(f"seed {s} at epoch {e}" for s, e in sorted(found.items()))


def exact_check_reason(baseline: Environment, current: Environment, device: str, engine: str = "") -> str:
    """Why bit-exact loss curves cannot be expected ('' when they can): the same losses to the bit need
    the same code (torch; numpy and scikit-learn for the sklearn engine) on the same CPU kernels (ATen's
    dispatch level, and the vendor, which MKL/oneDNN/OpenBLAS also dispatch on)."""
    if not device.startswith("cpu"):
        return f"device {device} (GPU kernels are not bit-reproducible across runs)"
    checks = [("torch version", baseline.torch_version, current.torch_version),
              ("cpu_capability", baseline.cpu_capability, current.cpu_capability),
              ("CPU vendor", baseline.cpu_vendor, current.cpu_vendor)]
    if engine == "sklearn":
        checks += [("numpy version", baseline.numpy_version, current.numpy_version),
                   ("scikit-learn version", baseline.sklearn_version, current.sklearn_version)]
    for what, a, b in checks:
        if a is None or b is None:
            return f"{what} unknown on the {'baseline' if a is None else 'current'} side"
        if a != b:
            return f"{what} differs ({a} vs {b})"
    return ""


def _judge_divergence(b: pd.DataFrame, c: pd.DataFrame) -> LossVerdict | None:
    """The loss verdict when either side diverged (None when neither did): a seed that converged in the
    baseline and diverged in the current regresses; the same seeds diverging on both sides cannot be
    judged (and is never called unchanged)."""
    db, dc = diverged_seeds(b), diverged_seeds(c)
    if not db and not dc:
        return None
    fb, fc = _final_losses(b), _final_losses(c)
    base_final, cur_final = float(fb.mean()), float(fc.mean())  # NaN when a seed diverged
    new = {s: e for s, e in dc.items() if s not in db}
    if new:
        return LossVerdict(REGRESSED, base_final, cur_final, diverged="current",
                           note=f"diverged in the current ({_describe_divergence(new)}) where the baseline "
                                "converged")
    if set(dc) == set(db):
        return LossVerdict(NOT_JUDGED, base_final, cur_final, diverged="both",
                           note=f"loss not judged: diverged on both sides (baseline {_describe_divergence(db)}; "
                                f"current {_describe_divergence(dc)})")
    fixed = {s: e for s, e in db.items() if s not in dc}
    return LossVerdict(IMPROVED, base_final, cur_final, diverged="baseline",
                       note=f"the baseline diverged ({_describe_divergence(fixed)}); the current converged")


def judge_loss(key: dict, b: pd.DataFrame, c: pd.DataFrame, ctx: dict,
                options: CompareOptions) -> LossVerdict:
    divergence = _judge_divergence(b, c)
    if divergence is not None:
        return divergence
    fb, fc = _final_losses(b).dropna(), _final_losses(c).dropna()
    if fb.empty or fc.empty:
        return LossVerdict(NOT_JUDGED, note="no epoch losses on a side")
    base_final, cur_final = float(fb.mean()), float(fc.mean())
    rel = (cur_final - base_final) / abs(base_final) if base_final != 0 else (
        0.0 if cur_final == base_final else math.copysign(math.inf, cur_final - base_final))
    verdict = REGRESSED if rel > options.loss_rtol else IMPROVED if rel < -options.loss_rtol else UNCHANGED
    out = LossVerdict(verdict, base_final, cur_final, rel)
    if options.loss_mode != "exact":
        return out
    why = exact_check_reason(ctx["baseline"].env, ctx["current"].env, key["device"], key["engine"])
    if why:
        out.exact = "fallback"
        out.note = f"exact loss check skipped: {why}; judged on --loss-rtol only"
        return out
    lb = b.set_index(["seed", "epoch"])["epoch_loss"]
    lc = c.set_index(["seed", "epoch"])["epoch_loss"]
    if lb.index.has_duplicates or lc.index.has_duplicates:
        raise MinibatchError(f"{key}: more than one row per seed and epoch; cannot compare loss curves")
    both = lb.to_frame("base").join(lc.to_frame("cur"), how="outer")
    # NaN == NaN here: an epoch with no loss on both sides is not a change
    same = (both["base"] == both["cur"]) | (both["base"].isna() & both["cur"].isna())
    out.compared = len(both)
    out.differing = int((~same).sum())
    if out.differing:
        (seed, epoch), first = next(iter(both[~same].iterrows()))
        out.first_difference = (int(seed), int(epoch), float(first["base"]), float(first["cur"]))
        out.exact = "differs"
        out.verdict = REGRESSED
    else:
        out.exact = "identical"
    return out


def _peak_per_seed(g: pd.DataFrame) -> pd.Series:
    return g.groupby("seed")["peak_memory_bytes"].max().dropna()


def judge_memory(b: pd.DataFrame, c: pd.DataFrame, options: CompareOptions) -> MemoryVerdict:
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
