"""CUDA paths. Skipped, with the reason, where torch sees no GPU; they run for real where it does."""

import pytest
import torch

from minibatch_core import RunConfig, train
from minibatch_core.input.devices import resolve_device


@pytest.mark.cuda
@pytest.mark.parametrize("batch_size", [1, 32, "full"])
def test_reference_trains_on_cuda_and_measures_device_memory(batch_size):
    result = train(RunConfig(batch_size=batch_size, epochs=3, seed=0, device="cuda"))
    assert result.device.startswith("cuda")
    assert result.device_name == torch.cuda.get_device_name(0)
    assert result.peak_memory_bytes > 0  # torch.cuda.max_memory_allocated
    assert "max_memory_allocated" in result.memory_method
    assert all(r.time_s > 0 for r in result.records)
    cpu = train(RunConfig(batch_size=batch_size, epochs=3, seed=0, device="cpu"), isolate=False)
    # same init and same shuffles; different kernels, so close but not necessarily bit-equal
    assert result.epoch_losses == pytest.approx(cpu.epoch_losses, rel=1e-3)


@pytest.mark.cuda
def test_auto_picks_cuda_and_a_missing_index_is_a_clear_error():
    assert resolve_device("auto").type == "cuda"
    from minibatch_core import MinibatchError

    with pytest.raises(MinibatchError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback; this machine has a GPU")
def test_auto_falls_back_to_cpu_without_a_gpu():
    assert resolve_device("auto").type == "cpu"
