"""Shared by tests/ and bench/ (pytest loads the rootdir's conftest for both): the one CUDA skip.

Mark a test, or one parameter (``pytest.param("cuda", marks=pytest.mark.cuda)``), with ``pytest.mark.cuda``;
without a GPU it is skipped, with this reason, before any of its fixtures are set up.
"""

from __future__ import annotations

import pytest

NO_CUDA = "needs a CUDA GPU; torch.cuda.is_available() is False on this machine"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is None:
        return
    import torch

    if not torch.cuda.is_available():
        pytest.skip(NO_CUDA)
