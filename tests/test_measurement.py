"""The one measurement object: which epochs are timed samples, and their statistics, checked against values
worked out by hand; and the rule applied alike by summary.csv and the report's answer."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from minibatch_core.analysis.outcomes import config_outcomes
from minibatch_core.analysis.tables import summarize
from minibatch_core.presentation.findings import epoch_time_question
from minibatch_core.running.measurement import Measurement
from tests.test_report import synthetic_runs


def test_the_warmup_epoch_is_never_a_sample():
    m = Measurement.from_epochs([3.0, 1.0, 2.0, 4.0])
    assert m.samples == (1.0, 2.0, 4.0) and m.warmup_s == 3.0 and m.n == 3
    assert m.median == 2.0
    # numpy's linear interpolation: positions 0.5 and 1.5 of the sorted (1, 2, 4)
    assert (m.q1, m.q3, m.iqr) == (1.5, 3.0, 1.5)
    assert (m.min, m.max) == (1.0, 4.0)


def test_one_epoch_has_no_sample():
    m = Measurement.from_epochs([0.7])
    assert m.n == 0 and m.warmup_s == 0.7
    assert math.isnan(m.median) and math.isnan(m.iqr) and m.spread_warning == ""
    assert all(math.isnan(x) for x in m.interval())


def test_spread_warning_only_when_the_spread_is_large():
    assert Measurement((1.0, 1.0, 1.02, 0.99, 1.01)).spread_warning == ""
    noisy = Measurement((1.0, 2.0, 3.0, 4.0))  # IQR 1.5 of median 2.5: 60 %
    assert "60%" in noisy.spread_warning


def test_interval_brackets_the_median():
    assert Measurement((0.5, 0.5, 0.5)).interval() == (0.5, 0.5)
    low, high = Measurement(tuple(float(x) for x in range(1, 22))).interval()
    assert 1.0 <= low < 11.0 < high <= 21.0


def test_rows_of_a_multi_seed_pass_count_once_and_order_does_not_matter():
    rows = pd.DataFrame({
        "seed": [1, 0, 1, 0, 1, 0], "epoch": [1, 1, 2, 2, 3, 3], "warmup": [True, True, False, False, False, False],
        "replicas": 2, "epoch_time_s": [0.9, 0.9, 0.2, 0.2, 0.4, 0.4],
    })
    m = Measurement.from_rows(rows)
    assert m.samples == (0.2, 0.4) and m.warmup_s == 0.9
    assert Measurement.from_rows(rows.iloc[::-1]).samples == m.samples


def test_one_epoch_sweep_answer_and_summary_agree_on_no_timed_epoch():
    runs = synthetic_runs(epochs=1)
    summary = summarize(runs)
    assert (summary["n_timed_epochs"] == 0).all() and summary["epoch_time_median_s"].isna().all()
    configs = config_outcomes(runs)
    assert configs["epoch_time_s"].isna().all()  # what the answer and the findings quote
    question = epoch_time_question(configs)
    text = question.answer + question.table.to_string()
    # the warm-up times of the synthetic sweep (3 x the steady time), as the report would print them
    for warm in runs["epoch_time_s"].unique():
        for shown in (f"{warm:.3g} s", f"{warm * 1e3:.3g} ms"):
            assert shown not in text
    assert summary["warmup_time_median_s"].notna().all()  # kept, apart
    assert summary.set_index(["engine", "batch_spec"]).loc[("reference", "1"), "warmup_time_median_s"] == \
        pytest.approx(1.2)
