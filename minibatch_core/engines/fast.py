"""``fast``: the lesson's math without the lesson loop's overhead.

Same model initialization and the same batches in the same order as ``reference`` (the DataLoader's
shuffle is reproduced by :mod:`.shuffle`), so per-epoch losses agree within float rounding. What it
drops is overhead:

- data resident on the device; per epoch one permuted copy of X (and of the one-hot targets), then
  every batch is a view of a row range, prepared once (no collation, no per-step slicing);
- analytic forward and backward for the MLP into preallocated buffers (``out=`` ops, no autograd
  graph, no allocation per step), every gradient written in place into one flat tensor;
- the optimizer is one fused kernel over that flat tensor (see :mod:`.flat`);
- no host synchronization per step: each step's logits land in an epoch-sized buffer and the epoch
  loss (and batch losses, when asked) is computed from it once, at the end of the epoch;
- on CUDA the step is captured in CUDA graphs (a chunk of full-size steps, one full step, and the last,
  shorter step) that read their rows through a device-side offset, so an epoch is a few replays.

``torch.compile`` is not used: at these sizes the step is a couple of dozen tiny kernels whose cost is
dispatch, which the out= formulation already minimizes; compiling would add tens of seconds of
start-up to every worker process.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from minibatch_core.engines.base import Engine, EpochOutput, is_mlp_kernel_case
from minibatch_core.engines.fast_graphs import StepGraphs
from minibatch_core.engines.flat_mlp import FlatMLPSession, Op
from minibatch_core.input.config import RunConfig
from minibatch_core.input.data import Dataset


class _StepBuffers:
    """Everything one step of a given batch size writes, allocated once."""

    def __init__(self, size: int, n_features: int, hidden: Sequence[int], n_classes: int,
                 device: torch.device) -> None:
        def buf(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        self.size = size
        self.inv = 1.0 / size
        self.hidden = [buf(size, w) for w in hidden]
        self.masks = [buf(size, w) for w in hidden]
        self.grad_hidden = [buf(size, w) for w in hidden]
        self.grad_logits = buf(size, n_classes)
        # graph mode: the step gathers its own rows through a device-side offset
        self.rows = torch.arange(size, device=device)
        self.index = buf(size, dtype=torch.int64)
        self.x = buf(size, n_features)
        self.targets = buf(size, n_classes)
        self.logits = buf(size, n_classes)

    def forward_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.hidden, self.logits))


class FastSession(FlatMLPSession, StepGraphs):
    def __init__(self, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int],
                 *, use_graphs: bool | None = None, indexed: bool | None = None) -> None:
        if len(seeds) != 1:
            raise ValueError("the fast engine trains one seed per run")
        self._start(config, data, device, seeds)
        n = self.n
        p = self.params
        self.W = [w[0] for w in p.weights]
        self.WT = [w.t() for w in self.W]
        self.b = [b[0] for b in p.biases]
        self.gW = [g[0] for g in p.grad_weights]
        self.b_hidden, self.WT_hidden = self.b[:-1], self.WT[:-1]
        self.gb = [g[0] for g in p.grad_biases]

        # epoch buffers: the permuted copies, and every step's logits (the loss is read from them)
        self.Xp = torch.zeros_like(self.X)
        self.targets = torch.zeros_like(self.neg_onehot)  # -onehot / batch size, permuted
        self.Z = torch.zeros(n, data.n_classes, device=device)
        self.yp = torch.zeros_like(self.y)
        full, rest = self.full_steps, self.rest
        self.row_scale = torch.full((n, 1), 1.0 / self.batch_size, device=device)
        if rest:
            self.row_scale[full * self.batch_size:] = 1.0 / rest
        widths = (data.n_features, config.hidden, data.n_classes, device)
        self.main = _StepBuffers(self.batch_size, *widths)
        self.last = _StepBuffers(rest, *widths) if rest else None
        bs = self.batch_size
        # (x, targets, logits) views of the epoch buffers for every step: made once, reused each epoch
        self.plan = [
            (self.Xp[s:s + size], self.targets[s:s + size], self.Z[s:s + size], buf)
            for s, size, buf in [(i * bs, bs, self.main) for i in range(full)]
            + ([(full * bs, rest, self.last)] if rest else [])
        ]
        self._layers = len(self.W)
        self._bind_backward()
        self.use_graphs = (device.type == "cuda") if use_graphs is None else use_graphs
        self.indexed = self.use_graphs if indexed is None else indexed
        if self.use_graphs and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.offset = torch.zeros((), dtype=torch.int64, device=device)
        self.graphs: list[tuple[torch.cuda.CUDAGraph, int]] = []
        if self.use_graphs:
            self._capture()

    # --- the step ------------------------------------------------------------------------------
    def _bind_backward(self) -> None:
        """Per buffer set, the backward pass as a list of (grad W, grad b, input, W, grad input,
        mask, activation) per layer from the top, so the hot loop does no index arithmetic."""
        for buf in filter(None, (self.main, self.last)):
            if buf.size == 1:
                # a batch of one: each layer's bias gradient IS its output gradient, so the backward
                # pass writes those straight into the flat gradient and no reduction is needed
                buf.grad_hidden = [g.view(1, -1) for g in self.gb[:-1]]
                buf.grad_logits = self.gb[-1].view(1, -1)
            grads = [*buf.grad_hidden, buf.grad_logits]
            inputs = [None, *buf.hidden]  # None: the batch's x, known per step
            buf.backward_plan = []
            for layer in reversed(range(self._layers)):
                below = layer - 1
                bias_grad = None if buf.size == 1 else self.gb[layer]
                buf.backward_plan.append((
                    self.gW[layer], bias_grad, grads[layer], grads[layer].t(), inputs[layer],
                    self.W[layer] if layer else None,
                    buf.grad_hidden[below] if layer else None,
                    buf.masks[below] if layer else None,
                    buf.hidden[below] if layer else None,
                ))

    def _forward(self, x: torch.Tensor, logits: torch.Tensor, buf: _StepBuffers) -> None:
        addmm, relu_ = torch.addmm, torch.relu_
        a = x
        for b, wt, h in zip(self.b_hidden, self.WT_hidden, buf.hidden, strict=True):
            addmm(b, a, wt, out=h)
            relu_(h)
            a = h
        addmm(self.b[-1], a, self.WT[-1], out=logits)

    def _backward(self, x: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor,
                  buf: _StepBuffers) -> None:
        mm, tsum, sign = torch.mm, torch.sum, torch.sign
        dz = buf.grad_logits
        # d(mean CE)/d(logits) = (softmax - onehot) / B; targets already hold -onehot / B
        torch.softmax(logits, 1, out=dz)
        torch.add(targets, dz, alpha=buf.inv, out=dz)
        for gw, gb, d, d_t, a, w, d_below, mask, h_below in buf.backward_plan:
            mm(d_t, x if a is None else a, out=gw)
            if gb is not None:
                tsum(d, 0, out=gb)
            if w is not None:
                mm(d, w, out=d_below)
                sign(h_below, out=mask)  # ReLU's derivative: h >= 0 after ReLU, so sign is 0 or 1
                d_below.mul_(mask)

    # --- epochs --------------------------------------------------------------------------------
    def _prepare_epoch(self) -> None:
        perm = self.shuffles[0].next_permutation().to(self.device)
        torch.index_select(self.X, 0, perm, out=self.Xp)
        torch.index_select(self.neg_onehot, 0, perm, out=self.targets)
        self.targets.mul_(self.row_scale)
        torch.index_select(self.y, 0, perm, out=self.yp)
        self.offset.zero_()

    def _gather(self, buf: _StepBuffers) -> None:
        """Graph mode: this step's rows, read through the device-side offset."""
        torch.add(buf.rows, self.offset, out=buf.index)
        torch.index_select(self.Xp, 0, buf.index, out=buf.x)
        torch.index_select(self.targets, 0, buf.index, out=buf.targets)

    def _indexed_step(self, buf: _StepBuffers) -> None:
        self._gather(buf)
        self._forward(buf.x, buf.logits, buf)
        self._backward(buf.x, buf.targets, buf.logits, buf)
        self.optimizer.step()
        self.Z.index_copy_(0, buf.index, buf.logits)
        self.offset.add_(buf.size)

    def _indexed_schedule(self) -> list[tuple[_StepBuffers, int]]:
        return [(self.main, self.full_steps)] + ([(self.last, 1)] if self.last else [])

    def _segment_step(self, j: int) -> None:
        """Step j of the current epoch (studies train in segments; see :mod:`.segments`)."""
        if self.indexed:
            self._indexed_step(self.main if j < self.full_steps else self.last)
            return
        x, targets, logits, buf = self.plan[j]
        self._forward(x, logits, buf)
        self._backward(x, targets, logits, buf)
        self.optimizer.step()

    def _run_epoch(self) -> EpochOutput:
        self._prepare_epoch()
        if self.graphs:
            for graph, replays in self.graphs:
                for _ in range(replays):
                    graph.replay()
        elif self.indexed:
            for buf, count in self._indexed_schedule():
                for _ in range(count):
                    self._indexed_step(buf)
        else:
            forward, backward, step = self._forward, self._backward, self.optimizer.step
            for x, targets, logits, buf in self.plan:
                forward(x, logits, buf)
                backward(x, targets, logits, buf)
                step()
        return self._epoch_output()

    def _epoch_output(self) -> EpochOutput:
        # per-sample losses of the logits each step saw; summed as the lesson sums batch loss x size
        per_sample = F.cross_entropy(self.Z, self.yp, reduction="none").double()
        loss = float(per_sample.sum()) / self.n
        steps = self.full_steps + (1 if self.rest else 0)
        batch_losses = None
        if self.config.record_batches:
            cut = self.full_steps * self.batch_size
            means = per_sample[:cut].view(self.full_steps, self.batch_size).mean(1).tolist()
            if self.rest:
                means.append(float(per_sample[cut:].mean()))
            batch_losses = [means]
        return EpochOutput([loss], steps, batch_losses)

    # --- profile and memory ----------------------------------------------------------------------
    def _step_phases(self, j: int) -> tuple[Op, Op, Op, Op]:
        """The eager step. On CUDA it gathers its rows as the graphs do (timed as data); replayed graphs
        run the same kernels without launch overhead, so their step is shorter than these phases' sum."""
        x, targets, logits, buf = self.plan[j]

        def gather() -> None:
            self._gather(buf)
            self.offset.add_(buf.size)

        data: Op = lambda: None  # noqa: E731 - CPU: the rows are views of the epoch's permuted copy
        if self.device.type == "cuda":
            data, x, targets, logits = gather, buf.x, buf.targets, buf.logits
        return (data, lambda: self._forward(x, logits, buf), lambda: self._backward(x, targets, logits, buf),
                self.optimizer.step)

    def _activation_bytes(self) -> int:
        return self.main.forward_bytes()


class FastStart(FastSession):
    """The engine's ``start``: the MLP kernels where they apply (the lesson's model on a table, classes),
    else the generic path for any module (:mod:`.generic`). A subclass only so that what a session class
    offers (segments for studies, ``use_graphs``) is visible on ``start`` as on the sessions it returns."""

    def __new__(cls, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int], *,
                use_graphs: bool | None = None, indexed: bool | None = None):
        if is_mlp_kernel_case(config, data):
            return FastSession(config, data, device, seeds, use_graphs=use_graphs, indexed=indexed)
        from minibatch_core.engines.generic import GenericFastSession

        return GenericFastSession(config, data, device, seeds, use_graphs=use_graphs)


ENGINE = Engine(
    name="fast",
    summary="same math, batches and init as reference; data resident, analytic backward into "
            "preallocated buffers, one fused optimizer kernel, no per-step sync; CUDA graphs on GPU; any "
            "other model: batches by index, fused Adam, a CUDA graph of the step",
    start=FastStart,
)
