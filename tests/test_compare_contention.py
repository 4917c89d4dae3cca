"""Issue 21: stored-baseline compare judges only what it can. Between two quiet sides the default
threshold (1.25, interval above it) flags a 2x slowdown; a side measured above its core count is
"not judged (contended ...)" per configuration and in the summary, and never "unchanged"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_compare import ENV, make_runs, write_set

from minibatch_core.analysis.compare import NOT_JUDGED, REGRESSED, UNCHANGED, CompareOptions, compare, load_results
from minibatch_core.cli import main


def _doubled_batch_32(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    rows = (out["batch_size"] == 32) & ~out["warmup"].astype(bool)
    out.loc[rows, "epoch_time_s"] = out.loc[rows, "epoch_time_s"] * 2
    return out


def _with_load(frame: pd.DataFrame, load: float) -> pd.DataFrame:
    return frame.assign(load_1m=load)


def _pair(tmp_path: Path, cur_load: float) -> tuple[Path, Path]:
    env = {**ENV, "cpu_cores": 2}
    base = write_set(tmp_path / "base", _with_load(make_runs(1), 0.5), env)
    cur = write_set(tmp_path / "cur", _with_load(_doubled_batch_32(make_runs(1)), cur_load), env)
    return base, cur


def test_the_default_threshold_flags_a_doubled_batch_32_between_quiet_sides(tmp_path, capsys):
    assert CompareOptions().max_slowdown == 1.25
    base, cur = _pair(tmp_path, cur_load=0.8)
    result = compare(load_results(base), load_results(cur))
    got = {(r.key["engine"], int(r.key["batch_size"])): r.status for r in result.rows}
    assert {k for k, v in got.items() if v == REGRESSED} == {("reference", 32), ("fast", 32)}
    assert main(["compare", str(base), str(cur)]) == 1
    assert "not judged (contended" not in capsys.readouterr().out


def test_a_contended_current_is_not_judged_and_says_so(tmp_path, capsys):
    base, cur = _pair(tmp_path, cur_load=5.0)
    result = compare(load_results(base), load_results(cur))
    assert {r.status for r in result.rows} == {NOT_JUDGED}  # never "unchanged"
    for row in result.rows:
        assert row.speed.verdict == NOT_JUDGED and "not judged (contended: current load 5.0 on 2 cores)" in row.notes[0]
    md = tmp_path / "c.md"
    assert main(["compare", str(base), str(cur), "--markdown", str(md)]) == 0
    summary = [line for line in md.read_text().splitlines() if line.startswith("**")][0]
    assert "6 not judged" in summary and "speed 6 not judged (contended: current load 5.0 on 2 cores)" in summary
    assert "not judged (contended: current load 5.0 on 2 cores)" in capsys.readouterr().out


def test_contention_is_judged_per_configuration(tmp_path):
    env = {**ENV, "cpu_cores": 2}
    frame = _with_load(make_runs(2), 0.5)
    busy = frame["engine"] == "fast"
    frame.loc[busy, "load_1m"] = 3.5  # only the fast engine's runs ended on a busy machine
    base = write_set(tmp_path / "base", _with_load(make_runs(1), 0.5), env)
    cur = write_set(tmp_path / "cur", frame, env)
    rows = {r.key["engine"]: r.status for r in compare(load_results(base), load_results(cur)).rows}
    assert rows == {"reference": UNCHANGED, "fast": NOT_JUDGED}


def test_a_loss_regression_still_fails_on_a_contended_side(tmp_path):
    env = {**ENV, "cpu_cores": 2}
    base = write_set(tmp_path / "base", _with_load(make_runs(1), 0.5), env)
    cur = write_set(tmp_path / "cur", _with_load(make_runs(2, loss_factor={("fast", 32): 1.5}), 6.0), env)
    result = compare(load_results(base), load_results(cur))
    assert result.regressed and sum(r.status == REGRESSED for r in result.rows) == 1


@pytest.mark.slow
def test_real_sweeps_doubled_then_contended(tmp_path, capsys):
    """A real (small) sweep; its copy with batch-32 epoch times doubled. The machine the tests run on may
    be busy, so both sides' recorded load is set: first quiet (the doubled copy regresses: exit 1), then
    the copy's above the core count (not judged: exit 0)."""
    sweep = tmp_path / "sweep"
    assert main(["run", "--engines", "fast", "--batch-sizes", "32,full", "--epochs", "30", "--seeds", "0,1,2",
                 "--out", str(sweep), "--quiet"]) == 0
    cores = json.loads((sweep / "env.json").read_text())["cpu_cores"]
    runs = pd.read_csv(sweep / "runs.csv")
    base, cur = tmp_path / "base", tmp_path / "cur"
    for folder, frame, load in ((base, runs, 0.1 * cores), (cur, _doubled_batch_32(runs), 0.2 * cores)):
        shutil.copytree(sweep, folder)
        _with_load(frame, load).to_csv(folder / "runs.csv", index=False)
    assert main(["compare", str(base), str(cur)]) == 1
    out = capsys.readouterr().out
    assert "regressed" in out and "not judged (contended" not in out
    _with_load(_doubled_batch_32(runs), cores + 1.5).to_csv(cur / "runs.csv", index=False)
    assert main(["compare", str(base), str(cur)]) == 0
    assert f"not judged (contended: current load {cores + 1.5:.1f} on {cores} cores)" in capsys.readouterr().out
