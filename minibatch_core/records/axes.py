"""The sweep axes: every setting that makes two runs different experiments, in one table.

An axis is a ``RunConfig`` field. Its default is the dataclass's (the lesson's); the default *sweep* may
widen it (``sweep_default``: batch sizes 1, 32 and full, every engine, three seeds). Each axis knows how to
parse a CLI/TOML value into validated values, which runs.csv column records it, and how to read the
recorded (resolved) value off a result. The sweep's options, its TOML keys, the plan's product, the
configuration identity and compare's matching are all derived from ``AXES``: adding an axis is one
entry here plus the code that uses the value.

Nothing here imports torch: the CLI builds its options from this table before anything heavy loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import (
    LOSSES,
    MAX_SEED,
    OPTIMIZERS,
    SCALERS,
    RunConfig,
    check_lr,
    parse_batch_size,
    parse_threads,
)
from minibatch_core.input.specs import parse_model_spec

MAX_SEEDS = 1_000_000  # seeds one list may expand to (far above any plan run without --yes)

# --- list parsing: a CLI string "a,b" or a TOML list -> validated values --------------------------------


def items(name: str, value: Any) -> list[Any]:
    """A comma-separated string or a list/tuple -> a flat list of non-empty items."""
    if isinstance(value, str):
        found: list[Any] = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (list, tuple)):
        found = [p.strip() if isinstance(p, str) else p for p in value]
        found = [p for p in found if p != ""]
    else:
        found = [value]
    if not found:
        raise MinibatchError(f"{name} is empty: give at least one value")
    return found


def unique(values: Iterable[Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return tuple(out)


def parse_int(name: str, value: Any, minimum: int) -> int:
    """An integer >= minimum from an int or its text; bools, fractions and words are refused."""
    number: int | None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    else:
        number = int(value) if re.fullmatch(r"\s*\d+\s*", str(value)) else None
    if number is None or number < minimum:
        raise MinibatchError(f"{name} {value!r} is not valid: use an integer >= {minimum}")
    return number


def parse_seeds(value: Any) -> tuple[int, ...]:
    """``"0-9"``, ``"0,1,2"``, ``"0-2,7"`` or a list of ints -> distinct non-negative ints, in order."""
    bad = "use non-negative integers, e.g. 0,1,2 or 0-9"
    seeds: list[int] = []
    for item in items("seeds", value):
        if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
            raise MinibatchError(f"seed {item!r} is not valid: {bad}")
        if isinstance(item, (int, float)):
            if not 0 <= item <= MAX_SEED:
                raise MinibatchError(f"seed {item!r} is not valid: {bad}, at most 2**63-1")
            seeds.append(int(item))
            continue
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", str(item).strip())
        if not match:
            raise MinibatchError(f"seed {item!r} is not valid: {bad}")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise MinibatchError(f"seed range {item!r} is empty: write it low-high, e.g. 0-9")
        if hi > MAX_SEED:
            raise MinibatchError(f"seed {hi} is not valid: seeds go from 0 to 2**63-1 ({MAX_SEED})")
        if hi - lo + 1 > MAX_SEEDS:  # never expanded: a range of 10**12 seeds would fill the memory first
            raise MinibatchError(f"seed range {item!r} holds {hi - lo + 1:,} seeds, more than the {MAX_SEEDS:,} "
                                 "a plan may hold")
        seeds.extend(range(lo, hi + 1))
        if len(seeds) > MAX_SEEDS:
            raise MinibatchError(f"seeds {value!r} hold more than the {MAX_SEEDS:,} seeds a plan may hold")
    return unique(seeds)


def parse_lrs(value: Any) -> tuple[float, ...]:
    return unique(check_lr(item, plural=True) for item in items("lrs", value))


def parse_widths(item: Any) -> tuple[int, ...]:
    """``"10,10"``, ``"10-10"``, ``"10x10"`` or ``[10, 10]`` -> (10, 10)."""
    # every separator stands between two widths: "10,x" and "10,,10" are refused, not read as (10,)
    parts: list[Any] = list(item) if isinstance(item, (list, tuple)) else re.split(r"[,x-]", str(item).strip())
    ok = bool(parts) and all((isinstance(p, int) and not isinstance(p, bool) and p >= 1) or
                             (isinstance(p, str) and p.strip().isdigit() and int(p) >= 1) for p in parts)
    if not ok:
        raise MinibatchError(f"hidden widths {item!r} are not valid: use positive integers, e.g. 10,10")
    return tuple(int(p) for p in parts)


def parse_hidden_list(value: Any) -> tuple[tuple[int, ...], ...]:
    """One architecture (``"10,10"``, ``[10, 10]``) or several (``["10,10", "32,32"]``, ``[[10,10],[32]]``,
    ``"10,10;32,32"``)."""
    if isinstance(value, str):
        specs: list[Any] = [s for s in value.split(";") if s.strip()]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        specs = [value]
    elif isinstance(value, (list, tuple)):
        specs = list(value)
    else:
        specs = [value]
    if not specs:
        raise MinibatchError("hidden is empty: give widths, e.g. 10,10")
    return unique(parse_widths(s) for s in specs)


def hidden_label(hidden: Iterable[int]) -> str:
    """``(10, 10)`` -> ``"10-10"``: how runs.csv writes an architecture."""
    return "-".join(str(w) for w in hidden)


def _choices(name: str, accepted: Iterable[str]) -> Callable[[Any], str]:
    accepted = tuple(accepted)

    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in accepted:
            raise MinibatchError(f"{name} {value!r} is not known: use one of {', '.join(accepted)}")
        return text

    return parse


def _text(name: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise MinibatchError(f"{name} {value!r} is not valid: give a name")
        return value.strip()

    return parse


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _lower(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MinibatchError(f"device {value!r} is not valid: use cpu, cuda, cuda:N or auto")
    return value.strip().lower()


def _engine(value: Any) -> str:
    from minibatch_core.engines import engine_names  # the registry's names only: no engine is imported

    name = str(value).strip()
    if name not in engine_names():
        raise MinibatchError(f"unknown engine {name!r}: use one of {', '.join(engine_names())}")
    return name


def _engines(value: Any) -> tuple[str, ...]:
    """A list of engines; ``all`` = every registered engine, ``default`` (or nothing) = every single-process
    one (all but ddp), in the registry's order."""
    from minibatch_core.engines import default_engine_names, engine_names

    if value in ((), [], None, "", "default") or (isinstance(value, (list, tuple)) and list(value) == ["default"]):
        return tuple(default_engine_names())
    if value == "all" or (isinstance(value, (list, tuple)) and list(value) == ["all"]):
        return tuple(engine_names())
    return unique(_engine(v) for v in items("engines", value))


# --- the table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One sweep axis. ``field`` is the RunConfig field; ``key`` the sweep's setting (TOML key, and the
    ``run`` flag with dashes); ``column`` the runs.csv column that records the resolved value."""

    field: str
    key: str
    parse_one: Callable[[Any], Any]
    help: str
    multi: bool = True  # a list in a sweep (the plan is the product); False: one value per sweep
    column: str = ""
    sweep_default: Any = None  # the default sweep's values where they differ from RunConfig's default
    parse_many: Callable[[Any], tuple] | None = None  # where a list has its own syntax (seed ranges)
    in_identity: bool = True  # False: recorded, but two runs differing here are the same experiment

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
    Axis("dataset", "datasets", _text("dataset"), "datasets: wine, iris, breast_cancer, digits, synthetic, or "
         "a .csv/.parquet path"),
    Axis("target", "target", _optional_text, "label column of a CSV/Parquet dataset", multi=False),
    Axis("scale", "scale", _choices("scale", SCALERS), "feature scaling: none (the lesson's) or standard",
         multi=False),
    Axis("n_samples", "n_samples", _positive("n_samples", 2), "synthetic: rows", multi=False),
    Axis("n_features", "n_features", _positive("n_features"), "synthetic: features", multi=False),
    Axis("n_classes", "n_classes", _positive("n_classes", 2), "synthetic: classes", multi=False),
    Axis("data_seed", "data_seed", _positive("data_seed", 0), "seed of the generated data", multi=False),
    # where and how it trains
    Axis("device", "devices", _lower, "cpu, cuda, cuda:N or auto", sweep_default=("auto",)),
    Axis("threads", "threads", parse_threads, "torch intra-op threads (an integer, or auto = torch's default)",
         multi=False, column="torch_threads"),
    Axis("workers", "workers", _positive("workers"), "data-parallel processes (the ddp engine)"),
    # the model and its optimization
    Axis("model", "models", parse_model_spec, "models: mlp (the lesson's, --hidden), linear, cnn, "
         "package.module:function or path/file.py:function"),
    Axis("loss", "loss", _choices("loss", LOSSES), "cross_entropy (classes; accuracy reported) or mse "
         "(float targets)", multi=False),
    Axis("optimizer", "optimizer", _choices("optimizer", OPTIMIZERS), "adam (the lesson's) or sgd"),
    Axis("hidden", "hidden", parse_widths, "hidden widths, e.g. 10,10", parse_many=parse_hidden_list),
    Axis("lr", "lrs", lambda v: check_lr(v, plural=True), "learning rates, > 0", parse_many=parse_lrs),
    Axis("epochs", "epochs", _positive("epochs"), "epochs per run", multi=False),
    Axis("batch_size", "batch_sizes", parse_batch_size, "positive integers and/or full",
         column="batch_spec", sweep_default=(1, 32, "full")),
    # engines side by side innermost: a sweep's engine ratios come from neighbouring runs
    Axis("engine", "engines", _engine, "training engines, or all (every registered engine, ddp included)",
         sweep_default="default", parse_many=_engines),
    Axis("seed", "seeds", lambda v: parse_seeds(v)[0], "seeds: 0,1,2 or 0-9", sweep_default=(0, 1, 2),
         parse_many=parse_seeds, in_identity=False),
)

AXIS_BY_KEY = {a.key: a for a in AXES}
AXIS_BY_FIELD = {a.field: a for a in AXES}

