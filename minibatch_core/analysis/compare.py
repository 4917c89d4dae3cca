"""Baseline vs current: match configurations on their full identity, judge each, roll the verdicts up.

Pure: nothing here prints or formats for people (that is ``presentation.compare_render``). The sides are
loaded by ``result_sets``, judged by ``verdicts``, under ``compare_options``; this module matches them and
assembles the ``Comparison`` (and re-exports the names its callers use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from minibatch_core.analysis.compare_options import (
    IMPROVED,
    KEYS,
    LOSS_MODES,
    MIN_TIME_SAMPLES,
    MISSING,
    NEW,
    NOT_JUDGED,
    REGRESSED,
    UNCHANGED,
    CompareOptions,
    StatusCounts,
)
from minibatch_core.analysis.contention import group_contention, side_cores
from minibatch_core.analysis.result_sets import Environment, ResultSet, load_results
from minibatch_core.analysis.verdicts import (
    LossVerdict,
    MemoryVerdict,
    SpeedVerdict,
    bootstrap_ratio,
    config_groups,
    diverged_seeds,
    exact_check_reason,
    judge_loss,
    judge_memory,
    judge_speed,
)
from minibatch_core.errors import MinibatchError

__all__ = ["IMPROVED", "KEYS", "LOSS_MODES", "MIN_TIME_SAMPLES", "MISSING", "NEW", "NOT_JUDGED", "REGRESSED",
           "UNCHANGED", "CompareOptions", "Comparison", "Environment", "LossVerdict", "MemoryVerdict",
           "ResultSet", "RowComparison", "SpeedVerdict", "bootstrap_ratio", "compare", "diverged_seeds",
           "exact_check_reason", "load_results"]


@dataclass
class RowComparison:
    key: dict[str, Any]
    status: str
    batch_spec: str = ""
    speed: SpeedVerdict | None = None
    loss: LossVerdict | None = None
    memory: MemoryVerdict | None = None
    notes: list[str] = field(default_factory=list)
    batch_size: int = 0  # resolved
    config_id: str = ""


@dataclass
class Comparison(StatusCounts):
    baseline: ResultSet
    current: ResultSet
    options: CompareOptions
    keys: tuple[str, ...]
    rows: list[RowComparison]
    notes: list[str]

    def to_frame(self) -> pd.DataFrame:
        """One flat row per configuration (for tests, CSV export, or a notebook)."""
        out = []
        for r in self.rows:
            d = {**r.key, "status": r.status, "batch_spec": r.batch_spec}
            for prefix, part in (("speed", r.speed), ("loss", r.loss), ("memory", r.memory)):
                if part is not None:
                    d.update({f"{prefix}_{k}": v for k, v in vars(part).items()})
            d["notes"] = "; ".join(r.notes)
            out.append(d)
        return pd.DataFrame(out)


def _rollup(parts: list[str]) -> str:
    if REGRESSED in parts:
        return REGRESSED
    return IMPROVED if IMPROVED in parts else UNCHANGED


def _near_miss(key: dict, others: dict[tuple, pd.DataFrame], keys: tuple[str, ...], side: str) -> str:
    """Point at a configuration that differs from this one in a single axis (seeds, epochs, scale ...)."""
    for other in others:
        o = dict(zip(keys, other, strict=True))
        diff = [k for k in keys if o[k] != key[k]]
        if len(diff) == 1:
            return f"the {side} has it with {diff[0]} {o[diff[0]]}"
    return ""


def _closest_difference(base: dict[tuple, pd.DataFrame], cur: dict[tuple, pd.DataFrame],
                        keys: tuple[str, ...]) -> str:
    """Which axes keep the nearest pair of configurations apart, e.g. ``scale: none vs standard``."""
    best: list[str] | None = None
    for b in base:
        for c in cur:
            diff = [f"{k}: {bv} vs {cv}" for k, bv, cv in zip(keys, b, c, strict=True) if bv != cv]
            if best is None or len(diff) < len(best):
                best = diff
    return "they differ in " + "; ".join(best or []) + " (baseline vs current)"


def _natural(key: tuple) -> tuple:
    """Numbers by value (batch 1, 32, 178), text alphabetically."""
    return tuple((0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v))
                 for v in key)


def _unless_contended(speed: SpeedVerdict, b: pd.DataFrame, c: pd.DataFrame, ctx: dict) -> SpeedVerdict:
    """A side measured above its core count cannot tell a slowdown from other work's: its speed is not
    judged (the ratio is still shown), whatever the ratio says. Loss and memory do not move with load."""
    found = [(name, f) for name, rs, g in (("baseline", ctx["baseline"], b), ("current", ctx["current"], c))
             if (f := group_contention(g, rs.env_data, side_cores(rs.frame, rs.env_data))) is not None]
    if not found:
        return speed
    what = "; ".join(f"{name} load {f.max_load:.1f} on {f.cores} cores" for name, f in found)
    speed.verdict = NOT_JUDGED
    speed.contended = what
    speed.note = f"speed not judged (contended: {what})"
    return speed


def compare(baseline: ResultSet, current: ResultSet, options: CompareOptions | None = None) -> Comparison:
    options = options or CompareOptions()
    keys = KEYS
    base_groups, cur_groups = config_groups(baseline, keys), config_groups(current, keys)
    ctx = {"baseline": baseline, "current": current, "base_groups": base_groups, "cur_groups": cur_groups,
           "keys": keys}
    matched = [k for k in base_groups if k in cur_groups]
    if not matched:
        raise MinibatchError(
            f"nothing matched: no configuration of {current.source} ({len(cur_groups)}) is in "
            f"{baseline.source} ({len(base_groups)}); {_closest_difference(base_groups, cur_groups, keys)}")
    for rs, side in ((baseline, "baseline"), (current, "current")):
        ref = options.reference_engine
        if ref is not None and ref not in set(rs.frame["engine"]):
            raise MinibatchError(f"--normalize engine:{ref}: the {side} ({rs.source}) has no {ref} runs")

    rows: list[RowComparison] = []
    for k in sorted(set(base_groups) | set(cur_groups), key=_natural):
        key = dict(zip(keys, k, strict=True))
        b, c = base_groups.get(k), cur_groups.get(k)
        first = (b if b is not None else c).iloc[0]
        spec, size = str(first["batch_spec"]), int(first["batch_size"])
        if b is None or c is None:
            side, others = ("new", base_groups) if b is None else ("missing", cur_groups)
            hint = _near_miss(key, others, keys, "baseline" if b is None else "current")
            note = (f"only in the {'current' if b is None else 'baseline'}" + (f"; {hint}" if hint else ""))
            rows.append(RowComparison(key, NEW if b is None else MISSING, spec, notes=[note], batch_size=size,
                                      config_id=str(first["config_id"])))
            continue
        speed = _unless_contended(judge_speed(key, b, c, ctx, options), b, c, ctx)
        loss = judge_loss(key, b, c, ctx, options)
        memory = judge_memory(b, c, options)
        notes = [p.note for p in (speed, loss, memory) if p.note]
        status = _rollup([speed.verdict, loss.verdict, memory.verdict])
        if loss.diverged == "both" and status != REGRESSED:
            status = NOT_JUDGED  # all-NaN on both sides is no evidence of "unchanged"
        if speed.contended and status == UNCHANGED:
            status = NOT_JUDGED  # a speed we could not judge never passes as "unchanged"
        rows.append(RowComparison(key, status, spec,
                                  speed, loss, memory, notes, batch_size=size, config_id=str(first["config_id"])))

    notes = [*baseline.notes, *current.notes]
    if None not in (baseline.env.torch_threads, current.env.torch_threads) and \
            baseline.env.torch_threads != current.env.torch_threads:
        notes.append(f"torch threads differ (baseline {baseline.env.torch_threads}, current "
                     f"{current.env.torch_threads}): speed ratios include that difference")
    if options.loss_mode == "exact":
        why = exact_check_reason(baseline.env, current.env, "cpu")
        if why:
            notes.append(f"exact loss mode fell back to --loss-rtol {options.loss_rtol:g} on CPU: {why}")
            for row in rows:  # said once in the header rather than on every row
                row.notes = [n.replace(why, "see the header note") for n in row.notes]
    return Comparison(baseline, current, options, keys, rows, notes)
