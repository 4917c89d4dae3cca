"""``stacked``: K seeds trained in one pass, as K independent replicas with stacked weights.

Replica k is exactly what ``fast`` (and ``reference``) trains for seed k: its own initialization
(``torch.manual_seed(seed)`` then ``build_mlp``) and its own DataLoader shuffle. The replicas share
nothing but the kernels: weights are stacked (K, out, in), every layer is one batched matmul
(``baddbmm``/``bmm``) over the replicas, each step gathers every replica's own rows with one
``index_select``, and one fused optimizer kernel updates all replicas' parameters (Adam is elementwise
and all replicas are at the same step, so this is K independent Adams). One pass yields K loss curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F

from minibatch_core.engines.base import EVAL_CHUNK, Engine, EpochOutput, is_mlp_kernel_case
from minibatch_core.engines.flat_mlp import FlatMLPSession, Op
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import Dataset


class _StackedBuffers:
    """One step's working tensors for K replicas and a batch of ``size`` rows each."""

    def __init__(self, k: int, size: int, n_features: int, hidden: Sequence[int],
                 device: torch.device) -> None:
        def buf(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, device=device)

        self.size = size
        self.inv = 1.0 / size
        self.x = buf(k, size, n_features)
        self.x_rows = self.x.view(k * size, n_features)  # index_select writes rows here
        self.hidden = [buf(k, size, w) for w in hidden]
        self.masks = [buf(k, size, w) for w in hidden]
        self.grad_hidden = [buf(k, size, w) for w in hidden]
        self.backward_ops: list[Op] = []

    def forward_bytes(self, logits_per_step: int) -> int:
        return sum(t.numel() * t.element_size() for t in self.hidden) + logits_per_step


class StackedSession(FlatMLPSession):
    def __init__(self, config: RunConfig, data: Dataset, device: torch.device,
                 seeds: Sequence[int]) -> None:
        if not seeds:
            raise ValueError("the stacked engine needs at least one seed")
        self._start(config, data, device, seeds)
        k, c, bs = self.k, data.n_classes, self.batch_size
        p = self.params
        self.W = p.weights
        self.WT = [w.transpose(1, 2) for w in p.weights]
        self.b = [b.unsqueeze(1) for b in p.biases]  # (K, 1, out): broadcast over the batch rows

        full, rest = self.full_steps, self.rest
        # epoch buffers in step-major layout, so that each step's slice is one contiguous block
        self.index_main = torch.zeros(full, k, bs, dtype=torch.int64, device=device)
        self.targets_main = torch.zeros(full, k, bs, c, device=device)  # -onehot / B
        self.Z_main = torch.zeros(full, k, bs, c, device=device)
        self.index_last = torch.zeros(k, rest, dtype=torch.int64, device=device)
        self.targets_last = torch.zeros(k, rest, c, device=device)
        self.Z_last = torch.zeros(k, rest, c, device=device)
        self.y_main = torch.zeros(full, k, bs, dtype=torch.int64, device=device)
        self.y_last = torch.zeros(k, rest, dtype=torch.int64, device=device)

        self.main = _StackedBuffers(k, bs, data.n_features, config.hidden, device)
        self.last = _StackedBuffers(k, rest, data.n_features, config.hidden, device) if rest else None
        for buf in filter(None, (self.main, self.last)):
            self._bind_backward(buf, c)
        # every step as three lists of bound kernel calls (gather, forward, backward): all tensors
        # are fixed buffers or fixed views of the epoch buffers, so an epoch only calls them
        self.plan = [self._bind_step(self.index_main[j].view(-1), self.targets_main[j], self.Z_main[j],
                                     self.main) for j in range(full)]
        if self.last is not None:
            self.plan.append(self._bind_step(self.index_last.view(-1), self.targets_last, self.Z_last,
                                             self.last))
        self._rebind_optimizer()

    def _rebind_optimizer(self) -> None:
        step = self.optimizer.step
        self.epoch_ops = [op for gather, forward, backward in self.plan
                          for op in (*gather, *forward, *backward, step)]

    def _bind_backward(self, buf: _StackedBuffers, n_classes: int) -> None:
        """The backward pass below the logits' gradient, as bound kernel calls on fixed buffers."""
        k = self.k
        gbs = self.params.grad_biases
        if buf.size == 1:
            # a batch of one: each layer's bias gradient IS its output gradient, so the backward
            # pass writes those straight into the flat gradient and no reduction is needed
            buf.grad_hidden = [g.view(k, 1, -1) for g in gbs[:-1]]
            buf.grad_logits = gbs[-1].view(k, 1, -1)
        else:
            buf.grad_logits = torch.zeros(k, buf.size, n_classes, device=self.device)
        grads = [*buf.grad_hidden, buf.grad_logits]
        inputs = [buf.x, *buf.hidden]
        ops = buf.backward_ops
        for layer in reversed(range(len(self.W))):
            d, a = grads[layer], inputs[layer]
            gw = self.params.grad_weights[layer]
            if buf.size == 1:
                # an outer product per replica; the batched matmul's small-matrix path is slower here
                ops.append(partial(torch.mul, d.view(k, -1, 1), a.view(k, 1, -1), out=gw))
            else:
                ops.append(partial(torch.bmm, d.transpose(1, 2), a, out=gw))
                ops.append(partial(torch.sum, d, 1, out=gbs[layer]))
            if layer:
                below, mask, h = buf.grad_hidden[layer - 1], buf.masks[layer - 1], buf.hidden[layer - 1]
                ops.append(partial(torch.bmm, d, self.W[layer], out=below))
                ops.append(partial(torch.sign, h, out=mask))  # ReLU's derivative (h >= 0 after ReLU)
                ops.append(partial(below.mul_, mask))

    def _bind_step(self, index: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor,
                   buf: _StackedBuffers) -> tuple[list[Op], list[Op], list[Op]]:
        gather = [partial(torch.index_select, self.X, 0, index, out=buf.x_rows)]
        forward: list[Op] = []
        a = buf.x
        for b, wt, h in zip(self.b[:-1], self.WT[:-1], buf.hidden, strict=True):
            forward += [partial(torch.baddbmm, b, a, wt, out=h), partial(torch.relu_, h)]
            a = h
        forward.append(partial(torch.baddbmm, self.b[-1], a, self.WT[-1], out=logits))
        dz = buf.grad_logits
        backward = [
            partial(torch.softmax, logits, 2, out=dz),
            partial(torch.add, targets, dz, alpha=buf.inv, out=dz),  # (softmax - onehot) / B
            *buf.backward_ops,
        ]
        return gather, forward, backward

    # --- epochs --------------------------------------------------------------------------------
    def _prepare_epoch(self) -> None:
        perms = torch.stack([s.next_permutation() for s in self.shuffles]).to(self.device)  # (K, N)
        full, bs, c = self.full_steps, self.batch_size, self.neg_onehot.shape[1]
        self.index_main.copy_(perms[:, :full * bs].view(self.k, full, bs).transpose(0, 1))
        torch.index_select(self.neg_onehot, 0, self.index_main.view(-1), out=self.targets_main.view(-1, c))
        self.targets_main.mul_(1.0 / bs)
        torch.index_select(self.y, 0, self.index_main.view(-1), out=self.y_main.view(-1))
        if self.rest:
            self.index_last.copy_(perms[:, full * bs:])
            torch.index_select(self.neg_onehot, 0, self.index_last.view(-1),
                               out=self.targets_last.view(-1, c))
            self.targets_last.mul_(1.0 / self.rest)
            torch.index_select(self.y, 0, self.index_last.view(-1), out=self.y_last.view(-1))

    def _run_epoch(self) -> EpochOutput:
        self._prepare_epoch()
        for op in self.epoch_ops:
            op()
        return self._epoch_output()

    def _epoch_output(self) -> EpochOutput:
        c = self.neg_onehot.shape[1]
        per_sample = F.cross_entropy(self.Z_main.view(-1, c), self.y_main.view(-1),
                                     reduction="none").double().view(self.full_steps, self.k, -1)
        totals = per_sample.sum((0, 2))
        batch_means = per_sample.mean(2).t()  # (K, steps)
        if self.rest:
            last = F.cross_entropy(self.Z_last.view(-1, c), self.y_last.view(-1),
                                   reduction="none").double().view(self.k, self.rest)
            totals = totals + last.sum(1)
            batch_means = torch.cat([batch_means, last.mean(1, keepdim=True)], 1)
        losses = (totals / self.n).tolist()
        batch_losses = batch_means.tolist() if self.config.record_batches else None
        return EpochOutput(losses, len(self.plan), batch_losses)

    # --- evaluation, memory, profile -----------------------------------------------------------
    @torch.no_grad()
    def evaluate_on(self, X: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
        """(loss, accuracy) per replica on (X, y), every replica in one batched forward pass (a study
        checks its target often; one pass per replica would cost K times the kernel launches)."""
        X, y = X.to(self.device), y.to(self.device)
        n, k = X.shape[0], self.k
        losses = torch.zeros(k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(k, dtype=torch.int64, device=self.device)
        chunk = max(1, EVAL_CHUNK // k)
        for start in range(0, n, chunk):
            a = X[start:start + chunk].unsqueeze(0).expand(k, -1, -1)
            yb = y[start:start + chunk]
            for b, wt in zip(self.b[:-1], self.WT[:-1], strict=True):
                a = torch.relu(torch.baddbmm(b, a, wt))
            logits = torch.baddbmm(self.b[-1], a, self.WT[-1])  # (K, rows, classes)
            target = yb.unsqueeze(0).expand(k, -1)
            losses += F.cross_entropy(logits.transpose(1, 2), target, reduction="none").double().sum(1)
            correct += (logits.argmax(2) == target).sum(1)
        return [(float(loss) / n, int(c) / n) for loss, c in zip(losses.tolist(), correct.tolist(), strict=True)]

    def _activation_bytes(self) -> int:
        logits = self.Z_main[0]
        return self.main.forward_bytes(logits.numel() * logits.element_size())

    def _step_phases(self, j: int) -> tuple[Op, Op, Op, Op]:
        """Each step's own gather is its data phase (the per-epoch preparation is timed apart)."""
        gather, forward, backward = (partial(_call_all, ops) for ops in self.plan[j])
        return gather, forward, backward, self.optimizer.step


def _call_all(ops: Sequence[Op]) -> None:
    for op in ops:
        op()


class StackedStart(StackedSession):
    """The engine's ``start``: the MLP kernels where they apply, else ``torch.func`` over any module
    (:mod:`.stacked_generic`). A subclass only so that the session's segment methods are visible on it."""

    def __new__(cls, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int]):
        if is_mlp_kernel_case(config, data):
            return StackedSession(config, data, device, seeds)
        from minibatch_core.engines.stacked_generic import GenericStackedSession

        return GenericStackedSession(config, data, device, seeds)


ENGINE = Engine(
    name="stacked",
    summary="K seeds in one pass: stacked weights, batched matmuls, each replica its own init and "
            "shuffle (each equals a separate fast run)",
    start=StackedStart,
    multi_seed=True,
)
