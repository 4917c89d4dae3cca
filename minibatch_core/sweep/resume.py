"""Resuming an interrupted sweep: what it recorded, what it would run now, and which jobs are still to do.

A results folder records its settings in env.json (``sweep``) and its completed runs in runs.csv. Resuming
re-plans from those settings, keeps every recorded run and runs only the jobs whose runs are absent. It is
refused when the code or the settings it would run with differ from those recorded (the folder would
mix two experiments under one name), unless the caller forces it. Nothing here trains or prints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import read_json_checked
from minibatch_core.records.axes import AXES, hidden_label, parse_widths
from minibatch_core.records.consistency import check_against_settings, check_calibration
from minibatch_core.records.io import CALIBRATION_JSON, ENV_JSON, PROFILE_CSV, RUNS_CSV, load_profile, load_runs
from minibatch_core.sweep.sweep import Job, Plan, SweepConfig

# env.json's sweep entry holds these beside the settings (see commands/run.py)
_NOT_SETTINGS = ("devices_expanded", "isolate")
# a run is found by the axes that vary within a sweep; the single-valued ones (epochs, threads, the data's
# shape, ...) are one value per sweep and checked with the settings (``differences``) instead
_KEY_AXES = tuple(a for a in AXES if a.multi)


@dataclass
class Recorded:
    """What a results folder says about the sweep that made it."""

    folder: Path
    env: dict[str, Any]
    sweep: SweepConfig
    isolate: bool
    devices: tuple[str, ...]
    runs: pd.DataFrame | None  # the completed runs, through the records loader; None before the first
    profiles: pd.DataFrame | None
    calibration: list[dict[str, Any]] | None


def read_recorded(folder: str | Path) -> Recorded:
    """The folder's env.json settings and its runs (checked by the records loader). One-line errors."""
    path = Path(folder)
    if not path.is_dir():
        raise MinibatchError(f"--resume {str(folder)!r}: no such results folder")
    env = _json(path / ENV_JSON)
    if not isinstance(env, dict) or not isinstance(env.get("sweep"), dict):
        raise MinibatchError(f"--resume {str(folder)!r}: {ENV_JSON} records no sweep settings (not made by "
                             "`minibatch-bench run`?)")
    settings = {k: v for k, v in env["sweep"].items() if k not in _NOT_SETTINGS}
    try:
        sweep = SweepConfig.from_mapping(settings)
    except MinibatchError as err:
        raise MinibatchError(f"--resume {str(folder)!r}: the recorded settings are not valid here: {err}") from None
    runs = load_runs(path) if os.path.lexists(path / RUNS_CSV) else None
    if runs is not None:  # before anything is appended: rows of another experiment are not resumed
        check_against_settings(runs, env, str(path / RUNS_CSV))
    profiles = load_profile(path) if (path / PROFILE_CSV).exists() else None
    calibration = check_calibration(_json(path / CALIBRATION_JSON), str(path / CALIBRATION_JSON)) \
        if os.path.lexists(path / CALIBRATION_JSON) else None
    return Recorded(path, env, sweep, bool(env["sweep"].get("isolate", True)),
                    tuple(env["sweep"].get("devices_expanded") or ()), runs, profiles, calibration)


def _json(path: Path) -> Any:
    if not os.path.lexists(path):
        raise MinibatchError(f"{path}: no such file (is it a results folder?)")
    return read_json_checked(path, what="record", expect=None)  # bounded; the callers check the type


def differences(recorded: Recorded, sweep: SweepConfig, isolate: bool, devices: tuple[str, ...],
                env_now: Mapping[str, Any]) -> list[str]:
    """Everything the resumed sweep would do differently from the recorded one: settings, device list,
    isolation, and the code (package version and commit, torch, scikit-learn, numpy)."""
    out = [f"{key}: {recorded.sweep.to_dict()[key]!r} recorded, {value!r} now"
           for key, value in sweep.to_dict().items() if recorded.sweep.to_dict().get(key) != value]
    if recorded.devices and tuple(recorded.devices) != tuple(devices):
        out.append(f"devices: {list(recorded.devices)} recorded, {list(devices)} now")
    if recorded.isolate != isolate:
        out.append(f"isolation: {'on' if recorded.isolate else 'off (--no-isolate)'} recorded, "
                   f"{'on' if isolate else 'off (--no-isolate)'} now")
    then, now = code_version(recorded.env), code_version(env_now)
    out += [f"{what}: {then[what]} recorded, {now[what]} now" for what in then if then[what] != now.get(what)]
    return out


def code_version(env: Mapping[str, Any]) -> dict[str, Any]:
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    return {"minibatch-bench": env.get("minibatch_bench"), "commit": git.get("commit"),
            "torch": versions.get("torch"), "scikit-learn": versions.get("scikit-learn"),
            "numpy": versions.get("numpy")}


def _norm(column: str, value: Any) -> str:
    """One spelling per value, whichever side it came from (a RunConfig field or a loaded runs.csv cell)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if column == "lr":
        return repr(float(value))
    if column == "hidden":
        return hidden_label(parse_widths(value))
    if column == "device":  # the plan says cuda where the record says cuda:0
        return "cuda:0" if str(value).lower() == "cuda" else str(value).lower()
    return str(value)


def job_keys(job: Job) -> list[tuple[str, ...]]:
    """The runs a job produces, as keys comparable with ``run_keys`` (one per seed)."""
    config = job.config
    return [tuple(_norm(a.record_column, seed if a.field == "seed" else getattr(config, a.field))
                  for a in _KEY_AXES) for seed in job.seeds]


def run_keys(runs: pd.DataFrame) -> set[tuple[str, ...]]:
    columns = [a.record_column for a in _KEY_AXES]
    firsts = runs.groupby("run_id", sort=False)[columns].first()
    return {tuple(_norm(c, v) for c, v in zip(columns, row, strict=True))
            for row in firsts.itertuples(index=False)}


def remaining(the_plan: Plan, runs: pd.DataFrame | None) -> tuple[Plan, pd.DataFrame | None, int]:
    """(the plan's jobs still to run, the recorded runs to keep, how many runs are kept). A job counts as
    done when every one of its seeds is recorded; a partly recorded job (impossible with the atomic
    writer, but a file may have been edited) runs again and its partial rows are dropped."""
    if runs is None or runs.empty:
        return the_plan, None, 0
    done = run_keys(runs)
    todo: list[Job] = []
    drop: set[tuple[str, ...]] = set()
    for job in the_plan.jobs:
        keys = job_keys(job)
        if all(k in done for k in keys):
            continue
        todo.append(job)
        drop |= {k for k in keys if k in done}
    if drop:
        columns = [a.record_column for a in _KEY_AXES]
        row_keys = [tuple(_norm(c, v) for c, v in zip(columns, row, strict=True))
                    for row in runs[columns].itertuples(index=False)]
        runs = runs[[k not in drop for k in row_keys]]
    kept = int(runs["run_id"].nunique()) if not runs.empty else 0
    return replace(the_plan, jobs=tuple(todo)), (runs if not runs.empty else None), kept
