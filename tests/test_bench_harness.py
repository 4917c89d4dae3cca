"""The pytest-benchmark harness under bench/: its parametrization, options, extra_info and machine info.

Runs pytest in a subprocess, as a user would; asserts on structure, never on times.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minibatch_core.engines import engine_names

ROOT = Path(__file__).resolve().parent.parent
EXTRA_INFO_KEYS = {"engine", "dataset", "device", "device_name", "batch_size", "batch_spec", "seed", "epochs",
                   "final_epoch_loss", "loss_curve", "peak_memory_bytes", "samples_per_s", "replicas",
                   "epoch_times_s"}


def pytest_bench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "pytest", "bench/test_bench_training.py", "-p", "no:cacheprovider",
                           *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow  # runs pytest on bench/ in a subprocess
def test_collects_engine_x_device_x_batch_size() -> None:
    done = pytest_bench("--collect-only", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = {line.split("[", 1)[1].rstrip("]") for line in done.stdout.splitlines() if "test_train_epoch[" in line}
    expected = {f"{e}-{d}-{b}" for e in engine_names() for d in ("cpu", "cuda") for b in ("1", "32", "full")}
    assert ids == expected


@pytest.mark.slow  # runs pytest on bench/ in a subprocess
def test_one_case_records_extra_info_and_calibration(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    flags = ["--benchmark-only", "-k", "reference-cpu-32", "--mb-epochs", "3", "--benchmark-json", str(out),
             "--benchmark-group-by=param:batch_size", "-q"]
    histogram = importlib.util.find_spec("pygal") is not None
    if histogram:
        flags.append(f"--benchmark-histogram={tmp_path / 'hist'}")
    done = pytest_bench(*flags)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    (bench,) = data["benchmarks"]
    assert bench["params"] == {"engine": "reference", "device": "cpu", "batch_size": 32}
    assert bench["stats"]["rounds"] == 2  # --mb-epochs 3 = 1 untimed warm-up + 2 timed epochs
    info = bench["extra_info"]
    assert EXTRA_INFO_KEYS <= set(info)
    assert info["batch_size"] == 32 and info["batch_spec"] == "32" and info["dataset"] == "wine"
    assert len(info["loss_curve"]) == 3 and len(info["epoch_times_s"]) == 2
    assert info["final_epoch_loss"] == info["loss_curve"][-1] and info["replicas"] == 1
    calibration = data["machine_info"]["minibatch_calibration"]
    assert calibration["cpu"]["step_s"] > 0 and calibration["cpu"]["device"] == "cpu"
    if histogram:
        assert list(tmp_path.glob("hist*.svg")), "--benchmark-histogram wrote no SVG"


@pytest.mark.slow  # runs pytest on bench/ in a subprocess
def test_cuda_cases_skip_with_a_reason() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CUDA cases run instead of skipping")
    done = pytest_bench("--benchmark-only", "-k", "reference-cuda-full", "-rs", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "needs a CUDA GPU" in done.stdout and "1 skipped" in done.stdout
