"""Bytes counted from the tensors themselves: RSS moves in 4 KiB pages and this model is tiny."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor)))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values())


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of every module output for one forward pass of ``x`` (hooks on leaf modules, no grad), on the
    model's device: stacked keeps its example model on the CPU while its data sits on the GPU."""
    total = 0
    x = x.to(next((p.device for p in model.parameters()), x.device))

    def hook(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return int(total)


def module_memory(model: nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor):
    """The memory breakdown of an ``nn.Module`` trained by a ``torch.optim`` optimizer: its parameters,
    their gradients, the optimizer's state, and one forward pass's activations on ``batch``."""
    from minibatch_core.engines.breakdown import MemoryBreakdown

    params = list(model.parameters())
    return MemoryBreakdown(parameters=tensor_bytes(params), gradients=tensor_bytes(p.grad for p in params),
                           optimizer_state=optimizer_state_bytes(optimizer), activations=activation_bytes(model, batch))
