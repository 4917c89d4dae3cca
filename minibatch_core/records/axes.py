"""The sweep axes: every setting that makes two runs different experiments, in one table.

An axis is a ``RunConfig`` field. Its default is the dataclass's (the lesson's); the default *sweep* may
widen it (``sweep_default``: batch sizes 1, 32 and full, every engine, three seeds). Each axis knows how to
parse a CLI/TOML value into validated values, which runs.csv column records it and how, and whether the
result holds the value as trained (the resolved device, the thread count torch used). Everything that
lists the axes is derived from ``AXES``: ``run``'s and ``train``'s options, the TOML keys, the plan's product,
the configuration identity (``records.identity``) and its columns in runs.csv, study.csv and
instructions.csv, and compare's matching. Adding an axis is one entry here, the ``RunConfig`` field it sets,
and the code that uses the value.

Nothing here imports torch: the CLI builds its options from this table before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from minibatch_core.input.config import (
    LOSSES,
    OPTIMIZERS,
    SCALERS,
    RunConfig,
    check_lr,
    parse_batch_size,
    parse_threads,
)
from minibatch_core.input.specs import parse_model_spec
from minibatch_core.records.values import (  # noqa: F401  (the parsers' old home: callers import them from here)
    MAX_SEEDS,
    device_text,
    engine_list,
    engine_name,
    hidden_label,
    items,
    named,
    one_of,
    optional_text,
    parse_hidden_list,
    parse_int,
    parse_lrs,
    parse_seed,
    parse_seeds,
    parse_widths,
    unique,
)


def _as_is(value: Any) -> Any:
    return value


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def _label(hidden: Any) -> str:
    return hidden if isinstance(hidden, str) else hidden_label(hidden)


def _or_empty(value: Any) -> str:
    return value or ""


@dataclass(frozen=True)
class Axis:
    """One sweep axis. ``field`` is the RunConfig field and ``train``'s option (with dashes); ``key`` the
    sweep's setting (TOML key, and the ``run`` option with dashes); ``column`` the runs.csv column that
    records the value, written by ``record``."""

    field: str
    key: str
    parse_one: Callable[[Any], Any] | None  # None: one of ``choices``
    help: str
    multi: bool = True  # a list in a sweep (the plan is the product); False: one value per sweep
    column: str = ""
    sweep_default: Any = None  # the default sweep's values where they differ from RunConfig's default
    parse_many: Callable[[Any], tuple] | None = None  # where a list has its own syntax (seed ranges)
    in_identity: bool = True  # False: recorded, but two runs differing here are the same experiment
    choices: tuple[str, ...] = ()  # the accepted names, where the axis is a choice (the options list them)
    group: str = "run"  # where the options show it: data, model, ddp (the distributed options) or run
    record: Callable[[Any], Any] = _as_is  # the value -> its runs.csv cell
    # the result of a run holds the value as trained under ``record_column`` (a RunResult's ``device`` is
    # cuda:0 where the config says cuda); the config's value is recorded otherwise
    resolved: bool = False

    def __post_init__(self) -> None:
        if self.parse_one is None:
            object.__setattr__(self, "parse_one", one_of(self.field, self.choices))

    @property
    def default(self) -> Any:
        """RunConfig's default: the lesson's setting."""
        return _CONFIG_DEFAULTS[self.field]

    @property
    def record_column(self) -> str:
        return self.column or self.field

    def parse(self, value: Any) -> Any:
        """A sweep value: a tuple of distinct values for a multi axis, one value otherwise."""
        if not self.multi:
            return self.parse_one(value)
        if self.parse_many is not None:
            return self.parse_many(value)
        return unique(self.parse_one(v) for v in items(self.key.replace("_", " "), value))

    def sweep_value(self) -> Any:
        """The default sweep's value for this axis."""
        return self.parse(self.default if self.sweep_default is None else self.sweep_default)


_CONFIG_DEFAULTS = {f.name: f.default for f in fields(RunConfig)}


def _positive(name: str, minimum: int = 1) -> Callable[[Any], int]:
    return lambda value: parse_int(name, value, minimum)


AXES: tuple[Axis, ...] = (
    # data: everything that changes the rows a run trains on
    Axis("dataset", "datasets", named("dataset"), "dataset: wine, iris, breast_cancer, digits, synthetic "
         "(bundled with scikit-learn), digits-images (1x8x8 images), a .csv/.parquet file with --target, or "
         "package.module:function / file.py:function returning (X, y) or a torch Dataset", group="data",
         record=str, resolved=True),
    Axis("target", "target", optional_text, "label column of a CSV/Parquet dataset", multi=False, group="data",
         record=_or_empty),
    Axis("scale", "scale", None, "feature scaling: none (the lesson's) or standard", multi=False,
         choices=SCALERS, group="data"),
    Axis("n_samples", "n_samples", _positive("n_samples", 2), "synthetic: rows", multi=False, group="data",
         record=int, resolved=True),
    Axis("n_features", "n_features", _positive("n_features"), "synthetic: features", multi=False, group="data",
         record=int, resolved=True),
    Axis("n_classes", "n_classes", _positive("n_classes", 2), "synthetic: classes", multi=False, group="data",
         record=int, resolved=True),
    Axis("data_seed", "data_seed", parse_seed("data seed"), "seed of the generated data (training seeds do not "
         "change it)", multi=False, group="data", record=int),
    # where and how it trains
    Axis("device", "devices", device_text, "cpu, cuda, cuda:N or auto", sweep_default=("auto",), record=str,
         resolved=True),
    Axis("threads", "threads", parse_threads, "torch intra-op threads (an integer, or auto = torch's default; "
         "one by default: these models are tiny and a second thread only adds latency)", multi=False,
         column="torch_threads", record=_count, resolved=True),
    Axis("workers", "workers", _positive("workers"), "data-parallel processes (the ddp engine; the batch size "
         "stays the global batch, split into W shards)", group="ddp", record=int),
    # the model and its optimization
    Axis("model", "models", parse_model_spec, "model: mlp (the lesson's, shaped by hidden), linear, cnn, "
         "package.module:function or path/file.py:function", group="model", record=str),
    Axis("loss", "loss", None, "cross_entropy (classes; accuracy reported) or mse (float targets)", multi=False,
         choices=LOSSES, group="model"),
    Axis("optimizer", "optimizer", None, "adam (the lesson's) or sgd", choices=OPTIMIZERS, group="model"),
    Axis("hidden", "hidden", parse_widths, "hidden widths of the mlp, e.g. 10,10 (run: several architectures, "
         "one per word)", parse_many=parse_hidden_list, group="model", record=_label),
    Axis("lr", "lrs", check_lr, "learning rate, > 0", parse_many=parse_lrs, record=float),
    Axis("epochs", "epochs", _positive("epochs"), "epochs per run", multi=False, record=int),
    Axis("batch_size", "batch_sizes", parse_batch_size, "batch size: a positive integer or full (= N; a size "
         "above N acts as full)", column="batch_spec", sweep_default=(1, 32, "full"), record=str, resolved=True),
    # engines side by side innermost: a sweep's engine ratios come from neighbouring runs
    Axis("engine", "engines", engine_name, "training engine (reference: the lesson's loop); run also takes "
         "all (every registered engine, ddp included)", sweep_default="default", parse_many=engine_list,
         record=str, resolved=True),
    Axis("seed", "seeds", parse_seed("seed"), "torch.manual_seed before the model is built (run: 0,1,2 or 0-9)",
         sweep_default=(0, 1, 2), parse_many=parse_seeds, in_identity=False, record=int),
)

AXIS_BY_KEY = {a.key: a for a in AXES}
AXIS_BY_FIELD = {a.field: a for a in AXES}
