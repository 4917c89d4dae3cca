"""Instruction counts: the comparison on doctored counts, damaged and mixed inputs, the count command's
refusals, and (slow) one real count under valgrind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from minibatch_core.analysis.compare_instructions import (
    IMPROVED,
    MISSING,
    NEW,
    REGRESSED,
    UNCHANGED,
    InstructionOptions,
    compare_counts,
)
from minibatch_core.cli import main
from minibatch_core.errors import MinibatchError
from minibatch_core.input.config import RunConfig
from minibatch_core.records import instructions
from minibatch_core.running.counting import CountOutcome, InstructionCount, read_parts

ENV = {"valgrind_version": "3.19.0", "torch_version": "2.13.0+cpu", "cpu_capability_under_valgrind": "AVX2"}
# per-step instructions of a plausible count (fast b32 ~ 304k, reference b32 ~ 2.8M)
BASE = {("fast", 32): 304_285, ("fast", "full"): 633_862, ("reference", 32): 2_836_033,
        ("reference", "full"): 5_000_000}


def fake_counts(growth: dict | None = None, drop: set = frozenset()) -> CountOutcome:
    growth = growth or {}
    counts = []
    for (engine, spec), per_step in BASE.items():
        if (engine, spec) in drop:
            continue
        batch = 178 if spec == "full" else spec
        steps = 2 * -(-178 // batch)
        counts.append(InstructionCount(
            config=RunConfig(engine=engine, batch_size=spec, epochs=3, threads=1),
            instructions=round(per_step * steps * growth.get((engine, spec), 1.0)), steps=steps, samples=356,
            batch_size=batch, n_samples=178, n_features=13, n_classes=3, torch_threads=1, final_loss=1.0))
    return CountOutcome(counts, dict(ENV))


def write_counts(folder: Path, **kw) -> Path:
    instructions.write(folder, fake_counts(**kw))
    return folder


def statuses(result) -> dict[tuple, str]:
    return {(r.key["engine"], r.key["batch_spec"]): r.status for r in result.rows}


def test_written_counts_load_back_with_the_identity_of_runs_csv(tmp_path):
    cs = instructions.load(write_counts(tmp_path / "a"))
    row = cs.frame.set_index("run_id").loc["fast|wine|cpu|b32|s0|lr0.001"]
    assert row["config_id"] == "fast|wine|cpu|b32|lr0.001"
    assert row["instructions"] == 304_285 * 12 and row["steps"] == 12 and row["measured_epochs"] == 2
    # the identity columns are runs.csv's, with the values a sweep of the same configuration records
    from minibatch_core.records.identity import IDENTITY_COLUMNS
    assert set(IDENTITY_COLUMNS) <= set(cs.frame.columns)
    assert (row["epochs"], row["torch_threads"], row["workers"], row["hidden"]) == (3, 1, 1, "10-10")
    assert row["instructions_per_step"] == pytest.approx(304_285)
    assert row["instructions_per_sample"] == pytest.approx(304_285 * 12 / 356, abs=1e-3)
    assert cs.env["rows"] == 4 and cs.env["kind"] == instructions.KIND


def test_one_percent_passes_three_percent_fails_and_improvements_are_reported(tmp_path):
    base = instructions.load(write_counts(tmp_path / "base"))
    cur = instructions.load(write_counts(tmp_path / "cur", growth={
        ("fast", 32): 1.01, ("fast", "full"): 1.03, ("reference", 32): 0.90}))
    result = compare_counts(base, cur)
    assert statuses(result) == {("fast", "32"): UNCHANGED, ("fast", "full"): REGRESSED,
                                ("reference", "32"): IMPROVED, ("reference", "full"): UNCHANGED}
    assert result.regressed
    grown = next(r for r in result.rows if r.status == REGRESSED)
    assert grown.growth == pytest.approx(0.03, abs=1e-6)


def test_the_threshold_is_an_option(tmp_path):
    base = instructions.load(write_counts(tmp_path / "base"))
    cur = instructions.load(write_counts(tmp_path / "cur", growth={("fast", "full"): 1.03}))
    assert not compare_counts(base, cur, InstructionOptions(max_growth=1.05)).regressed
    with pytest.raises(MinibatchError, match="max-instruction-growth"):
        InstructionOptions(max_growth=1.0)


def test_missing_and_new_configurations_are_reported(tmp_path):
    base = instructions.load(write_counts(tmp_path / "base", drop={("reference", "full")}))
    cur = instructions.load(write_counts(tmp_path / "cur", drop={("fast", 32)}))
    result = compare_counts(base, cur)
    assert statuses(result)[("fast", "32")] == MISSING
    assert statuses(result)[("reference", "full")] == NEW
    assert not result.regressed


def test_cli_names_the_configuration_and_its_growth_and_exits_1(tmp_path, capsys):
    base = write_counts(tmp_path / "base")
    cur = write_counts(tmp_path / "cur", growth={("fast", 32): 1.031})
    md = tmp_path / "out.md"
    assert main(["compare", str(base), str(base)]) == 0
    assert main(["compare", str(base), str(cur), "--markdown", str(md)]) == 1
    out = capsys.readouterr().out
    assert "INSTRUCTION REGRESSION (fast wine batch 32 seed 0 +3.10%)" in out
    assert "fast wine batch 32 seed 0 +3.10%" in md.read_text()
    assert main(["compare", str(base), str(cur), "--max-instruction-growth", "1.05"]) == 0


@pytest.mark.parametrize("damage", ["truncated", "cut_mid_row", "non_numeric", "missing_column", "bad_env",
                                    "empty"])
def test_a_damaged_count_folder_exits_2(tmp_path, capsys, damage):
    base = write_counts(tmp_path / "base")
    cur = write_counts(tmp_path / "cur")
    csv = cur / instructions.INSTRUCTIONS_CSV
    lines = csv.read_text().splitlines(keepends=True)
    if damage == "truncated":  # whole rows lost: env.json still says 4
        csv.write_text("".join(lines[:3]))
    elif damage == "cut_mid_row":
        csv.write_text("".join(lines)[: -len(lines[-1]) // 2])
    elif damage == "non_numeric":
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        frame.loc[1, "instructions"] = "lots"
        frame.to_csv(csv, index=False)
    elif damage == "missing_column":
        pd.read_csv(csv).drop(columns=["instructions"]).to_csv(csv, index=False)
    elif damage == "bad_env":
        (cur / instructions.ENV_JSON).write_text("{not json")
    else:
        csv.write_text("")
    assert main(["compare", str(base), str(cur)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and str(cur) in err[0]


def test_mixed_inputs_exit_2(tmp_path, capsys):
    counts = write_counts(tmp_path / "counts")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    pd.DataFrame({"engine": ["fast"]}).to_csv(sweep / "runs.csv", index=False)
    bench_json = tmp_path / "bench.json"
    bench_json.write_text(json.dumps({"benchmarks": []}))
    for a, b in ((counts, sweep), (sweep, counts), (counts, bench_json)):
        assert main(["compare", str(a), str(b)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "mixed inputs" in err[0]


def test_nothing_matched_names_the_axes_that_differ(tmp_path):
    base = instructions.load(write_counts(tmp_path / "base"))
    other = fake_counts()
    other = CountOutcome([InstructionCount(**{**vars(c), "config": c.config.with_(lr=0.01)}) for c in other.counts],
                         other.env)
    instructions.write(tmp_path / "cur", other)
    with pytest.raises(MinibatchError, match="axes that differ: lr"):
        compare_counts(base, instructions.load(tmp_path / "cur"))


def test_a_tool_version_change_is_noted(tmp_path):
    base = instructions.load(write_counts(tmp_path / "base"))
    cur = instructions.load(write_counts(tmp_path / "cur"))
    cur.env["cpu_capability_under_valgrind"] = "AVX512"
    assert any("cpu_capability" in n for n in compare_counts(base, cur).notes)


def test_count_without_valgrind_exits_2_saying_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no valgrind on PATH
    assert main(["count", "--engines", "fast", "--batch-sizes", "32", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get install valgrind" in err[0]
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "auto"])
def test_count_refuses_cuda(tmp_path, capsys, device):
    assert main(["count", "--devices", device, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CPU instructions only" in err[0]


def test_count_refuses_to_overwrite_and_bad_grid_values(tmp_path, capsys):
    folder = write_counts(tmp_path / "c")
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind absent: the refusals after its check are not reached")
    assert main(["count", "--engines", "fast", "--batch-sizes", "32", "--out", str(folder)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["count", "--batch-sizes", "0", "--out", str(tmp_path / "d")]) == 2
    assert "batch size" in capsys.readouterr().err
    assert main(["count", "--epochs", "0", "--out", str(tmp_path / "d")]) == 2


def test_callgrind_parts_are_read_in_dump_order(tmp_path):
    for part, total in ((2, 200), (1, 100), (10, 1000)):
        (tmp_path / f"callgrind.out.{part}").write_text(f"version: 1\ncmd: x\npart: {part}\nevents: Ir\n"
                                                        f"summary: {total}\nfn=(1) f\n0 {total}\ntotals: {total}\n")
    (tmp_path / "callgrind.out").write_text("no parts here")  # the final dump after the last toggle
    assert read_parts(tmp_path) == [100, 200, 1000]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind (apt-get install valgrind)")
def test_a_real_count_under_valgrind(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["count", "--engines", "fast", "--batch-sizes", "full", "--epochs", "1", "--out", str(out)]) == 0
    cs = instructions.load(out)
    row = cs.frame.iloc[0]
    assert (row["engine"], row["batch_size"], row["steps"], row["measured_epochs"]) == ("fast", 178, 1, 1)
    # a full-batch step of a 13-10-10-3 MLP is tens of thousands of instructions at least, and the
    # counted region must not include the ~1e10 of importing torch
    assert 1e4 < row["instructions"] < 1e8
    assert cs.env["valgrind_version"] and cs.env["cpu_capability_under_valgrind"]
    assert main(["compare", str(out), str(out)]) == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind (apt-get install valgrind)")
def test_count_works_from_a_fresh_virtualenv_on_a_model_that_is_not_the_mlp(tmp_path):
    """Issue 21: the worker was started as the resolved base interpreter, which does not see a venv's
    packages (`No module named 'torch'`). A fresh venv whose packages (those this test process sees,
    through a .pth file) are visible only to the venv's own interpreter must count, and the worker
    must have run in that venv. Issue 18, item 7, in the same count (valgrind's start costs a minute):
    any model's training is counted, and recorded as its model."""
    import site
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    repo = Path(__file__).resolve().parents[1]
    seen = [str(repo), *site.getsitepackages(), *[p for p in sys.path if p.endswith("-packages")]]
    (Path(purelib) / "parent_packages.pth").write_text("\n".join(dict.fromkeys(seen)) + "\n")
    out = tmp_path / "c"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(python), "-m", "minibatch_core", "count", "--models", "linear", "--engines", "fast",
                           "--batch-sizes", "full", "--epochs", "1", "--out", str(out)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cs = instructions.load(out)
    row = cs.frame.iloc[0]
    assert len(cs.frame) == 1 and row["instructions"] > 0
    assert (row["model"], row["engine"], row["batch_size"], row["steps"]) == ("linear", "fast", 178, 1)
    assert "model=linear" in row["run_id"] and "model linear" in done.stderr  # the plan names the model
    assert Path(cs.env["python_prefix_under_valgrind"]).resolve() == venv.resolve()


def test_count_leaves_out_engines_that_train_in_several_processes(capsys):
    from minibatch_core.cli import build_parser
    from minibatch_core.commands.count import configs_from_args
    from minibatch_core.engines import engine_names, get_engine

    engines = {c.engine for c in configs_from_args(build_parser().parse_args(["count"]))}
    assert engines == {n for n in engine_names() if not get_engine(n).distributed}
    distributed = [n for n in engine_names() if get_engine(n).distributed]
    if distributed:
        assert main(["count", "--engines", distributed[0]]) == 2
        assert "several processes" in capsys.readouterr().err


def test_the_workers_arguments_and_environment_fill_whole_pages():
    """Wherever it runs (other paths, other variables), the worker's argv and environment take the same
    room at the top of its stack, so the frames below them are laid out alike and count alike."""
    from minibatch_core.running.counting import STACK_PAD, _stack_pad

    for argv, env in ((["/usr/bin/python3", "-m", "x"], {"A": "1"}),
                      (["/a/much/longer/venv/bin/python", "-m", "x", "/tmp/plan.json"],
                       {"HOME": "/root", "PATH": "/b" * 700})):
        env = {**env, STACK_PAD: _stack_pad(argv, env)}
        strings = [*argv, *(f"{k}={v}" for k, v in env.items())]
        room = sum(len(s.encode()) + 1 for s in strings) + 8 * (len(strings) + 2)
        assert room % 4096 == 0 and len(env[STACK_PAD]) < 4096
