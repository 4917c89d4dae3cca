"""The gate's policy (analysis.gate_policy, commands.gate, compare --confirm-with): a wall-time alarm
counts only when a second measurement repeats it; in inform mode only a changed loss curve fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_compare import make_runs, write_set

from minibatch_core.analysis.compare import CompareOptions, compare, load_results
from minibatch_core.analysis.gate_policy import PARTS_ALL, PARTS_EXACT, confirmed, failing_rows
from minibatch_core.cli import main
from minibatch_core.commands import gate

SLOW = ("fast", 32)
NOISY = ("reference", 1)
OPTIONS = CompareOptions(max_slowdown=1.5, normalize="calibration", loss_mode="exact")


def keys(rows) -> set:
    return {(r.key["engine"], int(r.key["batch_size"])) for r in rows}


@pytest.fixture
def sets(tmp_path) -> dict[str, Path]:
    """A baseline; a first sweep where SLOW is really 2x slower and NOISY had a burst of load; a second
    sweep where only SLOW is slow; a sweep with a changed loss curve."""
    return {
        "base": write_set(tmp_path / "base", make_runs(0)),
        "first": write_set(tmp_path / "first", make_runs(1, slowdown={SLOW: 2.0, NOISY: 2.5})),
        "second": write_set(tmp_path / "second", make_runs(2, slowdown={SLOW: 2.0})),
        "quiet": write_set(tmp_path / "quiet", make_runs(3)),
        "lossy": write_set(tmp_path / "lossy", make_runs(4, loss_factor={NOISY: 1.0 + 1e-12})),
    }


def judged(sets, name: str):
    return compare(load_results(sets["base"]), load_results(sets[name]), OPTIONS)


def test_only_configurations_failing_in_both_measurements_are_confirmed(sets):
    first, second = judged(sets, "first"), judged(sets, "second")
    assert keys(failing_rows(first)) == {SLOW, NOISY}
    assert keys(confirmed(first, second)) == {SLOW}
    assert confirmed(first, judged(sets, "quiet")) == []


def test_inform_mode_fails_on_a_changed_loss_curve_only(sets):
    first, second = judged(sets, "first"), judged(sets, "second")
    assert confirmed(first, second, PARTS_EXACT) == []  # speed alone never fails in inform mode
    lossy = judged(sets, "lossy")
    assert keys(failing_rows(lossy, PARTS_EXACT)) == {NOISY}
    assert keys(confirmed(lossy, judged(sets, "lossy"), PARTS_EXACT)) == {NOISY}
    assert keys(failing_rows(lossy, PARTS_ALL)) >= {NOISY}


def test_compare_confirm_with(sets, tmp_path, capsys):
    md = tmp_path / "c.md"
    common = ["--normalize", "calibration", "--loss-mode", "exact", "--max-slowdown", "1.5"]
    assert main(["compare", str(sets["base"]), str(sets["first"]), *common]) == 1
    assert main(["compare", str(sets["base"]), str(sets["first"]), "--confirm-with", str(sets["second"]),
                 *common, "--markdown", str(md)]) == 1
    assert "1 configuration(s) regressed in both" in capsys.readouterr().out
    text = md.read_text()
    assert "Regressed in both measurements" in text and "fast | wine" in text
    assert main(["compare", str(sets["base"]), str(sets["first"]), "--confirm-with", str(sets["quiet"]),
                 *common]) == 0
    assert "treated as load noise" in capsys.readouterr().out


def _fake_sweeps(monkeypatch, sets, order: list[str]) -> list[str]:
    """gate._sweep hands out prepared sweeps instead of training."""
    used: list[str] = []

    def fake(config: str, out: Path) -> Path:
        name = order[len(used)]
        used.append(name)
        shutil.copytree(sets[name], out)
        return out

    monkeypatch.setattr(gate, "_sweep", fake)
    return used


@pytest.mark.parametrize(("mode", "order", "code", "sweeps"), [
    ("gate", ["first", "second"], 1, 2),   # a real slowdown, repeated: fails
    ("gate", ["first", "quiet"], 0, 2),    # a burst of load, not repeated: passes
    ("gate", ["quiet"], 0, 1),             # nothing: one sweep only
    ("inform", ["first"], 0, 1),           # speed is information: no second sweep, passes
    ("inform", ["lossy", "lossy"], 1, 2),  # a changed loss curve fails even in inform mode
])
def test_gate_wall_time_policy(sets, tmp_path, monkeypatch, mode, order, code, sweeps):
    used = _fake_sweeps(monkeypatch, sets, order)
    md = tmp_path / "gate.md"
    assert main(["gate", "--instructions-baseline", "none", "--wall-baseline", str(sets["base"]),
                 "--wall-time", mode, "--max-slowdown", "1.5", "--markdown", str(md)]) == code
    assert len(used) == sweeps
    assert ("REGRESSION" in md.read_text().splitlines()[2]) == bool(code)


def test_gate_bad_input_exits_2_before_any_work(tmp_path, monkeypatch, capsys):
    used = _fake_sweeps(monkeypatch, {}, [])
    assert main(["gate", "--instructions-baseline", str(tmp_path / "nothing"), "--wall-time", "skip"]) == 2
    assert "instructions.csv" in capsys.readouterr().err
    assert main(["gate", "--instructions-baseline", "none", "--wall-time", "skip"]) == 2
    assert main(["gate", "--instructions-baseline", "none", "--wall-baseline", str(tmp_path / "nothing")]) == 2
    assert used == []


@pytest.mark.parametrize(("growth", "code"), [(1.01, 0), (1.03, 1)])
def test_gate_counts_the_baselines_configurations_again(tmp_path, monkeypatch, capsys, growth, code):
    from test_count import fake_counts

    from minibatch_core.records import instructions
    from minibatch_core.running import counting

    base = tmp_path / "base"
    instructions.write(base, fake_counts())
    asked: list = []

    def fake_count(configs, **kw):
        asked.extend(configs)
        return fake_counts(growth={("fast", 32): growth})

    monkeypatch.setattr(counting, "count_instructions", fake_count)
    md = tmp_path / "gate.md"
    assert main(["gate", "--instructions-baseline", str(base), "--wall-time", "skip", "--markdown", str(md)]) == code
    # the configurations rebuilt from the baseline's rows, in its order
    assert [(c.engine, c.batch_spec, c.epochs, c.threads) for c in asked] == [
        ("fast", "32", 3, 1), ("fast", "full", 3, 1), ("reference", "32", 3, 1), ("reference", "full", 3, 1)]
    assert ("fast wine batch 32 seed 0 +3.00%" in md.read_text()) == bool(code)
