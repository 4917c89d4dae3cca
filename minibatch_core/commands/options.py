"""Options built from the axes (``records.axes.AXES``): ``train``'s (one value each, ``--batch-size``),
``run``'s (lists, ``--batch-sizes``) and the data options ``study`` and ``count`` share, so none of them
lists the axes again and a new axis is an option of each at once."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import BUNDLED_DATASETS, RunConfig
from minibatch_core.records.axes import AXES, Axis

# train's option groups, by the axes' ``group``; run shows the data apart and every other axis as the grid
GROUPS = {"run": "training", "data": "data", "model": "model and optimizer", "ddp": "distributed (the ddp engine)"}
# integer settings: their options say argparse's "invalid int value" for a word, then check the axis's range
_INT_FIELDS = {f.name for f in fields(RunConfig) if f.type in ("int", int)}

DATASET_HELP = (f"{', '.join(BUNDLED_DATASETS)} (bundled with scikit-learn, nothing downloaded), digits-images "
                "(digits as 1x8x8 images), a .csv/.parquet file with --target, or your own "
                "package.module:function / file.py:function returning (X, y) or a torch Dataset")


def add_axis_option(group: argparse._ActionsContainer, axis: Axis) -> None:
    """``--<field>``: one value of the axis, default the lesson's. A choice lists its choices and an integer
    is checked as the command line is parsed; any other value is text, read by ``config_from_args`` with
    the axis's parser (a bad one is that parser's one-line error)."""
    kwargs: dict[str, Any] = {}
    if axis.choices:
        kwargs["choices"] = axis.choices
    elif axis.field in _INT_FIELDS:
        kwargs["type"] = _integer(axis)
    group.add_argument("--" + axis.field.replace("_", "-"), dest=axis.field, default=axis.default,
                       help=f"{axis.help} (default {_text(axis.default) or 'none'})", **kwargs)


def _integer(axis: Axis):
    def integer(text: str) -> int:
        value = int(text)  # a ValueError here is argparse's "invalid int value"
        try:
            return axis.parse_one(value)
        except MinibatchError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    integer.__name__ = "int"  # argparse names the type in its message: "invalid int value: 'ten'"
    return integer


def add_one_value_options(parser: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """``train``'s options: one per axis, in the groups of ``GROUPS`` (returned by name, to add to)."""
    groups = {name: parser.add_argument_group(title) for name, title in GROUPS.items()}
    for axis in AXES:
        add_axis_option(groups[axis.group], axis)
    return groups


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig values of ``add_one_value_options``'s options, each read by its axis's parser."""
    return {a.field: a.parse_one(getattr(args, a.field)) for a in AXES}


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The data axes with one value per sweep or study (the dataset itself is each command's own option)."""
    g = parser.add_argument_group("data")
    for axis in AXES:
        if axis.group == "data" and not axis.multi:
            add_axis_option(g, axis)


def add_axis_options(parser: argparse.ArgumentParser) -> None:
    """One option per sweep axis (``records.axes.AXES``): ``--batch-sizes``, ``--seeds``, ``--workers`` ...
    Every option is text parsed by its axis, so a bad value is the axis's one-line error; an option not
    given is None, so a ``--config`` file's value (or the default sweep's) stands."""
    groups = {"data": parser.add_argument_group("data"), "grid": parser.add_argument_group("the grid")}
    for axis in AXES:
        flag = "--" + axis.key.replace("_", "-")
        default = axis.sweep_value()
        shown = ",".join(map(_text, default)) if axis.multi else _text(default)
        group = groups["data"] if axis.group == "data" else groups["grid"]
        kwargs: dict = {"nargs": "+"} if axis.key == "hidden" else {}
        group.add_argument(flag, dest=axis.key, metavar="V[,V...]" if axis.multi else "V",
                           help=f"{axis.help} (default {shown or 'none'})", **kwargs)


def given_axes(args: argparse.Namespace) -> dict[str, Any]:
    """The axis options the user gave, as sweep settings."""
    given = {a.key: getattr(args, a.key) for a in AXES if getattr(args, a.key, None) is not None}
    if isinstance(given.get("hidden"), list):  # --hidden 10,10 32,32: one architecture per word
        given["hidden"] = ";".join(given["hidden"])
    return given


def _text(value: Any) -> str:
    if isinstance(value, tuple):  # one architecture
        return ",".join(map(str, value))
    return "" if value is None else str(value)
