"""One run schema: ``records.axes.AXES`` is the only list of what makes a run.

A hypothetical axis (``dropout``) is added the way a contributor would: a ``RunConfig`` field and an
``AXES`` entry, nothing else. Identity, ids, every file's columns, ``train``'s and ``run``'s options and
the rebuilding of a configuration from its record must all pick it up. It runs in a fresh interpreter, so
the patched table never leaks into the other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pandas as pd

from minibatch_core import RunConfig
from minibatch_core.records.columns import RUN_COLUMNS, names
from minibatch_core.records.identity import identity
from minibatch_core.records.rows import run_rows

NEW_AXIS = textwrap.dedent("""
    import dataclasses, json

    import minibatch_core.input.config as config

    @dataclasses.dataclass(frozen=True)
    class RunConfig(config.RunConfig):  # 1: the RunConfig field
        dropout: float = 0.0

    config.RunConfig = RunConfig
    import minibatch_core.records.axes as axes

    new = axes.Axis("dropout", "dropouts", float, "dropout probability", group="model", record=float)
    axes.AXES = (*axes.AXES, new)  # 2: its AXES entry
    axes.AXIS_BY_KEY[new.key] = new
    axes.AXIS_BY_FIELD[new.field] = new

    from minibatch_core.cli import build_parser
    from minibatch_core.commands.run import sweep_from_args
    from minibatch_core.commands.train import config_from_args
    from minibatch_core.records import columns, identity, instructions, study_columns
    from minibatch_core.sweep.sweep import plan

    ident = identity.identity(RunConfig(dropout=0.5))
    row = {**ident, "seed": 3}
    train = config_from_args(build_parser(["train"]).parse_args(["train", "--dropout", "0.25"]))
    sweep = sweep_from_args(build_parser(["run"]).parse_args(
        ["run", "--dropouts", "0.1,0.2", "--devices", "cpu", "--engines", "fast", "--batch-sizes", "32",
         "--seeds", "0"]))
    run_column = {c.name: c for c in columns.RUN_COLUMNS}["dropout"]
    print(json.dumps({
        "identity_columns": list(identity.IDENTITY_COLUMNS),
        "identity": ident["dropout"],
        "default_identity": identity.identity()["dropout"],
        "id": identity.config_id(ident),
        "lesson_id": identity.config_id(identity.identity()),
        "run_column": [run_column.dtype, run_column.fill],
        "instructions": "dropout" in instructions.COLUMNS,
        "study": "dropout" in [c.name for c in study_columns.STUDY_COLUMNS],
        "train": train.dropout,
        "run": sorted(job.config.dropout for job in plan(sweep).jobs),
        "rebuilt": identity.config_of(row).dropout,
    }))
""")


def test_a_new_axis_is_one_table_entry_and_its_config_field():
    done = subprocess.run([sys.executable, "-c", NEW_AXIS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["identity_columns"][-2:] == ["dropout", "model_hash"]
    assert got["identity"] == 0.5 and got["default_identity"] == 0.0
    # off its default it is named in the id; at the lesson's value it is left out, as every other axis
    assert got["id"] == "reference|wine|cpu|b32|lr0.001|dropout=0.5"
    assert got["lesson_id"] == "reference|wine|cpu|b32|lr0.001"
    assert got["run_column"] == ["float", 0.0]  # a file written before the axis existed meant 0.0
    assert got["instructions"] and got["study"]
    assert got["train"] == 0.25
    assert got["run"] == [0.1, 0.2]
    assert got["rebuilt"] == 0.5


def test_identity_takes_a_config_keywords_or_both():
    ident = identity(RunConfig(optimizer="sgd", threads=None), torch_threads=4, n_samples=178)
    assert ident["optimizer"] == "sgd" and ident["torch_threads"] == 4 and ident["n_samples"] == 178
    assert ident["hidden"] == "10-10" and ident["batch_spec"] == "32" and ident["target"] == ""
    # every axis by keyword, as before (runs.csv's column names or RunConfig's field names)
    assert identity(threads=2)["torch_threads"] == 2 and identity(batch_spec="full")["batch_spec"] == "full"


def test_identity_refuses_a_name_that_is_no_axis():
    import pytest

    with pytest.raises(TypeError, match="unknown axis 'dropuot'"):
        identity(dropuot=0.5)


def test_a_results_frame_is_the_records_layers_rows():
    from minibatch_core import train

    result = train(RunConfig(epochs=2, batch_size="full"), isolate=False)
    frame = result.to_frame()
    # one writer: the frame has runs.csv's columns (the old second writer had no ids, threads or model)
    assert list(frame.columns) == names(RUN_COLUMNS)
    assert {"run_id", "config_id", "torch_threads", "model", "loss", "scale"} <= set(frame.columns)
    assert frame["run_id"].tolist() == ["reference|wine|cpu|bfull|s0|lr0.001"] * 2
    pd.testing.assert_frame_equal(frame, run_rows(result))


def test_a_count_folder_rebuilds_the_configs_it_counted(tmp_path):
    from minibatch_core.records import instructions
    from minibatch_core.running.counting import CountOutcome, InstructionCount

    asked = [RunConfig(epochs=3, batch_size="full", optimizer="sgd", hidden=(4, 5), scale="standard", seed=7),
             RunConfig(dataset="synthetic", n_samples=300, epochs=2, model="linear", loss="mse")]
    shapes = [(178, 13, 3), (300, 20, 2)]
    counts = [InstructionCount(config=c, instructions=1000, steps=10, samples=100, batch_size=32, n_samples=n,
                               n_features=f, n_classes=k, torch_threads=1, final_loss=0.5)
              for c, (n, f, k) in zip(asked, shapes, strict=True)]
    instructions.write(tmp_path, CountOutcome(counts, {}))
    assert instructions.configs(instructions.load(tmp_path)) == asked


def test_the_data_axes_are_what_loads_a_runs_data():
    """``load_dataset``'s arguments for a run (what a worker loads, what runs share a table by) are the
    axes the options group as data: a new data axis that the loader ignored would train every value on the
    same rows."""
    from minibatch_core.input.data import data_options
    from minibatch_core.records.axes import AXES

    config = RunConfig(dataset="synthetic", n_samples=50, n_features=4, n_classes=3, data_seed=7, scale="standard")
    options = data_options(config)
    assert {"dataset" if k == "name" else k for k in options} == {a.field for a in AXES if a.group == "data"}
    assert options == {"name": "synthetic", "target": None, "scale": "standard", "n_samples": 50, "n_features": 4,
                       "n_classes": 3, "data_seed": 7}
