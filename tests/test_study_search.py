"""The study's learning-rate search, its step budgets and the answer's wording about time."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
import pytest

from minibatch_core.presentation.study_answer import answer, indistinguishable, overlap_phrase
from minibatch_core.sweep.study import StudyConfig, plan, run_job
from minibatch_core.sweep.study_search import LR_MAX, LrSearch, median_steps, step_budget


def test_median_steps_counts_a_failed_seed_as_infinite():
    medians = median_steps([(0.1, True, 10), (0.1, False, None), (0.1, True, 12), (0.3, False, None)])
    assert medians == {0.1: 12.0, 0.3: math.inf}


def test_an_edge_optimum_extends_the_grid_on_that_side():
    search = LrSearch()
    rates, reason = search.next_round({0.001: 50.0, 0.01: 30.0, 0.1: 20.0})
    assert rates == [pytest.approx(1.0)] and "high end" in reason and search.extensions == 1
    low = LrSearch()
    rates, reason = low.next_round({0.001: 10.0, 0.01: 30.0, 0.1: math.inf})
    assert rates == [pytest.approx(1e-4)] and "low end" in reason


def test_an_interior_optimum_is_refined_not_extended_and_then_the_search_ends():
    search = LrSearch()
    rates, reason = search.next_round({0.001: 50.0, 0.01: 20.0, 0.1: 40.0})
    assert search.extensions == 0 and search.outcome == "interior" and reason.startswith("refine")
    assert rates == [pytest.approx(math.sqrt(1e-5), rel=1e-3), pytest.approx(math.sqrt(1e-3), rel=1e-3)]
    assert search.next_round({0.001: 50.0, 0.01: 20.0, 0.1: 40.0, rates[0]: 25.0, rates[1]: 22.0}) is None
    assert [r["kind"] for r in search.rounds] == ["refine"]


def test_a_bound_stops_the_extension_and_says_which():
    search = LrSearch()
    rates, _ = search.next_round({1.0: 40.0, 3.0: 20.0})  # 9 is allowed, 27 is not
    assert rates == [9.0]
    rates, reason = search.next_round({1.0: 40.0, 3.0: 20.0, 9.0: 15.0})
    assert search.outcome.startswith("stopped at a bound") and f"{LR_MAX:g}" in search.outcome
    assert reason.startswith("refine") and rates == [pytest.approx(5.196, rel=1e-3)]


def test_a_policy_factor_bounds_the_rate_used_and_no_reach_ends_the_search():
    search = LrSearch(factor=4.0)  # rates used 4 and 8; the next, 16, is above the bound
    search.next_round({1.0: 30.0, 2.0: 20.0})
    assert "16" in search.outcome
    none = LrSearch()
    assert none.next_round({0.1: math.inf}) is None and "no rate reached" in none.outcome


def test_step_budget_rule():
    assert step_budget(500, 40, 10, None) == (500, "max steps")
    assert step_budget(500, 40, 10, 10_000) == (500, "max steps")  # an explicit budget is the budget
    assert step_budget(None, 40, 1, 300) == (300, "smallest batch's steps")  # full batch: 40 epochs = 40 steps
    assert step_budget(None, 40, 10, 300) == (400, "max epochs")
    assert step_budget(None, 40, 10, None) == (400, "max epochs")


def test_a_step_budget_ends_a_pass_inside_an_epoch():
    study = StudyConfig(datasets="wine", scale="standard", batch_sizes="8", lrs="0.01", seeds="0",
                        target_accuracy=1.0, max_epochs=50, engines="fast")
    the_plan = plan(study)
    job = replace(the_plan.jobs[0], step_budget=5, budget_rule="max steps")
    result = run_job(study, job, the_plan.splits["wine"], the_plan.targets["wine"])
    assert result.stopped == "max steps" and result.steps_run == 5 < result.steps_per_epoch
    assert result.replicas[0].checks[-1].step == 5


@pytest.mark.slow
def test_study_searches_past_an_edge_and_records_every_round(tmp_path):
    from minibatch_core import run_study

    # rates far too small: the best is the top of the grid, so the search must extend upwards
    study = StudyConfig(datasets="wine", scale="standard", batch_sizes="16,full", lrs="1e-3,3e-3", seeds="0",
                        target_accuracy=0.9, max_epochs=30, engines="stacked", noise_scale=False)
    outcome = run_study(study, tmp_path / "s")
    frame = pd.read_csv(outcome.folder / "study.csv")
    assert (frame["search_round"] == 0).sum() == 4 and frame["search_round"].max() >= 1
    assert frame["lr"].max() > 3e-3
    # the full batch's budget is raised to the steps batch 16 needed when 30 epochs (30 steps) are fewer
    full = frame[frame["batch_spec"] == "full"]
    assert (full["budget_rule"] == "smallest batch's steps").any() or (full["step_budget"] == 30).all()
    meta = json.loads((outcome.folder / "study.json").read_text())
    first = meta["lr_search"][0]
    assert "high end" in first["rounds"][0]["reason"] and first["outcome"]
    assert "learning-rate search" in (outcome.folder / "report.md").read_text().lower()


def _best(times: dict[int, tuple[float, float, float]], seeds: int = 3) -> pd.DataFrame:
    rows = []
    for b, (lo, med, hi) in times.items():
        rows.append({"dataset": "d", "engine": "fast", "device": "cpu", "batch_spec": str(b), "batch_size": b,
                     "status": "ok", "best_lr": 0.01, "seeds": seeds, "seeds_reached": seeds,
                     "median_steps": 1000 / b + 5, "min_time_s": lo, "median_time_s": med, "max_time_s": hi,
                     "max_steps_run": 400})
    return pd.DataFrame(rows)


def test_overlapping_times_are_named_as_indistinguishable():
    best = _best({1: (0.9, 1.0, 1.1), 4: (0.3, 0.35, 0.4), 32: (0.10, 0.12, 0.15), 64: (0.08, 0.10, 0.13),
                  256: (0.2, 0.25, 0.3)})
    assert indistinguishable(best, 64) == [32, 64]
    assert overlap_phrase([32, 64], [1, 4, 32, 64, 256]) == "batch 32-64 are indistinguishable here"
    assert overlap_phrase([4, 64], [1, 4, 32, 64, 256]) == "batch 4 and 64 are indistinguishable here"
    assert overlap_phrase([64], [1, 4, 32, 64, 256]) == "no other batch size's time range overlaps it"
    assert indistinguishable(_best({1: (1.0, 1.0, 1.0), 8: (0.5, 0.5, 0.5)}, seeds=1), 8) is None


def test_answer_puts_steps_first_then_time_with_the_warning_beside_it():
    best = _best({1: (0.9, 1.0, 1.1), 32: (0.10, 0.12, 0.15), 64: (0.08, 0.10, 0.13), 256: (0.2, 0.25, 0.3)})
    study = pd.DataFrame([{"dataset": "d", "engine": "fast", "device": "cpu", "n_train": 1000, "n_val": 200,
                           "target_metric": "accuracy", "target_value": 0.9, "replicas": 1, "steps_run": 400,
                           "reached": True, "best_val_accuracy": 0.95, "min_val_loss": 0.2}])
    critical = [{"dataset": "d", "engine": "fast", "device": "cpu", "b_crit": 200.0, "b_crit_interval": [150.0, 260.0],
                 "slope_small": -0.9, "slope_small_interval": [-0.95, -0.85], "slope_large": -0.1,
                 "slope_large_interval": [-0.2, 0.0], "s_min": 5.0, "s_min_interval": [4.0, 6.0], "e_min": 1000.0,
                 "e_min_interval": [900.0, 1100.0], "confidence_level": 0.9, "bootstrap_seeds": 3}]
    warning = "The machine was busy while this sweep ran"
    paragraphs = answer(best, study, critical, {"lr_search": []}, warning)
    measured, timed = paragraphs[0], paragraphs[-1]
    assert "B_crit = 200 [150, 260]" in measured and "slope -0.90 [-0.95, -0.85]" in measured
    assert "batch 32-64 are indistinguishable here" in timed and warning in timed
    assert timed.index("indistinguishable") < timed.index(warning) < timed.index("parallel hardware")
    assert "batch 64 reached it in the least training time" in timed
