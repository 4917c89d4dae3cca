"""The fast, stacked and sklearn engines: agreement with the reference, the shuffle, the peer's setup.

Correctness only; their speed is measured in bench/test_bench_engines.py.
"""

from __future__ import annotations

import math
import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from minibatch_core import RunConfig
from minibatch_core.engines import engine_names, get_engine
from minibatch_core.engines.base import PROFILE_PHASES
from minibatch_core.engines.fast import FastSession
from minibatch_core.engines.flat import SMALL_STEP_WORK, threads_for
from minibatch_core.engines.reference import ReferenceSession
from minibatch_core.engines.shuffle import LoaderShuffle
from minibatch_core.engines.sklearn_peer import SklearnSession, make_classifier
from minibatch_core.engines.stacked import StackedSession
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import resolve_batch_size
from minibatch_core.input.models import build_mlp
from minibatch_core.running.trainer import load_for, train, train_seeds

CPU = torch.device("cpu")
REL = 1e-4


@pytest.fixture(scope="module")
def wine():
    return load_for(RunConfig())


def run(session, epochs):
    return [session.run_epoch() for _ in range(epochs)]


def assert_close(a: float, b: float, rel: float = REL) -> None:
    assert math.isfinite(a) and math.isfinite(b)
    assert abs(a - b) <= rel * max(abs(a), abs(b)), (a, b)


def test_engines_registered_in_order():
    # the README's engine table, in its order; the multi-seed engine is the one documented as training
    # several seeds in one pass
    assert engine_names() == ["reference", "fast", "stacked", "sklearn", "ddp"]
    assert [e for e in engine_names() if get_engine(e).multi_seed] == ["stacked"]


@pytest.mark.parametrize("batch_size", [1, 32, "full"])
def test_loader_shuffle_is_the_dataloaders_order(wine, batch_size):
    n = wine.n_samples
    bs = resolve_batch_size(batch_size, n)
    torch.manual_seed(11)
    build_mlp(wine.n_features, (10, 10), wine.n_classes)
    shuffle = LoaderShuffle(n)
    state = torch.get_rng_state()
    ours = [shuffle.next_permutation() for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), state)  # it never touches the global RNG

    torch.manual_seed(11)
    build_mlp(wine.n_features, (10, 10), wine.n_classes)
    loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=bs, shuffle=True)
    for epoch in range(3):
        batches = [b for (b,) in loader]
        assert [len(b) for b in batches] == [len(b) for b in ours[epoch].split(bs)]
        assert torch.equal(torch.cat(batches), ours[epoch])
    assert not torch.equal(ours[0], ours[1])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("batch_size", [1, 32, "full"])
def test_fast_matches_reference(wine, batch_size, optimizer):
    config = RunConfig(batch_size=batch_size, optimizer=optimizer, record_batches=True)
    ref = run(ReferenceSession(config, wine, CPU, [3]), 3)
    ref_session, fast_session = ReferenceSession(config, wine, CPU, [3]), FastSession(config, wine, CPU, [3])
    ref, fast = run(ref_session, 3), run(fast_session, 3)
    for r, f in zip(ref, fast, strict=True):
        assert r.steps == f.steps
        assert_close(r.losses[0], f.losses[0])
        assert len(r.batch_losses[0]) == len(f.batch_losses[0])
        for a, b in zip(r.batch_losses[0], f.batch_losses[0], strict=True):
            assert abs(a - b) <= REL * max(1.0, abs(a))
    # the trained models agree too: the same evaluation loss, the same predictions
    (ref_loss, ref_accuracy), (fast_loss, fast_accuracy) = ref_session.evaluate()[0], fast_session.evaluate()[0]
    assert_close(ref_loss, fast_loss)
    assert fast_accuracy == ref_accuracy


@pytest.mark.parametrize("hidden", [(7,), (16, 8, 4)])
def test_fast_matches_reference_other_widths_and_a_short_last_batch(wine, hidden):
    config = RunConfig(batch_size=50, hidden=hidden)  # 178 = 3 x 50 + 28
    ref = run(ReferenceSession(config, wine, CPU, [1]), 3)
    fast = run(FastSession(config, wine, CPU, [1]), 3)
    for r, f in zip(ref, fast, strict=True):
        assert r.steps == f.steps == 4
        assert_close(r.losses[0], f.losses[0])


@pytest.mark.parametrize("batch_size", [1, 50])
def test_graph_mode_step_agrees_when_run_eagerly(wine, batch_size):
    """The device-indexed step the CUDA graphs capture, run eagerly on the CPU, trains the same."""
    config = RunConfig(batch_size=batch_size)
    plain = run(FastSession(config, wine, CPU, [2]), 2)
    indexed = run(FastSession(config, wine, CPU, [2], indexed=True), 2)
    for a, b in zip(plain, indexed, strict=True):
        assert_close(a.losses[0], b.losses[0], 1e-5)


def test_fast_is_deterministic(wine):
    config = RunConfig(batch_size=32)
    a = [o.losses[0] for o in run(FastSession(config, wine, CPU, [4]), 2)]
    b = [o.losses[0] for o in run(FastSession(config, wine, CPU, [4]), 2)]
    assert a == b


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("batch_size", [1, 32, "full"])
def test_stacked_matches_separate_fast_runs(wine, batch_size, optimizer):
    seeds = [0, 1, 5]
    config = RunConfig(batch_size=batch_size, optimizer=optimizer, record_batches=True)
    stacked_session = StackedSession(config, wine, CPU, seeds)
    stacked = run(stacked_session, 3)
    fasts = [FastSession(config, wine, CPU, [s]) for s in seeds]
    for k, session in enumerate(fasts):
        for s_out, f_out in zip(stacked, run(session, 3), strict=True):
            assert s_out.steps == f_out.steps
            assert_close(s_out.losses[k], f_out.losses[0])
            assert len(s_out.batch_losses[k]) == len(f_out.batch_losses[0])
        assert_close(stacked_session.evaluate()[k][0], session.evaluate()[0][0])
    assert len({round(o, 6) for o in stacked[-1].losses}) == len(seeds)  # replicas are independent


def test_stacked_through_the_trainer_gives_one_result_per_seed():
    config = RunConfig(engine="stacked", batch_size=32, epochs=2)
    results = train_seeds(config, [0, 1], isolate=False)
    assert [r.seed for r in results] == [0, 1]
    assert all(r.replicas == 2 for r in results)
    for r in results:
        single = train(config.with_(engine="fast", seed=r.seed), isolate=False)
        for a, b in zip(r.epoch_losses, single.epoch_losses, strict=True):
            assert_close(a, b)


def lesson_mlp_parameters(n_features: int, hidden: tuple[int, ...], n_classes: int) -> int:
    """Weights and biases of the MLP, counted from its layer shapes (not from any engine's tensors)."""
    widths = [n_features, *hidden, n_classes]
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(widths))


@pytest.mark.parametrize("shape, expected", [
    ((13, (10, 10), 3), 283),  # the lesson's: 13*10+10 + 10*10+10 + 10*3+3
    ((4, (5,), 2), 37),  # 4*5+5 + 5*2+2
    ((20, (8, 6, 4), 2), 260),  # 20*8+8 + 8*6+6 + 6*4+4 + 4*2+2
])
def test_the_package_mlp_has_the_counted_parameters(shape, expected):
    n_in, hidden, n_out = shape
    assert sum(p.numel() for p in build_mlp(n_in, hidden, n_out).parameters()) == expected
    assert lesson_mlp_parameters(n_in, hidden, n_out) == expected  # the memory test below relies on it


@pytest.mark.parametrize("engine", engine_names())
def test_profile_and_memory(wine, engine):
    """Every registered engine splits its step and counts its memory from its own tensors; the counts are
    checked against the float32 bytes of the lesson's MLP (x the models a multi-seed engine trains)."""
    if get_engine(engine).distributed:
        pytest.skip("a distributed engine's session needs its launched process group: tests/test_ddp.py checks "
                    "its profile and memory through the launcher")
    config = RunConfig(batch_size=32, engine=engine)
    seeds = [0, 1] if get_engine(engine).multi_seed else [0]
    session = get_engine(engine).start(config, wine, CPU, seeds)
    session.run_epoch()
    split = session.profile(8)
    assert split is not None and set(split) == set(PROFILE_PHASES)
    assert all(v >= 0 for v in split.values()) and sum(split.values()) > 0
    mem = session.memory()
    model_bytes = 4 * lesson_mlp_parameters(wine.n_features, (10, 10), wine.n_classes) * len(seeds)
    assert mem.parameters == model_bytes
    assert mem.gradients == model_bytes  # one gradient per parameter, float32
    # Adam's two moments per parameter, plus at most a step counter per tensor: not a third copy
    assert 2 * model_bytes <= mem.optimizer_state < 3 * model_bytes
    assert mem.activations >= 4 * 32 * (10 + 10 + wine.n_classes) * len(seeds)


# --- sklearn ---------------------------------------------------------------------------------------

def test_sklearn_is_configured_as_the_same_experiment(wine):
    config = RunConfig(batch_size=32, lr=0.01, hidden=(12, 6))
    params = make_classifier(config, 32, 0).get_params()
    expected = {
        "hidden_layer_sizes": (12, 6), "activation": "relu", "solver": "adam", "learning_rate_init": 0.01,
        "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "alpha": 0.0, "batch_size": 32, "shuffle": True,
        "early_stopping": False,
    }
    assert {k: params[k] for k in expected} == expected
    sgd = make_classifier(config.with_(optimizer="sgd"), 32, 0).get_params()
    assert (sgd["solver"], sgd["momentum"], sgd["nesterovs_momentum"], sgd["learning_rate"]) == (
        "sgd", 0.0, False, "constant")
    session = SklearnSession(config, wine, CPU, [0])
    session.run_epoch()
    assert session.clf.coefs_[0].dtype == np.float32  # float32 input stays float32


def test_sklearn_epoch_loss_is_the_lessons_epoch_loss():
    """At batch size full the epoch loss is the mean cross-entropy of the model before the step over
    all rows: it must equal the engine's own evaluation just before the epoch (standardized iris, so
    no probability is small enough for scikit-learn's clipping to matter)."""
    config = RunConfig(dataset="iris", scale="standard", batch_size="full")
    data = load_for(config)
    session = SklearnSession(config, data, CPU, [0])
    session.run_epoch()
    for _ in range(3):
        before = session.evaluate()[0][0]
        assert_close(session.run_epoch().losses[0], before, 1e-5)


def test_sklearn_epochs_are_one_pass_each_like_fit():
    config = RunConfig(batch_size="full", epochs=4)
    data = load_for(config)
    session = SklearnSession(config, data, CPU, [0])
    ours = [o.losses[0] for o in run(session, 4)]
    clf = make_classifier(config, data.n_samples, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(data.X.numpy(), data.y.numpy())
    assert ours == pytest.approx(clf.loss_curve_, rel=1e-12)
    assert session.clf.n_iter_ == 1 and len(session.clf.loss_curve_) == 4


def test_sklearn_epochs_draw_fresh_orders(wine):
    """With an int random_state every partial_fit would repeat the first epoch's order."""
    config = RunConfig(batch_size=1)
    session = SklearnSession(config, wine, CPU, [0])
    rng = session.clf.random_state

    def position():
        _, key, pos, *_ = rng.get_state()
        return key.copy(), pos

    session.run_epoch()
    key, pos = position()
    session.run_epoch()
    key2, pos2 = position()
    assert pos != pos2 or not np.array_equal(key, key2)


def test_sklearn_on_cuda_is_a_one_line_error(wine):
    with pytest.raises(MinibatchError, match="CPU only") as err:
        SklearnSession(RunConfig(), wine, torch.device("cuda"), [0])
    assert "\n" not in str(err.value)


# --- CUDA ------------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("batch_size", [1, 50, "full"])
def test_fast_cuda_graphs_match_cpu(wine, batch_size):
    config = RunConfig(batch_size=batch_size, device="cuda")
    cuda = torch.device("cuda")
    graphs = FastSession(config, wine, cuda, [0])
    assert graphs.graphs
    eager = FastSession(config, wine, cuda, [0], use_graphs=False, indexed=False)
    cpu = FastSession(config, wine, CPU, [0])
    for g, e, c in zip(run(graphs, 3), run(eager, 3), run(cpu, 3), strict=True):
        assert g.steps == c.steps
        assert_close(g.losses[0], c.losses[0], 1e-3)
        assert_close(g.losses[0], e.losses[0], 1e-4)
    assert graphs.profile(5) is not None


@pytest.mark.cuda
def test_stacked_and_reference_on_cuda(wine):
    config = RunConfig(batch_size=32, device="cuda")
    cuda = torch.device("cuda")
    stacked = run(StackedSession(config, wine, cuda, [0, 1]), 2)
    ref = run(ReferenceSession(config, wine, cuda, [1]), 2)
    for s, r in zip(stacked, ref, strict=True):
        assert_close(s.losses[1], r.losses[0], 1e-3)


def test_tiny_steps_run_on_one_thread_and_the_callers_setting_comes_back():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with threads_for(SMALL_STEP_WORK - 1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with threads_for(SMALL_STEP_WORK):
            assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), threads_for(1):
            raise RuntimeError("a failed epoch")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

