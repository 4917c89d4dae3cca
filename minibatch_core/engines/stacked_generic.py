"""``stacked`` for any ``nn.Module``: K replicas in one pass with ``torch.func``.

Replica k is what ``fast`` trains for seed k: ``torch.manual_seed(seed)`` then the factory, and its own
DataLoader shuffle (:mod:`.shuffle`). The replicas' parameters are stacked (``stack_module_state``) into
one flat tensor, laid out parameter by parameter as (K, *shape) blocks, so one step is:

- one ``index_select`` gathers every replica's own batch (K, B, ...);
- ``vmap(grad_and_value(loss of functional_call))`` computes all K gradients and losses at once (torch's
  batching rules turn K convolutions into one grouped convolution and K matmuls into one batched matmul);
- one fused optimizer kernel over the flat tensor updates all replicas (Adam is elementwise, so this is K
  independent Adams; per-replica learning rates for studies are a rate tensor laid out like the flat one).

Refused, with one line: models that draw random numbers (dropout: vmap would give the replicas a stream
unlike the one their own runs see) and models with buffers (BatchNorm's running statistics are updated in
place, outside what the replicas' functional step returns). ``fast`` and ``reference`` train both.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from minibatch_core.engines.base import (
    EVAL_CHUNK,
    EpochOutput,
    MemoryBreakdown,
    PhaseClock,
    batch_loss_fn,
    evaluate_logits,
    make_model,
)
from minibatch_core.engines.flat import make_flat_optimizer
from minibatch_core.engines.membytes import activation_bytes
from minibatch_core.engines.schedule import Warmup, optimizer_for_rates
from minibatch_core.engines.shuffle import LoaderShuffle
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig, resolve_batch_size
from minibatch_core.input.data import Dataset
from minibatch_core.input.devices import synchronize
from minibatch_core.input.models import has_buffers, has_randomness, n_parameters


class StackedParams:
    """K replicas' parameters as (K, *shape) views into one flat tensor, and their gradients likewise."""

    def __init__(self, stacked: dict[str, torch.Tensor], device: torch.device) -> None:
        self.names = list(stacked)
        self.replicas = int(next(iter(stacked.values())).shape[0])
        self.numels = [int(stacked[n][0].numel()) for n in self.names]
        total = self.replicas * sum(self.numels)
        self.param = torch.empty(total, dtype=torch.float32, device=device)
        self.grad = torch.zeros_like(self.param)
        self.views: dict[str, torch.Tensor] = {}
        self.grad_views: list[torch.Tensor] = []
        offset = 0
        for name, numel in zip(self.names, self.numels, strict=True):
            shape = stacked[name].shape
            size = self.replicas * numel
            self.views[name] = self.param[offset:offset + size].view(shape)
            self.grad_views.append(self.grad[offset:offset + size].view(shape))
            offset += size
        with torch.no_grad():
            for name in self.names:
                self.views[name].copy_(stacked[name])

    def per_replica(self, values: Sequence[float]) -> torch.Tensor:
        """A tensor laid out like ``param`` whose elements of replica r hold ``values[r]``."""
        column = torch.tensor(list(values), dtype=self.param.dtype, device=self.param.device)
        return torch.cat([column.repeat_interleave(numel) for numel in self.numels])

    def replica(self, r: int) -> dict[str, torch.Tensor]:
        return {name: view[r] for name, view in self.views.items()}


def _refusal(spec: str, why: str) -> MinibatchError:
    return MinibatchError(f"the stacked engine cannot train model {spec!r}: {why}; use --engine fast or "
                          "reference, which train it as it is")


class GenericStackedSession:
    def __init__(self, config: RunConfig, data: Dataset, device: torch.device, seeds: Sequence[int]) -> None:
        if not seeds:
            raise ValueError("the stacked engine needs at least one seed")
        self.seeds, self.config, self.device = list(seeds), config, device
        self.n, self.k = data.n_samples, len(self.seeds)
        self.batch_size = resolve_batch_size(config.batch_size, self.n)
        models, self.shuffles = [], []
        for seed in self.seeds:  # per replica, the reference engine's order of RNG use
            torch.manual_seed(seed)
            models.append(make_model(config, data))
            self.shuffles.append(LoaderShuffle(self.n))
        if has_randomness(models[0]):
            raise _refusal(config.model, "it draws random numbers (dropout), and each replica would not see the "
                           "stream its own run sees")
        if has_buffers(models[0]):
            raise _refusal(config.model, "it has buffers (BatchNorm running statistics), which training updates "
                           "in place outside the replicas' functional step")
        self.n_parameters = n_parameters(models[0])
        stacked, _ = stack_module_state(models)
        self.params = StackedParams(stacked, device)
        self.example_model = models[0]
        self.base = copy.deepcopy(models[0]).to("meta")
        self.loss_fn = batch_loss_fn(config.loss)
        self.X, self.y = data.X.to(device), data.y.to(device)
        self.shape = data.input_shape
        full, rest = self.full_steps, self.rest = divmod(self.n, self.batch_size)
        bs = self.batch_size
        self.slices = [(s, bs) for s in range(0, full * bs, bs)] + ([(full * bs, rest)] if rest else [])
        self.perms = torch.zeros(self.k, self.n, dtype=torch.int64, device=device)
        base, loss_fn = self.base, self.loss_fn

        def replica_loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return loss_fn(functional_call(base, params, (x,)), y)

        # randomness="error": a random op the module check missed (functional dropout) fails loudly
        self._grads = vmap(grad_and_value(replica_loss), randomness="error")
        self.optimizer = make_flat_optimizer(config.optimizer, self.params, config.lr)
        self._warmup: Warmup | None = None
        self._losses: list[torch.Tensor] = []

    # --- the step ------------------------------------------------------------------------------
    def _step(self, j: int) -> None:
        start, size = self.slices[j]
        index = self.perms[:, start:start + size].reshape(-1)
        xb = self.X.index_select(0, index).view(self.k, size, *self.shape)
        yb = self.y.index_select(0, index).view(self.k, size, *self.y.shape[1:])
        grads, losses = self._grads(self.params.views, xb, yb)
        torch._foreach_copy_(self.params.grad_views, [grads[n] for n in self.params.names])
        if self._warmup is not None:
            self._warmup.before_step()
        self.optimizer.step()
        self._losses.append(losses.detach())

    def _prepare_epoch(self) -> None:
        self.perms.copy_(torch.stack([s.next_permutation() for s in self.shuffles]))
        self._losses = []

    @property
    def steps_per_epoch(self) -> int:
        return len(self.slices)

    def run_epoch(self) -> EpochOutput:
        self._prepare_epoch()
        with torch.no_grad():
            for j in range(len(self.slices)):
                self._step(j)
        return self._epoch_output()

    def _epoch_output(self) -> EpochOutput:
        values = torch.stack(self._losses).double().cpu()  # (steps, K)
        sizes = torch.tensor([size for _, size in self.slices], dtype=torch.float64)
        losses = ((values * sizes[:, None]).sum(0) / self.n).tolist()
        batch = values.t().tolist() if self.config.record_batches else None
        return EpochOutput(losses, len(self.slices), batch)

    # --- segments (studies) --------------------------------------------------------------------
    def set_schedule(self, lrs: Sequence[float], warmup_steps: int = 0) -> None:
        self.optimizer = optimizer_for_rates(self.config.optimizer, self.params, list(lrs))
        self._warmup = Warmup(self.optimizer, warmup_steps) if warmup_steps > 0 else None

    def begin_epoch(self) -> None:
        self._prepare_epoch()

    def run_steps(self, start: int, stop: int) -> None:
        with torch.no_grad():
            for j in range(start, min(stop, len(self.slices))):
                self._step(j)

    def end_epoch(self) -> EpochOutput:
        return self._epoch_output()

    # --- evaluation, memory, profile -----------------------------------------------------------
    def _forward(self, r: int) -> Callable[[torch.Tensor], torch.Tensor]:
        params = self.params.replica(r)
        return lambda x: functional_call(self.base, params, (x,))

    def evaluate(self) -> list[tuple[float, float]]:
        return self.evaluate_on(self.X, self.y)

    @torch.no_grad()
    def evaluate_on(self, X: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
        X, y = X.to(self.device), y.to(self.device)
        self.base.eval()
        try:
            return [evaluate_logits(self._forward(r), X, y, self.config.loss) for r in range(self.k)]
        finally:
            self.base.train()

    def memory(self) -> MemoryBreakdown:
        p = self.params
        self.example_model.eval()
        return MemoryBreakdown(
            parameters=p.param.numel() * p.param.element_size(),
            gradients=p.grad.numel() * p.grad.element_size(),
            optimizer_state=self.optimizer.state_bytes(),
            activations=self.k * activation_bytes(self.example_model, self.X[: min(self.batch_size, EVAL_CHUNK)]),
        )

    def profile(self, steps: int) -> dict[str, float] | None:
        """Whole steps only: vmap fuses forward and backward, so they are timed as one (``backward``)."""
        phases, clock, dev = PhaseClock(), time.perf_counter, self.device
        with torch.no_grad():
            while phases.steps < steps:
                self._prepare_epoch()
                for j in range(len(self.slices)):
                    if phases.steps >= steps:
                        break
                    t0 = clock()
                    start, size = self.slices[j]
                    index = self.perms[:, start:start + size].reshape(-1)
                    xb = self.X.index_select(0, index).view(self.k, size, *self.shape)
                    yb = self.y.index_select(0, index).view(self.k, size, *self.y.shape[1:])
                    synchronize(dev)
                    t1 = clock()
                    grads, _ = self._grads(self.params.views, xb, yb)
                    torch._foreach_copy_(self.params.grad_views, [grads[n] for n in self.params.names])
                    synchronize(dev)
                    t2 = clock()
                    self.optimizer.step()
                    synchronize(dev)
                    phases.step(t1 - t0, 0.0, t2 - t1, clock() - t2)
        return phases.means()
