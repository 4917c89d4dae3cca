"""Datasets as the trainer sees them: float32 inputs of any shape (N, ...), int64 labels 0..k-1 (or float
regression targets (N,) / (N, k)), nothing downloaded. A user's ``package.module:function`` or
``file.py:function`` returns ``(X, y)`` (tensors or NumPy arrays) or a map-style torch Dataset of pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from minibatch_core.errors import MinibatchError
from minibatch_core.input.datafile import Table, read_table

if TYPE_CHECKING:  # torch is imported where tensors are made, so that checking a file never starts it
    import torch

    from minibatch_core.input.config import RunConfig

BUNDLED = {
    "wine": "load_wine",
    "iris": "load_iris",
    "breast_cancer": "load_breast_cancer",
    "digits": "load_digits",
}
FILE_SUFFIXES = (".csv", ".parquet", ".pq")
IMAGE_SETS = {"digits-images": ("load_digits", (1, 8, 8))}  # the bundled set with each row as an image
DATA_ACCEPTED = "a bundled name, synthetic, a .csv/.parquet file, package.module:function or file.py:function"


@dataclass(frozen=True)
class Dataset:
    name: str
    X: torch.Tensor  # (N, F) float32, or (N, ...) for image-shaped and user data
    y: torch.Tensor  # (N,) int64, values 0..n_classes-1; or float32 (N,) / (N, k) regression targets
    n_classes: int  # 0 for regression targets
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()  # class_names[i] is the label that became class number i
    notes: tuple[str, ...] = ()  # one line each on what loading changed (e.g. a dropped index column)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Values per example (the width of a table; C*H*W of an image)."""
        return int(math.prod(self.X.shape[1:]))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.X.shape[1:])

    @property
    def is_regression(self) -> bool:
        return self.y.is_floating_point()

    @property
    def n_outputs(self) -> int:
        """What a model must output per example: classes, or regression targets."""
        if not self.is_regression:
            return self.n_classes
        return 1 if self.y.dim() == 1 else int(self.y.shape[1])

    @property
    def nbytes(self) -> int:
        return self.X.element_size() * self.X.numel() + self.y.element_size() * self.y.numel()


def is_function_dataset(name: str) -> bool:
    from minibatch_core.input.specs import is_user_spec

    return is_user_spec(name)


def is_file_dataset(name: str) -> bool:
    if is_function_dataset(name):
        return False
    return name.lower().endswith(FILE_SUFFIXES) or "/" in name or Path(name).suffix != ""


def known_datasets() -> str:
    return ", ".join([*BUNDLED, *IMAGE_SETS, "synthetic"]) + \
        ", a .csv/.parquet file, package.module:function or file.py:function"


def load_dataset(
    name: str,
    *,
    target: str | None = None,
    scale: str = "none",
    n_samples: int = 1000,
    n_features: int = 20,
    n_classes: int = 2,
    data_seed: int = 0,
) -> Dataset:
    """Load a dataset by name. Bundled sets load exactly as the lesson does (float32, unscaled)."""
    if not is_function_dataset(name):
        return to_dataset(load_table(name, target=target, scale=scale, n_samples=n_samples, n_features=n_features,
                                     n_classes=n_classes, data_seed=data_seed))
    import torch

    from minibatch_core.input.user_data import load_function_dataset

    ds = load_function_dataset(name)
    if _check_scale(scale) == "none":
        return ds
    return Dataset(ds.name, torch.tensor(_standardized(ds.X.numpy()), dtype=torch.float32), ds.y, ds.n_classes,
                   ds.feature_names, ds.class_names, ds.notes)


def load_table(
    name: str,
    *,
    target: str | None = None,
    scale: str = "none",
    n_samples: int = 1000,
    n_features: int = 20,
    n_classes: int = 2,
    data_seed: int = 0,
) -> Table:
    """Every dataset but a user's function, loaded without torch: ``train`` loads it in the command's process
    while its worker imports torch on another core (scikit-learn's import, about 1.2 s, then costs no wall
    time). ``to_dataset`` makes it the trainer's ``Dataset``, the same tensors ``load_dataset`` gives."""
    if name in BUNDLED or name in IMAGE_SETS:
        import sklearn.datasets

        loader, shape = (BUNDLED[name], ()) if name in BUNDLED else IMAGE_SETS[name]
        bunch = getattr(sklearn.datasets, loader)()
        features = bunch.data.reshape(-1, *shape) if shape else bunch.data
        names = () if shape else tuple(str(f) for f in getattr(bunch, "feature_names", ()))
        table = Table(name, features, bunch.target.astype(np.int64), names,
                      tuple(str(c) for c in getattr(bunch, "target_names", ())))
    elif is_function_dataset(name):
        raise MinibatchError(f"dataset {name!r} is a function: its data comes as tensors (load_dataset)")
    elif name == "synthetic":
        table = _synthetic(n_samples, n_features, n_classes, data_seed)
    elif is_file_dataset(name):
        table = read_table(Path(name), target)
    else:
        raise MinibatchError(f"unknown dataset {name!r}: use {known_datasets()}")
    if _check_scale(scale) == "none":
        return table
    scaled = _standardized(table.features)
    return Table(table.name, scaled, table.codes, table.feature_names, table.class_names, table.notes)


def data_options(config: RunConfig) -> dict[str, Any]:
    """``load_dataset``'s arguments for a run: the settings that decide its data."""
    return {"name": config.dataset, "target": config.target, "scale": config.scale, "n_samples": config.n_samples,
            "n_features": config.n_features, "n_classes": config.n_classes, "data_seed": config.data_seed}


def data_key(config: RunConfig) -> tuple:
    """Runs with equal keys train on the same rows."""
    return tuple(data_options(config).values())


def table_for(config: RunConfig) -> Table | None:
    """A run's data without torch (None for a user's function, whose data comes as tensors)."""
    if is_function_dataset(config.dataset):
        return None
    return load_table(**data_options(config))


def to_dataset(table: Table) -> Dataset:
    """The trainer's tensors: as the lesson makes them, torch.tensor(data, dtype=torch.float32) and
    torch.tensor(target, dtype=torch.long); the class count is the largest class number + 1."""
    import torch

    X = torch.tensor(table.features, dtype=torch.float32)
    y = torch.tensor(table.codes, dtype=torch.long)
    n_classes = max(len(table.class_names), int(y.max()) + 1 if len(y) else 0)
    return Dataset(table.name, X, y, n_classes, table.feature_names, table.class_names, table.notes)


def _check_scale(scale: str) -> str:
    if scale not in ("none", "standard"):
        raise MinibatchError(f"unknown scale {scale!r}: use none or standard")
    return scale


def _standardized(features: np.ndarray) -> np.ndarray:
    """Per input value (any shape of rows), over the rows: scikit-learn's StandardScaler on the float32
    values the model would see (as float64; the caller rounds the result to float32 again)."""
    from sklearn.preprocessing import StandardScaler

    flat = features.reshape(len(features), -1).astype(np.float32).astype(np.float64)
    return StandardScaler().fit_transform(flat).reshape(features.shape)


def _synthetic(n_samples: int, n_features: int, n_classes: int, data_seed: int) -> Table:
    from sklearn.datasets import make_classification

    # make_classification needs n_classes * clusters <= 2**n_informative and informative <= features
    n_informative = min(n_features, max(2, math.ceil(math.log2(n_classes)) + 1))
    if n_classes > 2**n_informative:
        raise MinibatchError(
            f"synthetic data with {n_classes} classes needs at least "
            f"{math.ceil(math.log2(n_classes))} features, got n_features={n_features}"
        )
    if n_samples < n_classes:
        raise MinibatchError(f"synthetic data needs n_samples >= n_classes, got {n_samples} < {n_classes}")
    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=min(2, n_features - n_informative),
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=data_seed,
    )
    return Table("synthetic", X, y.astype(np.int64), tuple(f"x{i}" for i in range(n_features)),
                 tuple(str(c) for c in range(n_classes)))
