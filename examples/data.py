"""A data file written as a user would: a function with no arguments returning ``(X, y)``.

``X`` may have any trailing shape (here each example is a 1x8x8 image); integer ``y`` are classes 0..k-1,
float ``y`` regression targets (``--loss mse``).

    minibatch-bench train --model examples/models.py:small_convnet --dataset examples/data.py:noisy_digits
"""

import numpy as np
from sklearn.datasets import load_digits


def noisy_digits():
    """scikit-learn's digits scaled to [0, 1] with a little fixed noise, as (N, 1, 8, 8) images."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    X = digits.images / 16.0 + rng.normal(0.0, 0.05, size=digits.images.shape)
    return X[:, None].astype(np.float32), digits.target


def digit_sums():
    """A regression task: predict the image's total ink (float targets, use --loss mse)."""
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)
    return X.reshape(len(X), -1), X.sum(axis=(1, 2)).astype(np.float32)
