"""What a configuration *is*: the recorded value of every axis but the seed.

Two runs belong to the same configuration exactly when every identity column is equal; ``config_id`` is
that identity as readable text and ``run_id`` adds the seed. compare, the tables and the study group and
match on ``IDENTITY_COLUMNS`` (derived from ``AXES``), so an axis added there is matched on everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minibatch_core.input.config import is_synthetic
from minibatch_core.records.axes import AXES, hidden_label

# resolved facts of the data recorded beside the axes that produced them: two synthetic configurations
# differ in them, and for any dataset they tell a changed file from the one the baseline used
DATA_SHAPE_COLUMNS = ("n_samples", "n_features", "n_classes")
# the content hash of a user model's source file: a changed model file is a different configuration
MODEL_COLUMNS = ("model_hash",)

IDENTITY_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    [a.record_column for a in AXES if a.in_identity] + list(DATA_SHAPE_COLUMNS) + list(MODEL_COLUMNS)))

# the lesson's values, which run ids leave out to stay short
_LESSON = {"optimizer": "adam", "hidden": "10-10", "scale": "none", "target": "", "data_seed": 0,
           "workers": 1, "torch_threads": 1,
           "model": "mlp", "loss": "cross_entropy", "model_hash": ""}
_HEAD = ("engine", "dataset", "device", "batch_spec", "lr")


def identity(*, engine: str, dataset: str, device: str, batch_spec: str, lr: float, optimizer: str,
             hidden: tuple[int, ...] | str, epochs: int, target: str | None, scale: str, data_seed: int,
             torch_threads: int, workers: int, n_samples: int, n_features: int, n_classes: int,
             model: str = "mlp", loss: str = "cross_entropy", model_hash: str = "") -> dict[str, Any]:
    """The identity columns of one configuration, as runs.csv records them."""
    return {
        "engine": engine, "dataset": dataset, "target": target or "", "scale": scale,
        "n_samples": int(n_samples), "n_features": int(n_features), "n_classes": int(n_classes),
        "data_seed": int(data_seed), "device": device, "torch_threads": int(torch_threads),
        "workers": int(workers), "optimizer": optimizer,
        "hidden": hidden if isinstance(hidden, str) else hidden_label(hidden),
        "lr": float(lr), "epochs": int(epochs), "batch_spec": str(batch_spec),
        "model": model, "loss": loss, "model_hash": model_hash or "",
    }


def of_result(result: Any) -> dict[str, Any]:
    """The identity of a ``RunResult``: resolved device, data shape and thread count, as trained."""
    c = result.config
    return identity(engine=result.engine, dataset=result.dataset, device=result.device,
                    batch_spec=result.batch_spec, lr=c.lr, optimizer=c.optimizer, hidden=c.hidden,
                    epochs=c.epochs, target=c.target, scale=c.scale, data_seed=c.data_seed,
                    torch_threads=result.torch_threads, workers=getattr(c, "workers", 1),
                    n_samples=result.n_samples, n_features=result.n_features, n_classes=result.n_classes,
                    model=getattr(c, "model", "mlp"), loss=getattr(c, "loss", "cross_entropy"),
                    model_hash=getattr(result, "model_hash", ""))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_id(ident: Mapping[str, Any], seed: int | None = None) -> str:
    """``reference|wine|cpu|b32|lr0.001`` (``|s0`` after the batch with a seed), then the optimizer and
    architecture where they are not the lesson's, then ``|axis=value`` for every other identity column off
    the lesson's value. Synthetic data adds its shape; bundled datasets are defined by their name.

    ``epochs`` is an identity column but not part of the text: a sweep has one epoch count, so within a
    folder the text is unique, and the documented id format (``reference|wine|cpu|b32|s0|lr0.001``) holds.
    Matching across folders (compare) uses the columns, epochs included."""
    parts = [str(ident["engine"]), str(ident["dataset"]), str(ident["device"]), f"b{ident['batch_spec']}"]
    if seed is not None:
        parts.append(f"s{seed}")
    parts.append(f"lr{_number(float(ident['lr']))}")
    if ident.get("optimizer", "adam") != "adam":
        parts.append(str(ident["optimizer"]))
    if ident.get("hidden", "10-10") != "10-10":
        parts.append(f"h{ident['hidden']}")
    shape = DATA_SHAPE_COLUMNS if is_synthetic(str(ident["dataset"])) else ()
    for column in IDENTITY_COLUMNS:
        if column in (*_HEAD, "optimizer", "hidden", "epochs") or column in DATA_SHAPE_COLUMNS and not shape:
            continue
        value = ident.get(column)
        if _unknown(value) or column in _LESSON and _same(value, _LESSON[column]):
            continue
        parts.append(f"{column}={_number(value)}")
    return "|".join(parts)


def _unknown(value: Any) -> bool:
    """Not recorded (a file from before the column existed): nothing to tell configurations apart by."""
    return value is None or value != value or str(value) == "<NA>"


def _same(value: Any, lesson: Any) -> bool:
    if value is None or value == "":
        return lesson in ("", None)
    try:
        return type(lesson)(value) == lesson
    except (TypeError, ValueError):
        return False


def run_id(ident: Mapping[str, Any], seed: int) -> str:
    return config_id(ident, seed)
