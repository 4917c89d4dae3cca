"""`minibatch-bench run`: the output folder's files, their schema and content, atomic progress, refusals.

One tiny real sweep (wine, batch sizes 32 and full, every engine, seeds 0 and 1, 2 epochs) is shared by the
tests of this module. Nothing here asserts on timing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from minibatch_core.analysis.tables import PHASES
from minibatch_core.cli import main
from minibatch_core.commands.run import point_latest, sweep_from_args
from minibatch_core.engines import default_engine_names, engine_names, get_engine
from minibatch_core.errors import MinibatchError
from minibatch_core.records.axes import parse_hidden_list, parse_seeds
from minibatch_core.records.columns import RUN_COLUMNS
from minibatch_core.running import trainer
from minibatch_core.sweep import sweep as sweep_module
from minibatch_core.sweep.sweep import SweepConfig, plan

SEEDS = [0, 1]
EPOCHS = 2
# --devices cpu: on a GPU machine the default (auto) would add CUDA runs this module's counts do not expect
TINY = ["--datasets", "wine", "--batch-sizes", "32,full", "--seeds", "0,1", "--epochs", str(EPOCHS), "--devices", "cpu"]
RESULT_COLUMNS = ["device_name", "optimizer", "epochs", "warmup", "param_bytes", "grad_bytes",
                  "optimizer_state_bytes", "activation_bytes", "replicas", "n_samples", "hidden",
                  "calibration_step_s"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """The tiny sweep, run through the CLI in the default place (results/<timestamp>, results/latest)."""
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["run", *TINY, "--quiet"]) == 0
    latest = root / "results" / "latest"
    assert latest.is_symlink(), "results/latest should point to the new sweep"
    assert not os.path.isabs(os.readlink(latest)), "results/latest should be a relative link"
    return latest.resolve()


@pytest.fixture(scope="module")
def runs(sweep_dir: Path) -> pd.DataFrame:
    return pd.read_csv(sweep_dir / "runs.csv", dtype={"batch_spec": str, "hidden": str})


def test_folder_holds_every_output(sweep_dir: Path) -> None:
    for name in ["runs.csv", "summary.csv", "summary.md", "report.md", "report.html", "env.json",
                 "calibration.json", "plots/loss_vs_epoch.png", "plots/loss_vs_time.png",
                 "plots/epoch_time_vs_batch_size.png", "plots/peak_memory_vs_batch_size.png",
                 "plots/throughput.png"]:
        assert (sweep_dir / name).is_file(), name
    assert not [p for p in sweep_dir.rglob("*") if p.name.endswith(".tmp")], "temp files left behind"
    assert sweep_dir.name[:8].isdigit() and sweep_dir.name.endswith("Z"), sweep_dir.name


def test_runs_csv_schema_and_content(runs: pd.DataFrame) -> None:
    assert list(runs.columns[:1]) == ["run_id"]
    assert list(runs.columns) == [c.name for c in RUN_COLUMNS]  # exactly the schema, in its order
    assert set(RESULT_COLUMNS) <= set(runs.columns)
    engines = default_engine_names()
    assert set(runs["engine"]) == set(engines)
    assert set(runs["batch_spec"]) == {"32", "full"}
    assert set(runs.loc[runs["batch_spec"] == "full", "batch_size"]) == {178}
    assert set(runs.loc[runs["batch_spec"] == "32", "batch_size"]) == {32}
    # one row per run x epoch; run ids are unique per engine x batch size x seed
    assert runs["run_id"].nunique() == len(engines) * 2 * len(SEEDS)
    assert len(runs) == runs["run_id"].nunique() * EPOCHS
    assert (runs.groupby("run_id")["epoch"].apply(sorted) == pd.Series([[1, 2]] * runs["run_id"].nunique(),
            index=runs.groupby("run_id")["epoch"].apply(sorted).index)).all()
    assert runs.groupby("run_id")[["engine", "batch_spec", "seed"]].nunique().eq(1).all().all()
    assert "reference|wine|cpu|b32|s0|lr0.001" in set(runs["run_id"])
    assert set(runs["seed"]) == set(SEEDS)
    assert (runs["hidden"] == "10-10").all() and (runs["lr"] == 0.001).all()
    assert (runs["epoch_time_s"] > 0).all() and (runs["samples_per_s"] > 0).all()
    assert np.isfinite(runs["epoch_loss"]).all()
    assert runs["eval_accuracy"].between(0, 1).all()
    assert (runs["warmup"] == (runs["epoch"] == 1)).all()
    cumsum = runs.sort_values(["run_id", "epoch"]).groupby("run_id")["epoch_time_s"].cumsum()
    assert np.allclose(cumsum, runs.sort_values(["run_id", "epoch"])["cumulative_time_s"])
    # steps follow from the batch size: ceil(178 / b)
    assert set(runs.loc[runs["batch_spec"] == "32", "steps"]) == {6}
    assert set(runs.loc[runs["batch_spec"] == "full", "steps"]) == {1}
    for engine in engines:
        replicas = set(runs.loc[runs["engine"] == engine, "replicas"])
        assert replicas == ({len(SEEDS)} if get_engine(engine).multi_seed else {1}), engine


def test_calibration_json_feeds_runs(sweep_dir: Path, runs: pd.DataFrame) -> None:
    calibration = json.loads((sweep_dir / "calibration.json").read_text())
    assert [c["device"] for c in calibration] == ["cpu"]
    assert calibration[0]["step_s"] > 0 and len(calibration[0]["repeats_step_s"]) >= 3
    assert np.allclose(runs["calibration_step_s"], calibration[0]["step_s"])


def test_profile_csv_covers_first_seed(sweep_dir: Path) -> None:
    profile = pd.read_csv(sweep_dir / "profile.csv", dtype={"batch_spec": str})
    assert {"engine", "dataset", "device", "batch_spec", "batch_size", "phase", "mean_step_s"} <= set(profile)
    assert set(profile["phase"]) <= set(PHASES)
    assert (profile["mean_step_s"] >= 0).all()
    # one profile per configuration at most, taken from its first seed
    # ... and the all-reduce is a phase of the distributed engine's step only
    counts = profile.groupby(["engine", "batch_spec"])["phase"].count()
    assert (counts == [len(PHASES) - (engine != "ddp") for engine, _ in counts.index]).all()
    assert set(profile["seed"]) == {SEEDS[0]}
    assert "reference" in set(profile["engine"]), "the reference engine always splits its step"


def test_env_json(sweep_dir: Path) -> None:
    env = json.loads((sweep_dir / "env.json").read_text())
    assert env["status"] == "complete" and env["runs_done"] == env["runs_total"]
    for key in ["python", "cpu_model", "cpu_cores", "torch_threads", "torch_cpu_capability", "cuda_available",
                "gpus", "git", "argv", "sweep", "finished_utc", "sweep_wall_s"]:
        assert key in env, key
    assert env["versions"]["torch"] and env["versions"]["scikit-learn"] and env["versions"]["pandas"]
    sweep = env["sweep"]
    assert sweep["seeds"] == SEEDS and sweep["epochs"] == EPOCHS and sweep["batch_sizes"] == ["32", "full"]
    assert sweep["engines"] == default_engine_names() and sweep["devices_expanded"] == ["cpu"]
    # which label became which class number, per dataset as runs.csv names it
    assert env["classes"] == {"wine": {"0": "class_0", "1": "class_1", "2": "class_2"}}


def test_summary_csv_matches_runs(sweep_dir: Path, runs: pd.DataFrame) -> None:
    summary = pd.read_csv(sweep_dir / "summary.csv", dtype={"batch_spec": str, "hidden": str})
    assert len(summary) == 4 * 2  # the four default engines (reference, fast, stacked, sklearn) x batch 32, full
    assert (summary["n_seeds"] == len(SEEDS)).all()
    for _, row in summary.iterrows():
        mine = runs[(runs["engine"] == row["engine"]) & (runs["batch_spec"] == row["batch_spec"])]
        final = mine[mine["epoch"] == EPOCHS]["epoch_loss"]
        assert row["final_loss_mean"] == pytest.approx(final.mean())
        timed = mine[mine["epoch"] > 1]  # warm-up excluded
        if row["engine"] == "stacked":  # one pass trains every seed: its time, on each seed's row, is one sample
            timed = timed.drop_duplicates(subset=["epoch"])
        times = np.sort(timed["epoch_time_s"].to_numpy())
        assert len(times) == (EPOCHS - 1) * (1 if row["engine"] == "stacked" else len(SEEDS))
        assert row["epoch_time_median_s"] == pytest.approx(np.median(times))
        # quartiles by linear interpolation between order statistics, written out
        q = [times[0] + f * (times[-1] - times[0]) for f in (0.25, 0.75)] if len(times) == 2 else None
        if q is not None:
            assert [row["epoch_time_q1_s"], row["epoch_time_q3_s"]] == pytest.approx(q)
    b32 = summary[summary["batch_spec"] == "32"].set_index("engine")
    for _, row in summary.iterrows():
        expected = row["epoch_time_median_s"] / b32.loc[row["engine"], "epoch_time_median_s"]
        assert row["time_ratio_vs_b32"] == pytest.approx(expected)
        assert row["loss_ratio_vs_b32"] == pytest.approx(row["final_loss_mean"] / b32.loc[row["engine"],
                                                                                          "final_loss_mean"])
    ref = summary[summary["engine"] == "reference"]
    assert np.allclose(ref["speedup_vs_reference"], 1.0)
    md = (sweep_dir / "summary.md").read_text()
    env = json.loads((sweep_dir / "env.json").read_text())
    assert env["cpu_model"] in md and "torch threads" in md
    assert md.count("\n| ") == len(summary) + 1  # header + one line per configuration


@pytest.mark.slow  # a second sweep or report build
def test_report_rebuilds_the_same_tables(sweep_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ["runs.csv", "profile.csv", "env.json", "calibration.json"]:
        shutil.copy(sweep_dir / name, copy / name)
    assert main(["report", str(copy)]) == 0
    before = pd.read_csv(sweep_dir / "summary.csv")
    after = pd.read_csv(copy / "summary.csv")
    pd.testing.assert_frame_equal(before, after)
    assert (copy / "summary.md").read_text() == (sweep_dir / "summary.md").read_text()
    assert (copy / "report.html").stat().st_size > 10_000


def test_interrupted_sweep_keeps_complete_runs_only(tmp_path: Path, monkeypatch, capsys) -> None:
    real = trainer.train_seeds
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_seeds", flaky)
    # the calibration workload is checked on the real sweep above; here it would only cost time
    monkeypatch.setattr(sweep_module, "calibrate", lambda devices, isolate=True: [
        {"workload": "test", "device": d, "step_s": 1e-3, "repeats_step_s": [1e-3], "torch_threads": 1}
        for d in devices])
    out = tmp_path / "stopped"
    code = main(["run", "--engines", "reference", "--batch-sizes", "32,full", "--seeds", "0-2", "--epochs", "2",
                 "--devices", "cpu", "--no-profile", "--no-isolate", "--quiet", "--out", str(out)])
    assert code == 130
    err = capsys.readouterr().err.strip()
    assert "interrupted after 2 of 6 runs" in err and len(err.splitlines()) == 1
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["run_id"].unique()) == ["reference|wine|cpu|b32|s0|lr0.001",
                                               "reference|wine|cpu|b32|s1|lr0.001"]
    # every cell filled, except those empty by design: no target column (bundled data), no divergence, no
    # held-out split (a study's columns), no model hash (a built-in model: its code is the package's), no
    # cuBLAS workspace (CPU)
    empty = ["target", "diverged_epoch", "val_loss", "val_accuracy", "model_hash", "cuda_workspace_bytes"]
    assert len(runs) == 2 * 2 and runs.drop(columns=empty).notna().all().all()
    assert sorted(p.name for p in out.iterdir()) == ["calibration.json", "env.json", "runs.csv"]
    assert json.loads((out / "env.json").read_text())["status"] == "interrupted"


def test_out_refuses_an_earlier_sweep(sweep_dir: Path, capsys) -> None:
    before = (sweep_dir / "runs.csv").read_bytes()
    assert main(["run", *TINY, "--quiet", "--out", str(sweep_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to overwrite" in err
    assert (sweep_dir / "runs.csv").read_bytes() == before


@pytest.mark.parametrize("bad", [
    ["--batch-sizes", "0"], ["--batch-sizes", "32,abc"], ["--seeds", "x"], ["--seeds", "5-2"],
    ["--engines", "nope"], ["--devices", "tpu"], ["--lrs", "-1"], ["--epochs", "0"], ["--datasets", "nope"],
    ["--hidden", "10,0"], ["--optimizer", "rmsprop"], ["--config", "missing.toml"],
])
def test_bad_input_exits_2_with_one_line_and_no_folder(bad: list[str], tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    assert main(["run", *bad, "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("minibatch-bench run: error:"), err
    assert not out.exists()


def test_config_file_and_flag_override(tmp_path: Path, capsys) -> None:
    toml = tmp_path / "sweep.toml"
    toml.write_text('batch_sizes = [8, "full"]\nseeds = "0-3"\nengines = "all"\nepochs = 3\nprofile = false\n'
                    'hidden = [[10, 10], [20]]\n')
    from minibatch_core.cli import build_parser

    args = build_parser().parse_args(["run", "--config", str(toml), "--seeds", "7", "--lrs", "0.01,0.1"])
    sweep = sweep_from_args(args)
    assert sweep.batch_sizes == (8, "full") and sweep.seeds == (7,) and sweep.epochs == 3
    assert sweep.lrs == (0.01, 0.1) and sweep.profile is False and sweep.hidden == ((10, 10), (20,))
    the_plan = plan(sweep)
    assert the_plan.total_runs == 2 * 2 * 2 * len(engine_names())  # batch x lr x hidden x all engines
    toml.write_text("batch_size = 3\n")
    assert main(["run", "--config", str(toml), "--quiet", "--out", str(tmp_path / "x")]) == 2
    assert "unknown sweep setting 'batch_size'" in capsys.readouterr().err


def test_list_parsing() -> None:
    assert parse_seeds("0-2,5") == (0, 1, 2, 5)
    assert parse_seeds([3, 1, 3]) == (3, 1)
    assert parse_hidden_list("10,10") == ((10, 10),)
    assert parse_hidden_list(["10,10", "32-32"]) == ((10, 10), (32, 32))
    assert SweepConfig(batch_sizes="1,32,full,32").batch_sizes == (1, 32, "full")
    with pytest.raises(MinibatchError):
        SweepConfig(datasets="")


def test_default_plan_is_the_main_job() -> None:
    sweep = SweepConfig()
    assert sweep.datasets == ("wine",) and sweep.batch_sizes == (1, 32, "full") and sweep.seeds == (0, 1, 2)
    # the README's default sweep, written out rather than read from the registry
    assert sweep.epochs == 10 and sweep.engine_list == ("reference", "fast", "stacked", "sklearn")
    assert sweep.devices == ("auto",)
    assert SweepConfig(engines="all").engine_list == ("reference", "fast", "stacked", "sklearn", "ddp")
    the_plan = plan(sweep)
    assert the_plan.devices[0] == "cpu"
    assert the_plan.total_runs == 3 * 3 * 4 * len(the_plan.devices)  # batch sizes x seeds x engines x devices


def test_latest_link_is_replaced(tmp_path: Path) -> None:
    for name in ["20260101T000000Z", "20260101T000001Z"]:
        (tmp_path / name).mkdir()
        assert point_latest(tmp_path / name)
        assert os.readlink(tmp_path / "latest") == name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow  # a second sweep or report build
def test_threads_reach_every_run_and_the_records(tmp_path):
    out = tmp_path / "t"
    assert main(["run", "--engines", "reference", "--batch-sizes", "full", "--seeds", "0", "--epochs", "2",
                     "--devices", "cpu", "--threads", "1", "--no-profile", "--quiet", "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["torch_threads"]) == {1}
    assert json.loads((out / "env.json").read_text())["torch_threads"] == 1


def test_records_file_rewrites_after_each_job_and_ends_in_plan_order(tmp_path):
    """Each rewrite holds the kept rows, then every completed job's (completion order), with the values a
    reader of the whole frame gets; the final file is the frames written in the plan's order."""
    kept = pd.DataFrame({"run_id": ["k"], "loss": [0.5], "note": ["a, quoted"]})
    jobs = {2: pd.DataFrame({"run_id": ["c", "c"], "loss": [1.25, 1.0], "note": ["", "x"]}),
            0: pd.DataFrame({"run_id": ["a"], "loss": [float("nan")], "note": ["y\nz"]})}
    path = tmp_path / "runs.csv"
    records = sweep_module.RecordsFile(path, kept)
    seen = [kept]
    for index, rows in jobs.items():  # completion order: job 2 first
        records.add(index, rows)
        records.write_progress()
        seen.append(rows)
        pd.testing.assert_frame_equal(pd.read_csv(path), _round_trip(pd.concat(seen, ignore_index=True), tmp_path))
    records.write_final()
    expected = tmp_path / "expected.csv"
    pd.concat([kept, jobs[0], jobs[2]], ignore_index=True).to_csv(expected, index=False)
    assert path.read_bytes() == expected.read_bytes()


def test_records_file_aligns_jobs_with_other_columns(tmp_path):
    path = tmp_path / "profile.csv"
    records = sweep_module.RecordsFile(path, None)
    records.write_progress()
    assert not path.exists()  # nothing to write yet
    records.add(0, pd.DataFrame({"a": [1], "b": [2]}))
    records.add(1, pd.DataFrame({"b": [3], "c": [4]}))
    records.write_progress()
    assert pd.read_csv(path).fillna(-1).to_dict("list") == {"a": [1.0, -1.0], "b": [2, 3], "c": [-1.0, 4.0]}


def _round_trip(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    frame.to_csv(folder / "whole.csv", index=False)
    return pd.read_csv(folder / "whole.csv")
