"""The default folders of run, study and count: timestamped under results/, never one that already exists."""

from pathlib import Path

import pytest

from minibatch_core.commands import count, run_folder, study
from minibatch_core.errors import MinibatchError


@pytest.mark.parametrize(("choose", "name"), [
    (lambda: run_folder.choose_folder(None)[0], "20261205T080000Z"),
    (lambda: study.choose_folder(None), "study-20261205T080000Z"),
    (lambda: count.choose_folder(None, False), "instructions-20261205T080000Z"),
])
def test_two_commands_in_the_same_second_get_two_folders(choose, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_folder, "_timestamp", lambda: "20261205T080000Z")
    assert choose() == Path("results") / name
    (tmp_path / "results" / name).mkdir(parents=True)
    assert choose() == Path("results") / f"{name}-2"  # count took the existing folder before


@pytest.mark.parametrize(("choose", "result", "says"), [
    (lambda out: run_folder.choose_folder(out), "runs.csv", "already holds a sweep (runs.csv)"),
    (lambda out: study.choose_folder(out), "study.csv", "already holds a study (study.csv)"),
    (lambda out: count.choose_folder(out, False), "instructions.csv", "already holds instructions.csv"),
])
def test_an_earlier_result_is_kept_without_overwrite(choose, result, says, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / result).write_text("kept\n")
    with pytest.raises(MinibatchError, match=r"refusing to overwrite it") as err:
        choose(str(out))
    assert says in str(err.value) and (out / result).read_text() == "kept\n"


@pytest.mark.parametrize("command", ["study", "count"])
def test_study_and_count_refuse_a_folder_they_cannot_write_before_training(command, tmp_path, capsys):
    from minibatch_core.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([command, "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1
