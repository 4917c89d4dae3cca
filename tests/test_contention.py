"""Contention is detected from the recorded load, and said where speed figures are shown."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from test_report import synthetic_runs

from minibatch_core.analysis.contention import contention
from minibatch_core.cli import main


def _runs(loads: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(len(loads))], "load_1m": loads})


def test_per_run_load_above_the_cores_is_contention() -> None:
    found = contention(_runs([0.4, 2.5, 3.1]), {"cpu_count": 2})
    assert found is not None
    assert (found.source, found.runs_over, found.runs_total, found.max_load, found.cores) == ("load_1m", 2, 3, 3.1, 2)
    assert "2 of 3 runs ended with the 1-minute load average above the 2 cores (up to 3.1)" in found.sentence()


def test_per_run_load_wins_over_env_json() -> None:
    # the sweep's own start and end were busy, but no run was: the per-run evidence is the finer one
    env = {"cpu_cores": 2, "load_average_start": [5.0, 4, 3], "load_average_end": [4.0, 4, 3]}
    assert contention(_runs([0.5, 1.9]), env) is None


def test_env_json_is_the_fallback() -> None:
    env = {"cpu_cores": 2, "load_average_start": [0.3, 0.4, 0.5], "load_average_end": [2.6, 1, 1]}
    found = contention(pd.DataFrame({"run_id": ["a"]}), env)
    assert found is not None and found.source == "env.json" and found.max_load == 2.6
    assert contention(None, {**env, "load_average_end": [1.9, 1, 1]}) is None


def test_no_evidence_is_no_warning() -> None:
    assert contention(_runs([9.0]), {}) is None  # cores unknown
    assert contention(None, {"cpu_cores": 2}) is None  # load unknown
    assert contention(_runs([float("nan")]), {"cpu_cores": 2}) is None


def _folder(path: Path, load: float) -> Path:
    path.mkdir()
    synthetic_runs().to_csv(path / "runs.csv", index=False)
    (path / "env.json").write_text(json.dumps({"cpu_model": "Test CPU", "cpu_cores": 2, "status": "complete",
                                               "load_average_start": [load, 1, 1],
                                               "load_average_end": [load, 1, 1]}))
    return path


def test_compare_summary_line_warns_of_a_contended_side(tmp_path: Path, capsys) -> None:
    base, quiet, busy = (_folder(tmp_path / "base", 0.5), _folder(tmp_path / "quiet", 0.7),
                         _folder(tmp_path / "busy", 4.2))
    md = tmp_path / "c.md"
    main(["compare", str(base), str(quiet), "--markdown", str(md)])
    assert "contended" not in md.read_text()
    main(["compare", str(base), str(busy), "--markdown", str(md)])
    summary = [line for line in md.read_text().splitlines() if line.startswith("**")][0]
    assert "WARNING: current measured on a contended machine (load 4.2 on 2 cores): speed figures unreliable" in summary
    assert "WARNING: current measured on a contended machine" in capsys.readouterr().out
