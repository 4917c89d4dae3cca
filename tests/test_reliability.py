"""Issue 22's reproductions: output folders the tool did not make, bounds on seeds, threads and plans,
resume and report refusing edited folders, disk full, and signals that clean up like Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from minibatch_core.cli import main

BASELINE = Path(__file__).resolve().parent.parent / "results" / "baseline"
QUICK = ["--engines", "reference", "--batch-sizes", "32", "--seeds", "0", "--epochs", "1", "--no-profile",
         "--quiet", "--no-isolate"]


def _one_line(capsys, code: int, expected: int = 2) -> str:
    err = capsys.readouterr().err
    assert code == expected, err
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", [["run", *QUICK], ["study", "--quiet"], ["count"]])
def test_a_folder_the_command_did_not_make_is_refused_and_kept(command, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.md").write_text("keep")
    err = _one_line(capsys, main([*command, "--out", str(folder)]))
    assert "--overwrite" in err and "report.md" in err
    assert (folder / "report.md").read_text() == "keep" and sorted(os.listdir(folder)) == ["report.md"]


def test_a_count_folder_is_not_a_run_folder(tmp_path, capsys):
    folder = tmp_path / "count"
    folder.mkdir()
    env = {"kind": "instruction counts", "rows": 1}
    (folder / "env.json").write_text(json.dumps(env))
    _one_line(capsys, main(["run", *QUICK, "--out", str(folder)]))
    assert json.loads((folder / "env.json").read_text()) == env


@pytest.mark.parametrize("where", ["/", "~", "."])
def test_root_home_and_the_current_folder_are_never_out(where, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = str(Path.home()) if where == "~" else where
    for command in (["run", *QUICK], ["study", "--quiet"], ["count"]):
        err = _one_line(capsys, main([*command, "--out", target, "--overwrite"]))
        assert "never writes" in err
    assert os.listdir(tmp_path) == []


def test_overwrite_replaces_only_the_commands_own_files(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    assert main(["run", *QUICK, "--out", str(folder), "--overwrite"]) == 0
    assert (folder / "notes.txt").read_text() == "keep" and (folder / "runs.csv").is_file()
    env = json.loads((folder / "env.json").read_text())
    assert env["tool"] == "minibatch-bench" and env["command"] == "run"
    capsys.readouterr()
    _one_line(capsys, main(["run", *QUICK, "--out", str(folder)]))  # a finished sweep: --resume or --overwrite


def test_an_empty_folder_and_one_run_made_are_accepted(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(["run", *QUICK, "--out", str(folder)]) == 0


@pytest.mark.parametrize("argv", [
    ["train", "--seed", "99999999999999999999"],
    ["train", "--seed", "-1"],
    ["train", "--data-seed", str(2**63)],
    ["run", "--seeds", f"0-{2**63}"],
    ["run", "--seeds", "0-99999999999"],
    ["train", "--threads", "100000"],
    ["run", "--threads", "100000"],
    ["study", "--threads", "100000"],
    ["train", "--epochs", "1000000000"],
    ["run", "--seeds", "0-99999"],
    ["run", "--epochs", "1000000000"],
    ["study", "--max-epochs", "1000000000", "--quiet"],
    ["count", "--epochs", "1000000000"],
])
def test_out_of_bounds_values_are_one_line_before_any_work(argv, capsys, tmp_path):
    try:
        code = main([*argv, "--out", str(tmp_path / "x")] if argv[0] != "train" else argv)
    except SystemExit as done:  # argparse's own one-line usage error (exit 2)
        code = done.code
    err = _one_line(capsys, code)
    assert not (tmp_path / "x").exists() and "error" in err


def test_seed_at_the_top_of_the_range_is_accepted():
    from minibatch_core.input.config import RunConfig

    assert RunConfig(seed=2**63 - 1).seed == 2**63 - 1


def _sweep_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "sweep"
    shutil.copytree(BASELINE, folder)
    return folder


def test_an_edited_lr_is_refused_by_report_and_resume_before_anything_is_appended(tmp_path, capsys):
    folder = _sweep_copy(tmp_path)
    frame = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
    frame["lr"] = "0.01"  # the run ids still say lr0.001
    frame.to_csv(folder / "runs.csv", index=False)
    before = (folder / "runs.csv").read_bytes()
    err = _one_line(capsys, main(["report", str(folder)]))
    assert "run_id" in err
    err = _one_line(capsys, main(["run", "--resume", str(folder), "--no-isolate", "--force", "--quiet"]))
    assert "run_id" in err and (folder / "runs.csv").read_bytes() == before


def test_rows_outside_env_json_settings_are_refused(tmp_path, capsys):
    folder = _sweep_copy(tmp_path)
    env = json.loads((folder / "env.json").read_text())
    env["sweep"]["seeds"] = [0]  # runs.csv holds seed 1 too
    (folder / "env.json").write_text(json.dumps(env))
    err = _one_line(capsys, main(["report", str(folder)]))
    assert "env.json" in err and "seed" in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_stdout_to_dev_full_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "minibatch_core", "compare", str(BASELINE), str(BASELINE)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left" in lines[0] and "internal error" not in lines[0], done.stderr


# --- signals: SIGTERM and SIGHUP clean up as SIGINT does ------------------------------------------------

def _our_temp(tmp: Path) -> list[str]:
    """Temporary files and folders of ours left in TMPDIR; torch's own compile cache (torchinductor_USER,
    made by importing torch, kept by design after any run) is not one."""
    return [name for name in os.listdir(tmp) if not name.startswith("torchinductor_")]


def _ours_left(pid: int, children: list[psutil.Process]) -> list[str]:
    left = []
    for child in children:
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(child.cmdline())[:80])
        except psutil.NoSuchProcess:
            pass
    return left


def _interrupt(argv: list[str], tmp_path: Path, sig: int, wait_for) -> tuple[subprocess.CompletedProcess, list]:
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "minibatch_core", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.time() + 240
    children: list[psutil.Process] = []
    while time.time() < deadline and not wait_for():
        try:
            children = psutil.Process(proc.pid).children(recursive=True) or children
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True) or children
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    time.sleep(2)  # the orphan watch of a worker polls twice a second
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), _ours_left(proc.pid, children)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signalled_run_records_interrupted_names_resume_and_leaves_nothing(sig, tmp_path):
    out = tmp_path / "sweep"
    done, left = _interrupt(["run", "--engines", "reference", "--batch-sizes", "1", "--seeds", "0-3",
                             "--epochs", "50", "--no-profile", "--quiet", "--out", str(out)], tmp_path, sig,
                            lambda: (out / "runs.csv").exists())
    assert done.returncode == 130, done.stderr
    assert "--resume" in done.stderr and "Traceback" not in done.stderr
    assert json.loads((out / "env.json").read_text())["status"] == "interrupted"
    assert left == [] and _our_temp(tmp_path / "tmp") == []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signalled_count_leaves_no_valgrind_and_no_temporary_folder(sig, tmp_path):
    def valgrind_started() -> bool:
        return any(p.name().startswith("valgrind") or "memcheck" in p.name() or "callgrind" in p.name()
                   for p in psutil.process_iter(["name"]) if p.info["name"] and _under(p, tmp_path))

    done, left = _interrupt(["count", "--engines", "reference", "--batch-sizes", "1", "--out",
                             str(tmp_path / "c")], tmp_path, sig, valgrind_started)
    assert done.returncode == 130, done.stderr
    assert left == [] and _our_temp(tmp_path / "tmp") == []
    assert not (tmp_path / "c").exists() or not (tmp_path / "c" / "instructions.csv").exists()


def _under(proc: psutil.Process, tmp_path: Path) -> bool:
    try:
        return str(tmp_path) in proc.cwd()
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return False
