"""What a configuration *is*: the recorded value of every axis but the seed.

Two runs belong to the same configuration exactly when every identity column is equal; ``config_id`` is
that identity as readable text and ``run_id`` adds the seed. compare, the tables and the study group and
match on ``IDENTITY_COLUMNS`` (derived from ``AXES``), so an axis added there is matched on everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minibatch_core.input.config import RunConfig, is_synthetic
from minibatch_core.records.axes import AXES, Axis, hidden_label  # noqa: F401  (hidden_label: callers use it here)

# resolved facts of the data recorded beside the axes that produced them: two synthetic configurations
# differ in them, and for any dataset they tell a changed file from the one the baseline used
DATA_SHAPE_COLUMNS = ("n_samples", "n_features", "n_classes")
# the content hash of a user model's source file: a changed model file is a different configuration
MODEL_COLUMNS = ("model_hash",)

IDENTITY_AXES: tuple[Axis, ...] = tuple(a for a in AXES if a.in_identity)
IDENTITY_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    [a.record_column for a in IDENTITY_AXES] + list(DATA_SHAPE_COLUMNS) + list(MODEL_COLUMNS)))

# the ids' fixed head, in this order; the rest of an id names what differs from the lesson
_HEAD = ("engine", "dataset", "device", "batch_spec", "lr")
# the lesson's values, which run ids leave out to stay short: every axis's default as runs.csv records it
# (the head, the epochs and a synthetic dataset's shape are always in the id, or never)
_LESSON = {**{a.record_column: a.record(a.default) for a in IDENTITY_AXES
              if a.record_column not in (*_HEAD, "epochs", *DATA_SHAPE_COLUMNS)}, "model_hash": ""}
_NAMES = {name: a for a in IDENTITY_AXES for name in (a.field, a.record_column)}


def identity(config: Any = None, /, **values: Any) -> dict[str, Any]:
    """The identity columns of one configuration, as runs.csv records them.

    Each axis's value is the one named in ``values`` (by its runs.csv column or its RunConfig field:
    ``torch_threads`` or ``threads``), else ``config``'s (a RunConfig, or a mapping by either name), else
    the axis's default (the lesson's); ``model_hash`` alike, empty by default."""
    unknown = [k for k in values if k not in _NAMES and k not in MODEL_COLUMNS]
    if unknown:
        raise TypeError(f"identity() got an unknown axis {unknown[0]!r}: use {', '.join(IDENTITY_COLUMNS)}")
    given = _by_name(config)
    out: dict[str, Any] = {}
    for axis in IDENTITY_AXES:
        value = axis.default
        for source in (given, values):  # the named value wins over the config's
            for name in (axis.field, axis.record_column):
                if name in source:
                    value = source[name]
        out[axis.record_column] = axis.record(value)
    out["model_hash"] = values.get("model_hash", given.get("model_hash")) or ""
    return out


def _by_name(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    return dict(config) if isinstance(config, Mapping) else dict(vars(config))


def resolved(facts: Any) -> dict[str, Any]:
    """The axes' values as trained that ``facts`` (a RunResult, an InstructionCount) holds: the resolved
    device, data shape, thread count, ... under their runs.csv names."""
    return {a.record_column: getattr(facts, a.record_column) for a in IDENTITY_AXES
            if a.resolved and hasattr(facts, a.record_column)}


def of_result(result: Any) -> dict[str, Any]:
    """The identity of a ``RunResult``: resolved device, data shape and thread count, as trained."""
    return identity(result.config, **resolved(result), model_hash=getattr(result, "model_hash", ""))


def config_of(row: Mapping[str, Any], **changes: Any) -> RunConfig:
    """The RunConfig a recorded identity (runs.csv's or instructions.csv's names and spellings) stands for,
    each value read by its axis's parser; the data's shape only for generated data, where it is a setting
    rather than a fact of the file."""
    shape = () if is_synthetic(str(row["dataset"])) else DATA_SHAPE_COLUMNS
    values = {a.field: a.parse_one(_plain(row[a.record_column])) for a in AXES
              if a.record_column in row and a.record_column not in shape}
    return RunConfig(**{**values, **changes})


def _plain(value: Any) -> Any:
    """A cell as the Python value its parser expects (numpy integers are not ints)."""
    return value.item() if hasattr(value, "item") else value


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
