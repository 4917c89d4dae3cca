"""Impossible records refused: numbers no run can produce, run ids that disagree with their own rows, rows
that disagree with the settings env.json recorded, and a calibration.json of the wrong shape.

The records loader (``io``) applies the row checks to every runs.csv and bench JSON it reads, so report,
compare and ``run --resume`` refuse the same files, with one line naming the line and column at fault,
before anything is judged or appended. A verdict on such numbers would be meaningless: an ``inf`` or
negative time is neither faster nor slower than anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from minibatch_core.errors import MinibatchError
from minibatch_core.records import identity as ident
from minibatch_core.records.axes import hidden_label, parse_widths

# seconds no epoch can take (about 30 years): a value above it is an edit or a unit error, and sums of
# such values overflow to inf in the tables
MAX_SECONDS = 1e9
TIME_COLUMNS = ("epoch_time_s", "cumulative_time_s", "allreduce_time_s", "calibration_step_s")
MEMORY_COLUMNS = ("peak_memory_bytes", "peak_memory_sum_bytes", "param_bytes", "grad_bytes",
                  "optimizer_state_bytes", "activation_bytes")
LOSS_COLUMNS = ("epoch_loss", "eval_loss", "val_loss")
LOSS_TOLERANCE = 1e-6  # cross-entropy is >= 0; float rounding may leave a hair below


def check_values(frame: pd.DataFrame, source: str, *, divergence_recorded: bool = True) -> None:
    """Times finite, >= 0 and below MAX_SECONDS; memory >= 0; losses >= 0 and finite unless the run
    diverged (its non-finite loss is what ``diverged`` records; in files from before that column,
    ``divergence_recorded=False``, a non-finite loss is itself the record of a divergence); accuracies in
    [0, 1]. Empty cells are left to the schema (some columns are optional)."""
    if not divergence_recorded:
        diverged = pd.Series(True, index=frame.index)
    elif "diverged" in frame:
        diverged = frame["diverged"].fillna(False).astype(bool)
    else:
        diverged = pd.Series(False, index=frame.index)
    if "epoch_time_s" in frame:  # every epoch that ran took a time: NaN is not a measurement
        times = pd.to_numeric(frame["epoch_time_s"], errors="coerce")
        if times.isna().any():
            _raise(frame, "epoch_time_s", source, times.isna(), "an empty or NaN time")
    for column in TIME_COLUMNS:
        _refuse(frame, column, source, lambda v: ~np.isfinite(v), "a non-finite time")
        _refuse(frame, column, source, lambda v: v < 0, "a negative time")
        _refuse(frame, column, source, lambda v: v > MAX_SECONDS, f"a time above {MAX_SECONDS:g} s (impossible)")
    for column in MEMORY_COLUMNS:
        _refuse(frame, column, source, lambda v: ~np.isfinite(v) | (v < 0), "negative or non-finite memory")
    for column in LOSS_COLUMNS:
        _refuse(frame, column, source, lambda v: v < -LOSS_TOLERANCE, "a negative loss")
        if column in frame:
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = np.isinf(values) & ~diverged
            if bad.any():
                _raise(frame, column, source, bad, "a non-finite loss in a run that did not diverge")
    for column in ("eval_accuracy", "val_accuracy"):
        _refuse(frame, column, source, lambda v: (v < 0) | (v > 1), "an accuracy outside 0..1")


def _refuse(frame: pd.DataFrame, column: str, source: str, test, what: str) -> None:
    if column not in frame:
        return
    values = pd.to_numeric(frame[column], errors="coerce").astype(float)
    with np.errstate(invalid="ignore"):
        bad = test(values.to_numpy()) & ~values.isna().to_numpy()
    if bad.any():
        _raise(frame, column, source, pd.Series(bad, index=frame.index), what)


def _raise(frame: pd.DataFrame, column: str, source: str, bad: pd.Series, what: str) -> None:
    first = bad[bad].index[0]
    line = int(frame.index.get_loc(first)) + 2
    raise MinibatchError(f"{source}: column {column!r} holds {frame.at[first, column]!r} at line {line}: {what}; "
                         "refused as a damaged or edited file (no verdict is possible on it)")


def check_run_ids(frame: pd.DataFrame, source: str) -> None:
    """Each run's ``run_id`` agrees with its own identity columns and seed (every part it names is the
    row's): an edited ``lr`` (or any identity value the id names) under an unchanged id is refused rather
    than read as the run the id names."""
    if "run_id" not in frame or frame.empty:
        return
    columns = [c for c in ident.IDENTITY_COLUMNS if c in frame]
    firsts = frame.drop_duplicates("run_id")
    records = firsts[columns].to_dict("records")  # as check_runs computes config_id (NA-safe values)
    for index, row, run, seed in zip(firsts.index, records, firsts["run_id"], firsts["seed"], strict=True):
        expected = ident.run_id(row, int(seed))
        # each part the id names must be the row's: ids of older versions name fewer parts (no lr)
        if not set(str(run).split("|")) <= set(expected.split("|")):
            line = int(frame.index.get_loc(index)) + 2
            raise MinibatchError(f"{source}: line {line}: run_id {run!r} does not match its own row "
                                 f"(which makes {expected!r}): an edited file; refused")


# env.json's sweep settings -> runs.csv's column, and the recorded value -> the values rows may hold
_SETTINGS = {
    "lrs": ("lr", lambda v: {float(x) for x in v}),
    "optimizer": ("optimizer", lambda v: {str(x) for x in (v if isinstance(v, list) else [v])}),
    "engines": ("engine", lambda v: {str(x) for x in v}),
    "seeds": ("seed", lambda v: {int(x) for x in v}),
    "epochs": ("epochs", lambda v: {int(v)}),
    "scale": ("scale", lambda v: {str(v)}),
    "data_seed": ("data_seed", lambda v: {int(v)}),
    "hidden": ("hidden", lambda v: {hidden_label(parse_widths(x)) for x in (v if _nested(v) else [v])}),
}


def _nested(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], (list, tuple, str))


def check_against_settings(frame: pd.DataFrame, env: Mapping[str, Any], source: str) -> None:
    """Rows whose settings lie outside what env.json says the sweep ran (an ``lr`` edited to a value the
    sweep never had), or whose run ids disagree with them, are refused: resuming or reporting them would
    describe another experiment. (report and ``run --resume``; compare also reads hand-made frames.)"""
    check_run_ids(frame, source)
    sweep = env.get("sweep") if isinstance(env, Mapping) else None
    if not isinstance(sweep, Mapping):
        return
    for key, (column, allowed_of) in _SETTINGS.items():
        if key not in sweep or sweep[key] is None or column not in frame:
            continue
        try:
            allowed = allowed_of(sweep[key])
        except (TypeError, ValueError, MinibatchError):
            raise MinibatchError(f"{source}: env.json's setting {key!r} = {sweep[key]!r} is not valid: a damaged "
                                 "file") from None
        values = frame[column]
        outside = ~values.map(lambda v, allowed=allowed: _member(v, allowed))
        if outside.any():
            first = outside[outside].index[0]
            line = int(frame.index.get_loc(first)) + 2
            raise MinibatchError(f"{source}: line {line}: {column} {values.loc[first]!r} is not among the values "
                                 f"env.json records for this sweep ({key}: {sorted(allowed, key=str)}): an edited "
                                 "file; refused")


def _member(value: Any, allowed: set) -> bool:
    if isinstance(value, float) or any(isinstance(a, float) for a in allowed):
        try:
            return any(math.isclose(float(value), float(a), rel_tol=1e-12) for a in allowed)
        except (TypeError, ValueError):
            return False
    return value in allowed or str(value) in {str(a) for a in allowed}


def check_calibration(data: Any, source: str) -> list[dict[str, Any]] | None:
    """calibration.json as the sweep writes it (a list of {device, step_s, ...} with a positive, finite
    step_s); None where absent. Anything else is refused: a string step_s cannot normalize a time."""
    if data is None:
        return None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise MinibatchError(f"{source}: expected a JSON list of calibration records: a damaged file")
    for item in data:
        step = item.get("step_s")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
            raise MinibatchError(f"{source}: step_s {step!r} is not a positive, finite number of seconds: a "
                                 "damaged file")
    return data
