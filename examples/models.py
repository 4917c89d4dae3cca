"""A model file written as a user would: a factory ``function(input_shape, n_outputs) -> nn.Module``.

    minibatch-bench train --model examples/models.py:small_convnet --dataset digits-images --engine fast
"""

from torch import nn


def small_convnet(input_shape, n_outputs):
    """Two 3x3 convolutions and a linear head, for (channels, height, width) inputs: ~2.6k parameters on
    1x8x8 digits."""
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * (height // 4) * (width // 4), n_outputs),
    )


def wide_mlp(input_shape, n_outputs):
    """An MLP of another shape than the lesson's, for any input shape (it flattens first)."""
    width = 1
    for size in input_shape:
        width *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 64), nn.Tanh(), nn.Linear(64, n_outputs))
