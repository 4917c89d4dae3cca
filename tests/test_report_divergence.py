"""Diverged runs are results: the report, plots and summary show them plainly and never crash.

Frames are a real runs.csv (``data/wine_default_runs.csv``: the default sweep's reference and fast runs,
seeds 0 and 1, on a 2-core AMD EPYC) doctored the way the recording writes a divergence: the run's rows
stop at the diverging epoch, whose losses are NaN, and every row carries ``diverged`` / ``diverged_epoch``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from minibatch_core.analysis.outcomes import config_outcomes, run_outcomes
from minibatch_core.cli import main

REAL = Path(__file__).parent / "data" / "wine_default_runs.csv"


def _real() -> pd.DataFrame:
    return pd.read_csv(REAL, dtype={"batch_spec": str, "hidden": str})


def _diverge(runs: pd.DataFrame, mask: pd.Series, at: int) -> pd.DataFrame:
    runs = runs.copy()
    if "diverged" not in runs:
        runs["diverged"] = False
        runs["diverged_epoch"] = np.nan
    ids = runs.loc[mask, "run_id"].unique()
    runs = runs[~(runs["run_id"].isin(ids) & (runs["epoch"] > at))].copy()
    hit = runs["run_id"].isin(ids)
    runs.loc[hit, "diverged"] = True
    runs.loc[hit, "diverged_epoch"] = at
    runs.loc[hit & (runs["epoch"] == at), ["epoch_loss", "eval_loss", "eval_accuracy"]] = np.nan
    return runs


def _report(tmp_path: Path, runs: pd.DataFrame) -> tuple[str, str]:
    runs.to_csv(tmp_path / "runs.csv", index=False)
    assert main(["report", str(tmp_path)]) == 0
    return (tmp_path / "report.md").read_text(), (tmp_path / "summary.md").read_text()


def test_outcomes_count_a_diverged_run_and_never_average_it() -> None:
    runs = _real()
    runs = _diverge(runs, (runs["batch_spec"] == "32") & (runs["seed"] == 1), at=3)
    per_run = run_outcomes(runs).set_index(["engine", "batch_spec", "seed"])
    assert per_run.loc[("reference", "32", 1), "diverged"]
    assert per_run.loc[("reference", "32", 1), "diverged_epoch"] == 3
    assert np.isnan(per_run.loc[("reference", "32", 1), "final_loss"])
    configs = config_outcomes(runs).set_index(["engine", "batch_spec"])
    b32 = configs.loc[("reference", "32")]
    assert (b32["n_seeds"], b32["n_diverged"]) == (2, 1)
    seed0 = _real().query("engine == 'reference' and batch_spec == '32' and seed == 0 and epoch == 10")
    assert b32["final_loss_median"] == pytest.approx(seed0["epoch_loss"].iloc[0])  # the survivor only


def test_non_finite_losses_without_the_columns_count_as_diverged() -> None:
    runs = _real()
    runs.loc[(runs["batch_spec"] == "1") & (runs["epoch"] >= 4), "epoch_loss"] = np.inf  # older folders
    configs = config_outcomes(runs).set_index(["engine", "batch_spec"])
    assert configs.loc[("fast", "1"), "n_diverged"] == 2
    assert configs.loc[("fast", "1"), "diverged_epoch"] == 4


def test_some_runs_diverged(tmp_path: Path) -> None:
    runs = _real()
    runs = _diverge(runs, runs["batch_spec"] == "1", at=2)
    md, summary = _report(tmp_path, runs)
    assert "batch size 1 diverged at epoch 2 in every seed" in md
    assert "| reference | diverged at epoch 2 |" in md  # the loss and time-to-target tables
    assert "diverged at epoch 2 | diverged |" in summary  # final loss and accuracy in summary.md
    assert "nan" not in md.lower() and "nan" not in summary.lower()


def test_every_run_diverged(tmp_path: Path) -> None:
    runs = _real()
    runs = _diverge(runs, runs["batch_spec"] != "full", at=1)
    runs = _diverge(runs, runs["batch_spec"] == "full", at=2)
    md, summary = _report(tmp_path, runs)
    assert ("every reference run diverged (batch size 1 at epoch 1, batch size 32 at epoch 1, batch size full "
            "(178) at epoch 2)") in md
    assert "Every run diverged before the end of 10 epochs" in md
    assert summary.count("diverged at epoch") == 6
    assert "nan" not in md.lower()
    assert len(list((tmp_path / "plots").glob("*.png"))) == 5  # no profile.csv here


@pytest.mark.slow
def test_a_real_diverging_sweep_produces_a_report(tmp_path: Path) -> None:
    out = tmp_path / "lr1e20"
    code = main(["run", "--engines", "fast", "--optimizer", "sgd", "--lrs", "1e20", "--batch-sizes", "1,full",
                 "--seeds", "0", "--epochs", "3", "--devices", "cpu", "--no-isolate", "--no-profile", "--quiet",
                 "--out", str(out)])
    assert code == 0
    md = (out / "report.md").read_text()
    assert "every fast run diverged" in md and "nan" not in md.lower()
    assert "diverged at epoch" in (out / "summary.md").read_text()
