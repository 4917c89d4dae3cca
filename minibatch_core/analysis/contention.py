"""Was the machine busier than its cores while a sweep ran? Then its timings include other work's.

The evidence, best first: the per-run ``load_1m`` column of runs.csv (1-minute load average sampled at
the end of each run), else env.json's ``load_average_start`` / ``load_average_end``. The load average
counts runnable threads, so a value above the number of cores means some thread, possibly the sweep's,
waited for a core: wall times are then inflated by an amount we cannot undo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Contention:
    max_load: float  # highest 1-minute load average seen
    cores: int
    source: str  # "load_1m" (per run) or "env.json"
    runs_over: int  # runs whose load exceeded the cores (per-run evidence only; 0 otherwise)
    runs_total: int

    def sentence(self) -> str:
        where = (f"{self.runs_over} of {self.runs_total} runs ended with the 1-minute load average above "
                 f"the {self.cores} cores (up to {self.max_load:.1f})" if self.source == "load_1m" else
                 f"the 1-minute load average reached {self.max_load:.1f} on {self.cores} cores")
        return (f"Timings are contended: {where}, so other work competed for the CPU and every time and "
                "speed figure here may be inflated, unevenly across runs. Rerun on a quiet machine before "
                "trusting speed comparisons.")

    def short(self) -> str:
        return f"contended machine (load {self.max_load:.1f} on {self.cores} cores): speed figures unreliable"


def _cores(env: dict[str, Any]) -> int:
    for key in ("cpu_count", "cpu_cores"):
        value = env.get(key)
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    return 0


def _first(value: Any) -> float | None:
    """The 1-minute figure of a [1, 5, 15] triple (or a bare number)."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def contention(runs: pd.DataFrame | None, env: dict[str, Any] | None) -> Contention | None:
    """A ``Contention`` when the load exceeded the cores during the sweep, else None (also when there is
    no evidence either way: no load recorded, or the core count unknown)."""
    env = env or {}
    cores = _cores(env)
    if not cores and runs is not None and "cpu_count" in runs:
        counts = pd.to_numeric(runs["cpu_count"], errors="coerce").dropna()
        cores = int(counts.max()) if not counts.empty else 0
    if not cores:
        return None
    if runs is not None and "load_1m" in runs:
        load = pd.to_numeric(runs["load_1m"], errors="coerce")
        per_run = (load.groupby(runs["run_id"]).max() if "run_id" in runs else load).dropna()
        if not per_run.empty:
            over = int((per_run > cores).sum())
            if over == 0:
                return None
            return Contention(float(per_run.max()), cores, "load_1m", over, int(len(per_run)))
    loads = [x for x in (_first(env.get("load_average_start")), _first(env.get("load_average_end")))
             if x is not None]
    if not loads or max(loads) <= cores:
        return None
    return Contention(max(loads), cores, "env.json", 0, 0)


def side_cores(runs: pd.DataFrame | None, env: dict[str, Any] | None) -> int:
    """The side's core count: env.json, else runs.csv's ``cpu_count`` column; 0 when unknown."""
    cores = _cores(env or {})
    if not cores and runs is not None and "cpu_count" in runs:
        counts = pd.to_numeric(runs["cpu_count"], errors="coerce").dropna()
        cores = int(counts.max()) if not counts.empty else 0
    return cores


def group_contention(group: pd.DataFrame, env: dict[str, Any] | None, cores: int) -> Contention | None:
    """Was one configuration's runs measured above the core count? Its own runs' ``load_1m`` (sampled at
    the end of each run) decide; a side without that column falls back to env.json's start/end load,
    which then holds for every configuration of the side. None: quiet, or no evidence."""
    if not cores:
        return None
    if "load_1m" in group:
        load = pd.to_numeric(group["load_1m"], errors="coerce").dropna()
        if not load.empty:
            per_run = load.groupby(group.loc[load.index, "run_id"]).max() if "run_id" in group else load
            over = int((per_run > cores).sum())
            return Contention(float(per_run.max()), cores, "load_1m", over, int(len(per_run))) if over else None
    env = env or {}
    loads = [x for x in (_first(env.get("load_average_start")), _first(env.get("load_average_end")))
             if x is not None]
    if not loads or max(loads) <= cores:
        return None
    return Contention(max(loads), cores, "env.json", 0, 0)
