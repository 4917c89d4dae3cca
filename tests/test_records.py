"""The records layer: one schema, one identity, one loader."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from minibatch_core import RunConfig, train_seeds
from minibatch_core.cli import main
from minibatch_core.errors import MinibatchError
from minibatch_core.records import columns
from minibatch_core.records.axes import AXES, AXIS_BY_FIELD
from minibatch_core.records.identity import IDENTITY_COLUMNS, config_id, of_result
from minibatch_core.records.io import load_runs
from minibatch_core.records.rows import run_rows
from minibatch_core.sweep.sweep import SweepConfig, plan

ROOT = Path(__file__).resolve().parents[1]


def test_results_readme_tables_are_the_schema():
    readme = (ROOT / "results" / "README.md").read_text()
    assert columns.markdown(columns.RUN_COLUMNS) in readme
    assert columns.markdown(columns.PROFILE_COLUMNS) in readme


def test_every_run_setting_is_an_axis():
    # a new RunConfig field that changes a run must become an axis (and so a column, an identity part and
    # a sweep option); record_batches only changes what is printed
    settings = {f.name for f in dataclasses.fields(RunConfig)} - {"record_batches"}
    assert settings == set(AXIS_BY_FIELD)


def test_an_axis_defaults_to_the_lesson_and_parses_its_values():
    assert AXIS_BY_FIELD["lr"].default == 0.001 and AXIS_BY_FIELD["batch_size"].default == 32
    assert AXIS_BY_FIELD["batch_size"].parse("1,32,full,32") == (1, 32, "full")
    assert AXIS_BY_FIELD["threads"].parse("auto") is None and AXIS_BY_FIELD["threads"].parse("2") == 2
    for field, bad in [("lr", "true"), ("lr", [True]), ("lr", "1e300"), ("seed", "3-1"), ("scale", "minmax"),
                       ("workers", "0"), ("batch_size", "0"), ("hidden", "10,0")]:
        with pytest.raises(MinibatchError):
            AXIS_BY_FIELD[field].parse(bad)


def _ident(**changes):
    base = dict(engine="reference", dataset="wine", device="cpu", batch_spec="32", lr=0.001, optimizer="adam",
                hidden="10-10", epochs=10, target="", scale="none", data_seed=0, torch_threads=1, workers=1,
                n_samples=178, n_features=13, n_classes=3)
    return {**base, **changes}


def test_configurations_differing_in_any_identity_axis_never_share_an_id():
    assert config_id(_ident()) == "reference|wine|cpu|b32|lr0.001"  # the lesson's: the documented form
    variants = {"engine": "fast", "dataset": "iris", "device": "cuda:0", "batch_spec": "full", "lr": 0.01,
                "optimizer": "sgd", "hidden": "32-32", "target": "label", "scale": "standard", "data_seed": 3,
                "torch_threads": 2, "workers": 2, "model": "cnn", "loss": "mse", "model_hash": "0123456789ab"}
    ids = {config_id(_ident(**{k: v})) for k, v in variants.items()}
    assert len(ids) == len(variants) and config_id(_ident()) not in ids
    # synthetic data is defined by its shape, and two shapes are two configurations
    a = config_id(_ident(dataset="synthetic", n_samples=1000))
    assert a != config_id(_ident(dataset="synthetic", n_samples=2000))
    assert set(variants) | {"epochs", "n_samples", "n_features", "n_classes"} == set(IDENTITY_COLUMNS)


def test_plan_is_the_product_of_the_axes():
    sweep = SweepConfig(datasets="wine,iris", batch_sizes="1,full", lrs="0.001,0.01", engines="reference,stacked",
                        seeds="0-2", devices="cpu", epochs=1)
    jobs = plan(sweep).jobs
    # reference: one job per seed; stacked (multi-seed): one job for all seeds
    assert len(jobs) == 2 * 2 * 2 * (3 + 1)
    assert {(j.config.dataset, j.config.batch_size, j.config.lr, j.config.engine) for j in jobs} == {
        (d, b, lr, e) for d in ("wine", "iris") for b in (1, "full") for lr in (0.001, 0.01)
        for e in ("reference", "stacked")}


@pytest.fixture(scope="module")
def scaled_and_unscaled(tmp_path_factory):
    """Two real result folders that differ only in --scale."""
    folders = {}
    for scale in ("none", "standard"):
        folder = tmp_path_factory.mktemp(scale)
        results = train_seeds(RunConfig(batch_size=32, epochs=4, scale=scale), [0], isolate=False)
        pd.concat([run_rows(r, calibration_step_s=1e-3) for r in results]).to_csv(folder / "runs.csv", index=False)
        (folder / "env.json").write_text(json.dumps({"status": "complete"}))
        folders[scale] = folder
    return folders


def test_scale_is_recorded_and_part_of_the_identity(scaled_and_unscaled):
    none, standard = (load_runs(scaled_and_unscaled[s]) for s in ("none", "standard"))
    assert set(none["scale"]) == {"none"} and set(standard["scale"]) == {"standard"}
    assert set(standard["config_id"]) == {"reference|wine|cpu|b32|lr0.001|scale=standard"}
    assert none["epoch_loss"].iloc[-1] != standard["epoch_loss"].iloc[-1]


def test_compare_refuses_to_match_a_scaled_and_an_unscaled_sweep(scaled_and_unscaled, capsys):
    code = main(["compare", str(scaled_and_unscaled["none"]), str(scaled_and_unscaled["standard"])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "nothing matched" in err and "scale: none vs standard" in err


def test_compare_lists_them_apart_when_other_configurations_match(scaled_and_unscaled, tmp_path):
    both = tmp_path / "both"
    both.mkdir()
    frames = [pd.read_csv(scaled_and_unscaled[s] / "runs.csv") for s in ("none", "standard")]
    pd.concat(frames).to_csv(both / "runs.csv", index=False)
    (both / "env.json").write_text("{}")
    md = tmp_path / "c.md"
    assert main(["compare", str(scaled_and_unscaled["none"]), str(both), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert text.count("| unchanged |") == 1 and text.count("| new |") == 1 and "scale=standard" in text


def test_the_loader_refuses_malformed_files_with_the_line(tmp_path, scaled_and_unscaled):
    good = (scaled_and_unscaled["none"] / "runs.csv").read_text()
    lines = good.splitlines()
    row = lines[2].split(",")
    row[lines[0].split(",").index("epoch")] = "two"
    cases = {
        "cut": (good[: good.rindex(",", 0, len(good) - 40)], "truncated or malformed at line"),
        "type": ("\n".join([*lines[:2], ",".join(row), *lines[3:]]) + "\n",
                 "column 'epoch' holds 'two' at line 3: expected a number"),
        "column": ("\n".join(",".join(line.split(",")[:3]) for line in good.splitlines()) + "\n", "missing column"),
        "empty": ("", "empty file"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        with pytest.raises(MinibatchError, match=message):
            load_runs(path)


def test_identity_of_a_result_matches_its_rows(scaled_and_unscaled):
    frame = load_runs(scaled_and_unscaled["none"])
    row = frame.iloc[0]
    assert {c: row[c] for c in ("engine", "scale", "batch_spec", "workers")} == {
        "engine": "reference", "scale": "none", "batch_spec": "32", "workers": 1}
    assert all(a.record_column in frame.columns for a in AXES)


def test_of_result_reads_the_resolved_values():
    [result] = train_seeds(RunConfig(batch_size="full", epochs=1), [0], isolate=False)
    ident = of_result(result)
    assert ident["batch_spec"] == "full" and ident["n_samples"] == 178 and ident["torch_threads"] >= 1
