"""pytest-benchmark harness options for ``pytest bench --benchmark-only``.

--mb-dataset, --mb-epochs, --mb-seed and --mb-replicas are read by every benchmark module here (through
``config.getoption``). The machine info pytest-benchmark saves gains ``minibatch_calibration``: the fixed
calibration workload per device, so ``minibatch-bench compare`` can normalize saved JSON across machines.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

# 1 warm-up epoch + 10 timed rounds per case keeps `pytest bench --benchmark-only` (this harness and the
# engines benchmark together) at about a minute on 2 CPU cores
DEFAULT_EPOCHS = 11


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("minibatch-bench")
    g.addoption("--mb-dataset", default="wine",
                help="dataset the benchmarks train on (default wine; any name `minibatch-bench train` accepts)")
    g.addoption("--mb-epochs", type=int, default=DEFAULT_EPOCHS,
                help=f"epochs per benchmarked session, the first being an untimed warm-up: rounds = epochs - 1 "
                f"(default {DEFAULT_EPOCHS})")
    g.addoption("--mb-seed", type=int, default=0, help="training seed (default 0)")
    g.addoption("--mb-replicas", type=int, default=3,
                help="seeds trained in one pass by multi-seed engines (default 3, a sweep's default seed count)")


@pytest.fixture(scope="session")
def mb_options(pytestconfig: pytest.Config) -> dict:
    epochs = pytestconfig.getoption("--mb-epochs")
    if epochs < 2:
        raise pytest.UsageError("--mb-epochs must be >= 2: the first epoch is an untimed warm-up")
    return {
        "dataset": pytestconfig.getoption("--mb-dataset"),
        "epochs": epochs,
        "seed": pytestconfig.getoption("--mb-seed"),
        "replicas": max(1, pytestconfig.getoption("--mb-replicas")),
    }


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Add the calibration workload (per device) and the torch build to the saved machine info."""
    from minibatch_core.input.devices import expand_devices
    from minibatch_core.running.calibration import measure_calibration

    # keyed like runs.csv's device column (resolved: "cpu", "cuda:0")
    calibrations = [measure_calibration(device) for device in expand_devices(["auto"])]
    machine_info["minibatch_calibration"] = {c.device: c.to_dict() for c in calibrations}
    import numpy
    import sklearn

    # what `compare --loss-mode exact` needs to know whether curves can be bit-identical across files
    machine_info["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads(),
                             "cuda": torch.version.cuda,
                             "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    machine_info["numpy_version"] = numpy.__version__
    machine_info["sklearn_version"] = sklearn.__version__
