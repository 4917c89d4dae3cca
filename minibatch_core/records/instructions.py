"""``instructions.csv`` + ``env.json``: what ``minibatch-bench count`` writes and ``compare`` reads.

One row per configuration: its identity (the axis columns of runs.csv), then the counts. The one
writer and the one loader live here; the loader refuses a damaged folder with one line (a missing or
unreadable file, missing columns, empty or non-numeric counts, fewer rows than env.json promises, the
same configuration twice), because a gate that silently compares half a file is worse than none.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import (
    MAX_RESULTS_BYTES,
    atomic_write_csv,
    atomic_write_text,
    read_bytes_checked,
    read_json_checked,
)
from minibatch_core.input.specs import source_hash
from minibatch_core.records.columns import FLOAT, INT, RUN_COLUMNS, STR
from minibatch_core.records.identity import IDENTITY_COLUMNS, config_id, config_of, identity, resolved, run_id
from minibatch_core.running.counting import CountOutcome, InstructionCount

INSTRUCTIONS_CSV = "instructions.csv"
ENV_JSON = "env.json"
KIND = "instruction counts"  # env.json "kind": tells a count folder from a sweep folder at a glance

# One row per configuration and seed: the configuration identity exactly as runs.csv records it
# (records.identity: every axis but the seed, plus the data's shape), the seed and the resolved batch size.
ROW_COLUMNS = ("run_id", "config_id", *IDENTITY_COLUMNS, "seed", "batch_size")
COUNT_COLUMNS = ("warmup_epochs", "measured_epochs", "instructions", "steps", "samples",
                 "instructions_per_step", "instructions_per_sample", "final_loss")
COLUMNS = (*ROW_COLUMNS, *COUNT_COLUMNS)
# what a comparison matches rows on: the identity, the seed, and how much training was counted
MATCH_COLUMNS = (*IDENTITY_COLUMNS, "seed", "measured_epochs")
_COLUMN = {c.name: c for c in RUN_COLUMNS}
_INTEGER_COLUMNS = (*(c for c in IDENTITY_COLUMNS if _COLUMN[c].dtype == INT), "seed", "batch_size",
                    "warmup_epochs", "measured_epochs", "instructions", "steps", "samples")
_FLOAT_COLUMNS = (*(c for c in IDENTITY_COLUMNS if _COLUMN[c].dtype == FLOAT), "instructions_per_step",
                  "instructions_per_sample")
_TEXT_COLUMNS = ("run_id", "config_id", *(c for c in IDENTITY_COLUMNS if _COLUMN[c].dtype == STR))
# identity columns a folder may lack (written before the column existed), and what it meant then: runs.csv's
# fill, the default of that time
_LATER_COLUMNS = {c: _COLUMN[c].fill for c in IDENTITY_COLUMNS if _COLUMN[c].fill is not None}


def count_identity(count: InstructionCount) -> dict[str, Any]:
    """The identity columns of one counted configuration (runs.csv's names, values and spellings)."""
    return identity(count.config, **resolved(count), model_hash=source_hash(count.config.model))


def to_frame(counts: Sequence[InstructionCount]) -> pd.DataFrame:
    rows = []
    for count in counts:
        ident = count_identity(count)
        rows.append({"run_id": run_id(ident, count.config.seed), "config_id": config_id(ident), **ident,
                     "seed": count.config.seed, "batch_size": count.batch_size, "warmup_epochs": 1,
                     "measured_epochs": count.config.epochs - 1, "instructions": count.instructions,
                     "steps": count.steps, "samples": count.samples,
                     "instructions_per_step": round(count.instructions_per_step, 3),
                     "instructions_per_sample": round(count.instructions_per_sample, 3),
                     "final_loss": count.final_loss})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write(folder: str | Path, outcome: CountOutcome, extra_env: dict[str, Any] | None = None) -> Path:
    """instructions.csv, then env.json (which names the row count, so a truncated CSV is detected)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = to_frame(outcome.counts)
    atomic_write_csv(folder / INSTRUCTIONS_CSV, frame)
    env = {"kind": KIND, "rows": len(frame), **outcome.env, **(extra_env or {})}
    atomic_write_text(folder / ENV_JSON, json.dumps(env, indent=2, default=str) + "\n")
    return folder / INSTRUCTIONS_CSV


def is_count_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / INSTRUCTIONS_CSV).is_file()


@dataclass
class CountSet:
    source: str
    frame: pd.DataFrame  # COLUMNS, validated
    env: dict[str, Any]


def load(folder: str | Path) -> CountSet:
    """A count folder, validated; MinibatchError (one line) when anything is missing or damaged."""
    folder = Path(folder)
    path = folder / INSTRUCTIONS_CSV
    if not path.is_file():
        raise MinibatchError(f"{folder}: no {INSTRUCTIONS_CSV} here (make one with `minibatch-bench count`)")
    try:
        text = read_bytes_checked(path, limit=MAX_RESULTS_BYTES, what="count file").decode("utf-8")
        frame = pd.read_csv(io.StringIO(text), dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False,
                            na_values={c: [""] for c in COUNT_COLUMNS})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise MinibatchError(f"{path}: unreadable CSV ({err.__class__.__name__})") from None
    for column, meant in _LATER_COLUMNS.items():
        if column not in frame.columns:
            frame[column] = meant
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise MinibatchError(f"{path}: missing column(s) {', '.join(missing)} (truncated or not made by count?)")
    if frame.empty:
        raise MinibatchError(f"{path}: no rows")
    env_path = folder / ENV_JSON
    env = read_json_checked(env_path, what="count record", expect=None) if os.path.lexists(env_path) else {}
    if not isinstance(env, dict):
        raise MinibatchError(f"{env_path}: not a JSON object")
    if isinstance(env.get("rows"), int) and env["rows"] != len(frame):
        raise MinibatchError(f"{path}: {len(frame)} rows where env.json records {env['rows']} (truncated?)")
    for col in _INTEGER_COLUMNS:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any() or (values < 0).any() or (values != values.round()).any():
            bad = frame.loc[values.isna() | (values < 0) | (values != values.round()), col].iloc[0]
            raise MinibatchError(f"{path}: column {col} holds {bad!r} where a count (integer >= 0) belongs "
                                 "(truncated or edited?)")
        frame[col] = values.astype("int64")
    for col in _FLOAT_COLUMNS:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any() or not all(math.isfinite(v) for v in values):
            raise MinibatchError(f"{path}: column {col} holds a non-number (truncated or edited?)")
        frame[col] = values
    if (frame["steps"] == 0).any():
        raise MinibatchError(f"{path}: a row counts 0 steps")
    dup = frame.duplicated(list(MATCH_COLUMNS))
    if dup.any():
        raise MinibatchError(f"{path}: configuration {frame.loc[dup, 'run_id'].iloc[0]} appears twice")
    return CountSet(str(folder), frame, env)


def configs(cs: CountSet) -> list:
    """The RunConfigs that reproduce a count folder's rows, in its order: what the gate counts again."""
    out = []
    for _, row in cs.frame.iterrows():
        try:
            out.append(config_of(row))
        except (ValueError, MinibatchError) as err:
            raise MinibatchError(f"{cs.source}: configuration {row['run_id']} cannot be rebuilt ({err})") from None
    return out
