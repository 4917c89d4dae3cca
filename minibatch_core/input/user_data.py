"""A user's dataset function: ``package.module:function`` or ``file.py:function``, called with no arguments.

It returns ``(X, y)`` (tensors or NumPy arrays, ``X`` of shape (N, ...), any trailing shape) or a
map-style ``torch.utils.data.Dataset`` of ``(x, y)`` pairs, which is read once into tensors (the engines
batch by index on the device). Inputs keep their shape. Integer targets are class numbers 0..k-1;
floating targets of shape (N,) or (N, k) are regression targets (``--loss mse``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from minibatch_core.errors import MinibatchError
from minibatch_core.input.models import exception_line, resolve_callable
from minibatch_core.input.specs import normalize_user_spec, split_spec


def load_function_dataset(spec: str) -> Any:
    from minibatch_core.input.data import DATA_ACCEPTED, Dataset

    spec = normalize_user_spec("dataset", spec, DATA_ACCEPTED)
    function = resolve_callable("dataset", spec, DATA_ACCEPTED)
    try:
        returned = function()
    except Exception as err:
        raise MinibatchError(f"dataset {spec!r}: {split_spec(spec)[1]}() raised {exception_line(err)}") from None
    X, y = _pair(spec, returned)
    if X.dim() == 0 or y.dim() == 0:
        raise MinibatchError(f"dataset {spec!r} returned a single value: X must be (N, ...) and y (N,) or (N, k)")
    if X.shape[0] == 0:
        raise MinibatchError(f"dataset {spec!r} is empty: it returned 0 examples")
    if X.dim() < 2:
        X = X.unsqueeze(1)  # one value per example: a column
    if y.shape[0] != X.shape[0]:
        raise MinibatchError(f"dataset {spec!r} returned {X.shape[0]} inputs but {y.shape[0]} targets: "
                             "X and y must have the same first dimension")
    if y.dim() > 2:
        raise MinibatchError(f"dataset {spec!r}: targets of shape {tuple(y.shape)} are not valid: use class "
                             "numbers (N,) or regression targets (N,) or (N, k)")
    if not torch.isfinite(X.float()).all():
        raise MinibatchError(f"dataset {spec!r}: the inputs hold NaN or infinite values")
    if y.is_floating_point():
        return Dataset(spec, X.float().contiguous(), y.float().contiguous(), 0)
    if y.dim() != 1:
        raise MinibatchError(f"dataset {spec!r}: integer targets must be class numbers of shape (N,), got "
                             f"{tuple(y.shape)}")
    if int(y.min()) < 0:
        raise MinibatchError(f"dataset {spec!r}: class numbers must be 0..k-1, got {int(y.min())}")
    n_classes = int(y.max()) + 1
    return Dataset(spec, X.float().contiguous(), y.long().contiguous(), n_classes,
                   (), tuple(str(c) for c in range(n_classes)))


def _tensor(spec: str, what: str, value: Any) -> torch.Tensor:
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu()
        array = np.asarray(value)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(f"dtype {array.dtype}")
        return torch.as_tensor(array.copy())  # a 0-d target (one class number) stays 0-d
    except (TypeError, ValueError) as err:
        raise MinibatchError(f"dataset {spec!r}: {what} is not numeric ({exception_line(err)})") from None


def _pair(spec: str, returned: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(returned, torch.utils.data.Dataset) and not isinstance(returned, torch.utils.data.IterableDataset):
        try:
            n = len(returned)  # type: ignore[arg-type]
            items = [returned[i] for i in range(n)]
        except Exception as err:
            raise MinibatchError(f"dataset {spec!r}: reading its Dataset raised {exception_line(err)}") from None
        if not items:
            raise MinibatchError(f"dataset {spec!r} is empty: its Dataset has no items")
        if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
            raise MinibatchError(f"dataset {spec!r}: its Dataset must yield (x, y) pairs")
        xs = [_tensor(spec, "an input", x) for x, _ in items]
        ys = [_tensor(spec, "a target", y) for _, y in items]
        if len({tuple(x.shape) for x in xs}) != 1 or len({tuple(y.shape) for y in ys}) != 1:
            raise MinibatchError(f"dataset {spec!r}: its items differ in shape; every x (and every y) must have "
                                 "the same shape")
        return torch.stack(xs), torch.stack(ys)
    if isinstance(returned, (tuple, list)) and len(returned) == 2:
        return _tensor(spec, "X", returned[0]), _tensor(spec, "y", returned[1])
    raise MinibatchError(f"dataset {spec!r} returned {type(returned).__name__}: return (X, y) or a map-style "
                         "torch.utils.data.Dataset of (x, y) pairs")
