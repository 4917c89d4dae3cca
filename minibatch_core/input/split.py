"""A held-out split for studies, seeded: stratified by class and checked to hold every class on both sides;
float (regression) targets have no classes to stratify on, so their split is a plain random one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minibatch_core.errors import MinibatchError
from minibatch_core.input.data import Dataset

VAL_FRACTION_MAX = 0.9


@dataclass(frozen=True)
class Split:
    train: Dataset
    val: Dataset
    val_fraction: float
    seed: int
    stratified: bool = True  # False: float targets, split at random

    def describe(self) -> dict[str, object]:
        return {"train_rows": self.train.n_samples, "val_rows": self.val.n_samples,
                "val_fraction": self.val_fraction, "split_seed": self.seed, "stratified": self.stratified}


def check_val_fraction(value: float) -> float:
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not (0.0 < fraction <= VAL_FRACTION_MAX):
        raise MinibatchError(f"validation fraction {value!r} is not valid: use a number in (0, {VAL_FRACTION_MAX}]")
    return fraction


def held_out_split(data: Dataset, val_fraction: float, seed: int, *, scale: str = "none") -> Split:
    """The study's split: ``stratified_split`` for class numbers, ``random_split`` for float targets."""
    split = random_split if data.is_regression else stratified_split
    return split(data, val_fraction, seed, scale=scale)


def random_split(data: Dataset, val_fraction: float, seed: int, *, scale: str = "none") -> Split:
    """Hold out ``val_fraction`` of the rows at random (scikit-learn's ``train_test_split`` without
    ``stratify``), the same rows for the same ``seed``: stratification needs classes, which float targets
    do not have. Scaling as ``stratified_split``."""
    from sklearn.model_selection import train_test_split

    fraction = check_val_fraction(val_fraction)
    n_val = int(np.ceil(fraction * data.n_samples))
    if data.n_samples - n_val < 1:
        raise MinibatchError(f"validation fraction {fraction:g} of {data.n_samples} rows leaves no training row: "
                             "use a smaller fraction")
    train_rows, val_rows = train_test_split(np.arange(data.n_samples), test_size=n_val, random_state=seed)
    return _finish(data, np.sort(train_rows), np.sort(val_rows), fraction, seed, scale, stratified=False)


def stratified_split(data: Dataset, val_fraction: float, seed: int, *, scale: str = "none") -> Split:
    """Hold out ``val_fraction`` of the rows, each class in proportion (scikit-learn's
    ``train_test_split(stratify=y)``), the same rows for the same ``seed``. Raises MinibatchError when
    either side cannot hold at least one row of every class. ``scale="standard"`` standardizes both sides
    with the training rows' mean and deviation: a scaler fitted on all rows would let the held-out rows
    shape the features the model trains on. ``data`` must be unscaled."""
    from sklearn.model_selection import train_test_split

    fraction = check_val_fraction(val_fraction)
    labels = data.y.numpy()
    counts = np.bincount(labels, minlength=data.n_classes)
    n_val = int(np.ceil(fraction * data.n_samples))
    n_train = data.n_samples - n_val
    smallest = int(counts.min())
    if n_val < data.n_classes or n_train < data.n_classes or smallest < 2:
        raise MinibatchError(
            f"validation fraction {fraction:g} of {data.n_samples} rows gives {n_val} validation and {n_train} "
            f"training rows, too few to hold all {data.n_classes} classes on both sides (smallest class has "
            f"{smallest} rows): use a fraction that leaves at least {data.n_classes} rows on each side"
        )
    rows = np.arange(data.n_samples)
    train_rows, val_rows = train_test_split(rows, test_size=n_val, stratify=labels, random_state=seed)
    # sorted, so that the training rows keep the dataset's order (the shuffle then starts from it)
    train_rows, val_rows = np.sort(train_rows), np.sort(val_rows)
    for side, idx in (("validation", val_rows), ("training", train_rows)):
        missing = np.flatnonzero(np.bincount(labels[idx], minlength=data.n_classes) == 0)
        if len(missing):
            raise MinibatchError(
                f"validation fraction {fraction:g} leaves the {side} rows without class(es) "
                f"{', '.join(map(str, missing[:10]))}: use a fraction that leaves every class on both sides")
    return _finish(data, train_rows, val_rows, fraction, seed, scale)


def _finish(data: Dataset, train_rows: np.ndarray, val_rows: np.ndarray, fraction: float, seed: int, scale: str,
            stratified: bool = True) -> Split:
    def subset(idx: np.ndarray) -> Dataset:
        index = torch.from_numpy(idx)
        return Dataset(data.name, data.X[index], data.y[index], data.n_classes, data.feature_names,
                       data.class_names)

    train, val = subset(train_rows), subset(val_rows)
    if scale == "standard":
        train, val = _standardized(train, val)
    return Split(train, val, fraction, seed, stratified)


def _standardized(train: Dataset, val: Dataset) -> tuple[Dataset, Dataset]:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.X.numpy().astype(np.float64))

    def apply(d: Dataset) -> Dataset:
        X = torch.tensor(scaler.transform(d.X.numpy().astype(np.float64)), dtype=torch.float32)
        return Dataset(d.name, X, d.y, d.n_classes, d.feature_names, d.class_names)

    return apply(train), apply(val)
