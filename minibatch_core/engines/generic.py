"""``fast`` for any ``nn.Module``: the reference loop's math without the DataLoader.

What it keeps from ``reference``: the model as the factory builds it (same seed, same initial weights),
the same per-batch loss, the same batches in the same order. The DataLoader's shuffle is reproduced by
drawing the same two numbers from the *global* RNG at the start of each epoch (:mod:`.shuffle`), so a
model that draws random numbers of its own (dropout) sees the same stream as under ``reference``.

What it drops: per-sample collation (the data lives on the device, permuted once per epoch; every batch is
a view of a row range), a host sync per step (batch losses are read once per epoch), and the per-parameter
Python loop of the optimizer. On CPU every parameter and gradient is a view into one flat tensor
(:func:`flatten_parameters`), so zeroing the gradients is one kernel and Adam is torch.optim.Adam's own
single-tensor formulas run once over that tensor (:class:`.flat.FlatAdam` with ``exact``): bit for bit the
reference engine's arithmetic (measured: identical epoch losses after 3,594 steps of the conv net at batch
1), in seven kernels a step instead of seven per parameter. On CUDA torch's fused Adam. On CUDA, with
static shapes and no randomness in the model, the whole step (forward, backward, optimizer) is captured
in a CUDA graph and replayed; the last shorter batch runs eagerly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import optim

from minibatch_core.engines.base import (
    EpochOutput,
    MemoryBreakdown,
    PhaseClock,
    batch_loss_fn,
    evaluate_logits,
    make_model,
)
from minibatch_core.engines.flat import flat_optimizer
from minibatch_core.engines.membytes import activation_bytes, module_memory, tensor_bytes
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.data import Dataset
from minibatch_core.input.devices import synchronize
from minibatch_core.input.models import has_randomness, n_parameters


def global_permutation(n: int) -> torch.Tensor:
    """The permutation ``iter(DataLoader(shuffle=True))`` draws, drawn the same way from the global RNG:
    the iterator's base seed, then the sampler's seed, then ``randperm`` on a generator seeded with it."""
    torch.empty((), dtype=torch.int64).random_()  # the loader iterator's base seed
    sampler = torch.Generator()
    sampler.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
    return torch.randperm(n, generator=sampler)


def fast_optimizer(name: str, params, lr: float, capturable: bool = False) -> optim.Optimizer:
    """torch's optimizer with the lesson's settings (CUDA): one fused launch per step, capturable when the
    step is a CUDA graph."""
    if name != "adam":
        return optim.SGD(params, lr=lr, foreach=True)
    return optim.Adam(params, lr=lr, fused=True, capturable=capturable)


def flatten_parameters(model: torch.nn.Module) -> torch.nn.Parameter | None:
    """One flat parameter whose storage every parameter of ``model`` now views, with a flat gradient that
    every ``.grad`` views (backward accumulates into an existing ``.grad`` in place, so the gradients land
    there). Zeroing the flat gradient zeroes them all; an optimizer over the flat parameter updates the
    model's weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat.data[offset:offset + n].view_as(p)
        p.grad = flat.grad[offset:offset + n].view_as(p)
        offset += n
    return flat


class GenericFastSession:
    def __init__(self, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int],
                 *, use_graphs: bool | None = None) -> None:
        if len(seeds) != 1:
            raise ValueError("the fast engine trains one seed per run")
        self.seeds, self.config, self.device = list(seeds), config, device
        self.n = data.n_samples
        self.batch_size = resolve_batch_size(config.batch_size, self.n)
        torch.manual_seed(self.seeds[0])  # the reference engine's order of RNG use: seed, then build
        self.model = make_model(config, data).to(device)
        self.n_parameters = n_parameters(self.model)
        self.loss_fn = batch_loss_fn(config.loss)
        self.X, self.y = data.X.to(device), data.y.to(device)
        self.Xp, self.yp = torch.empty_like(self.X), torch.empty_like(self.y)
        full, rest = divmod(self.n, self.batch_size)
        bs = self.batch_size
        self.slices = [(s, bs) for s in range(0, full * bs, bs)] + ([(full * bs, rest)] if rest else [])
        static = device.type == "cuda" and not has_randomness(self.model) and full > 0
        self.use_graphs = static if use_graphs is None else use_graphs
        if self.use_graphs and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        # CUDA keeps per-parameter tensors: its fused kernel is one launch already, and graph capture
        # sets gradients to None
        self.flat = None if device.type == "cuda" else flatten_parameters(self.model)
        self.optimizer = self._make_optimizer(config.lr)
        self.graph: torch.cuda.CUDAGraph | None = None
        if self.use_graphs:
            self._capture()

    def _make_optimizer(self, lr: float):
        if self.flat is not None:  # the reference engine's arithmetic, bit for bit
            return flat_optimizer(self.config.optimizer, self.flat.data, self.flat.grad, lr, exact=True)
        return fast_optimizer(self.config.optimizer, self.model.parameters(), lr, capturable=self.use_graphs)

    def _zero_grad(self) -> None:
        if self.flat is None:
            self.optimizer.zero_grad(set_to_none=True)
        elif self.flat.grad is not None:
            self.flat.grad.zero_()  # every .grad is a view of it: backward accumulates there

    def _lr_scale(self, scale: float) -> None:
        if self.flat is not None:
            self.optimizer.scale = scale
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * scale

    # --- the step ------------------------------------------------------------------------------
    def _step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        self._zero_grad()
        loss = self.loss_fn(self.model(xb), yb)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _prepare_epoch(self) -> None:
        perm = global_permutation(self.n).to(self.device)
        torch.index_select(self.X, 0, perm, out=self.Xp)
        torch.index_select(self.y, 0, perm, out=self.yp)

    def run_epoch(self) -> EpochOutput:
        self._prepare_epoch()
        self.model.train()
        losses: list[torch.Tensor] = []
        Xp, yp, step = self.Xp, self.yp, self._step
        for start, size in self.slices:
            if self.graph is not None and size == self.batch_size:
                self.static_x.copy_(Xp[start:start + size])
                self.static_y.copy_(yp[start:start + size])
                self.graph.replay()
                losses.append(self.static_loss.clone())
            else:
                losses.append(step(Xp[start:start + size], yp[start:start + size]))
        return self._epoch_output(losses)

    def _epoch_output(self, losses: list[torch.Tensor]) -> EpochOutput:
        # the lesson's epoch loss: sum of (float32 batch loss, as a Python float) x batch size, over N
        values = torch.stack(losses).double().cpu().tolist()
        running = 0.0
        for value, (_, size) in zip(values, self.slices, strict=True):
            running += value * size
        return EpochOutput([running / self.n], len(self.slices),
                           [values] if self.config.record_batches else None)

    # --- segments (studies): the epoch's steps in ranges, a learning rate and a warm-up ---------------
    _warmup_steps = 0
    _taken = 0
    _segment_losses: list[torch.Tensor] = []

    def set_schedule(self, lrs: Sequence[float], warmup_steps: int = 0) -> None:
        if self.graph is not None:
            raise ValueError("segments and schedules need the eager step (no CUDA graphs)")
        self.lr = float(lrs[0])
        self.optimizer = self._make_optimizer(self.lr)
        self._warmup_steps, self._taken = max(0, int(warmup_steps)), 0

    def begin_epoch(self) -> None:
        self._prepare_epoch()
        self.model.train()
        self._segment_losses = []

    def run_steps(self, start: int, stop: int) -> None:
        for j in range(start, min(stop, len(self.slices))):
            if self._taken < self._warmup_steps:  # linear warm-up, as engines.schedule.Warmup
                self._taken += 1
                self._lr_scale(self._taken / self._warmup_steps)
            elif self._warmup_steps:
                self._lr_scale(1.0)
            begin, size = self.slices[j]
            self._segment_losses.append(self._step(self.Xp[begin:begin + size], self.yp[begin:begin + size]))

    def end_epoch(self) -> EpochOutput:
        return self._epoch_output(self._segment_losses)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.slices)

    def evaluate_on(self, X: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
        self.model.eval()
        try:
            return [evaluate_logits(self.model, X.to(self.device), y.to(self.device), self.config.loss)]
        finally:
            self.model.train()

    # --- CUDA graphs ---------------------------------------------------------------------------
    def _capture(self) -> None:
        """The whole step captured once, at the full batch size (torch's whole-network capture recipe).
        Warm-up steps run on a side stream on the real state, which is then restored, so capturing never
        changes the training."""
        bs, model, opt = self.batch_size, self.model, self.optimizer
        self.static_x = self.X[:bs].clone()
        self.static_y = self.y[:bs].clone()
        state = [*model.parameters(), *model.buffers()]
        saved = [t.detach().clone() for t in state]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step(self.static_x, self.static_y)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            loss = self.loss_fn(model(self.static_x), self.static_y)
            loss.backward()
            opt.step()
        self.static_loss = loss.detach()
        with torch.no_grad():
            for t, v in zip(state, saved, strict=True):
                t.copy_(v)
            for per_param in opt.state.values():  # a fresh optimizer: no step taken yet
                for value in per_param.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()
        synchronize(self.device)

    # --- evaluation, memory, profile -----------------------------------------------------------
    def evaluate(self) -> list[tuple[float, float]]:
        self.model.eval()
        return [evaluate_logits(self.model, self.X, self.y, self.config.loss)]

    def memory(self) -> MemoryBreakdown:
        if self.flat is None:
            return module_memory(self.model, self.optimizer, self.X[: self.batch_size])
        return MemoryBreakdown(parameters=tensor_bytes([self.flat]), gradients=tensor_bytes([self.flat.grad]),
                               optimizer_state=self.optimizer.state_bytes(),
                               activations=activation_bytes(self.model, self.X[: self.batch_size]))

    def profile(self, steps: int) -> dict[str, float]:
        """Eager steps with a synchronized clock read between phases; ``data`` is the epoch's permuted
        copy spread over its steps."""
        phases, clock, dev = PhaseClock(), time.perf_counter, self.device
        self.model.train()
        while phases.steps < steps:
            t0 = clock()
            self._prepare_epoch()
            synchronize(dev)
            phases.add("data", clock() - t0)
            for start, size in self.slices:
                if phases.steps >= steps:
                    break
                xb, yb = self.Xp[start:start + size], self.yp[start:start + size]
                t0 = clock()
                self._zero_grad()
                loss = self.loss_fn(self.model(xb), yb)
                synchronize(dev)
                t1 = clock()
                loss.backward()
                synchronize(dev)
                t2 = clock()
                self.optimizer.step()
                synchronize(dev)
                t3 = clock()
                phases.step(0.0, t1 - t0, t2 - t1, t3 - t2)
        return phases.means()
