"""``sklearn``: scikit-learn's ``MLPClassifier`` configured as the same experiment, as a peer.

Same hidden widths, ReLU, Adam with the same lr, betas and eps (or plain SGD: no momentum, constant
rate), ``alpha=0`` (no L2 term in the loss), the same batch size, ``shuffle=True``,
``random_state=seed``, no early stopping and no tolerance stop. Each ``run_epoch`` is one
``partial_fit``, which in scikit-learn (read in 1.9's ``_fit_stochastic``) is exactly one shuffled pass
over the data that appends the pass's loss to ``loss_curve_``: sum of batch loss x batch size over N,
the lesson's epoch loss. The random state is passed as a ``RandomState`` *instance*, because
``partial_fit`` re-creates its generator from ``random_state`` on every call: with an int every epoch
would reuse the first epoch's order. With the instance, the seed fixes the initialization and every
epoch draws a fresh order from the same stream. (``fit`` re-shuffles the previous epoch's order
instead of a fresh ``arange``; both are uniformly random orders, so from epoch 2 on the two differ
batch by batch, and agree exactly at batch size full.)

Honest differences from the torch engines (it is a peer, not a replica): scikit-learn's own
initialization (Glorot uniform from its RandomState) and shuffle, so its curves differ from
``reference``'s; its training loss clips probabilities to [eps, 1 - eps] (float32 eps), which caps a
sample's loss near 15.9 where the torch loss is unbounded; with two classes it uses one logistic
output unit instead of two softmax units. CPU only. Float32 input stays float32.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# at the top, not in make_classifier: the worker forkserver preloads this module, so each fresh run's
# worker then finds MLPClassifier imported (importing it there took 40 ms a run, 0.4 s of the default sweep)
from sklearn.neural_network import MLPClassifier

from minibatch_core.engines.base import Engine, EpochOutput, MemoryBreakdown, PhaseClock
from minibatch_core.engines.flat import ADAM_BETAS, ADAM_EPS
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.data import Dataset

NEVER = 2**31 - 1  # "no tolerance stop": more epochs without improvement than any run has
NON_FINITE = "non-finite parameter weights"  # scikit-learn's ValueError when the solver diverges


def make_classifier(config: RunConfig, batch_size: int, seed: int):
    """The MLPClassifier that runs the same experiment as the lesson's loop."""
    solver = {"solver": "adam", "beta_1": ADAM_BETAS[0], "beta_2": ADAM_BETAS[1], "epsilon": ADAM_EPS}
    if config.optimizer == "sgd":
        solver = {"solver": "sgd", "momentum": 0.0, "nesterovs_momentum": False,
                  "learning_rate": "constant"}
    return MLPClassifier(
        hidden_layer_sizes=tuple(config.hidden),
        activation="relu",
        learning_rate_init=config.lr,
        alpha=0.0,
        batch_size=batch_size,
        shuffle=True,
        random_state=np.random.RandomState(seed),
        early_stopping=False,
        tol=0.0,
        n_iter_no_change=NEVER,
        max_iter=config.epochs,
        **solver,
    )


class SklearnSession:
    def __init__(self, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int]):
        if device.type != "cpu":
            raise MinibatchError(f"engine 'sklearn' runs on the CPU only, not on {device}: use --device cpu")
        if len(seeds) != 1:
            raise ValueError("the sklearn engine trains one seed per run")
        from minibatch_core.engines import check_model_support

        check_model_support("sklearn", config.model, config.loss)
        if data.X.dim() != 2:
            raise MinibatchError(f"the sklearn engine needs a table (N, features), got inputs of shape "
                                 f"{tuple(data.X.shape)}: use --engine reference, fast, stacked or ddp")
        self.seeds = list(seeds)
        self.config = config
        self.batch_size = resolve_batch_size(config.batch_size, data.n_samples)
        self.X = data.X.numpy()  # float32: scikit-learn keeps float32 input in float32
        self.y = data.y.numpy()
        self.classes = np.arange(data.n_classes)
        self.clf = make_classifier(config, self.batch_size, self.seeds[0])
        self.steps = -(-data.n_samples // self.batch_size)

    def run_epoch(self) -> EpochOutput:
        # partial_fit warns when its own stopping rule would have fired (it never stops here); a diverging
        # solver's overflow warnings are noise: the divergence itself is recorded
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", category=UserWarning)
            try:
                self.clf.partial_fit(self.X, self.y, classes=self.classes)
            except ValueError as err:
                if NON_FINITE not in str(err):
                    raise
                # divergence is a result: the trainer records a NaN epoch and stops this run
                return EpochOutput([float("nan")], self.steps)
        return EpochOutput([float(self.clf.loss_curve_[-1])], self.steps)

    def logits(self, X: np.ndarray) -> torch.Tensor:
        """Pre-activation outputs, so evaluation uses the same cross-entropy as the torch engines.
        A single logistic unit z is the two-class logits (0, z)."""
        a = X
        with np.errstate(over="ignore", invalid="ignore"):  # diverged weights: NaN logits, recorded as such
            for w, b in zip(self.clf.coefs_[:-1], self.clf.intercepts_[:-1], strict=True):
                a = np.maximum(a @ w + b, 0)
            z = torch.from_numpy(np.ascontiguousarray(a @ self.clf.coefs_[-1] + self.clf.intercepts_[-1]))
        if z.shape[1] == 1:
            z = torch.cat([torch.zeros_like(z), z], 1)
        return z

    def evaluate(self) -> list[tuple[float, float]]:
        z = self.logits(self.X)
        y = torch.from_numpy(self.y)
        loss = float(F.cross_entropy(z.double(), y, reduction="sum")) / len(self.y)
        return [(loss, float((z.argmax(1) == y).double().mean()))]

    def memory(self) -> MemoryBreakdown:
        clf = self.clf
        params = [*clf.coefs_, *clf.intercepts_]
        opt = getattr(clf, "_optimizer", None)
        state = [*getattr(opt, "ms", []), *getattr(opt, "vs", []), *getattr(opt, "velocities", [])]
        units = [w.shape[1] for w in clf.coefs_]
        return MemoryBreakdown(
            parameters=sum(p.nbytes for p in params),
            gradients=sum(p.nbytes for p in params),  # _fit allocates one gradient per parameter
            optimizer_state=sum(np.asarray(s).nbytes for s in state),
            activations=self.batch_size * sum(units) * self.X.itemsize,
        )

    def profile(self, steps: int) -> dict[str, float] | None:
        """An approximation through scikit-learn's private step functions (``_forward_pass``,
        ``_backprop``, ``_optimizer.update_params``), as ``_fit_stochastic`` calls them. ``_backprop``
        repeats the forward pass, so backward = its time minus a forward pass timed just before.
        None where those private functions are absent (another scikit-learn version)."""
        clf = self.clf
        if not all(hasattr(clf, a) for a in ("_forward_pass", "_backprop", "_optimizer", "_label_binarizer")):
            return None
        from sklearn.utils import shuffle as sk_shuffle

        Y = clf._label_binarizer.transform(self.y).astype(self.X.dtype)
        n, bs = len(self.y), self.batch_size
        layer_units = [self.X.shape[1], *[w.shape[1] for w in clf.coefs_]]
        coef_grads = [np.empty_like(w) for w in clf.coefs_]
        intercept_grads = [np.empty_like(b) for b in clf.intercepts_]
        deltas: list = [None] * (len(layer_units) - 1)
        params = clf.coefs_ + clf.intercepts_
        rng = np.random.RandomState(self.seeds[0])
        phases = PhaseClock()
        clock = time.perf_counter
        while phases.steps < steps:
            order = sk_shuffle(np.arange(n), random_state=rng)
            for start in range(0, n, bs):
                if phases.steps >= steps:
                    break
                t0 = clock()
                idx = order[start:start + bs]
                xb, yb = self.X[idx], Y[idx]
                t1 = clock()
                clf._forward_pass([xb] + [None] * (len(layer_units) - 1))
                t2 = clock()
                clf._backprop(xb, yb, None, [xb] + [None] * (len(layer_units) - 1), deltas,
                              coef_grads, intercept_grads)
                t3 = clock()
                clf._optimizer.update_params(params, coef_grads + intercept_grads)
                t4 = clock()
                forward = t2 - t1
                phases.step(t1 - t0, forward, max(0.0, t3 - t2 - forward), t4 - t3)
        return phases.means()


ENGINE = Engine(
    name="sklearn",
    summary="scikit-learn MLPClassifier as the same experiment (Adam, alpha=0, same batch size, "
            "shuffle), one partial_fit per epoch; CPU only",
    start=SklearnSession,
    devices=("cpu",),
)
