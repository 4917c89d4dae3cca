"""The one compare pipeline: a metric is a plug-in (matching, roll-up and missing/new rows are the
pipeline's), and both kinds of comparison say "nothing matched" the same way."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
from test_count import fake_counts, write_counts

from minibatch_core.analysis.compare import check_matched, config_groups, judge_sides
from minibatch_core.analysis.compare_instructions import compare_counts
from minibatch_core.analysis.compare_options import (
    IMPROVED,
    MISSING,
    NEW,
    NOT_JUDGED,
    REGRESSED,
    UNCHANGED,
    Metric,
    Sides,
    Verdict,
)
from minibatch_core.errors import MinibatchError
from minibatch_core.records import instructions
from minibatch_core.running.counting import CountOutcome, InstructionCount

KEYS = ("engine", "batch_spec")


@dataclass
class Toy(Verdict):
    verdict: str
    note: str = ""

    def settle(self, status: str) -> str:
        return NOT_JUDGED if self.verdict == NOT_JUDGED and status == UNCHANGED else status


def _toy(key, b, c, sides) -> Toy:
    x, y = float(b["x"].iloc[0]), float(c["x"].iloc[0])
    if y != y:
        return Toy(NOT_JUDGED, "no x")
    return Toy(REGRESSED if y > x else IMPROVED if y < x else UNCHANGED)


def _side(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"engine": e, "batch_spec": s, "batch_size": 32, "config_id": f"{e}|{s}",
                          "run_id": f"{e}|{s}|s0", "x": x} for e, s, x in rows])


class _Source:
    def __init__(self, name: str) -> None:
        self.source = name


def test_a_metric_plug_in_is_all_the_pipeline_needs():
    base = _side([("a", "1", 1.0), ("b", "1", 1.0), ("c", "1", 1.0), ("d", "1", 1.0), ("gone", "1", 1.0)])
    cur = _side([("a", "1", 2.0), ("b", "1", 1.0), ("c", "1", 0.5), ("d", "1", float("nan")), ("added", "1", 1.0)])
    sides = Sides(_Source("B"), _Source("C"), config_groups(base, KEYS), config_groups(cur, KEYS), KEYS, None)
    rows = judge_sides(sides, (Metric("toy", ("x",), _toy),), natural_order=False)
    got = {r.key["engine"]: r.status for r in rows}
    assert got == {"a": REGRESSED, "b": UNCHANGED, "c": IMPROVED, "d": NOT_JUDGED, "gone": MISSING, "added": NEW}
    assert [r.key["engine"] for r in rows] == ["a", "b", "c", "d", "gone", "added"]  # baseline order, then new
    d = next(r for r in rows if r.key["engine"] == "d")
    assert d.notes == ["no x"] and d.parts["toy"].verdict == NOT_JUDGED


def test_nothing_matched_names_the_axes_and_their_values():
    base = _side([("a", "1", 1.0)])
    cur = _side([("a", "2", 1.0)])
    sides = Sides(_Source("B"), _Source("C"), config_groups(base, KEYS), config_groups(cur, KEYS), KEYS, None)
    with pytest.raises(MinibatchError, match=r"axes that differ: batch_spec; they differ in batch_spec: 1 vs 2 "
                                             r"\(baseline vs current\)"):
        check_matched(sides)


def test_count_folders_say_nothing_matched_as_wall_time_does(tmp_path):
    base = instructions.load(write_counts(tmp_path / "base"))
    other = fake_counts()
    other = CountOutcome([InstructionCount(**{**vars(c), "config": c.config.with_(lr=0.01)}) for c in other.counts],
                         other.env)
    instructions.write(tmp_path / "cur", other)
    with pytest.raises(MinibatchError, match=r"axes that differ: lr; they differ in lr: 0.001 vs 0.01"):
        compare_counts(base, instructions.load(tmp_path / "cur"))
