"""The lesson's MLP, generalized: input width from the data, configurable hidden widths, ReLU."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def build_mlp(n_inputs: int, hidden: Sequence[int], n_classes: int) -> nn.Sequential:
    """With hidden=(10, 10) on Wine this is the lesson's model layer for layer, so that the same
    ``torch.manual_seed`` draws the same initial weights in the same order."""
    layers: list[nn.Module] = []
    width = n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]
