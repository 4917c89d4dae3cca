"""Any model and dataset: built-ins, a user's factory from a file and from a module, the engines' generic
paths (fast == reference, stacked replica k == fast seed k) and every bad input of issue 18."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from minibatch_core.cli import main
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import load_dataset
from minibatch_core.input.specs import source_hash
from minibatch_core.records import identity as ident
from minibatch_core.running.trainer import train, train_seeds

CONV = textwrap.dedent("""
    from torch import nn


    def make_net(input_shape, n_outputs):
        channels = input_shape[0]
        return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(4 * (input_shape[1] // 2) * (input_shape[2] // 2), n_outputs))


    def wide_mlp(input_shape, n_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.Tanh(), nn.Linear(24, 12), nn.ReLU(),
                             nn.Linear(12, n_outputs))


    def with_dropout(input_shape, n_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, n_outputs))


    def with_batchnorm(input_shape, n_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, n_outputs))


    def wrong_shape(input_shape, n_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, n_outputs + 1))


    def not_a_module(input_shape, n_outputs):
        return "a model"


    def raises(input_shape, n_outputs):
        raise ValueError("no such layer")
""")

DATA = textwrap.dedent("""
    import numpy as np
    import torch


    def classes():
        rng = np.random.default_rng(1)
        X = rng.normal(size=(90, 2, 3)).astype(np.float32)
        return X, (X.sum((1, 2)) > 0).astype(np.int64)


    def regression():
        rng = np.random.default_rng(2)
        X = rng.normal(size=(60, 5)).astype(np.float32)
        return torch.tensor(X), torch.tensor(X @ np.arange(5, dtype=np.float32))


    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return torch.full((3,), float(i % 5)), i % 2


    def pairs():
        return Pairs()


    def empty():
        return np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.int64)


    def mismatched():
        return np.zeros((10, 3), dtype=np.float32), np.zeros(9, dtype=np.int64)


    def images():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data[:150].reshape(-1, 1, 8, 8).astype(np.float32), digits.target[:150]


    def broken():
        raise OSError("disk gone")
""")


@pytest.fixture()
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "nets.py").write_text(CONV)
    (tmp_path / "data.py").write_text(DATA)
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(CONV)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _losses(result) -> list[float]:
    return [r.loss for r in result.records]


def _close(a: list[float], b: list[float], rtol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rtol * abs(x) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("model", ["nets.py:make_net", "userpkg.models:wide_mlp", "cnn"])
@pytest.mark.parametrize("batch", [1, 32])
def test_fast_equals_reference_on_any_model(user: Path, model: str, batch: int) -> None:
    config = RunConfig(dataset="data.py:images", model=model, epochs=3, batch_size=batch, seed=3)
    ref = train(config, isolate=False)
    fast = train(config.with_(engine="fast"), isolate=False)
    assert _close(_losses(ref), _losses(fast)), (_losses(ref), _losses(fast))
    assert ref.n_parameters == fast.n_parameters > 0
    assert ref.records[-1].loss < ref.records[0].loss  # it trained


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("batch", [1, 7])
def test_generic_fast_is_the_reference_arithmetic_bit_for_bit(user: Path, optimizer: str, batch: int) -> None:
    # one flat parameter, Adam's single-tensor formulas over it: the same floats as reference's loop
    config = RunConfig(dataset="data.py:images", model="nets.py:make_net", epochs=3, batch_size=batch,
                       optimizer=optimizer, lr=0.01)
    ref = train(config, isolate=False)
    assert _losses(train(config.with_(engine="fast"), isolate=False)) == _losses(ref)


@pytest.mark.parametrize("model", ["nets.py:make_net", "nets.py:wide_mlp"])
def test_stacked_replica_k_equals_fast_seed_k(user: Path, model: str) -> None:
    config = RunConfig(dataset="data.py:images", model=model, epochs=3, batch_size=8)
    stacked = train_seeds(config.with_(engine="stacked"), [0, 4], isolate=False)
    for k, seed in enumerate([0, 4]):
        fast = train(config.with_(engine="fast", seed=seed), isolate=False)
        assert _close(_losses(stacked[k]), _losses(fast)), (k, _losses(stacked[k]), _losses(fast))
    assert _losses(stacked[0]) != _losses(stacked[1])


def test_dropout_fast_draws_the_reference_stream_and_stacked_refuses(user: Path, capsys) -> None:
    config = RunConfig(dataset="data.py:images", model="nets.py:with_dropout", epochs=2, batch_size=4)
    assert _close(_losses(train(config, isolate=False)), _losses(train(config.with_(engine="fast"), isolate=False)))
    assert main(["train", "--no-isolate", "--engine", "stacked", "--model", "nets.py:with_dropout",
                 "--dataset", "digits-images", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dropout" in err and "fast" in err


def test_batchnorm_trains_on_fast_as_on_reference(user: Path) -> None:
    config = RunConfig(dataset="data.py:images", model="nets.py:with_batchnorm", epochs=2, batch_size=8)
    assert _close(_losses(train(config, isolate=False)), _losses(train(config.with_(engine="fast"), isolate=False)))


def test_the_lessons_mlp_is_unchanged_and_mlp_flattens_images() -> None:
    lesson = train(RunConfig(epochs=2), isolate=False)
    again = train(RunConfig(epochs=2, model="mlp"), isolate=False)
    assert _losses(lesson) == _losses(again) and lesson.n_parameters == 13 * 10 + 10 + 10 * 10 + 10 + 10 * 3 + 3
    images = train(RunConfig(dataset="digits-images", epochs=1, engine="fast"), isolate=False)
    assert images.n_features == 64 and images.n_parameters == 64 * 10 + 10 + 110 + 10 * 10 + 10


def test_user_datasets_keep_their_shape(user: Path) -> None:
    ds = load_dataset("data.py:classes")
    assert tuple(ds.X.shape) == (90, 2, 3) and ds.y.dtype == torch.int64 and ds.n_classes == 2
    pairs = load_dataset("data.py:pairs")
    assert tuple(pairs.X.shape) == (40, 3) and pairs.n_classes == 2
    reg = load_dataset("data.py:regression")
    assert reg.is_regression and reg.n_outputs == 1 and reg.n_classes == 0
    images = load_dataset("digits-images")
    assert tuple(images.X.shape) == (1797, 1, 8, 8)
    assert torch.equal(images.X.reshape(1797, -1), load_dataset("digits").X)


def test_mse_regression_trains_and_reports_no_accuracy(user: Path) -> None:
    config = RunConfig(dataset="data.py:regression", model="linear", loss="mse", epochs=3, batch_size=10,
                       lr=0.05)
    ref = train(config, isolate=False)
    fast = train(config.with_(engine="fast"), isolate=False)
    assert _close(_losses(ref), _losses(fast))
    assert ref.records[-1].loss < ref.records[0].loss
    assert ref.records[-1].eval_accuracy != ref.records[-1].eval_accuracy  # NaN: no classes


def test_a_changed_model_file_is_a_different_configuration(user: Path) -> None:
    before = source_hash("nets.py:make_net")
    (user / "nets.py").write_text(CONV + "\n# changed\n")
    after = source_hash("nets.py:make_net")
    assert before and after and before != after
    assert source_hash("mlp") == ""  # built-ins match folders written before the column existed
    base = dict(engine="fast", dataset="digits-images", device="cpu", batch_spec="32", lr=0.001, optimizer="adam",
                hidden=(10, 10), epochs=2, target="", scale="none", data_seed=0, torch_threads=1, workers=1,
                n_samples=1797, n_features=64, n_classes=10, model="nets.py:make_net")
    assert ident.config_id(ident.identity(**base, model_hash=before)) != \
        ident.config_id(ident.identity(**base, model_hash=after))


BAD = [
    (["--model", "nets"], "model 'nets' is not valid"),
    (["--model", "missing.py:make_net"], "does not exist"),
    (["--model", "no_such_module_xyz:make"], "cannot be found"),
    (["--model", "nets.py:absent"], "has no function 'absent'"),
    (["--model", "nets.py:raises"], "ValueError: no such layer"),
    (["--model", "nets.py:not_a_module"], "not a torch.nn.Module"),
    (["--model", "nets.py:wrong_shape"], "expected (1, 10)"),
    (["--dataset", "data.py:regression", "--model", "linear"], "float targets"),
    (["--loss", "mse"], "class numbers"),
    (["--dataset", "data.py:empty", "--model", "linear"], "is empty"),
    (["--dataset", "data.py:mismatched", "--model", "linear"], "10 inputs but 9 targets"),
    (["--dataset", "data.py:broken", "--model", "linear"], "OSError: disk gone"),
    (["--dataset", "data.py:absent", "--model", "linear"], "has no function"),
    (["--engine", "sklearn", "--model", "cnn"], "use one of reference, fast, stacked"),
]


@pytest.mark.parametrize(("flags", "message"), BAD)
def test_bad_input_is_one_line_and_exit_2(user: Path, flags: list[str], message: str, capsys) -> None:
    argv = ["train", "--no-isolate", "--epochs", "1", "--dataset", "data.py:images", *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_a_sweep_with_a_bad_model_writes_nothing(user: Path, capsys) -> None:
    out = user / "out"
    assert main(["run", "--no-isolate", "--models", "cnn,nets.py:wrong_shape", "--datasets", "data.py:images",
                 "--epochs", "1", "--seeds", "0", "--batch-sizes", "32", "--out", str(out)]) == 2
    assert "expected (1, 10)" in capsys.readouterr().err and not out.exists()
