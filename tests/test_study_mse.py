"""``study --loss mse`` (issue 18): a study of float targets reaches its --target-loss, records the loss, shows
no accuracy, splits at random (no classes to stratify on) and measures B_simple with the mean squared error;
targets that do not fit the loss are one line and exit 2."""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from minibatch_core.cli import main
from minibatch_core.input.data import Dataset
from minibatch_core.input.split import held_out_split
from minibatch_core.running.noise import measure_noise_scale
from minibatch_core.running.to_target import Target
from minibatch_core.sweep.study_config import StudyConfig

N, WEIGHTS, OFFSET, NOISE_SD = 200, (1.0, -2.0, 0.5, 3.0), 3.0, 0.1

FILES = textwrap.dedent(f"""
    import numpy as np
    from torch import nn


    def regression():
        rng = np.random.default_rng(0)
        X = rng.normal(size=({N}, {len(WEIGHTS)})).astype(np.float32)
        y = X @ np.array({WEIGHTS}, dtype=np.float32) + {OFFSET} + rng.normal(0, {NOISE_SD}, {N})
        return X, y.astype(np.float32)


    def zero_linear(input_shape, n_outputs):
        # every parameter 0: the gradients at the start are known in closed form
        model = nn.Linear(input_shape[0], n_outputs)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        return model
""")


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "reg.py").write_text(FILES)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, len(WEIGHTS))).astype(np.float32)
    y = X @ np.array(WEIGHTS, dtype=np.float32) + OFFSET + rng.normal(0, NOISE_SD, N)
    return X, y.astype(np.float32)


def test_mse_study_reaches_its_target_loss_and_records_the_loss(user: Path) -> None:
    out = user / "s"
    # the noise floor is NOISE_SD**2 = 0.01 and a zero model's error is |w|^2 + offset^2 ~ 23: 0.5 is reachable
    assert main(["study", "--dataset", "reg.py:regression", "--model", "linear", "--loss", "mse", "--target-loss",
                 "0.5", "--batch-sizes", "8,full", "--lrs", "0.03,0.3", "--seeds", "0", "--no-lr-search",
                 "--max-epochs", "30", "--out", str(out), "--quiet"]) == 0
    study = pd.read_csv(out / "study.csv")
    assert len(study) == 4 and study["reached"].any()
    assert (study["target_metric"] == "loss").all() and (study["target_value"] == 0.5).all()
    assert (study.loc[study["reached"], "min_val_loss"] <= 0.5).all()
    assert study["final_val_accuracy"].isna().all() and study["best_val_accuracy"].isna().all()
    assert (study["n_train"] == 160).all() and (study["n_val"] == 40).all()  # ceil(0.2 x 200) held out
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["loss"]) == {"mse"} and runs["val_accuracy"].isna().all()
    meta = json.loads((out / "study.json").read_text())
    assert meta["study"]["loss"] == "mse" and meta["splits"]["reg.py:regression"]["stratified"] is False
    report = (out / "report.md").read_text()
    assert "validation loss <= 0.5" in report and not re.search(r"\bnan\b", report, re.IGNORECASE)
    assert "random, split seed 0" in report
    assert (out / "plots" / "steps_to_target.png").exists() and (out / "noise.csv").exists()


BAD = [
    (["--loss", "mse", "--target-accuracy", "0.9"], "mse has no accuracy"),
    (["--loss", "mse"], "--target-loss"),
    (["--loss", "hinge", "--target-loss", "1"], "loss 'hinge' is not known"),
    (["--target-loss", "1"], "float targets"),  # cross_entropy (the default) on float targets
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_a_loss_that_does_not_fit_is_one_line_exit_2(user: Path, capsys, extra: list[str], message: str) -> None:
    out = user / "s"
    code = main(["study", "--dataset", "reg.py:regression", "--model", "linear", "--max-epochs", "1",
                 "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_mse_on_class_numbers_is_refused(capsys) -> None:
    assert main(["study", "--dataset", "wine", "--loss", "mse", "--target-loss", "0.1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "class numbers" in err and len(err.strip().splitlines()) == 1


def test_study_config_loss_passes_through_to_runs() -> None:
    study = StudyConfig(loss="mse", target_loss=0.2)
    assert study.run_config("wine", "fast", "cpu", 8, 0.01, 0).loss == "mse"
    assert StudyConfig().run_config("wine", "fast", "cpu", 8, 0.01, 0).loss == "cross_entropy"
    assert study.target_for("anything") == Target("loss", 0.2)


def test_float_targets_split_at_random_seeded_and_whole() -> None:
    X, y = _data()
    data = Dataset("reg", torch.tensor(X), torch.tensor(y), 0)
    a = held_out_split(data, 0.25, seed=3)
    b = held_out_split(data, 0.25, seed=3)
    c = held_out_split(data, 0.25, seed=4)
    assert (a.train.n_samples, a.val.n_samples) == (150, 50) and not a.stratified
    assert torch.equal(a.val.y, b.val.y) and not torch.equal(a.val.y, c.val.y)
    # every row on exactly one side: the targets of both sides together are the dataset's
    both = np.sort(np.concatenate([a.train.y.numpy(), a.val.y.numpy()]))
    assert np.array_equal(both, np.sort(y))


def test_noise_scale_with_mse_matches_per_example_gradients(user: Path) -> None:
    """At a zero model the per-example gradient of (w.x + b - y)^2 is -2 y [x, 1]: B_simple = tr(Sigma) / |G|^2
    from those, in numpy. A learning rate of 1e-9 keeps the model at zero for all 41 measurements."""
    X, y = _data()
    per_example = -2.0 * y[:, None].astype(np.float64) * np.hstack([X, np.ones((N, 1), np.float32)])
    mean = per_example.mean(0)
    expected = float(((per_example - mean) ** 2).sum(1).sum() / (N - 1) / (mean @ mean))
    data = Dataset("reg", torch.tensor(X), torch.tensor(y), 0)
    scale = measure_noise_scale(data, data, Target("loss", 1e-12), hidden=(10,), optimizer="sgd", train_batch=20,
                                lr=1e-9, seed=0, b_small=4, b_big=N, every=1, max_steps=40,
                                model="reg.py:zero_linear", loss="mse")
    assert scale.b_simple is not None and math.isfinite(scale.b_simple) and scale.b_simple > 0
    assert len(scale.points) == 41 and scale.steps_to_target is None
    assert scale.b_simple == pytest.approx(expected, rel=0.15)
    # the full batch's mean squared gradient is |G|^2 exactly; the validation loss is the mean of y^2
    assert scale.points[0].g2_big == pytest.approx(float(mean @ mean), rel=1e-4)
    assert scale.points[0].val_loss == pytest.approx(float((y.astype(np.float64) ** 2).mean()), rel=1e-5)
    assert math.isnan(scale.points[0].val_accuracy)
