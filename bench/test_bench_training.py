"""Epoch time of every engine x device x batch size, with pytest-benchmark, on the trainer's own API.

Each case opens one measured run (``running.trainer.open_run``: the engine session under the trainer's
clock, exactly what ``train`` and the sweeps drive), trains one untimed warm-up epoch, then times one
epoch per round (``rounds = --mb-epochs - 1``): ``Run.train_epoch`` is the timed region and
``Run.finish_epoch`` (evaluation on the whole dataset, recording the epoch) runs as the round's setup,
outside it. The runs.csv rows of every seed (``records.rows.run_rows``, the sweeps' writer) are stored in
``extra_info["runs"]``, so ``minibatch-bench compare`` reads a bench JSON as the same records as a
results folder and matches it with a sweep of the same configuration.

Peak memory is measured on a second, untimed run of the same configuration in a fresh worker process, on
every device (``minibatch_core.bench.harness`` says why); that run's loss curves must equal the timed
session's.
"""

from __future__ import annotations

import pytest

from minibatch_core.bench.harness import benchmark_case
from minibatch_core.engines import engine_names, get_engine
from minibatch_core.input.config import RunConfig

BATCH_SIZES = [1, 32, "full"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def case_seeds(engine: str, options: dict) -> list[int]:
    replicas = options["replicas"] if get_engine(engine).multi_seed else 1
    return [options["seed"] + k for k in range(replicas)]


@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=[str(b) for b in BATCH_SIZES])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("engine", engine_names())
def test_train_epoch(benchmark, mb_options: dict, mb_calibration_step_s: dict, mb_record_case,
                     engine: str, device: str, batch_size) -> None:
    if get_engine(engine).distributed:
        pytest.skip("the ddp engine trains in W launched processes, outside one session: measure it with "
                    "`minibatch-bench run --engines ddp --workers 1,2`")
    if not get_engine(engine).runs_on(device):  # a sweep leaves this combination out of its plan too
        pytest.skip(f"the {engine} engine trains on {' and '.join(get_engine(engine).devices)} only")
    config = RunConfig(dataset=mb_options["dataset"], batch_size=batch_size, epochs=mb_options["epochs"],
                       seed=mb_options["seed"], device=device, engine=engine)
    seeds = case_seeds(engine, mb_options)
    results = benchmark_case(benchmark, config, seeds, mb_calibration_step_s,
                             group=f"{mb_options['dataset']} {device} batch {batch_size}")
    first = results[0]
    mb_record_case(f"{engine}-{device}-{batch_size}", results)
    assert len(first.records) == config.epochs
    assert all(loss == loss for r in results for loss in r.epoch_losses), "a loss is NaN"

