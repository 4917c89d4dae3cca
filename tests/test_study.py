"""``minibatch-bench study``: split, within-epoch targets, censoring, best-lr selection, the critical-batch
fit, the gradient-noise estimator, per-replica learning rates, bad input and unreachable targets."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from minibatch_core.analysis.study import best_lrs, fit_critical_batch, regime_slopes
from minibatch_core.cli import main
from minibatch_core.engines.fast import FastSession
from minibatch_core.engines.stacked import StackedSession
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import load_dataset
from minibatch_core.input.split import stratified_split
from minibatch_core.records.study_axes import parse_lr_grid, resolve_study_batches
from minibatch_core.running.noise import ratio, two_batch_estimates
from minibatch_core.running.to_target import CHECKS_PER_EPOCH, next_check
from minibatch_core.sweep.study import StudyConfig, plan, run_job

CPU = torch.device("cpu")


# --- the held-out split ---------------------------------------------------------------------------------

def test_split_is_stratified_and_seeded():
    data = load_dataset("wine")
    a, b = stratified_split(data, 0.2, 0), stratified_split(data, 0.2, 0)
    c = stratified_split(data, 0.2, 1)
    assert torch.equal(a.val.X, b.val.X) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.X, c.val.X)
    assert a.train.n_samples + a.val.n_samples == data.n_samples
    assert a.val.n_samples == math.ceil(0.2 * data.n_samples)
    share_all = torch.bincount(data.y).double() / data.n_samples
    share_val = torch.bincount(a.val.y, minlength=3).double() / a.val.n_samples
    assert torch.allclose(share_all, share_val, atol=0.03)


def test_standard_scaling_is_fitted_on_the_training_rows_only():
    raw = load_dataset("wine")
    split = stratified_split(raw, 0.2, 0, scale="standard")
    plain = stratified_split(raw, 0.2, 0)
    # the training rows are standardized exactly; the held-out rows with the training rows' statistics
    assert torch.allclose(split.train.X.double().mean(0), torch.zeros(raw.n_features, dtype=torch.float64),
                          atol=1e-5)
    mean = plain.train.X.double().mean(0)
    std = plain.train.X.double().std(0, unbiased=False)
    assert torch.allclose(split.val.X.double(), (plain.val.X.double() - mean) / std, atol=1e-5)
    assert not torch.allclose(split.val.X.double().mean(0), torch.zeros(raw.n_features, dtype=torch.float64),
                              atol=1e-3)


def test_split_too_small_for_every_class_is_an_error():
    with pytest.raises(MinibatchError, match="classes"):
        stratified_split(load_dataset("iris"), 0.01, 0)


# --- the check schedule and within-epoch resolution ---------------------------------------------------------

def test_check_schedule_is_fine_within_an_epoch():
    spe = 1437
    checks, done = [], 0
    while done < spe:
        done = next_check(done, spe, None)
        checks.append(done)
    assert checks[-1] == spe and len(checks) >= CHECKS_PER_EPOCH
    gaps = np.diff([0, *checks])
    assert gaps.max() <= spe // CHECKS_PER_EPOCH
    # geometric at the start: each check at most ~19% (plus rounding) after the previous one
    assert all(b <= max(a + 1, a * 2 ** 0.25) for a, b in zip(checks, checks[1:], strict=False) if b < 500)
    assert next_check(0, 10, 4) == 4 and next_check(8, 10, 4) == 10  # --eval-every, epoch ends kept


def test_steps_to_target_resolved_within_the_first_epoch():
    study = StudyConfig(datasets="wine", scale="standard", batch_sizes="1", lrs="0.01", seeds="0",
                        target_accuracy=0.9, max_epochs=3, engines="fast", noise_scale=False)
    the_plan = plan(study)
    result = run_job(study, the_plan.jobs[0], the_plan.splits["wine"], the_plan.targets["wine"])
    out = result.replicas[0]
    spe = result.steps_per_epoch
    assert out.reached and out.steps_to_target < spe, "reached inside epoch 1: not an epoch multiple"
    assert 0 < out.eval_resolution_steps < spe / 4
    assert out.epochs_to_target == pytest.approx(out.steps_to_target / spe)
    assert out.samples_to_target == out.steps_to_target  # batch size 1
    assert result.stopped == "target reached" and len(out.epochs) == 1  # the epoch is finished, then stop


def test_censored_runs_are_kept_with_their_budget():
    study = StudyConfig(datasets="wine", scale="standard", batch_sizes="16", lrs="0.001,0.01", seeds="0,1",
                        target_accuracy=1.0, max_epochs=2, engines="stacked", noise_scale=False)
    the_plan = plan(study)
    result = run_job(study, the_plan.jobs[0], the_plan.splits["wine"], the_plan.targets["wine"])
    assert len(result.replicas) == 4 and result.stopped == "max epochs"
    assert all(not o.reached and o.steps_to_target is None and len(o.epochs) == 2 for o in result.replicas)
    assert result.steps_run == 2 * result.steps_per_epoch


# --- per-replica learning rates and segments -----------------------------------------------------------------

def test_segments_replay_run_epoch_exactly_and_stacked_lrs_match_fast():
    data = load_dataset("wine", scale="standard")
    config = RunConfig(dataset="wine", batch_size=16, engine="fast", lr=0.01)
    whole = FastSession(config, data, CPU, [0])
    pieces = FastSession(config, data, CPU, [0])
    for _ in range(2):
        expected = whole.run_epoch().losses[0]
        pieces.begin_epoch()
        for start in range(0, pieces.steps_per_epoch, 3):
            pieces.run_steps(start, start + 3)
        assert pieces.end_epoch().losses[0] == expected
    stacked = StackedSession(config, data, CPU, [0, 1, 0])
    stacked.set_schedule([0.01, 0.01, 0.003])
    curves = [stacked.run_epoch().losses for _ in range(3)]
    for k, (lr, seed) in enumerate([(0.01, 0), (0.01, 1), (0.003, 0)]):
        fast = FastSession(config.with_(lr=lr), data, CPU, [seed])
        for epoch in range(3):
            ref = fast.run_epoch().losses[0]
            assert curves[epoch][k] == pytest.approx(ref, rel=1e-4)


def test_warmup_ramps_the_rate():
    data = load_dataset("wine", scale="standard")
    config = RunConfig(dataset="wine", batch_size=32, engine="fast", lr=0.01)
    session = FastSession(config, data, CPU, [0])
    session.set_schedule([0.01], warmup_steps=10)
    session.begin_epoch()
    session.run_steps(0, 5)
    assert session.optimizer.scale == pytest.approx(0.5)
    session.run_steps(5, session.steps_per_epoch)  # 6 steps per epoch on Wine at batch 32
    assert session.optimizer.scale == pytest.approx(0.6)
    session.begin_epoch()
    session.run_steps(0, session.steps_per_epoch)
    assert session.optimizer.scale == 1.0


# --- axes ------------------------------------------------------------------------------------------------------

def test_lr_ranges_and_pow2():
    assert parse_lr_grid("1e-3:1e-1:3") == pytest.approx((1e-3, 1e-2, 1e-1))
    assert parse_lr_grid("0.5,1e-3:1e-3:1") == (0.5, 1e-3)
    assert [b for _, b in resolve_study_batches(("pow2",), 20)] == [1, 2, 4, 8, 16, 20]
    assert resolve_study_batches((4, 256, "full"), 100) == [("4", 4), ("full", 100)]


# --- analysis --------------------------------------------------------------------------------------------------

def _frame(rows):
    base = {"dataset": "d", "engine": "fast", "device": "cpu", "base_lr": 0.0, "time_to_target_s": 1.0,
            "samples_to_target": 1, "epochs_to_target": 1.0, "eval_resolution_steps": 1}
    out = []
    for batch, lr, seed, steps in rows:
        reached = steps is not None
        out.append({**base, "batch_spec": str(batch), "batch_size": batch, "lr": lr, "base_lr": lr, "seed": seed,
                    "reached": reached, "steps_to_target": steps if reached else np.nan,
                    "time_to_target_s": steps / 100 if reached else np.nan})
    return pd.DataFrame(out)


def test_best_lr_selection_ties_censoring_and_none_reached():
    frame = _frame([
        (1, 0.1, 0, 10), (1, 0.1, 1, None),  # median is censored: cannot win despite the fastest seed
        (1, 0.01, 0, 50), (1, 0.01, 1, 70),
        (8, 0.1, 0, 20), (8, 0.1, 1, 20), (8, 0.3, 0, 10), (8, 0.3, 1, 30),  # tie at median 20
        (64, 0.1, 0, None), (64, 0.1, 1, None),
    ])
    best = best_lrs(frame).set_index("batch_size")
    assert best.loc[1, "best_lr"] == 0.01 and best.loc[1, "median_steps"] == 60
    assert (best.loc[1, "min_steps"], best.loc[1, "max_steps"]) == (50, 70)
    assert best.loc[1, "status"] == "ok" and best.loc[1, "lr_at_grid_edge"]
    assert best.loc[8, "status"] == "tie" and best.loc[8, "tied_lrs"] == "0.1;0.3" and best.loc[8, "best_lr"] == 0.1
    assert best.loc[64, "status"] == "none reached" and pd.isna(best.loc[64, "best_lr"])


def test_mccandlish_fit_recovers_known_parameters():
    s_min, e_min = 25.0, 4000.0
    batch = np.array([1, 4, 16, 64, 256, 1024, 4096], dtype=float)
    noise = np.exp(np.random.default_rng(0).normal(0, 0.02, len(batch)))
    fit = fit_critical_batch(batch, (s_min + e_min / batch) * noise)
    assert fit.ok and fit.n_points == 7
    assert fit.s_min == pytest.approx(s_min, rel=0.05) and fit.e_min == pytest.approx(e_min, rel=0.05)
    assert fit.b_crit == pytest.approx(e_min / s_min, rel=0.08) and fit.r2_log > 0.99
    slopes = regime_slopes(batch, s_min + e_min / batch, fit.b_crit)
    assert -1.0 <= slopes.small < -0.8 and -0.2 < slopes.large <= 0
    assert not fit_critical_batch(batch[:2], batch[:2]).ok  # two points: no fit, said so


def test_two_batch_noise_estimator_on_synthetic_gradients():
    # per-example gradients g_i = G + noise with known covariance: B_simple = tr(Sigma) / |G|^2
    rng = np.random.default_rng(0)
    dim, n = 50, 200_000
    G = rng.normal(0, 1, dim) * 0.2
    sigma = rng.uniform(0.5, 1.5, dim)
    examples = G + rng.normal(0, 1, (n, dim)) * sigma
    true_b = float((sigma ** 2).sum() / (G ** 2).sum())
    grads, traces = [], []
    for _ in range(200):
        small = examples[rng.integers(0, n, 4)].mean(0)
        big = examples[rng.integers(0, n, 512)].mean(0)
        g, t = two_batch_estimates(float(small @ small), float(big @ big), 4, 512)
        grads.append(g)
        traces.append(t)
    assert ratio(traces, grads) == pytest.approx(true_b, rel=0.15)


# --- the command ---------------------------------------------------------------------------------------------

BAD = [
    (["--target-accuracy", "1.5"], "target accuracy"),
    (["--target-accuracy", "0"], "target accuracy"),
    (["--target-loss", "0"], "target loss"),
    (["--target-accuracy", "0.9", "--target-loss", "0.1"], "exactly one"),
    (["--val-fraction", "0.95"], "validation fraction"),
    (["--val-fraction", "0"], "validation fraction"),
    (["--lrs", "1e-3:1e-1:0"], "learning-rate range"),
    (["--lrs", "1e-1:1e-3:3"], "learning-rate range"),
    (["--lrs", ""], "lrs is empty"),
    (["--dataset", "iris", "--val-fraction", "0.01"], "classes"),
    (["--engines", "reference"], "cannot train to a target"),
    (["--batch-sizes", "0"], "batch size"),
    (["--max-steps", "0"], "max steps"),
    (["--max-steps", "ten"], "max steps"),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "study"
    code = main(["study", "--dataset", "wine", "--max-epochs", "1", "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unreachable_target_writes_the_folder_and_says_so(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["study", "--dataset", "wine", "--scale", "standard", "--batch-sizes", "16,full", "--lrs",
                 "0.01", "--seeds", "0", "--target-loss", "1e-9", "--max-epochs", "2", "--engines", "stacked",
                 "--out", str(out), "--quiet"])
    assert code == 0
    study = pd.read_csv(out / "study.csv")
    assert len(study) == 2 and not study["reached"].any() and (study["epochs_run"] == 2).all()
    report = (out / "report.md").read_text()
    assert "no run reached validation loss <= 1e-09" in report
    critical = json.loads((out / "critical_batch.json").read_text())
    assert critical[0]["b_crit"] is None and critical[0]["batch_sizes_none_reached"] == [16, 142]
    assert (out / "report.html").exists() and (out / "plots" / "steps_to_target.png").exists()
    # `report` rebuilds it; a damaged record is refused in one line (it was read as absent: a report with
    # no critical batch and no word why), a missing one is left out
    capsys.readouterr()
    (out / "critical_batch.json").write_text('[{"b_crit": ')
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "critical_batch.json" in err and "unreadable JSON" in err and len(err.strip().splitlines()) == 1
    (out / "critical_batch.json").unlink()
    assert main(["report", str(out)]) == 0


def test_small_study_end_to_end(tmp_path):
    from minibatch_core import StudyConfig as Exported
    from minibatch_core import run_study

    study = Exported(datasets="wine", scale="standard", batch_sizes="1,8,32,full", lrs="3e-3:3e-2:2",
                     seeds="0", target_accuracy=0.9, max_epochs=30, engines="stacked")
    outcome = run_study(study, tmp_path / "s")
    frame = pd.read_csv(outcome.folder / "study.csv")
    assert (frame["search_round"] == 0).sum() == 8 and frame["reached"].any()  # the grid, then the search's
    runs = pd.read_csv(outcome.folder / "runs.csv")
    assert {"val_loss", "val_accuracy", "epoch_loss"} <= set(runs.columns)
    c = outcome.critical[0]
    assert c["noise"]["b_small"] == 1 and c["noise"]["b_big"] == 142 and c["noise"]["measure_s"] > 0
    assert c["b_simple"] is None or c["b_simple"] > 0
    report = (outcome.folder / "report.md").read_text()
    assert report.index("## The answer") < report.index("![Steps to target") < report.index("## Per batch size")


def test_lr_policies_scale_from_batch_32_and_warmup_counts_steps():
    study = StudyConfig(datasets="wine", batch_sizes="8,32,128", lrs="0.01", seeds="0", lr_policy="sqrt",
                        warmup_epochs=0.5, engines="fast", noise_scale=False)
    jobs = {j.batch_size: j for j in plan(study).jobs}  # wine: 142 training rows
    assert jobs[32].pairs[0][:2] == (0.01, 0.01)
    assert jobs[8].pairs[0][0] == pytest.approx(0.005) and jobs[128].pairs[0][0] == pytest.approx(0.02)
    assert jobs[8].warmup_steps == 9  # half of ceil(142 / 8) = 18 steps
    linear = plan(StudyConfig(datasets="wine", batch_sizes="64", lrs="0.01", seeds="0", lr_policy="linear",
                              engines="fast")).jobs[0]
    assert linear.pairs[0][0] == pytest.approx(0.02)
    with pytest.raises(MinibatchError, match="policy"):
        StudyConfig(lr_policy="cubic")


def test_time_budget_stops_a_pass_and_keeps_its_runs():
    study = StudyConfig(datasets="wine", scale="standard", batch_sizes="1", lrs="0.01", seeds="0",
                        target_accuracy=1.0, max_epochs=50, time_budget_s=1e-6, engines="fast")
    the_plan = plan(study)
    result = run_job(study, the_plan.jobs[0], the_plan.splits["wine"], the_plan.targets["wine"])
    assert result.stopped == "time budget" and result.steps_run < result.steps_per_epoch
    assert not result.replicas[0].reached and len(result.replicas[0].checks) == 1


def test_results_readme_holds_the_study_schema_and_runs_csv_loads(tmp_path):
    from pathlib import Path

    from minibatch_core.records.columns import markdown
    from minibatch_core.records.io import load_runs
    from minibatch_core.records.study_columns import CHECKS_COLUMNS, STUDY_COLUMNS

    readme = (Path(__file__).resolve().parent.parent / "results" / "README.md").read_text()
    assert markdown(STUDY_COLUMNS) in readme and markdown(CHECKS_COLUMNS) in readme
    out = tmp_path / "s"
    assert main(["study", "--dataset", "wine", "--scale", "standard", "--batch-sizes", "32", "--lrs", "0.01",
                 "--seeds", "0", "--target-accuracy", "0.9", "--max-epochs", "3", "--engines", "fast",
                 "--no-noise-scale", "--out", str(out), "--quiet"]) == 0
    runs = load_runs(out)  # the one loader accepts a study's runs.csv
    assert runs["val_accuracy"].notna().all() and runs["run_id"].str.contains("scale=standard").all()
    study = pd.read_csv(out / "study.csv")
    assert list(study.columns) == [c.name for c in STUDY_COLUMNS]


def test_full_budget_keeps_training_and_engines_agree_on_steps():
    study = StudyConfig(datasets="wine", scale="standard", batch_sizes="16", lrs="0.003,0.01", seeds="0,1",
                        target_accuracy=0.9, max_epochs=4, full_budget=True, engines="fast,stacked",
                        noise_scale=False)
    the_plan = plan(study)
    steps: dict[str, list] = {"fast": [], "stacked": []}
    for job in the_plan.jobs:
        result = run_job(study, job, the_plan.splits["wine"], the_plan.targets["wine"])
        assert result.epochs_run == 4 and result.stopped == "max epochs"
        steps[job.engine] += [o.steps_to_target for o in result.replicas]
    assert any(s is not None for s in steps["fast"])
    assert steps["fast"] == steps["stacked"]  # replica k of the pass is the fast run with its lr and seed
