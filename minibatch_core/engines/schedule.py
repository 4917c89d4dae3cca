"""Learning rates for studies: a different rate per stacked replica, and a linear warm-up.

A study tunes the learning rate for each batch size, so the ``stacked`` engine trains replicas that
differ in learning rate (and seed) in one pass. Adam and SGD are elementwise, so K replicas with K
rates are still one set of elementwise kernels: the rate becomes a tensor laid out like the flat
parameters (see :meth:`FlatParams.per_replica`). The formulas are ``torch.optim.Adam``'s single-tensor
ones (defaults apart from the rate), as :class:`FlatAdam`'s fallback path writes them.

Warm-up (Goyal et al. 2017): the rate grows linearly from rate/W_steps to the rate over the first
W_steps steps, then stays; :class:`Warmup` sets the optimizer's ``scale`` before every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from minibatch_core.engines.flat import ADAM_BETAS, ADAM_EPS, FlatAdam, FlatParams, FlatSGD, make_flat_optimizer


class ReplicaAdam:
    """Adam with one learning rate per replica: the rate tensor multiplies the update elementwise."""

    def __init__(self, param: torch.Tensor, grad: torch.Tensor, rates: torch.Tensor) -> None:
        self.scale = 1.0
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        denom = torch.empty_like(param)
        scaled = torch.empty_like(param)
        self.state = [self.exp_avg, self.exp_avg_sq, rates, denom, scaled]
        m, v = self.exp_avg, self.exp_avg_sq
        b1, b2 = ADAM_BETAS
        steps = [0]

        def step() -> None:
            steps[0] += 1
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            torch.sqrt(v, out=denom)
            denom.div_((1 - b2 ** steps[0]) ** 0.5).add_(ADAM_EPS)
            torch.mul(m, rates, out=scaled)
            param.addcdiv_(scaled, denom, value=-self.scale / (1 - b1 ** steps[0]))

        self.step = step

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state)


class ReplicaSGD:
    """Plain SGD with one learning rate per replica."""

    def __init__(self, param: torch.Tensor, grad: torch.Tensor, rates: torch.Tensor) -> None:
        self.scale = 1.0
        self.state = [rates]

        def step() -> None:
            param.addcmul_(grad, rates, value=-self.scale)

        self.step = step

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state)


Optimizer = FlatAdam | FlatSGD | ReplicaAdam | ReplicaSGD


def optimizer_for_rates(name: str, params: FlatParams, lrs: Sequence[float]) -> Optimizer:
    """One fused optimizer where every replica shares a rate; the per-replica one where they differ."""
    if len(set(lrs)) == 1:
        return make_flat_optimizer(name, params, float(lrs[0]))
    rates = params.per_replica(lrs)
    cls = ReplicaAdam if name == "adam" else ReplicaSGD
    return cls(params.param, params.grad, rates)


class Warmup:
    """Linear warm-up over ``steps`` steps: call ``before_step()`` before every optimizer step."""

    def __init__(self, optimizer: Optimizer, steps: int) -> None:
        self.optimizer = optimizer
        self.steps = max(0, int(steps))
        self.taken = 0

    def before_step(self) -> None:
        if self.taken < self.steps:
            self.taken += 1
            self.optimizer.scale = self.taken / self.steps
        elif self.optimizer.scale != 1.0:
            self.optimizer.scale = 1.0
