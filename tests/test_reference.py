"""The reference engine is the lesson, bit for bit on CPU."""

import time

import pytest

from minibatch_core import RunConfig, train
from tests.lesson_literal import lesson_epoch_losses


@pytest.mark.parametrize("batch_size", [1, 32, "full"])
# seed 0 in the default run; the second seed (batch size 1 alone takes seconds) with the slow tests
@pytest.mark.parametrize("seed", [0, pytest.param(7, marks=pytest.mark.slow)])
def test_reference_equals_the_lesson_bit_for_bit(batch_size, seed):
    expected_epochs, expected_batches = lesson_epoch_losses(seed, None if batch_size == "full" else batch_size)
    result = train(
        RunConfig(dataset="wine", batch_size=batch_size, epochs=10, seed=seed, device="cpu",
                  engine="reference", record_batches=True),
        isolate=False,
    )
    assert result.epoch_losses == expected_epochs  # exact float equality, not approx
    got_batches = [b for r in result.records for b in r.batch_losses]
    assert got_batches == expected_batches


def test_isolated_worker_gives_the_same_curve_as_in_process():
    config = RunConfig(batch_size=32, epochs=5, seed=3)
    assert train(config).epoch_losses == train(config, isolate=False).epoch_losses


def test_same_seed_same_curve_different_seed_different_curve():
    a = train(RunConfig(batch_size=16, epochs=4, seed=1), isolate=False).epoch_losses
    b = train(RunConfig(batch_size=16, epochs=4, seed=1), isolate=False).epoch_losses
    c = train(RunConfig(batch_size=16, epochs=4, seed=2), isolate=False).epoch_losses
    assert a == b
    assert a != c


def test_batch_size_above_n_behaves_as_full_and_is_recorded_as_n():
    over = train(RunConfig(batch_size=1000, epochs=3), isolate=False)
    full = train(RunConfig(batch_size="full", epochs=3), isolate=False)
    assert over.batch_size == full.batch_size == 178
    assert over.batch_spec == "1000" and full.batch_spec == "full"
    assert over.epoch_losses == full.epoch_losses
    assert all(r.steps == 1 for r in over.records)


def test_result_records_what_one_run_measures():
    started = time.perf_counter()
    result = train(RunConfig(batch_size=32, epochs=3, seed=0))
    wall = time.perf_counter() - started
    assert len(result.records) == 3
    for i, r in enumerate(result.records, start=1):
        assert r.epoch == i
        assert r.steps == 6  # ceil(178 / 32)
        assert r.time_s > 0
        assert r.samples_per_s == pytest.approx(178 / r.time_s)
        assert 0.0 <= r.eval_accuracy <= 1.0
        assert r.eval_loss > 0
    # the trainer's clock runs inside the call: its epochs cannot add up to more than the call's wall time
    assert 0 < result.total_time_s < wall
    # 13-10-10-3: 283 float32 parameters; gradients alike; Adam keeps exp_avg and exp_avg_sq (+ step scalars)
    assert result.memory.parameters == 283 * 4
    assert result.memory.gradients == 283 * 4
    assert result.memory.optimizer_state >= 2 * 283 * 4
    # activations of a 32-row batch: Linear(10), ReLU(10), Linear(10), ReLU(10), Linear(3) outputs
    assert result.memory.activations == 32 * (10 + 10 + 10 + 10 + 3) * 4
    # the fresh worker's growth over training, not its resident set (torch alone: more than 100 MiB); the
    # batches' activations and Adam's state are allocated in it, so it grows
    assert 0 < result.peak_memory_bytes < 64 * 2**20 and "fresh worker" in result.memory_method


def test_to_frame_has_one_row_per_epoch():
    result = train(RunConfig(batch_size="full", epochs=4, seed=0), isolate=False)
    frame = result.to_frame()
    assert len(frame) == 4
    assert list(frame["epoch_loss"]) == result.epoch_losses
    assert frame["cumulative_time_s"].is_monotonic_increasing
    assert set(frame["batch_spec"]) == {"full"} and set(frame["batch_size"]) == {178}


def test_eval_metrics_are_recomputable_from_the_same_model_state():
    """Evaluation happens after each epoch on the whole dataset; the last one must match a manual eval
    of a model trained the lesson's way for the same epochs."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from minibatch_core.input.data import load_dataset
    from minibatch_core.input.models import build_mlp

    ds = load_dataset("wine")
    torch.manual_seed(5)
    model = build_mlp(13, (10, 10), 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    loader = DataLoader(TensorDataset(ds.X, ds.y), batch_size=32, shuffle=True)
    for _ in range(3):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    with torch.no_grad():
        logits = model(ds.X)
    result = train(RunConfig(batch_size=32, epochs=3, seed=5), isolate=False)
    assert result.records[-1].eval_loss == pytest.approx(F.cross_entropy(logits, ds.y).item(), rel=1e-6)
    assert result.records[-1].eval_accuracy == pytest.approx((logits.argmax(1) == ds.y).float().mean().item())
