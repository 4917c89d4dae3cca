"""Plans that only hold what can run: engines declare their devices, a combination this machine or the
engine cannot run is left out of the plan with its reason, a failing job is recorded and the sweep goes on,
and ``--dry-run`` prints the plan without training. CUDA is *reported* available here by patching torch
(no GPU is needed: planning never touches the device)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.distributed as dist

from minibatch_core.cli import main
from minibatch_core.engines import engine_names, get_engine
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.running import trainer
from minibatch_core.running.distributed import cuda_index
from minibatch_core.sweep import sweep as sweep_module
from minibatch_core.sweep.eta import RemainingTime, format_duration
from minibatch_core.sweep.sweep import SweepConfig, plan


@pytest.fixture
def one_gpu(monkeypatch):
    """torch reports one CUDA device (and NCCL), as on a one-GPU machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)


def planned(the_plan) -> set[tuple[str, str, int]]:
    return {(j.config.engine, j.config.device, j.config.workers) for j in the_plan.jobs}


def test_engines_declare_their_devices():
    assert get_engine("sklearn").devices == ("cpu",)
    assert not get_engine("sklearn").runs_on("cuda:1") and get_engine("sklearn").runs_on("cpu")
    for name in ("reference", "fast", "stacked", "ddp"):
        assert get_engine(name).runs_on(torch.device("cuda", 0)), name


def test_the_default_plan_with_cuda_leaves_out_sklearn_on_cuda_with_the_reason(one_gpu):
    the_plan = plan(SweepConfig(datasets="wine", batch_sizes="32,full", seeds="0,1"))
    assert the_plan.devices == ("cpu", "cuda")
    assert ("sklearn", "cpu", 1) in planned(the_plan)
    assert ("sklearn", "cuda", 1) not in planned(the_plan)
    assert {("reference", "cuda", 1), ("fast", "cuda", 1), ("stacked", "cuda", 1)} <= planned(the_plan)
    [left] = the_plan.left_out
    assert (left.engine, left.device, left.configurations, left.runs) == ("sklearn", "cuda", 2, 4)
    assert "trains on cpu only" in left.describe() and "4 runs" in left.describe()


def test_ddp_on_more_gpus_than_the_machine_has_is_left_out(one_gpu):
    the_plan = plan(SweepConfig(engines="ddp", devices="cuda", workers="1,2", batch_sizes="full", seeds="0"))
    assert planned(the_plan) == {("ddp", "cuda", 1)}
    [left] = the_plan.left_out
    assert left.workers == 2 and "needs 2 GPUs" in left.reason and "has 1" in left.reason


def test_ddp_on_cuda_without_nccl_is_left_out(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    the_plan = plan(SweepConfig(engines="reference,ddp", devices="cuda", batch_sizes="full", seeds="0"))
    assert planned(the_plan) == {("reference", "cuda", 1)}
    assert "nccl" in the_plan.left_out[0].reason


def test_a_plan_left_with_nothing_is_one_clear_error(one_gpu, capsys):
    with pytest.raises(MinibatchError, match="nothing to run on this machine: sklearn on cuda"):
        plan(SweepConfig(engines="sklearn", devices="cuda", batch_sizes="full", seeds="0"))
    assert main(["run", "--engines", "sklearn", "--devices", "cuda", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to run" in err[0]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys, one_gpu):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer, "train_seeds", lambda *a, **k: pytest.fail("a dry run trained"))
    assert main(["run", "--dry-run", "--datasets", "wine", "--batch-sizes", "32", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "plan: 14 runs in 7 configurations" in out  # 4 engines on cpu, 3 on cuda; 2 seeds each
    assert "sklearn on cuda: 1 configuration (2 runs) left out: the sklearn engine trains on cpu only" in out
    assert "reference | wine | cuda | batch 32" in out and "dry run: nothing was trained or written" in out
    assert list(tmp_path.iterdir()) == []


def test_study_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["study", "--dry-run", "--batch-sizes", "8,full", "--lrs", "0.01", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "plan: 2 runs" in out and "2 timed passes" in out and "batch 8" in out and "batch full" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_job_that_fails_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    real = trainer.train_seeds

    def oom_at_batch_one(config, *args, **kwargs):
        if config.batch_size == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_seeds", oom_at_batch_one)
    monkeypatch.setattr(sweep_module, "calibrate", lambda devices, isolate=True: [
        {"workload": "test", "device": d, "step_s": 1e-3, "repeats_step_s": [1e-3], "torch_threads": 1}
        for d in devices])
    out = tmp_path / "sweep"
    assert main(["run", "--engines", "fast", "--devices", "cpu", "--batch-sizes", "1,full", "--seeds", "0",
                 "--epochs", "2", "--no-profile", "--no-isolate", "--quiet", "--out", str(out)]) == 0
    assert "CUDA out of memory. Tried to allocate 2.00 GiB (the sweep goes on)" in capsys.readouterr().err
    assert set(pd.read_csv(out / "runs.csv", dtype={"batch_spec": str})["batch_spec"]) == {"full"}
    env = json.loads((out / "env.json").read_text())
    assert env["status"] == "complete" and [f["run"].split(" | ")[3] for f in env["failed_runs"]] == ["batch 1"]


def test_a_sweep_whose_every_job_fails_fails(tmp_path, monkeypatch, capsys):
    def always(*args, **kwargs):
        raise RuntimeError("training worker died (exit code -9)")

    monkeypatch.setattr(trainer, "train_seeds", always)
    monkeypatch.setattr(sweep_module, "calibrate", lambda devices, isolate=True: [
        {"workload": "test", "device": d, "step_s": 1e-3, "repeats_step_s": [1e-3], "torch_threads": 1}
        for d in devices])
    out = tmp_path / "sweep"
    assert main(["run", "--engines", "fast", "--devices", "cpu", "--batch-sizes", "full", "--seeds", "0",
                 "--epochs", "2", "--no-isolate", "--quiet", "--out", str(out)]) == 2
    assert "every run of the sweep failed" in capsys.readouterr().err
    assert json.loads((out / "env.json").read_text())["status"].startswith("failed")


@pytest.mark.parametrize(("local_rank", "visible", "index"), [(0, 1, 0), (1, 2, 1), (1, 1, 0), (3, 1, 0)])
def test_a_rank_trains_on_its_own_gpu_whether_it_sees_one_or_all(local_rank, visible, index):
    # torchrun with CUDA_VISIBLE_DEVICES per rank: LOCAL_RANK 1 sees a single device, cuda:0
    assert cuda_index(local_rank, visible) == index


def test_a_rank_that_sees_too_few_gpus_is_a_clear_error():
    with pytest.raises(MinibatchError, match="LOCAL_RANK 2 sees 2 CUDA device"):
        cuda_index(2, 2)


def job(engine: str, batch: int | str, seeds=(0,)):
    return SimpleNamespace(config=RunConfig(engine=engine, batch_size=batch, seed=seeds[0]), seeds=tuple(seeds))


def test_remaining_time_uses_each_configurations_first_run():
    eta = RemainingTime()
    assert eta.estimate([job("reference", 1)]) is None  # nothing timed yet: no guess
    eta.record(job("reference", 1), 10.0)
    eta.record(job("reference", "full"), 2.0)
    eta.record(job("reference", 1, seeds=(1,)), 30.0)  # later seeds do not replace the first run's figure
    left = eta.estimate([job("reference", 1, seeds=(2,)), job("reference", "full", seeds=(1,))])
    assert left.seconds == pytest.approx(12.0) and left.untimed_configurations == 0
    # a multi-seed job counts each of its runs
    assert eta.estimate([job("reference", "full", seeds=(0, 1, 2))]).seconds == pytest.approx(6.0)


def test_an_untimed_configuration_is_estimated_from_its_engine_and_said_to_be():
    eta = RemainingTime()
    eta.record(job("reference", 1), 10.0)
    eta.record(job("reference", "full"), 2.0)
    eta.record(job("fast", 1), 1.0)
    left = eta.estimate([job("reference", 32), job("stacked", 32)])
    # reference at 32: the median of reference's timed configurations (6 s); stacked: of all (2 s)
    assert left.seconds == pytest.approx(8.0) and left.untimed_configurations == 2
    assert left.describe() == "about 8 s left, 2 configuration(s) not yet timed"


def test_durations_read_as_people_say_them():
    assert [format_duration(s) for s in (0.4, 59, 61, 3725)] == ["0 s", "59 s", "1 min 01 s", "1 h 02 min"]


def test_every_engine_is_in_the_registry_with_devices():
    assert all(get_engine(name).devices for name in engine_names())
