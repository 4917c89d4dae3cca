"""scripts/gpu-check.sh: on a machine without a GPU it says so in one line and exits 0; its pure helpers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # its dataclasses look their module up there
spec.loader.exec_module(gpu_check)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer; this machine has a GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [gpu_check.NO_GPU] and done.stderr == ""


def test_the_batch_sizes_include_a_one_row_last_batch():
    sizes = gpu_check.batch_sizes(178)
    assert sizes == [1, 177, 32, "full"] and 178 % 177 == 1


def test_the_timer_must_sit_just_above_the_cuda_events():
    assert gpu_check.timers_agree(0.0012, 0.0010)
    assert not gpu_check.timers_agree(0.0005, 0.0010)  # shorter than the device work: the sync is missing
    assert not gpu_check.timers_agree(0.5, 0.0010)  # far longer: the region times something else
    assert not gpu_check.timers_agree(0.001, 0.0)  # a graph that replays nothing


def test_a_crashing_check_is_a_failed_verdict_with_its_reason(capsys):
    def boom():
        raise RuntimeError("CUDA error: an illegal memory access was encountered\ndetails")

    [verdict] = gpu_check.guarded("fast | cuda:1 | batch 1", boom)
    assert not verdict.ok and verdict.line() == (
        "FAIL  fast | cuda:1 | batch 1: RuntimeError: CUDA error: an illegal memory access was encountered")
