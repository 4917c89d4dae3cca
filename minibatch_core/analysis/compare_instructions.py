"""Baseline vs current instruction counts: per configuration, the growth of the instructions executed by
the same counted training. Pure: loading is ``records.instructions``, printing is
``presentation.compare_instructions_render``.

Counts of the same code repeat to well under 0.5% (see docs/gates.md), so a fixed growth threshold
(default 1.02) needs no confidence interval: a configuration regresses when current/baseline exceeds
it, and improves below its inverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from minibatch_core.analysis.compare_options import IMPROVED, MISSING, NEW, REGRESSED, UNCHANGED, StatusCounts
from minibatch_core.errors import MinibatchError
from minibatch_core.records.instructions import MATCH_COLUMNS, CountSet

DEFAULT_MAX_GROWTH = 1.02
# env.json entries that change what an instruction count is: counts compared across them may differ
# for reasons other than the code
ENV_KEYS = (("valgrind_version", "valgrind"), ("torch_version", "torch"),
            ("cpu_capability_under_valgrind", "cpu_capability under valgrind"))


@dataclass(frozen=True)
class InstructionOptions:
    max_growth: float = DEFAULT_MAX_GROWTH

    def __post_init__(self) -> None:
        if not (self.max_growth > 1 and math.isfinite(self.max_growth)):
            raise MinibatchError(f"--max-instruction-growth {self.max_growth!r} is not valid: use a number > 1, "
                                 "e.g. 1.02 for +2%")


@dataclass
class InstructionRow:
    key: dict[str, Any]  # the configuration identity (MATCH_COLUMNS) and the resolved batch size
    run_id: str
    status: str
    base: int | None = None  # instructions in the counted epochs
    cur: int | None = None
    base_per_step: float = float("nan")
    cur_per_step: float = float("nan")
    ratio: float = float("nan")  # current / baseline instructions
    note: str = ""

    @property
    def growth(self) -> float:
        """+0.031 for 3.1% more instructions."""
        return self.ratio - 1


@dataclass
class InstructionComparison(StatusCounts):
    baseline: CountSet
    current: CountSet
    options: InstructionOptions
    rows: list[InstructionRow]
    notes: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**r.key, "run_id": r.run_id, "status": r.status, "base_instructions": r.base,
                              "cur_instructions": r.cur, "base_per_step": r.base_per_step,
                              "cur_per_step": r.cur_per_step, "ratio": r.ratio, "note": r.note}
                             for r in self.rows])


def _keyed(cs: CountSet) -> dict[tuple, pd.Series]:
    return {tuple(str(row[c]) for c in MATCH_COLUMNS): row for _, row in cs.frame.iterrows()}


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


def _axes_apart(base: dict[tuple, Any], cur: dict[tuple, Any]) -> str:
    """Which identity columns never take the same value on both sides (why nothing matched)."""
    apart = [col for i, col in enumerate(MATCH_COLUMNS)
             if not {k[i] for k in base} & {k[i] for k in cur}]
    return ", ".join(apart) if apart else "no single axis: the combinations differ"


def compare_counts(baseline: CountSet, current: CountSet,
                   options: InstructionOptions | None = None) -> InstructionComparison:
    options = options or InstructionOptions()
    base, cur = _keyed(baseline), _keyed(current)
    if not set(base) & set(cur):
        raise MinibatchError(f"nothing matched: no configuration of {current.source} ({len(cur)}) is in "
                             f"{baseline.source} ({len(base)}); axes that differ: {_axes_apart(base, cur)}")
    rows = []
    for key in [*base, *(k for k in cur if k not in base)]:  # baseline order, then what is new
        b, c = base.get(key), cur.get(key)
        # the resolved batch size is a fact of the data (full -> N), shown beside batch_spec
        either = b if b is not None else c
        ident = {**dict(zip(MATCH_COLUMNS, key, strict=True)), "batch_size": str(either["batch_size"])}
        if b is None or c is None:
            present = b if c is None else c
            rows.append(InstructionRow(
                ident, str(present["run_id"]), MISSING if c is None else NEW,
                base=None if b is None else int(b["instructions"]), cur=None if c is None else int(c["instructions"]),
                note="only in the baseline: not counted now" if c is None else "only in the current counts"))
            continue
        ratio = int(c["instructions"]) / int(b["instructions"]) if int(b["instructions"]) else math.inf
        status = (REGRESSED if ratio > options.max_growth else
                  IMPROVED if ratio < 1 / options.max_growth else UNCHANGED)
        note = ""
        if int(b["steps"]) != int(c["steps"]):
            note = f"steps differ ({int(b['steps'])} vs {int(c['steps'])})"
        rows.append(InstructionRow(ident, str(c["run_id"]), status, int(b["instructions"]),
                                   int(c["instructions"]), float(b["instructions_per_step"]),
                                   float(c["instructions_per_step"]), ratio, note))
    return InstructionComparison(baseline, current, options, rows, _env_notes(baseline, current))
