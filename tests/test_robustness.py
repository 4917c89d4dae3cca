"""Issue 10: divergence is a result, compare never passes what it cannot judge, bad paths and files are one
line and exit 2. Divergence and compare cases use real training runs (in-process, tiny)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from minibatch_core.analysis import tables
from minibatch_core.cli import main
from minibatch_core.engines.reference import ReferenceSession
from minibatch_core.input.config import RunConfig
from minibatch_core.records.io import load_runs
from minibatch_core.records.rows import run_rows
from minibatch_core.running import trainer
from minibatch_core.sweep import sweep as sweep_module
from minibatch_core.sweep.sweep import SweepConfig, execute, plan

FAKE_CALIBRATION = [{"workload": "test", "device": "cpu", "step_s": 1e-3, "repeats_step_s": [1e-3],
                     "torch_threads": 1}]


@pytest.fixture(autouse=True)
def _no_calibration(monkeypatch):
    # the calibration workload is covered by test_sweep; here it would only cost time
    monkeypatch.setattr(sweep_module, "calibrate", lambda devices, isolate=True: FAKE_CALIBRATION)


def _nan_from_epoch(monkeypatch, epoch: int) -> None:
    """A code regression stand-in: the reference engine's epoch loss turns NaN from ``epoch`` on (the
    training itself is real)."""
    real = ReferenceSession.run_epoch

    def run_epoch(self):
        out = real(self)
        self._calls = getattr(self, "_calls", 0) + 1
        if self._calls >= epoch:
            out.losses = [math.nan for _ in out.losses]
        return out

    monkeypatch.setattr(ReferenceSession, "run_epoch", run_epoch)


def _sweep(folder: Path, **settings) -> Path:
    settings = {"engines": "reference", "batch_sizes": "32", "seeds": "0,1", "epochs": 4, "devices": "cpu",
                **settings}
    the_plan = plan(SweepConfig(profile=False, **settings))
    execute(the_plan, folder, {"torch_version": "x", "cpu_capability": "y", "cpu_model": "AMD z"}, isolate=False)
    return folder


# --- divergence is a result ---------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["reference", "fast", "stacked", "sklearn"])
def test_divergence_is_recorded_and_training_stops(engine: str) -> None:
    config = RunConfig(engine=engine, optimizer="sgd", lr=1e20, batch_size="full", epochs=3)
    results = trainer.train_seeds(config, [0, 1], isolate=False)
    for r in results:
        assert r.diverged_epoch == 1 and r.diverged
        assert len(r.records) == 1 and math.isnan(r.records[0].loss) and math.isnan(r.records[0].eval_loss)
        rows = run_rows(r)
        assert rows["diverged"].all() and (rows["diverged_epoch"] == 1).all()


def test_divergence_mid_run_keeps_the_epochs_before(monkeypatch) -> None:
    _nan_from_epoch(monkeypatch, 3)
    r = trainer.train(RunConfig(epochs=5), isolate=False)
    assert r.diverged_epoch == 3
    assert [rec.epoch for rec in r.records] == [1, 2, 3]
    assert all(math.isfinite(rec.loss) for rec in r.records[:2]) and math.isnan(r.records[2].loss)


def test_train_prints_divergence_and_writes_strict_json(capsys) -> None:
    assert main(["train", "--optimizer", "sgd", "--lr", "1e20", "--epochs", "3", "--no-isolate"]) == 0
    out = capsys.readouterr().out
    assert "Epoch [1/3] Average Loss: nan" in out and "diverged at epoch 1" in out
    assert main(["train", "--optimizer", "sgd", "--lr", "1e20", "--epochs", "3", "--no-isolate", "--json"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text
    data = json.loads(text)
    assert data["diverged"] is True and data["diverged_epoch"] == 1 and data["epoch_losses"] == [None]


def test_lr_float32_cannot_hold_is_refused(capsys) -> None:
    assert main(["train", "--lr", "1e300", "--no-isolate"]) == 2
    assert "float32" in capsys.readouterr().err


def test_sklearn_divergence_does_not_abort_the_sweep(tmp_path: Path) -> None:
    folder = _sweep(tmp_path / "sk", engines="sklearn,reference", optimizer="sgd", lrs="1e20",
                    batch_sizes="1,full", seeds="0", epochs=3)
    runs = load_runs(folder)
    assert runs["run_id"].nunique() == 4 and runs["diverged"].all()
    assert (runs["diverged_epoch"] == 1).all() and runs["epoch_loss"].isna().all()
    assert json.loads((folder / "env.json").read_text())["status"] == "complete"


def test_acceptance_sweep_exits_0_and_records_divergence(tmp_path: Path, capsys) -> None:
    out = tmp_path / "div"
    code = main(["run", "--engines", "reference,fast", "--optimizer", "sgd", "--lrs", "1e20", "--batch-sizes",
                 "1,full", "--seeds", "0,1", "--epochs", "3", "--devices", "cpu", "--no-isolate", "--no-profile",
                 "--quiet", "--out", str(out)])
    runs = load_runs(out)
    assert runs["run_id"].nunique() == 8 and runs["diverged"].all() and (runs["diverged_epoch"] == 1).all()
    summary = tables.summarize(runs)
    assert (summary["n_diverged"] == 2).all() and (summary["diverged_epoch_first"] == 1).all()
    assert code == 0
    assert "diverged at epoch 1" in (out / "summary.md").read_text()


# --- compare never passes what it cannot judge --------------------------------------------------------------

@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    mp = pytest.MonkeyPatch()
    mp.setattr(sweep_module, "calibrate", lambda devices, isolate=True: FAKE_CALIBRATION)
    try:
        return _sweep(tmp_path_factory.mktemp("cmp") / "base")
    finally:
        mp.undo()


def test_current_diverged_where_baseline_converged_regresses(baseline: Path, tmp_path: Path, monkeypatch,
                                                              capsys) -> None:
    _nan_from_epoch(monkeypatch, 2)
    current = _sweep(tmp_path / "cur")
    assert main(["compare", str(baseline), str(current), "--csv", str(tmp_path / "v.csv")]) == 1
    verdicts = pd.read_csv(tmp_path / "v.csv")
    assert verdicts["status"].tolist() == ["regressed"]
    assert "diverged in the current (seed 0 at epoch 2, seed 1 at epoch 2)" in verdicts["notes"][0]
    assert verdicts["loss_diverged"][0] == "current"


def test_both_diverged_is_never_unchanged(tmp_path: Path, monkeypatch) -> None:
    _nan_from_epoch(monkeypatch, 2)
    a, b = _sweep(tmp_path / "a"), _sweep(tmp_path / "b")
    assert main(["compare", str(a), str(b), "--csv", str(tmp_path / "v.csv")]) == 0
    verdicts = pd.read_csv(tmp_path / "v.csv")
    assert verdicts["status"].tolist() == ["not judged"]
    assert "diverged on both sides" in verdicts["notes"][0]


def test_baseline_diverged_current_converged_improves(baseline: Path, tmp_path: Path, monkeypatch) -> None:
    _nan_from_epoch(monkeypatch, 2)
    diverged = _sweep(tmp_path / "d")
    assert main(["compare", str(diverged), str(baseline), "--csv", str(tmp_path / "v.csv")]) == 0
    assert pd.read_csv(tmp_path / "v.csv")["status"].tolist() == ["improved"]


def test_last_epoch_nan_is_not_replaced_by_the_epoch_before(baseline: Path, tmp_path: Path) -> None:
    """A file from before the diverged column (or doctored): NaN only in the last epoch, not flagged."""
    current = tmp_path / "cur"
    current.mkdir()
    runs = pd.read_csv(baseline / "runs.csv")
    last = runs["epoch"] == runs["epoch"].max()
    runs.loc[last, "epoch_loss"] = float("nan")
    runs.to_csv(current / "runs.csv", index=False)
    assert main(["compare", str(baseline), str(current), "--csv", str(tmp_path / "v.csv")]) == 1
    verdicts = pd.read_csv(tmp_path / "v.csv")
    assert "at epoch 4" in verdicts["notes"][0] and math.isnan(verdicts["loss_cur_final"][0])


def test_truncated_runs_csv_is_refused_with_the_line(baseline: Path, tmp_path: Path, capsys) -> None:
    current = tmp_path / "cut"
    current.mkdir()
    text = (baseline / "runs.csv").read_text()
    (current / "runs.csv").write_text(text[: len(text) * 2 // 3])
    assert main(["compare", str(baseline), str(current)]) == 2
    err = capsys.readouterr().err.strip()
    assert "truncated or malformed at line" in err and len(err.splitlines()) == 1


def test_runs_csv_cut_at_a_line_boundary_is_refused(baseline: Path, tmp_path: Path, capsys) -> None:
    current = tmp_path / "cut"
    current.mkdir()
    lines = (baseline / "runs.csv").read_text().splitlines(keepends=True)
    (current / "runs.csv").write_text("".join(lines[:-1]))  # the last run loses its last epoch
    assert main(["compare", str(baseline), str(current)]) == 2
    assert "holds 3 of its 4 epochs and did not diverge" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--markdown", "--csv"])
@pytest.mark.parametrize("target", ["/proc/x.md", "{file}/sub.md", "{dir}"])
def test_unwritable_compare_output_is_one_line_exit_2(baseline: Path, tmp_path: Path, capsys, flag: str,
                                                      target: str) -> None:
    (tmp_path / "afile").write_text("x")
    path = target.format(file=tmp_path / "afile", dir=tmp_path)
    assert main(["compare", str(baseline), str(baseline), flag, path]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "cannot be written" in captured.err
    assert captured.out == ""  # refused before any verdict was printed


# --- paths and files ----------------------------------------------------------------------------------------

RUN = ["run", "--engines", "reference", "--batch-sizes", "32", "--seeds", "0", "--epochs", "2", "--devices", "cpu",
       "--no-isolate", "--no-profile", "--quiet"]


def _refused_before_training(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("trained before the output folder was checked")
    monkeypatch.setattr(trainer, "train_seeds", boom)


@pytest.mark.parametrize("out", ["/proc/x", "{file}/sub", "/sys/minibatch-x"])
def test_unwritable_out_is_refused_before_training(tmp_path: Path, monkeypatch, capsys, out: str) -> None:
    _refused_before_training(monkeypatch)
    (tmp_path / "afile").write_text("x")
    assert main([*RUN, "--out", out.format(file=tmp_path / "afile")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be written" in err


def test_read_only_folder_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        probe = ro / "probe"
        try:
            probe.write_text("x")
            probe.unlink()
            pytest.skip("running as root: permission bits do not stop writes (/sys covers read-only above)")
        except PermissionError:
            pass
        _refused_before_training(monkeypatch)
        assert main([*RUN, "--out", str(ro / "sweep")]) == 2
        assert "cannot be written" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_default_results_in_unwritable_cwd(monkeypatch, capsys) -> None:
    _refused_before_training(monkeypatch)
    monkeypatch.chdir("/proc")
    assert main(RUN) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "default output folder 'results'" in err


def test_binary_config_file_names_the_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "garbage.toml"
    bad.write_bytes(bytes(range(256)) * 4)
    assert main([*RUN, "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "garbage.toml" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("line, key", [("lrs = [true]", "lrs"), ("seeds = [true]", "seeds"),
                                       ("epochs = true", "epochs"), ("batch_sizes = [0.5]", "batch_sizes")])
def test_config_bad_value_names_the_key(tmp_path: Path, capsys, line: str, key: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(line + "\n")
    assert main([*RUN, "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{key} = " in err and "c.toml" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_sigint_before_the_first_run_says_nothing_was_recorded(tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(trainer, "train_seeds", interrupt)
    out = tmp_path / "o"
    assert main([*RUN, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert "before any run completed" in err and "runs.csv" not in err and len(err.splitlines()) == 1
    assert not (out / "runs.csv").exists()


def test_no_isolate_records_an_honest_memory_method() -> None:
    in_process = trainer.train(RunConfig(epochs=1), isolate=False)
    assert "fresh worker" not in in_process.memory_method and "--no-isolate" in in_process.memory_method


def test_no_isolate_memory_method_in_a_fresh_worker() -> None:
    isolated = trainer.train(RunConfig(epochs=1), isolate=True)
    assert "one fresh worker process per run" in isolated.memory_method


def test_batch_sizes_resolving_to_the_same_size_are_planned_once() -> None:
    p = plan(SweepConfig(engines="reference", batch_sizes="200,32,full", seeds="0,1", devices="cpu"))
    assert sorted({str(j.config.batch_size) for j in p.jobs}) == ["32", "full"]
    assert p.total_runs == 4
    assert p.notes == ("batch sizes 200, full all resolve to 178 (all rows of wine): measured once, as full",)
    # the same specs on data with more rows stay distinct
    p = plan(SweepConfig(engines="reference", datasets="synthetic", batch_sizes="200,full", seeds="0",
                         devices="cpu"))
    assert sorted(str(j.config.batch_size) for j in p.jobs) == ["200", "full"] and p.notes == ()


def test_batch_merge_note_is_printed(tmp_path: Path, capsys) -> None:
    argv = [*RUN, "--batch-sizes", "200,full", "--epochs", "1", "--out", str(tmp_path / "o")]
    code = main(argv)
    err = capsys.readouterr().err
    assert "note: batch sizes 200, full all resolve to 178" in err
    assert code == 0 and load_runs(tmp_path / "o")["batch_spec"].unique().tolist() == ["full"]


def test_one_epoch_has_no_timed_epoch(capsys) -> None:
    assert main(["train", "--epochs", "1", "--no-isolate"]) == 0
    out = capsys.readouterr().out
    assert "no timed epoch" in out and "median epoch" not in out
    r = trainer.train(RunConfig(epochs=1), isolate=False)
    summary = tables.summarize(run_rows(r))
    assert summary["n_timed_epochs"].tolist() == [0] and summary["epoch_time_median_s"].isna().all()
