"""The pytest plugin (``pytest11`` entry point): the harness's options, shared measurements and per-case
terminal summary for ``pytest bench --benchmark-only``, and the ``train_benchmark`` fixture with which a user
benchmarks their own model and data from their own repository::

    def test_my_net(train_benchmark):
        train_benchmark(model="models.py:make_net", dataset="data.py:load", batch_size=32, engine="fast",
                        epochs=6)

It times epochs 2..E through pytest-benchmark's ``benchmark`` fixture and stores the runs.csv records in
``extra_info["runs"]``, so ``--benchmark-json``, ``pytest-benchmark compare`` and ``minibatch-bench compare``
work on the user's model as on the built-in bench.

--mb-dataset, --mb-epochs, --mb-seed and --mb-replicas are read by every benchmark module here (through
the ``mb_options`` fixture). The saved JSON gains a top-level ``minibatch_calibration``: the fixed
calibration workload per device, measured once per session (the same figures go into every case's
``calibration_step_s`` column), so ``minibatch-bench compare`` can normalize saved JSON across machines. It
is not in ``machine_info``: pytest-benchmark warns whenever two runs' machine_info differ, and a timing always
does.
After pytest-benchmark's timing table, a second table lists each case's final loss and peak memory.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# 1 warm-up epoch + 10 timed rounds per case keeps `pytest bench --benchmark-only` (this harness and the
# engines benchmark together) at one to two minutes on 2 CPU cores
DEFAULT_EPOCHS = 11

_CALIBRATION = pytest.StashKey[dict]()
_CASES = pytest.StashKey[list]()


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


def calibrations(config: pytest.Config) -> dict[str, dict]:
    """The calibration workload on every available device, keyed like runs.csv's device column
    ("cpu", "cuda:0"); measured on first use, then reused for the rest of the session."""
    if _CALIBRATION not in config.stash:
        from minibatch_core.input.devices import expand_devices
        from minibatch_core.running.calibration import measure_calibration

        found = [measure_calibration(device) for device in expand_devices(["auto"])]
        config.stash[_CALIBRATION] = {c.device: c.to_dict() for c in found}
    return config.stash[_CALIBRATION]


@pytest.fixture
def mb_calibration_step_s(pytestconfig: pytest.Config) -> dict[str, float]:
    """device -> the calibration workload's median seconds per step (runs.csv's calibration_step_s)."""
    return {device: c["step_s"] for device, c in calibrations(pytestconfig).items()}


@dataclass
class CaseSummary:
    """One benchmarked case as the terminal summary shows it."""

    case: str
    seeds: list[int]
    final_losses: list[float]  # per seed
    peak_memory_bytes: int  # the first seed's run (a multi-seed pass trains every seed in one process)
    tensor_bytes: int  # parameters + gradients + optimizer state + activations of the pass (all its models)
    memory_source: str  # where peak_memory_bytes was measured, in a few words

    @classmethod
    def of(cls, case: str, results: list) -> CaseSummary:
        first = results[0]
        m = first.memory
        return cls(case=case, seeds=[r.seed for r in results], final_losses=[r.epoch_losses[-1] for r in results],
                   peak_memory_bytes=first.peak_memory_bytes,
                   tensor_bytes=m.parameters + m.gradients + m.optimizer_state + m.activations,
                   memory_source="fresh worker, RSS" if first.device.startswith("cpu") else
                   "fresh worker, CUDA allocator")


@pytest.fixture
def mb_record_case(request: pytest.FixtureRequest):
    """``record(case_id, results)``: adds a case (its RunResults, one per seed) to the summary printed
    after the benchmark table."""
    cases = request.config.stash.setdefault(_CASES, [])
    return lambda case, results: cases.append(CaseSummary.of(case, results))


class _BenchmarkHooks:
    """pytest-benchmark's hook, registered only where pytest-benchmark is loaded (an unknown hook would be
    refused by pytest in a session without it)."""

    @staticmethod
    def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
        update_machine_info(config, machine_info)

    @staticmethod
    def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
        update_json(config, output_json)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("pytest_benchmark") or config.pluginmanager.hasplugin("benchmark"):
        config.pluginmanager.register(_BenchmarkHooks(), "minibatch_bench_machine_info")


def update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Add the torch build and the core count to the saved machine info: facts of the machine only, so
    that two runs on one machine compare without pytest-benchmark's "machine_info is different" warning
    (the calibration, a timing, is saved beside it: ``update_json``)."""
    import numpy
    import sklearn
    import torch

    # what `compare --loss-mode exact` needs to know whether curves can be bit-identical across files
    # threads: what the cases trained with (RunConfig's, the sweeps' default), as a sweep's env.json says
    from minibatch_core.input.config import RunConfig

    machine_info["torch"] = {"version": torch.__version__, "threads": RunConfig().threads or torch.get_num_threads(),
                             "cuda": torch.version.cuda,
                             "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    machine_info["numpy_version"] = numpy.__version__
    machine_info["sklearn_version"] = sklearn.__version__
    machine_info["cpu_cores"] = os.cpu_count()  # judges the runs' load_1m (contention) in `compare`
    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict):  # the clock py-cpuinfo reads now, not a property of the machine
        for key in ("hz_actual", "hz_actual_friendly"):
            cpu.pop(key, None)


def update_json(config: pytest.Config, output_json: dict) -> None:
    """The calibration workload per device, measured in this session, saved as its own top-level key
    (``minibatch-bench compare`` reads it there, and in machine_info from older files)."""
    output_json["minibatch_calibration"] = calibrations(config)


def summary_lines(cases: list[CaseSummary]) -> list[str]:
    """The terminal table: one line per case, final loss and peak memory beside the tensors' bytes."""
    from minibatch_core.presentation.labels import fmt_bytes, fmt_num

    header = ("case", "seeds", "models per round", "final loss", "peak memory", "tensor bytes", "peak measured")
    rows = []
    for c in cases:
        loss = fmt_num(c.final_losses[0])
        if len(c.final_losses) > 1:
            loss += f" (mean {fmt_num(sum(c.final_losses) / len(c.final_losses))})"
        seeds = ",".join(str(s) for s in c.seeds)
        models = str(len(c.seeds)) + (f" (per model: time / {len(c.seeds)})" if len(c.seeds) > 1 else "")
        rows.append((c.case, seeds, models, loss, fmt_bytes(c.peak_memory_bytes), fmt_bytes(c.tensor_bytes),
                     c.memory_source))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        # the case and the source read left to right; numbers line up on the right
        return "  ".join(cell.ljust(w) if i in (0, 1, 2, 6) else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *map(line, rows)]


@pytest.fixture
def train_benchmark(request: pytest.FixtureRequest, benchmark, mb_calibration_step_s: dict, mb_record_case):
    """``train_benchmark(model=, dataset=, batch_size=, engine=, epochs=, seeds=, device=, lr=, **RunConfig
    fields)`` -> one RunResult per seed: a measured run whose epochs after the first (an untimed warm-up)
    are pytest-benchmark's rounds, with the runs.csv rows in ``benchmark.extra_info["runs"]``. Bad input is
    a one-line ``pytest.UsageError``-style failure naming the value."""
    from minibatch_core.bench.harness import benchmark_case
    from minibatch_core.errors import MinibatchError
    from minibatch_core.input.config import RunConfig
    from minibatch_core.input.specs import parse_model_spec
    from minibatch_core.running.preflight import check_run_input

    def run(*, model: str = "mlp", dataset: str = "wine", batch_size: int | str = 32, engine: str = "fast",
            epochs: int = 6, seeds: list[int] | None = None, device: str = "cpu", **settings):
        from minibatch_core.engines import get_engine

        try:
            config = RunConfig(model=parse_model_spec(model), dataset=dataset, batch_size=batch_size,
                               engine=engine, epochs=epochs, device=device, **settings)
            check_run_input(config)
            if get_engine(engine).distributed:
                raise MinibatchError("train_benchmark times one process: use engine reference, fast or stacked")
            chosen = list(seeds) if seeds is not None else [config.seed]
            if not get_engine(engine).multi_seed:
                chosen = chosen[:1]
            results = benchmark_case(benchmark, config.with_(seed=chosen[0]), chosen, mb_calibration_step_s)
        except MinibatchError as err:
            pytest.fail(f"train_benchmark: {err}", pytrace=False)
        mb_record_case(request.node.name, results)
        return results

    return run


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own table
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    cases = config.stash.get(_CASES, [])
    if not cases:
        return
    terminalreporter.section("minibatch-bench: final loss and peak memory per case")
    for text in summary_lines(cases):
        terminalreporter.write_line(text)
    note = (
        "peak memory: CPU = peak RSS growth over the training regions of an untimed run of the same "
        "configuration in a fresh worker process (the timed rounds run inside pytest, whose RSS no longer grows); "
        "CUDA = growth of torch.cuda.max_memory_allocated over that run's start, in the same kind of fresh worker, "
        "cuBLAS workspaces apart. tensor bytes: parameters + gradients + "
        "optimizer state + one forward pass's activations of the whole pass (every replica), counted from the tensors.")
    for text in textwrap.wrap(note, width=max(60, terminalreporter._tw.fullwidth - 1)):
        terminalreporter.write_line(text)
