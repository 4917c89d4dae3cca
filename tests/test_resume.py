"""``run --resume DIR``: finish an interrupted sweep from its recorded settings; refuse a changed one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from minibatch_core.cli import main
from minibatch_core.records.io import load_runs
from minibatch_core.running import trainer
from minibatch_core.sweep import sweep as sweep_module

SWEEP = ["run", "--engines", "reference", "--batch-sizes", "32,full", "--seeds", "0-2", "--epochs", "2",
         "--devices", "cpu", "--no-profile", "--no-isolate", "--quiet"]
RESUME = ["--no-isolate", "--quiet"]


@pytest.fixture(autouse=True)
def _counted_training(monkeypatch):
    monkeypatch.setattr(sweep_module, "calibrate", lambda devices, isolate=True: [
        {"workload": "test", "device": d, "step_s": 1e-3, "repeats_step_s": [1e-3], "torch_threads": 1}
        for d in devices])


def _interrupted(folder: Path, monkeypatch, after_jobs: int) -> list:
    """Run SWEEP into folder, interrupted when job ``after_jobs + 1`` starts. Returns the call log that
    later training appends to."""
    real = trainer.train_seeds
    calls: list = []

    def counted(config, seeds, **kwargs):
        calls.append((str(config.batch_size), tuple(seeds)))
        if len(calls) == after_jobs + 1 and not getattr(counted, "resumed", False):
            raise KeyboardInterrupt
        return real(config, seeds, **kwargs)

    monkeypatch.setattr(trainer, "train_seeds", counted)
    assert main([*SWEEP, "--out", str(folder)]) == (130 if after_jobs < 6 else 0)
    counted.resumed = True
    calls.clear()
    return calls


def test_resume_runs_only_what_is_missing_and_rebuilds_the_report(tmp_path: Path, monkeypatch, capsys) -> None:
    folder = tmp_path / "s"
    calls = _interrupted(folder, monkeypatch, after_jobs=2)
    before = load_runs(folder)
    assert before["run_id"].nunique() == 2
    assert main(["run", "--resume", str(folder), *RESUME]) == 0
    assert calls == [("32", (2,)), ("full", (0,)), ("full", (1,)), ("full", (2,))]
    after = load_runs(folder)
    assert after["run_id"].nunique() == 6 and len(after) == 12
    kept = after[after["run_id"].isin(before["run_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before)  # recorded runs kept as they were
    env = json.loads((folder / "env.json").read_text())
    assert env["status"] == "complete" and env["runs_done"] == env["runs_total"] == 6 and env["resumed_utc"]
    assert (folder / "report.html").exists() and (folder / "summary.md").exists()
    # and compare accepts the finished folder as complete
    assert main(["compare", str(folder), str(folder)]) == 0


@pytest.mark.slow
def test_resume_of_a_complete_sweep_runs_nothing(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "s"
    calls = _interrupted(folder, monkeypatch, after_jobs=6)  # never interrupted: 6 jobs, all done
    assert main(["run", "--resume", str(folder), *RESUME]) == 0
    assert calls == [] and load_runs(folder)["run_id"].nunique() == 6


def test_resume_before_the_first_run(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "s"
    calls = _interrupted(folder, monkeypatch, after_jobs=0)
    assert not (folder / "runs.csv").exists()
    assert main(["run", "--resume", str(folder), *RESUME]) == 0
    assert len(calls) == 6 and load_runs(folder)["run_id"].nunique() == 6


def test_resume_refuses_changed_settings_unless_forced(tmp_path: Path, monkeypatch, capsys) -> None:
    folder = tmp_path / "s"
    calls = _interrupted(folder, monkeypatch, after_jobs=2)
    capsys.readouterr()
    assert main(["run", "--resume", str(folder), "--lrs", "0.01", *RESUME]) == 2
    err = capsys.readouterr().err.strip()
    assert "lrs: [0.001] recorded, [0.01] now" in err and "--force" in err and len(err.splitlines()) == 1
    assert main(["run", "--resume", str(folder), *RESUME[1:]]) == 2  # isolation differs
    assert "isolation" in capsys.readouterr().err
    assert calls == [] and load_runs(folder)["run_id"].nunique() == 2  # nothing touched
    assert main(["run", "--resume", str(folder), "--seeds", "0-1", "--force", *RESUME]) == 0
    runs = load_runs(folder)
    assert sorted(runs["seed"].unique()) == [0, 1] and runs["run_id"].nunique() == 4


def test_resume_refuses_other_code(tmp_path: Path, monkeypatch, capsys) -> None:
    folder = tmp_path / "s"
    _interrupted(folder, monkeypatch, after_jobs=2)
    env = json.loads((folder / "env.json").read_text())
    env["minibatch_bench"] = "0.0.1"
    env["versions"]["torch"] = "1.0"
    (folder / "env.json").write_text(json.dumps(env))
    capsys.readouterr()
    assert main(["run", "--resume", str(folder), *RESUME]) == 2
    err = capsys.readouterr().err
    assert "minibatch-bench: 0.0.1 recorded" in err and "torch: 1.0 recorded" in err
    assert main(["run", "--resume", str(folder), "--force", *RESUME]) == 0
    assert json.loads((folder / "env.json").read_text())["resumed_with_changes"]


@pytest.mark.parametrize("case", ["missing", "no-env", "with-out", "force-alone"])
def test_resume_bad_input_is_one_line(tmp_path: Path, capsys, case: str) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    argv = {"missing": ["run", "--resume", str(tmp_path / "nope")],
            "no-env": ["run", "--resume", str(folder)],
            "with-out": ["run", "--resume", str(folder), "--out", str(tmp_path / "o")],
            "force-alone": ["run", "--force", "--out", str(tmp_path / "o")]}[case]
    assert main([*argv, *RESUME]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
