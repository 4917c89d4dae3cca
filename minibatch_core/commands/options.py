"""Options shared by ``train`` (one value each) and ``run`` (lists), so the two never drift apart."""

from __future__ import annotations

import argparse

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import BUNDLED_DATASETS, OPTIMIZERS, SCALERS


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise MinibatchError(f"hidden widths {text!r} are not valid: use positive integers, e.g. 10,10") from None
    return widths


def add_data_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--target", metavar="COLUMN",
                   help="label column of a CSV/Parquet dataset (non-numeric labels are encoded)")
    g.add_argument("--scale", choices=SCALERS, default="none",
                   help="'standard' standardizes features (StandardScaler); default none, as the lesson")
    g.add_argument("--n-samples", type=int, default=1000, metavar="N", help="synthetic: rows (default 1000)")
    g.add_argument("--n-features", type=int, default=20, metavar="F", help="synthetic: features (default 20)")
    g.add_argument("--n-classes", type=int, default=2, metavar="K", help="synthetic: classes (default 2)")
    g.add_argument("--data-seed", type=int, default=0, metavar="S",
                   help="synthetic: seed of the generated data (default 0; training seeds do not change it)")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and optimizer")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                   help="adam (the lesson's) or sgd; torch defaults apart from the learning rate")
    g.add_argument("--hidden", default="10,10", metavar="W[,W...]",
                   help="hidden layer widths (default 10,10, the lesson's)")


DATASET_HELP = (f"{', '.join(BUNDLED_DATASETS)} (bundled with scikit-learn, nothing downloaded), "
                "or a .csv/.parquet file with --target")
