"""The one loader of records: runs.csv / profile.csv (or rows from a bench JSON) -> a checked, typed frame.

Every reader (tables, plots, report, compare, baseline, resume) goes through here, so they agree on what a
file means. A malformed file is refused with one line naming the line or column at fault: a row with too
few or too many fields (a file cut mid-line), a required column absent, a value of the wrong type, an
empty cell where the schema allows none. Files written before a column existed get that column's
``fill`` (what the code of that time did), so old results stay readable.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import MAX_RESULTS_BYTES, read_bytes_checked
from minibatch_core.records import consistency
from minibatch_core.records import identity as ident
from minibatch_core.records.axes import parse_widths
from minibatch_core.records.columns import BOOL, FLOAT, INT, PROFILE_COLUMNS, RUN_COLUMNS, STR, Column
from minibatch_core.records.hardware import split_by_hardware

RUNS_CSV = "runs.csv"
PROFILE_CSV = "profile.csv"
ENV_JSON = "env.json"
CALIBRATION_JSON = "calibration.json"

# round-trip floats: `compare --loss-mode exact` needs the very values that were written. pandas 3 parses
# them so by default (and deprecates the option); pandas 2 must be asked
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
_TRUE, _FALSE = {"true", "1", "1.0", "yes"}, {"false", "0", "0.0", "no", ""}


def runs_path(path: str | Path) -> Path:
    """A results folder or a runs.csv path -> the runs.csv path (not checked for existence)."""
    p = Path(path)
    return p / RUNS_CSV if p.is_dir() else p


def load_runs(path: str | Path) -> pd.DataFrame:
    """runs.csv of a results folder (or the file itself), checked against the schema and typed, and
    checked to hold whole runs (see ``check_complete``)."""
    p = runs_path(path)
    return check_complete(check_runs(_read_csv(p, RUN_COLUMNS), str(p)), str(p))


def check_complete(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Every run is whole and one thing: one configuration and seed on all its rows, epochs 1..k once
    each, and k = its planned ``epochs`` unless it diverged, in which case every row says so and k is the
    diverged epoch. A file cut at a line boundary, or with a digit changed in an identity column, has rows
    that break one of these; they are refused with the line at fault rather than judged."""
    def refuse(run_id: str, what: str) -> MinibatchError:
        rows = frame.index[frame["run_id"] == run_id]
        return MinibatchError(f"{source}: truncated or malformed at line {_line(frame['run_id'], rows[-1])}: "
                              f"run {run_id!r} {what}")

    same = [c for c in (*ident.IDENTITY_COLUMNS, "seed", "diverged") if c in frame.columns]
    groups = frame.groupby("run_id", sort=False, dropna=False)
    mixed = groups[same].nunique(dropna=False).gt(1)
    if mixed.any(axis=None):
        run_id = mixed.any(axis=1).idxmax()
        raise refuse(run_id, f"changes {mixed.loc[run_id].idxmax()!r} between its rows")
    shape = groups["epoch"].agg(["min", "max", "count", "nunique"]).join(
        groups[["epochs", "diverged"]].first()).join(groups["diverged_epoch"].max())
    for run_id, r in shape.iterrows():
        if not (r["min"] == 1 and r["max"] == r["count"] == r["nunique"]):
            raise refuse(run_id, f"does not hold epochs 1..{r['max']} once each")
        if bool(r["diverged"]):
            if pd.isna(r["diverged_epoch"]) or int(r["diverged_epoch"]) != r["max"]:
                raise refuse(run_id, f"diverged, but its rows end at epoch {r['max']}, not at its diverged_epoch")
        elif r["max"] != r["epochs"]:
            raise refuse(run_id, f"holds {r['max']} of its {r['epochs']} epochs and did not diverge")
    return frame


def load_profile(path: str | Path) -> pd.DataFrame | None:
    """profile.csv, or None when the folder has none (``--no-profile``) or it holds no rows."""
    p = Path(path)
    p = p / PROFILE_CSV if p.is_dir() else p
    if not p.exists():
        return None
    frame = _check(_read_csv(p, PROFILE_COLUMNS), PROFILE_COLUMNS, str(p), allow_empty=True)
    return None if frame.empty else frame


def check_runs(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Schema checks and types for runs rows from any source (a CSV, a bench JSON's records)."""
    divergence_recorded = "diverged" in frame.columns  # older files: a non-finite loss is how they say it
    frame = _check(frame, RUN_COLUMNS, source)
    if frame["epochs"].isna().any():  # files from before the column: the run's last epoch
        frame["epochs"] = frame["epochs"].fillna(frame.groupby("run_id")["epoch"].transform("max")).astype(int)
    if frame["warmup"].isna().any():
        frame["warmup"] = frame["warmup"].where(frame["warmup"].notna(), frame["epoch"] == 1).astype(bool)
    # recomputed rather than trusted: the identity is the columns, and older files had no config_id
    frame["config_id"] = [ident.config_id(row) for row in frame[list(ident.IDENTITY_COLUMNS)].to_dict("records")]
    consistency.check_values(frame, source, divergence_recorded=divergence_recorded)
    split = split_by_hardware(frame)
    if split is not frame:  # runs of one configuration on two kinds of hardware (a ray sweep): kept apart
        split["config_id"] = [ident.config_id(row) for row in split[list(ident.IDENTITY_COLUMNS)].to_dict("records")]
    return split


def _read_csv(path: Path, columns: Iterable[Column]) -> pd.DataFrame:
    if not path.exists() and not path.is_symlink():
        raise MinibatchError(f"{path}: no such file")
    # a regular file of at most fsio.MAX_RESULTS_BYTES: a symlink to /dev/zero or a 2 GB file is refused
    # before it is read, not read until the memory runs out
    raw = read_bytes_checked(path, limit=MAX_RESULTS_BYTES, what="results file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MinibatchError(f"{path}: not a text CSV (undecodable byte at offset {err.start})") from None
    _check_shape(text, path)
    text_columns = {c.name: str for c in columns if c.dtype in (STR, BOOL)}
    try:
        return pd.read_csv(io.StringIO(text), dtype=text_columns, keep_default_na=False, na_values=[""],
                           **_EXACT_FLOATS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise MinibatchError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None


def _check_shape(text: str, path: Path) -> None:
    """Every row has the header's number of fields, and the file ends with a complete line."""
    if not text.strip():
        raise MinibatchError(f"{path}: empty file")
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows)
        for row in rows:
            if row and len(row) != len(header):
                raise MinibatchError(f"{path}: truncated or malformed at line {rows.line_num} "
                                     f"({len(row)} fields, the header has {len(header)})")
    except csv.Error as err:
        raise MinibatchError(f"{path}: truncated or malformed at line {rows.line_num} ({err})") from None
    if not text.endswith("\n"):
        raise MinibatchError(f"{path}: truncated or malformed at line {rows.line_num} (the last line is cut)")


def _check(frame: pd.DataFrame, columns: tuple[Column, ...], source: str, *, allow_empty: bool = False
           ) -> pd.DataFrame:
    missing = [c.name for c in columns if c.required and c.name not in frame.columns]
    if missing:
        raise MinibatchError(f"{source}: lacks the columns {', '.join(missing)} (missing columns): is it a "
                             "minibatch-bench results file?")
    if frame.empty and not allow_empty:
        raise MinibatchError(f"{source}: has no runs")
    frame = frame.copy()
    for column in columns:
        if column.name not in frame.columns:
            frame[column.name] = column.fill
        frame[column.name] = _typed(frame[column.name], column, source)
    known = [c.name for c in columns]
    return frame[known + [c for c in frame.columns if c not in known]]


def _typed(values: pd.Series, column: Column, source: str) -> pd.Series:
    def bad(i: Any, what: str) -> MinibatchError:
        return MinibatchError(f"{source}: column {column.name!r} holds {values.loc[i]!r} at line "
                              f"{_line(values, i)}: {what}")

    empty = values.isna() | (values.astype(str).str.strip() == "") if values.dtype == object else values.isna()
    if not column.nullable and empty.any():
        raise bad(empty[empty].index[0], "an empty value where one is required")
    if column.dtype == STR:
        out = values.astype(object).where(~empty, "" if column.fill == "" else None)
        if column.name == "hidden":
            out = out.map(lambda v: v if v in (None, "") else _hidden(v, column, source))
        return out.map(lambda v: v if v is None else str(v))
    if column.dtype == BOOL:
        text = values.astype(str).str.strip().str.lower()
        wrong = ~empty & ~text.isin(_TRUE | _FALSE)
        if wrong.any():
            raise bad(wrong[wrong].index[0], "expected True or False")
        return text.isin(_TRUE).where(~empty, None)
    if values.dtype == (np.int64 if column.dtype == INT else np.float64):
        return values  # parsed as numbers of this kind already: nothing below would refuse or change one
    numbers = pd.to_numeric(values, errors="coerce")
    unparsed = numbers.isna() & ~empty
    if unparsed.any():  # the text of a cell is looked at only where it did not parse as a number
        wrong = unparsed & ~values.astype(str).str.strip().str.lower().isin(["nan", "inf", "-inf"])
        if wrong.any():
            raise bad(wrong[wrong].index[0], "expected a number")
    if column.dtype == INT:
        finite = numbers.dropna()
        fractional = finite[(finite % 1 != 0) | ~np.isfinite(finite)]
        if len(fractional):
            raise bad(fractional.index[0], "expected an integer")
        huge = finite[finite.abs() >= 2**63]  # would wrap around in int64
        if len(huge):
            raise bad(huge.index[0], "an integer out of range")
        return numbers.astype("Int64") if numbers.isna().any() else numbers.astype("int64")
    assert column.dtype == FLOAT
    return numbers.astype(float)


def _hidden(value: Any, column: Column, source: str) -> str:
    try:
        return ident.hidden_label(parse_widths(value))
    except MinibatchError:
        raise MinibatchError(f"{source}: column {column.name!r} holds {value!r}: expected widths like 10-10") \
            from None


def _line(values: pd.Series, index: Any) -> int:
    position = values.index.get_loc(index)
    return int(position) + 2  # 1-based, after the header


def rows_frame(rows: list[dict[str, Any]], source: str) -> pd.DataFrame:
    """Runs rows stored as records elsewhere (a bench JSON's ``extra_info``), checked like a runs.csv."""
    if not rows:
        raise MinibatchError(f"{source}: has no runs")
    return check_runs(pd.DataFrame(rows), source)
