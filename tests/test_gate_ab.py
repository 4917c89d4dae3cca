"""Issue 21: the gate's wall-time step is `ab` against a baseline revision; where that revision is not in
the clone (a shallow CI clone), it says so and falls back to the stored-baseline sweep as information."""

from __future__ import annotations

import subprocess
from pathlib import Path

from test_gate import _fake_sweeps, sets  # noqa: F401  (the fixture)

from minibatch_core.cli import main
from minibatch_core.commands import gate

REPO = Path(__file__).resolve().parents[1]


def test_a_missing_revision_falls_back_to_the_stored_sweep_as_information(sets, tmp_path, monkeypatch,  # noqa: F811
                                                                          capsys):
    monkeypatch.chdir(REPO)
    used = _fake_sweeps(monkeypatch, sets, ["first"])  # a 2x slowdown: information only
    md = tmp_path / "gate.md"
    assert main(["gate", "--instructions-baseline", "none", "--wall-baseline", str(sets["base"]),
                 "--ab-base", "0" * 40, "--markdown", str(md)]) == 0
    assert len(used) == 1
    assert f"the baseline revision {'0' * 40} (--ab-base) is not in this clone" in capsys.readouterr().err
    assert "No A/B verdict" in md.read_text()


def test_the_gate_fails_when_ab_finds_a_regression(sets, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(REPO)
    calls = []

    def fake_ab(rev, markdown, out, extra):
        calls.append((rev, extra))
        markdown.write_text("## minibatch-bench ab\n\n**REGRESSION in 1 of 4 configuration(s)**\n")
        return 1

    monkeypatch.setattr(gate, "_run_ab", fake_ab)
    md = tmp_path / "gate.md"
    assert main(["gate", "--instructions-baseline", "none", "--ab-base", "HEAD", "--ab-args", "--pairs 20",
                 "--markdown", str(md)]) == 1
    assert calls == [("HEAD", ["--pairs", "20"])]
    assert "REGRESSION in A/B wall time" in md.read_text()


def test_the_baseline_revision_comes_from_the_committed_file(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    f = tmp_path / "ab-base.txt"
    f.write_text(f"# a comment\n\n{head}  # trusted\n")
    monkeypatch.setattr(gate, "AB_BASE_FILE", f)
    assert gate.ab_base(None) == (head, str(f))
    assert gate.ab_base("HEAD") == ("HEAD", "--ab-base")
    f.write_text("# nothing here\n")
    assert gate.ab_base(None) == (None, f"{f} names no revision")


def test_the_committed_baseline_revision_names_a_commit():
    lines = [ln.split("#")[0].strip() for ln in (REPO / "results" / "ab-base.txt").read_text().splitlines()]
    rev = next(ln for ln in lines if ln)
    assert len(rev) == 40 and int(rev, 16) >= 0
