"""The ``train_benchmark`` pytest plugin, used as a user would: a temporary folder of "user" code (a model
file, a data file, a test), pytest run there in a subprocess, and its ``--benchmark-json`` read by
``minibatch-bench compare``. Asserts on structure and loss curves, never on times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from minibatch_core.analysis.compare import load_results
from minibatch_core.cli import main

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "minibatch_core.bench.plugin"

USER_MODEL = """
from torch import nn


def make_net(input_shape, n_outputs):
    return nn.Sequential(nn.Conv2d(input_shape[0], 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * input_shape[1] * input_shape[2], n_outputs))
"""
USER_DATA = """
from sklearn.datasets import load_digits


def load():
    digits = load_digits()
    return digits.data[:120].reshape(-1, 1, 8, 8).astype("float32"), digits.target[:120]
"""
USER_TEST = """
def test_my_net(train_benchmark):
    results = train_benchmark(model="models.py:make_net", dataset="data.py:load", batch_size=32, engine="fast",
                              epochs=3)
    assert len(results[0].records) == 3
"""


def test_the_plugin_is_registered_through_pytest11() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert declared == {PLUGIN: PLUGIN}


@pytest.mark.slow
def test_a_users_repository_benchmarks_its_model_and_compare_reads_the_json(tmp_path: Path, capsys) -> None:
    for name, text in (("models.py", USER_MODEL), ("data.py", USER_DATA), ("test_my_model.py", USER_TEST)):
        (tmp_path / name).write_text(textwrap.dedent(text))
    out = tmp_path / "bench.json"
    installed = any(e.name == PLUGIN for e in entry_points(group="pytest11"))
    # the installed entry point is what a user gets; a checkout without it names the plugin explicitly
    load = [] if installed else ["-p", PLUGIN]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", *load, "-p", "no:cacheprovider", "--benchmark-only",
                           f"--benchmark-json={out}", "test_my_model.py"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    bench = json.loads(out.read_text())
    (case,) = bench["benchmarks"]
    info = case["extra_info"]
    assert info["model"] == "models.py:make_net" and info["engine"] == "fast"
    assert info["n_parameters"] == 1 * 3 * 9 + 3 + 3 * 64 * 10 + 10
    assert len(case["stats"]["data"]) == 2  # epochs 2 and 3 timed; epoch 1 the warm-up
    rows = info["runs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and {r["model"] for r in rows} == {"models.py:make_net"}
    assert rows[0]["model_hash"] and [r["epoch_loss"] for r in rows] == info["loss_curve"]
    loaded = load_results(out)
    assert set(loaded.frame["model"]) == {"models.py:make_net"} and loaded.kind == "pytest-benchmark JSON"
    # the JSON against itself: every configuration matched, nothing regressed
    assert main(["compare", str(out), str(out)]) == 0
    assert "models.py:make_net" in capsys.readouterr().out
