"""CUDA paths. Skipped, with the reason, where torch sees no GPU; they run for real where it does.
scripts/gpu-check.sh runs these and the wider checks of scripts/gpu_check.py in one command."""

import pytest
import torch

from minibatch_core import RunConfig, train
from minibatch_core.input.devices import resolve_device

# CPU and CUDA kernels round differently; after hundreds of Adam steps (batch 1: 178 per epoch) the two
# float32 trajectories drift apart by more than rounding, slowly. The first epoch agrees closely, the
# curve within a percent: a real defect (a step skipped, a wrong batch, an empty graph) is far larger.
FIRST_EPOCH_REL = 1e-3
CURVE_REL = 1e-2


def close_to_cpu(result, config: RunConfig) -> None:
    cpu = train(config.with_(device="cpu"), isolate=False)
    assert result.epoch_losses[0] == pytest.approx(cpu.epoch_losses[0], rel=FIRST_EPOCH_REL)
    assert result.epoch_losses == pytest.approx(cpu.epoch_losses, rel=CURVE_REL)


@pytest.mark.cuda
@pytest.mark.parametrize("batch_size", [1, 32, "full"])
def test_reference_trains_on_cuda_and_measures_device_memory(batch_size):
    config = RunConfig(batch_size=batch_size, epochs=3, seed=0, device="cuda")
    result = train(config)
    assert result.device.startswith("cuda")
    assert result.device_name == torch.cuda.get_device_name(0)
    assert result.peak_memory_bytes > 0  # growth of torch.cuda.max_memory_allocated over the run's start
    assert "max_memory_allocated" in result.memory_method
    assert result.cuda_workspace_bytes is not None
    assert all(r.time_s > 0 for r in result.records)
    close_to_cpu(result, config)


@pytest.mark.cuda
@pytest.mark.parametrize("engine", ["fast", "stacked"])
@pytest.mark.parametrize("batch_size", [1, 177, "full"])  # 177: a last batch of one row
def test_fast_and_stacked_train_through_the_trainer_on_cuda(engine, batch_size):
    # train() end to end: the pre-warm, the memory probe and (fast) the graph capture together
    config = RunConfig(engine=engine, batch_size=batch_size, epochs=3, seed=0, device="cuda")
    result = train(config, profile=True)
    assert all(r.time_s > 0 for r in result.records) and result.profile
    assert result.peak_memory_bytes > 0
    close_to_cpu(result, config)


@pytest.mark.cuda
def test_every_visible_gpu_trains_the_same_curve():
    # cuda:N >= 1 is where graphs captured on the wrong device stayed empty
    config = RunConfig(engine="fast", batch_size=32, epochs=3, seed=0)
    curves = {i: train(config.with_(device=f"cuda:{i}"), isolate=False).epoch_losses
              for i in range(torch.cuda.device_count())}
    for curve in curves.values():
        assert curve == pytest.approx(curves[0], rel=1e-5)
    close_to_cpu(train(config.with_(device=f"cuda:{torch.cuda.device_count() - 1}")), config)


@pytest.mark.cuda
def test_calibration_runs_on_cuda():
    from minibatch_core.running.calibration import measure_calibration

    calibration = measure_calibration("cuda", steps=20, repeats=3)
    assert calibration.step_s > 0 and calibration.device.startswith("cuda")


@pytest.mark.cuda
def test_auto_picks_cuda_and_a_missing_index_is_a_clear_error():
    assert resolve_device("auto").type == "cuda"
    from minibatch_core import MinibatchError

    with pytest.raises(MinibatchError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback; this machine has a GPU")
def test_auto_falls_back_to_cpu_without_a_gpu():
    assert resolve_device("auto").type == "cpu"
