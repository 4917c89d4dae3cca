"""The two sides of a comparison: a results folder or a pytest-benchmark JSON, loaded through the records
loader into one runs.csv-shaped frame, with the environment and calibration beside it."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import MAX_RESULTS_BYTES, read_json_checked, regular_file
from minibatch_core.records.io import load_runs, rows_frame


@dataclass
class Environment:
    """What decides whether CPU loss curves can be bit-identical across two result sets."""

    torch_version: str | None = None
    cpu_capability: str | None = None
    cpu_model: str | None = None
    numpy_version: str | None = None  # these two compute the sklearn engine's losses
    sklearn_version: str | None = None
    torch_threads: str | None = None

    @property
    def cpu_vendor(self) -> str | None:
        # MKL/oneDNN pick kernels by vendor as well as by ISA: an Intel and an AMD CPU that both
        # report AVX512 to ATen can still round differently.
        if not self.cpu_model:
            return None
        model = self.cpu_model.lower()
        for vendor in ("intel", "amd", "apple", "arm"):
            if vendor in model:
                return vendor
        return model

    def describe(self) -> str:
        return (f"torch {self.torch_version or '?'}, cpu_capability {self.cpu_capability or '?'}, "
                f"CPU {self.cpu_model or '?'}")


@dataclass
class ResultSet:
    source: str
    kind: str  # "results folder" | "pytest-benchmark JSON"
    frame: pd.DataFrame  # runs.csv-shaped, plus a "seeds" column (the configuration's seed set)
    env: Environment
    # device -> calibration step samples (seconds); one value when only the median was recorded
    calibration: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    env_data: dict[str, Any] = field(default_factory=dict)  # env.json as recorded (load, cores): contention


# --- loading ---------------------------------------------------------------------------------------

def load_results(path: str | Path) -> ResultSet:
    """A results folder (``runs.csv``, ``env.json``, ``calibration.json``) or a pytest-benchmark JSON."""
    p = Path(path)
    if p.is_dir():
        return _load_folder(p)
    if p.is_file() and p.suffix.lower() == ".json":
        return _load_benchmark_json(p)
    if p.is_file() and p.name.endswith(".csv"):
        return _load_folder(p.parent, runs=p)
    if not p.exists():
        raise MinibatchError(
            f"{path}: no such file or folder (give a results folder or a pytest-benchmark JSON)")
    raise MinibatchError(f"{path}: not a results folder, runs.csv or pytest-benchmark .json file")


def _find(d: Any, names: tuple[str, ...]) -> Any:
    """First non-dict value under any of ``names``, searching nested dicts breadth-first (env layouts
    vary: ``{"torch": "2.13.0"}``, ``{"versions": {"torch": ...}}``, pytest-benchmark's ``cpu.brand_raw``)."""
    queue = [d]
    while queue:
        cur = queue.pop(0)
        if not isinstance(cur, dict):
            continue
        for name in names:
            value = cur.get(name)
            if value not in (None, "") and not isinstance(value, (dict, list)):
                return value
        queue += [v for k, v in cur.items() if isinstance(v, dict) and k not in ("config", "sweep")]
    return None


def _environment(d: dict) -> Environment:
    def text(*names: str) -> str | None:
        value = _find(d, names)
        return None if value is None else str(value)

    # the bench harness writes machine_info["torch"] = {"version": ..., "threads": ...}
    torch_info = d.get("torch") if isinstance(d.get("torch"), dict) else {}
    return Environment(
        torch_version=text("torch_version", "torch") or
        (str(torch_info["version"]) if torch_info.get("version") else None),
        cpu_capability=text("cpu_capability", "torch_cpu_capability"),
        cpu_model=text("cpu_model", "brand_raw", "cpu"),
        numpy_version=text("numpy_version", "numpy"),
        sklearn_version=text("sklearn_version", "scikit-learn", "sklearn"),
        torch_threads=text("torch_threads") or
        (str(torch_info["threads"]) if torch_info.get("threads") else None),
    )


def _calibration_entries(data: Any) -> dict[str, list[float]]:
    """Accepts one Calibration dict, a list of them, or {device: Calibration dict | step_s}."""
    entries: dict[str, list[float]] = {}

    def add(device: str, item: Any) -> None:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            entries[device] = [_step_seconds(item)]
        elif isinstance(item, dict) and item.get("step_s") is not None:
            repeats = item.get("repeats_step_s") or [item["step_s"]]
            if not isinstance(repeats, list):
                raise MinibatchError(f"calibration: repeats_step_s {repeats!r} is not a list of seconds")
            entries[str(item.get("device", device))] = [_step_seconds(x) for x in repeats]

    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                add(str(item.get("device", "cpu")), item)
    elif isinstance(data, dict):
        if "step_s" in data:
            add(str(data.get("device", "cpu")), data)
        else:
            for device, item in data.items():
                add(str(device), item)
    return entries


def _step_seconds(value: Any) -> float:
    """A calibration time: a finite positive number of seconds (a string or NaN is a damaged file)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise MinibatchError(f"calibration.json: step time {value!r} is not a positive, finite number of seconds "
                             "(a damaged file)")
    return float(value)


def _load_folder(folder: Path, runs: Path | None = None) -> ResultSet:
    runs = runs or folder / "runs.csv"
    if os.path.lexists(runs) and not runs.is_file():  # a device, FIFO or dangling link: say which
        regular_file(runs, limit=MAX_RESULTS_BYTES, what="results file")
    if not runs.is_file():
        raise MinibatchError(f"{folder}: no runs.csv here (give a results folder or a pytest-benchmark JSON)")
    frame = load_runs(runs)
    env_path = folder / "env.json"
    env_data = read_json_checked(env_path, expect=dict) if env_path.is_file() else {}
    cal_path = folder / "calibration.json"
    calibration = _calibration_entries(read_json_checked(cal_path, expect=(list, dict))) if cal_path.is_file() else {}
    if "calibration_step_s" in frame.columns:
        # runs.csv's column is the contract; calibration.json only adds the repeats behind it
        for device, steps in frame.groupby("device")["calibration_step_s"]:
            steps = steps.dropna()
            if len(steps) and str(device) not in calibration:
                calibration[str(device)] = [float(steps.median())]
    notes = [] if env_data else [f"{folder}: no env.json (environment unknown)"]
    status = env_data.get("status") if isinstance(env_data, dict) else None
    recorded = env_data.get("runs_done") if isinstance(env_data, dict) else None
    if status == "complete" and isinstance(recorded, int) and not isinstance(recorded, bool):
        found = int(frame["run_id"].nunique())
        if found != recorded:  # e.g. a runs.csv cut at a line boundary: no row is malformed, runs are gone
            raise MinibatchError(f"{runs}: holds {found} runs but env.json records {recorded} completed: "
                                 "truncated or from another sweep")
    if status not in (None, "complete"):
        notes.append(f"{folder}: the sweep is not complete (env.json status: {status}); "
                     "its absent runs show as missing/new")
    return ResultSet(str(runs.parent if runs.name == "runs.csv" else runs), "results folder",
                     _with_seeds(frame), _environment(env_data), calibration, notes,
                     env_data if isinstance(env_data, dict) else {})


def _frame_from_benchmark_json(data: dict, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The bench harness stores each case's runs.csv rows in ``extra_info["runs"]`` (the records
    layer's writer), so a bench JSON is read as the same records as a results folder."""
    rows: list[dict] = []
    ignored = 0
    for bench in data.get("benchmarks") or []:
        runs = (bench.get("extra_info") or {}).get("runs")
        if isinstance(runs, list) and runs:
            rows += runs
        else:
            ignored += 1
    notes = [f"{source}: ignored {ignored} benchmark(s) without minibatch records (extra_info['runs'])"
             ] if ignored else []
    return (rows_frame(rows, source) if rows else pd.DataFrame()), notes


def _load_benchmark_json(path: Path) -> ResultSet:
    data = read_json_checked(path, expect=None)
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise MinibatchError(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    frame, notes = _frame_from_benchmark_json(data, str(path))
    if frame.empty:
        raise MinibatchError(f"{path}: no minibatch benchmarks in it (none has extra_info['runs'] records: "
                             "made by `pytest bench --benchmark-only` of this version?)")
    machine = data.get("machine_info") or {}
    # the harness saves the calibration beside machine_info (a timing there made pytest-benchmark warn that
    # every two runs' machines differ); JSONs saved before kept it inside
    calibration = _calibration_entries(data.get("minibatch_calibration") or machine.get("minibatch_calibration")
                                       or {})
    # the core count judges the per-run load_1m for contention, as a folder's env.json does
    cores = machine.get("cpu_cores") or (machine.get("cpu") or {}).get("count")
    return ResultSet(str(path), "pytest-benchmark JSON", _with_seeds(frame), _environment(machine),
                     calibration, notes, {"cpu_cores": cores} if isinstance(cores, int) else {})


def _with_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``seeds``: the configuration's seed set, part of what is matched (a two-seed median is not
    the same measurement as a three-seed one)."""
    frame = frame.copy()
    frame["seeds"] = frame.groupby("config_id")["seed"].transform(
        lambda s: ",".join(str(x) for x in sorted(set(s))))
    return frame
