"""All parameters of one MLP, or of K stacked replicas of it, in ONE flat tensor.

Why: the analytic backward pass writes every gradient in place into one flat gradient tensor, so
the optimizer is a single fused call over one tensor instead of a loop over parameters, and no
gradient ever needs zeroing (each step overwrites all of them).

Layout: layer by layer, the weights of all K replicas (K, out, in), then their biases (K, out); each
block is contiguous, so the per-layer views are contiguous too (``bmm(out=...)`` needs that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

from minibatch_core.input.devices import torch_threads
from minibatch_core.input.models import linear_layers

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults, which the lesson uses
ADAM_EPS = 1e-8


class FlatParams:
    """Parameters and gradients of K replicas of one MLP, as views into two flat tensors."""

    def __init__(self, models: Sequence[nn.Sequential], device: torch.device) -> None:
        per_model = [linear_layers(m) for m in models]
        self.replicas = len(models)
        self.shapes = [tuple(layer.weight.shape) for layer in per_model[0]]  # (out, in) per layer
        k = self.replicas
        total = sum(k * (o * i + o) for o, i in self.shapes)
        self.param = torch.empty(total, dtype=torch.float32, device=device)
        self.grad = torch.zeros_like(self.param)
        self.weights: list[torch.Tensor] = []  # (K, out, in)
        self.biases: list[torch.Tensor] = []  # (K, out)
        self.grad_weights: list[torch.Tensor] = []
        self.grad_biases: list[torch.Tensor] = []
        offset = 0
        for o, i in self.shapes:
            for flat, dest, shape in (
                (self.param, self.weights, (k, o, i)),
                (self.grad, self.grad_weights, (k, o, i)),
            ):
                dest.append(flat[offset:offset + k * o * i].view(shape))
            offset += k * o * i
            self.biases.append(self.param[offset:offset + k * o].view(k, o))
            self.grad_biases.append(self.grad[offset:offset + k * o].view(k, o))
            offset += k * o
        with torch.no_grad():
            for r, layers in enumerate(per_model):
                for layer, w, b in zip(layers, self.weights, self.biases, strict=True):
                    w[r].copy_(layer.weight)
                    b[r].copy_(layer.bias)

    def per_replica(self, values: Sequence[float]) -> torch.Tensor:
        """A tensor laid out like ``param`` whose every element of replica r holds ``values[r]``
        (per-replica learning rates for one elementwise optimizer kernel)."""
        if len(values) != self.replicas:
            raise ValueError(f"{len(values)} values for {self.replicas} replicas")
        column = torch.tensor(list(values), dtype=self.param.dtype, device=self.param.device)
        blocks = []
        for o, i in self.shapes:
            blocks += [column.repeat_interleave(o * i), column.repeat_interleave(o)]
        return torch.cat(blocks)

    def forward_fn(self, replica: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Logits of one replica for evaluation (no grad is taken by the caller)."""
        ws = [w[replica] for w in self.weights]
        bs = [b[replica] for b in self.biases]

        def forward(x: torch.Tensor) -> torch.Tensor:
            for w, b in zip(ws[:-1], bs[:-1], strict=True):
                x = F.relu(F.linear(x, w, b))
            return F.linear(x, ws[-1], bs[-1])

        return forward


class FlatAdam:
    """``torch.optim.Adam(lr=lr)`` with its defaults (betas 0.9/0.999, eps 1e-8, no weight decay, no
    amsgrad) on one flat parameter tensor: two kernels per step with the fused op, and no host sync.
    ``exact``: torch.optim.Adam's single-tensor formulas instead (seven elementwise kernels), which compute
    bit for bit what the reference engine's Adam computes per parameter (the fused CPU kernel rounds
    differently)."""

    def __init__(self, param: torch.Tensor, grad: torch.Tensor, lr: float, exact: bool = False) -> None:
        self.lr = lr
        self.scale = 1.0  # a learning-rate multiplier (warm-up); read at every step
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        # float32 on the parameter's device, as torch.optim.Adam(fused=True) keeps it: graph-capturable
        self.step_count = torch.zeros((), dtype=torch.float32, device=param.device)
        self.state = [self.exp_avg, self.exp_avg_sq, self.step_count]
        fused = None if exact else getattr(torch, "_fused_adam_", None)
        lists = ([param], [grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count])
        count = self.step_count
        b1, b2 = ADAM_BETAS
        if fused is not None:
            def step() -> None:
                count.add_(1)
                fused(*lists, lr=self.lr * self.scale, beta1=b1, beta2=b2, weight_decay=0.0,
                      eps=ADAM_EPS, amsgrad=False, maximize=False)
        else:  # torch.optim.Adam's single-tensor formulas, in place
            m, v = self.exp_avg, self.exp_avg_sq
            denom = torch.empty_like(param)
            self.state.append(denom)
            steps = [0]

            def step() -> None:
                steps[0] += 1
                count.add_(1)
                m.lerp_(grad, 1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                torch.sqrt(v, out=denom)
                denom.div_((1 - b2 ** steps[0]) ** 0.5).add_(ADAM_EPS)
                param.addcdiv_(m, denom, value=-self.lr * self.scale / (1 - b1 ** steps[0]))
        self.step = step

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state)


class FlatSGD:
    """``torch.optim.SGD(lr=lr)`` with its defaults (no momentum, no weight decay): one kernel."""

    def __init__(self, param: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        self.state: list[torch.Tensor] = []
        self.lr = lr
        self.scale = 1.0  # a learning-rate multiplier (warm-up); read at every step

        def step() -> None:
            param.add_(grad, alpha=-self.lr * self.scale)

        self.step = step

    def state_bytes(self) -> int:
        return 0


def make_flat_optimizer(name: str, params: FlatParams, lr: float) -> FlatAdam | FlatSGD:
    return flat_optimizer(name, params.param, params.grad, lr)


def flat_optimizer(name: str, param: torch.Tensor, grad: torch.Tensor, lr: float,
                   exact: bool = False) -> FlatAdam | FlatSGD:
    """The lesson's optimizer over one flat parameter and its flat gradient (``exact``: see FlatAdam)."""
    if name == "adam":
        return FlatAdam(param, grad, lr, exact=exact)
    return FlatSGD(param, grad, lr)


# torch's own threshold below which it runs an elementwise op on one thread (at::internal::GRAIN_SIZE)
SMALL_STEP_WORK = 32768


def threads_for(step_work: int) -> AbstractContextManager[None]:
    """A region of tiny steps runs on one intra-op thread, the setting restored after.

    Why: below torch's grain size a parallel region costs more than it saves, and on a shared machine
    a step that waits for a descheduled second thread stalls for a whole time slice (measured here:
    a median epoch 4x slower with 2 threads on a loaded 2-core machine). Larger steps keep the
    process's thread count."""
    return torch_threads(1 if step_work < SMALL_STEP_WORK else None)


def step_work(replicas: int, batch_size: int, shapes: Sequence[tuple[int, int]]) -> int:
    """Multiply-adds of the largest matmul in one step: what decides whether threads can pay."""
    return replicas * batch_size * max(o * i for o, i in shapes)
