"""Options shared by ``train`` (one value each) and ``run`` (lists), so the two never drift apart."""

from __future__ import annotations

import argparse
from typing import Any

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import BUNDLED_DATASETS, LOSSES, OPTIMIZERS, SCALERS, config_defaults
from minibatch_core.records.axes import AXES

D = config_defaults()


def seed_arg(text: str) -> int:
    """argparse type of a seed: checked when the command line is parsed (torch takes 0 to 2**63-1)."""
    from minibatch_core.input.config import check_seed

    try:
        return check_seed(int(text.strip()))
    except ValueError as err:  # int() of a non-number, or check_seed's MinibatchError (a ValueError)
        raise argparse.ArgumentTypeError(str(err) if isinstance(err, MinibatchError) else
                                         f"{text!r} is not an integer seed") from None


def add_data_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--target", metavar="COLUMN",
                   help="label column of a CSV/Parquet dataset (non-numeric labels are encoded)")
    g.add_argument("--scale", choices=SCALERS, default=D["scale"],
                   help=f"'standard' standardizes features (StandardScaler); default {D['scale']}, as the lesson")
    g.add_argument("--n-samples", type=int, default=D["n_samples"], metavar="N",
                   help=f"synthetic: rows (default {D['n_samples']})")
    g.add_argument("--n-features", type=int, default=D["n_features"], metavar="F",
                   help=f"synthetic: features (default {D['n_features']})")
    g.add_argument("--n-classes", type=int, default=D["n_classes"], metavar="K",
                   help=f"synthetic: classes (default {D['n_classes']})")
    g.add_argument("--data-seed", type=seed_arg, default=D["data_seed"], metavar="S",
                   help=f"synthetic: seed of the generated data (default {D['data_seed']}; training seeds do not "
                   "change it)")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and optimizer")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=D["optimizer"],
                   help=f"adam (the lesson's) or sgd; torch defaults apart from the learning rate (default "
                   f"{D['optimizer']})")
    hidden = ",".join(map(str, D["hidden"]))
    g.add_argument("--hidden", default=hidden, metavar="W[,W...]",
                   help=f"hidden layer widths of the mlp (default {hidden}, the lesson's)")
    g.add_argument("--model", default=D["model"], metavar="SPEC",
                   help="mlp (the lesson's, default), linear, cnn (LeNet-style, for image-shaped data), or your "
                   "own factory package.module:function / path/to/file.py:function, called as "
                   "function(input_shape, n_outputs) -> nn.Module")
    g.add_argument("--loss", default=D["loss"], choices=LOSSES,
                   help="cross_entropy (class numbers; accuracy reported; default) or mse (float targets)")


def add_axis_options(parser: argparse.ArgumentParser) -> None:
    """One option per sweep axis (``records.axes.AXES``): ``--batch-sizes``, ``--seeds``, ``--workers`` ...
    Every option is text parsed by its axis, so a bad value is the axis's one-line error; an option not
    given is None, so a ``--config`` file's value (or the default sweep's) stands."""
    groups = {"data": parser.add_argument_group("data"), "grid": parser.add_argument_group("the grid")}
    for axis in AXES:
        flag = "--" + axis.key.replace("_", "-")
        default = axis.sweep_value()
        shown = ",".join(map(_text, default)) if axis.multi else _text(default)
        group = groups["data"] if axis.field in _DATA_FIELDS else groups["grid"]
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


_DATA_FIELDS = ("dataset", "target", "scale", "n_samples", "n_features", "n_classes", "data_seed")


DATASET_HELP = (f"{', '.join(BUNDLED_DATASETS)} (bundled with scikit-learn, nothing downloaded), digits-images "
                "(digits as 1x8x8 images), a .csv/.parquet file with --target, or your own "
                "package.module:function / file.py:function returning (X, y) or a torch Dataset")
