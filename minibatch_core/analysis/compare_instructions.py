"""The instructions metric plug-in, and ``compare_counts``: the comparison pipeline (``compare``) on two
count folders with that one metric. Loading is ``records.instructions``.

Counts of the same code repeat to well under 0.5% (see docs/gates.md), so a fixed growth threshold
(default 1.02) needs no confidence interval: a configuration regresses when current/baseline exceeds
it, and improves below its inverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from minibatch_core.analysis.compare import Comparison, RowComparison, check_matched, config_groups, judge_sides
from minibatch_core.analysis.compare_options import (
    IMPROVED,
    MISSING,
    NEW,
    REGRESSED,
    UNCHANGED,
    InstructionOptions,
    Metric,
    Sides,
    Verdict,
)
from minibatch_core.records.instructions import MATCH_COLUMNS, CountSet

# the resolved batch size follows from batch_spec and the data; matched on as well, as wall time does
KEYS = (*MATCH_COLUMNS, "batch_size")
# env.json entries that change what an instruction count is: counts compared across them may differ
# for reasons other than the code
ENV_KEYS = (("valgrind_version", "valgrind"), ("torch_version", "torch"),
            ("cpu_capability_under_valgrind", "cpu_capability under valgrind"))


@dataclass
class InstructionVerdict(Verdict):
    verdict: str
    base: int | None = None  # instructions in the counted epochs
    cur: int | None = None
    base_per_step: float = float("nan")
    cur_per_step: float = float("nan")
    ratio: float = float("nan")  # current / baseline instructions
    note: str = ""


def judge_instructions(key: dict, b: pd.DataFrame, c: pd.DataFrame, sides: Sides) -> InstructionVerdict:
    b, c = b.iloc[0], c.iloc[0]  # one row per configuration and seed
    base, cur = int(b["instructions"]), int(c["instructions"])
    ratio = cur / base if base else math.inf
    growth = sides.options.max_growth
    verdict = REGRESSED if ratio > growth else IMPROVED if ratio < 1 / growth else UNCHANGED
    steps = (int(b["steps"]), int(c["steps"]))
    return InstructionVerdict(verdict, base, cur, float(b["instructions_per_step"]), float(c["instructions_per_step"]),
                              ratio, f"steps differ ({steps[0]} vs {steps[1]})" if steps[0] != steps[1] else "")


INSTRUCTIONS = Metric("instructions", ("instructions", "steps", "instructions_per_step"), judge_instructions)


class InstructionRow(RowComparison):
    """A row of an instruction comparison, with its verdict's figures at hand."""

    def _figure(self, name: str, missing=float("nan")):
        return missing if self.instructions is None else getattr(self.instructions, name)

    base = property(lambda self: self._figure("base", None))
    cur = property(lambda self: self._figure("cur", None))
    base_per_step = property(lambda self: self._figure("base_per_step"))
    cur_per_step = property(lambda self: self._figure("cur_per_step"))
    ratio = property(lambda self: self._figure("ratio"))
    note = property(lambda self: "; ".join(self.notes))

    @property
    def growth(self) -> float:
        """+0.031 for 3.1% more instructions."""
        return self.ratio - 1


class InstructionComparison(Comparison):
    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**r.key, "run_id": r.run_id, "status": r.status, "base_instructions": r.base,
                              "cur_instructions": r.cur, "base_per_step": r.base_per_step,
                              "cur_per_step": r.cur_per_step, "ratio": r.ratio, "note": r.note}
                             for r in self.rows])


def _env_notes(baseline: CountSet, current: CountSet) -> list[str]:
    notes = []
    for key, label in ENV_KEYS:
        b, c = baseline.env.get(key), current.env.get(key)
        if b is not None and c is not None and str(b) != str(c):
            notes.append(f"{label} differs ({b} vs {c}): counts may change for that reason as well as the code's")
    # BLAS and libc pick code paths by CPU vendor and model: a baseline from another machine may differ
    mb, mc = (cs.env.get("machine") or {} for cs in (baseline, current))
    for key, label in (("cpu_model", "CPU"), ("python", "python")):
        if mb.get(key) and mc.get(key) and mb[key] != mc[key]:
            notes.append(f"{label} differs ({mb[key]} vs {mc[key]}): counts may change for that reason as well "
                         "as the code's")
    return notes


def _groups(cs: CountSet) -> dict[tuple, pd.DataFrame]:
    # matched as text, as instructions.csv spells them (an lr of 0.001 is "0.001" on both sides)
    return config_groups(cs.frame.astype({c: str for c in KEYS}), KEYS)


def compare_counts(baseline: CountSet, current: CountSet,
                   options: InstructionOptions | None = None) -> InstructionComparison:
    options = options or InstructionOptions()
    sides = Sides(baseline, current, _groups(baseline), _groups(current), KEYS, options)
    check_matched(sides)
    # in the baseline's order (the order the gate counts in), then what is new
    rows = judge_sides(sides, (INSTRUCTIONS,), InstructionRow, natural_order=False)
    for row in rows:
        if row.status in (MISSING, NEW):  # the one side's count, shown beside the missing other
            side = sides.base_groups if row.status == MISSING else sides.cur_groups
            count = int(side[tuple(row.key.values())].iloc[0]["instructions"])
            row.parts[INSTRUCTIONS.name] = InstructionVerdict(row.status,
                                                              **{"base" if row.status == MISSING else "cur": count})
    return InstructionComparison(baseline, current, options, KEYS, rows, _env_notes(baseline, current),
                                 metrics=(INSTRUCTIONS.name,))
