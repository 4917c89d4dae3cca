"""The loss metric plug-in: divergence (a seed whose loss stopped being finite), the final epoch loss within
a tolerance, and in exact mode every epoch loss bit for bit where the two sides' environments make that
sound. Divergence is judged here rather than apart because its verdict is a loss verdict (the CSV's
``loss_diverged``): a NaN final loss is what a divergence looks like on the loss curve."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from minibatch_core.analysis.compare_options import (
    IMPROVED,
    NOT_JUDGED,
    REGRESSED,
    UNCHANGED,
    Metric,
    Sides,
    Verdict,
)
from minibatch_core.analysis.result_sets import Environment
from minibatch_core.errors import MinibatchError


@dataclass
class LossVerdict(Verdict):
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

    def settle(self, status: str) -> str:
        # all-NaN on both sides is no evidence of "unchanged" (nor of "improved")
        return NOT_JUDGED if self.diverged == "both" and status != REGRESSED else status



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


def judge_loss(key: dict, b: pd.DataFrame, c: pd.DataFrame, sides: Sides) -> LossVerdict:
    """Divergence first (a NaN loss never passes silently), then the final loss within ``--loss-rtol``,
    then, in exact mode where that is sound, every epoch loss bit for bit."""
    options = sides.options
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
    why = exact_check_reason(sides.baseline.env, sides.current.env, key["device"], key["engine"])
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


LOSS = Metric("loss", ("seed", "epoch", "epoch_loss", "diverged", "diverged_epoch"), judge_loss)
