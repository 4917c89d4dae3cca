"""The one comparison pipeline: match the configurations of a baseline and a current side on their
identity, judge each matched pair with a set of metric plug-ins (``compare_options.Metric``), roll the
verdicts up per configuration.

Wall-time results (``compare``: speed, loss with divergence, memory) and instruction counts
(``compare_instructions.compare_counts``: instructions) are this pipeline with different metrics. Pure:
nothing here prints or formats for people (that is ``presentation.compare_render``). ``load_results``,
``bootstrap_ratio`` and ``NOT_JUDGED`` are imported "as themselves" for the scripts and tests that import
them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from minibatch_core.analysis.compare_options import (
    IMPROVED,
    KEYS,
    MISSING,
    NEW,
    REGRESSED,
    UNCHANGED,
    CompareOptions,
    Metric,
    Sides,
    StatusCounts,
)
from minibatch_core.analysis.compare_options import NOT_JUDGED as NOT_JUDGED
from minibatch_core.analysis.loss_verdicts import LOSS, LossVerdict, exact_check_reason
from minibatch_core.analysis.result_sets import ResultSet
from minibatch_core.analysis.result_sets import load_results as load_results
from minibatch_core.analysis.verdicts import MEMORY, SPEED, MemoryVerdict, SpeedVerdict
from minibatch_core.analysis.verdicts import bootstrap_ratio as bootstrap_ratio
from minibatch_core.errors import MinibatchError

WALL_TIME_METRICS = (SPEED, LOSS, MEMORY)


@dataclass
class RowComparison:
    """One configuration: its identity (``key``), its status, and each metric's verdict (``parts``; a
    metric missing there did not judge the row: it is on one side only)."""

    key: dict[str, Any]
    status: str
    batch_spec: str = ""
    parts: dict[str, Any] = field(default_factory=dict)  # metric name -> its verdict
    notes: list[str] = field(default_factory=list)
    batch_size: int = 0  # resolved
    config_id: str = ""
    run_id: str = ""

    # the built-in metrics' verdicts by name (None: not judged by that metric)
    @property
    def speed(self) -> SpeedVerdict | None:
        return self.parts.get("speed")

    @property
    def loss(self) -> LossVerdict | None:
        return self.parts.get("loss")

    @property
    def memory(self) -> MemoryVerdict | None:
        return self.parts.get("memory")

    @property
    def instructions(self) -> Any:  # compare_instructions.InstructionVerdict
        return self.parts.get("instructions")


@dataclass
class Comparison(StatusCounts):
    baseline: Any  # ResultSet, or records.instructions.CountSet
    current: Any
    options: Any  # CompareOptions | InstructionOptions
    keys: tuple[str, ...]
    rows: list[RowComparison]
    notes: list[str]
    metrics: tuple[str, ...] = tuple(m.name for m in WALL_TIME_METRICS)

    def to_frame(self) -> pd.DataFrame:
        """One flat row per configuration (for tests, CSV export, or a notebook)."""
        out = []
        for r in self.rows:
            d = {**r.key, "status": r.status, "batch_spec": r.batch_spec}
            for name in self.metrics:
                part = r.parts.get(name)
                if part is not None:
                    d.update({f"{name}_{k}": v for k, v in vars(part).items()})
            d["notes"] = "; ".join(r.notes)
            out.append(d)
        return pd.DataFrame(out)


def config_groups(frame: pd.DataFrame, keys: tuple[str, ...]) -> dict[tuple, pd.DataFrame]:
    """A side's rows per configuration, in the order they first appear."""
    frame = frame.copy()
    for col in keys:
        # a key that one run lacks is "" rather than NaN, which never equals itself
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "")
    return {k if isinstance(k, tuple) else (k,): g for k, g in frame.groupby(list(keys), sort=False)}


def _near_miss(key: dict, others: dict[tuple, pd.DataFrame], keys: tuple[str, ...], side: str) -> str:
    """Point at a configuration that differs from this one in a single axis (seeds, epochs, scale ...)."""
    for other in others:
        o = dict(zip(keys, other, strict=True))
        diff = [k for k in keys if o[k] != key[k]]
        if len(diff) == 1:
            return f"the {side} has it with {diff[0]} {o[diff[0]]}"
    return ""


def _closest_difference(base: dict[tuple, Any], cur: dict[tuple, Any], keys: tuple[str, ...]) -> str:
    """Which axes keep the nearest pair of configurations apart: ``axes that differ: scale; they differ
    in scale: none vs standard (baseline vs current)``."""
    best: list[int] | None = None
    pair: tuple[tuple, tuple] = ((), ())
    for b in base:
        for c in cur:
            diff = [i for i, (bv, cv) in enumerate(zip(b, c, strict=True)) if bv != cv]
            if best is None or len(diff) < len(best):
                best, pair = diff, (b, c)
    best = best or []
    return (f"axes that differ: {', '.join(keys[i] for i in best)}; they differ in "
            + "; ".join(f"{keys[i]}: {pair[0][i]} vs {pair[1][i]}" for i in best) + " (baseline vs current)")


def _natural(key: tuple) -> tuple:
    """Numbers by value (batch 1, 32, 178), text alphabetically."""
    return tuple((0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v))
                 for v in key)


def _status(parts: list) -> str:
    verdicts = [p.verdict for p in parts]
    status = REGRESSED if REGRESSED in verdicts else IMPROVED if IMPROVED in verdicts else UNCHANGED
    for part in parts:
        status = part.settle(status)
    return status


def check_matched(sides: Sides) -> None:
    """Two sides with no configuration in common are bad input (exit 2), not a list of missing and new."""
    base, cur = sides.base_groups, sides.cur_groups
    if not set(base) & set(cur):
        raise MinibatchError(
            f"nothing matched: no configuration of {sides.current.source} ({len(cur)}) is in "
            f"{sides.baseline.source} ({len(base)}); {_closest_difference(base, cur, sides.keys)}")


def judge_sides(sides: Sides, metrics: tuple[Metric, ...], row_type: type = RowComparison,
                natural_order: bool = True) -> list[RowComparison]:
    """A row per configuration of either side: judged by every metric where both sides have it, else
    ``missing`` / ``new`` with a hint at a near miss (``check_matched`` first)."""
    base, cur, keys = sides.base_groups, sides.cur_groups, sides.keys
    order = [*base, *(k for k in cur if k not in base)]  # the baseline's order, then what is new
    rows = []
    for k in sorted(order, key=_natural) if natural_order else order:
        key = dict(zip(keys, k, strict=True))
        b, c = base.get(k), cur.get(k)
        first = (b if b is not None else c).iloc[0]
        facts = {"batch_spec": str(first["batch_spec"]), "batch_size": int(first["batch_size"]),
                 "config_id": str(first["config_id"]), "run_id": str(first["run_id"])}
        if b is None or c is None:
            hint = _near_miss(key, base if b is None else cur, keys, "baseline" if b is None else "current")
            note = f"only in the {'current' if b is None else 'baseline'}" + (f"; {hint}" if hint else "")
            rows.append(row_type(key, NEW if b is None else MISSING, notes=[note], **facts))
            continue
        parts = {m.name: m.judge(key, b, c, sides) for m in metrics}
        rows.append(row_type(key, _status(list(parts.values())), parts=parts,
                             notes=[p.note for p in parts.values() if p.note], **facts))
    return rows


def compare(baseline: ResultSet, current: ResultSet, options: CompareOptions | None = None) -> Comparison:
    """Wall-time results: speed, loss (with divergence) and memory per configuration."""
    options = options or CompareOptions()
    sides = Sides(baseline, current, config_groups(baseline.frame, KEYS), config_groups(current.frame, KEYS),
                  KEYS, options)
    check_matched(sides)
    for rs, side in ((baseline, "baseline"), (current, "current")):
        ref = options.reference_engine
        if ref is not None and ref not in set(rs.frame["engine"]):
            raise MinibatchError(f"--normalize engine:{ref}: the {side} ({rs.source}) has no {ref} runs")
    rows = judge_sides(sides, WALL_TIME_METRICS)
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
    return Comparison(baseline, current, options, KEYS, rows, notes)
