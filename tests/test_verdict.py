"""The answer's verdict: whether each batch size learned, against the trivial predictors, from known runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from minibatch_core.analysis.learning import config_learning
from minibatch_core.cli import main

N = 178


def runs(final: dict[str, list[tuple[float, float]]], epochs: int = 4) -> pd.DataFrame:
    """Wine-shaped runs (3 classes, majority share 0.40): per batch size, per seed (final loss, final
    accuracy); each run's loss falls linearly from 2.0 to its final loss, its epochs cost 0.1 s per step/10."""
    rows = []
    for spec, seeds in final.items():
        size = N if spec == "full" else int(spec)
        steps = -(-N // size)
        for seed, (loss, acc) in enumerate(seeds):
            for epoch in range(1, epochs + 1):
                frac = epoch / epochs
                rows.append({
                    "run_id": f"reference|wine|cpu|b{spec}|s{seed}|lr0.001", "engine": "reference",
                    "dataset": "wine", "device": "cpu", "batch_spec": spec, "batch_size": size, "seed": seed,
                    "lr": 0.001, "optimizer": "adam", "hidden": "10-10", "epochs": epochs, "epoch": epoch,
                    "epoch_loss": 2.0 + (loss - 2.0) * frac, "eval_loss": 2.0 + (loss - 2.0) * frac,
                    "eval_accuracy": 0.4 + (acc - 0.4) * frac, "epoch_time_s": 0.01 * steps,
                    "cumulative_time_s": 0.01 * steps * epoch, "warmup": epoch == 1, "steps": steps,
                    "samples_per_s": N / (0.01 * steps), "peak_memory_bytes": 4096, "replicas": 1,
                    "n_samples": N, "n_features": 13, "n_classes": 3, "majority_accuracy": 71 / 178,
                })
    return pd.DataFrame(rows)


def _answer(tmp_path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(tmp_path / "runs.csv", index=False)
    (tmp_path / "env.json").write_text(json.dumps({"cpu_cores": 2, "status": "complete"}))
    assert main(["report", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    return md.split("## The answer\n", 1)[1].split("\n## ", 1)[0]


def test_a_run_learned_only_above_the_majority_share_by_two_standard_errors() -> None:
    # majority 71/178 = 0.399; 2 standard errors on 178 rows: 2 * sqrt(0.399 * 0.601 / 178) = 0.0734
    frame = runs({"1": [(0.5, 0.48), (0.5, 0.47), (0.5, 0.9)], "32": [(1.2, 0.9), (0.9, 0.9), (0.5, 0.9)]})
    learned = config_learning(frame).set_index("batch_spec")
    assert learned.loc["1", "n_learned"] == 2  # 0.48 > 0.4723 counts; 0.47 does not
    assert learned.loc["1", "verdict"] == "partly"
    assert learned.loc["32", "n_learned"] == 2  # a loss of 1.2 is above ln 3 = 1.0986
    assert learned.loc["32", "majority_accuracy"] == 71 / 178
    assert learned.loc["32", "uniform_loss"] == np.log(3)
    assert learned.loc["32", "total_steps"] == 6 * 4


def test_a_batch_size_at_chance_is_named_and_sets_no_target(tmp_path: Path) -> None:
    frame = runs({"1": [(0.4, 0.85), (0.45, 0.8), (0.5, 0.9)],
                  "32": [(1.15, 0.35), (1.3, 0.41), (1.1, 0.30)],
                  "full": [(5.0, 0.20), (9.0, 0.40), (2.0, 0.33)]})
    answer = _answer(tmp_path, frame)
    assert ("At lr 0.001 (one rate, untuned) with adam for 4 epochs, only batch size 1 learned wine; batch sizes "
            "32 and full (178) ended near or below always guessing the largest class.") in answer
    assert "run `minibatch-bench study`" in answer
    assert "one learning rate, not tuned for any batch size, a fixed budget of 4 epochs" in answer
    assert "loss and accuracy measured on the rows it trained on" in answer
    assert ("batch size 1 accuracy 0.85 (0.80–0.90), loss 0.45, in 712 optimizer steps; batch size 32 accuracy "
            "0.35 (0.30–0.41), loss 1.15, in 24 optimizer steps; batch size full (178) accuracy 0.33 (0.20–0.40), "
            "loss 5, in 4 optimizer steps; against the trivial baselines, accuracy 0.40 for always guessing the "
            "largest class and loss ln 3 = 1.099") in answer
    # batch 32 did not learn, so its 1.15 is no target: the race is to batch 1's median loss, 0.45, which
    # only batch 1 reached (seeds 0 and 1 at their last epoch, 1.78 s each at 0.01 s per step)
    assert "Only batch size 1 got to 0.45 (batch size 1's median final loss" in answer
    assert "1.15 (batch size 32's median final loss)" not in answer
    table = (tmp_path / "report.md").read_text().split("## Did each batch size learn?", 1)[1]
    assert "| 32 | 0.35 (0.30–0.41) | 1.15 (1.1–1.3) | 24 | did not learn |" in table
    assert "| always the largest class | 0.40 | – | 0 | trivial baseline |" in table


def test_when_nothing_learned_no_race_is_timed(tmp_path: Path) -> None:
    frame = runs({"1": [(1.05, 0.42), (1.0, 0.45)], "32": [(1.2, 0.35), (1.3, 0.30)]})
    answer = _answer(tmp_path, frame)
    assert "no batch size learned wine: batch sizes 1 and 32 ended near or below always guessing" in answer
    assert "no time to a target loss is given" in answer
    assert "soonest" not in answer
    md = (tmp_path / "report.md").read_text()
    assert "no target a learning model reaches and no race is timed" in md
