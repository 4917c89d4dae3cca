"""Shared by tests/ and bench/ (pytest loads the rootdir's conftest for both): the one CUDA skip, and
the warm worker server turned off.

Mark a test, or one parameter (``pytest.param("cuda", marks=pytest.mark.cuda)``), with ``pytest.mark.cuda``;
without a GPU it is skipped, with this reason, before any of its fixtures are set up.
"""

from __future__ import annotations

import os

import pytest

# No warm worker server (minibatch_core/running/warm.py) for the suite or the bench, nor for the commands
# they start: a test session leaves no process behind. tests/test_warm.py turns it on where it tests it.
os.environ["MINIBATCH_BENCH_SERVER"] = "off"

NO_CUDA = "needs a CUDA GPU; torch.cuda.is_available() is False on this machine"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is None:
        return
    import torch

    if not torch.cuda.is_available():
        pytest.skip(NO_CUDA)
