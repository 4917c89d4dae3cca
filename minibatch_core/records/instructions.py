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
from minibatch_core.records.identity import IDENTITY_COLUMNS, config_id, identity, run_id
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
_INTEGER_COLUMNS = ("batch_size", "seed", "epochs", "n_samples", "n_features", "n_classes", "data_seed",
                    "torch_threads", "workers", "warmup_epochs", "measured_epochs", "instructions", "steps",
                    "samples")
_TEXT_COLUMNS = ("run_id", "config_id", "engine", "dataset", "target", "scale", "device", "optimizer", "hidden",
                 "batch_spec", "model", "loss", "model_hash")
# identity columns added after count folders were first written, and what a folder without them meant
_LATER_COLUMNS = {"model": "mlp", "loss": "cross_entropy", "model_hash": ""}


def count_identity(count: InstructionCount) -> dict[str, Any]:
    """The identity columns of one counted configuration (runs.csv's names, values and spellings)."""
    c = count.config
    return identity(engine=c.engine, dataset=c.dataset, device=c.device, batch_spec=c.batch_spec, lr=c.lr,
                    optimizer=c.optimizer, hidden=c.hidden, epochs=c.epochs, target=c.target, scale=c.scale,
                    data_seed=c.data_seed, torch_threads=count.torch_threads, workers=c.workers,
                    n_samples=count.n_samples, n_features=count.n_features, n_classes=count.n_classes,
                    model=c.model, loss=c.loss, model_hash=source_hash(c.model))


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
    for col in ("lr", "instructions_per_step", "instructions_per_sample"):
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
    from minibatch_core.input.config import RunConfig, is_synthetic

    out = []
    for _, row in cs.frame.iterrows():
        # the shape options only mean something for generated data; elsewhere they are the data's facts
        shape = ({k: int(row[k]) for k in ("n_samples", "n_features", "n_classes")}
                 if is_synthetic(str(row["dataset"])) else {})
        try:
            out.append(RunConfig(
                dataset=row["dataset"], batch_size=row["batch_spec"], epochs=int(row["epochs"]),
                seed=int(row["seed"]), device=row["device"], engine=row["engine"], lr=float(row["lr"]),
                optimizer=row["optimizer"], hidden=tuple(int(w) for w in str(row["hidden"]).split("-")),
                target=row["target"] or None, scale=row["scale"], data_seed=int(row["data_seed"]),
                threads=int(row["torch_threads"]), workers=int(row["workers"]), model=row["model"],
                loss=row["loss"], **shape))
        except (ValueError, MinibatchError) as err:
            raise MinibatchError(f"{cs.source}: configuration {row['run_id']} cannot be rebuilt ({err})") from None
    return out
