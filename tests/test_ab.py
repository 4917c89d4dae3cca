"""Issue 21: `minibatch-bench ab`: paired ratios and their verdict (synthetic trials), bad input (one line,
exit 2), and (slow) real interleaved trials of two checkouts, one of them slowed down."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from minibatch_core.analysis.ab import Trial, judge, pair_ratio, paired_ratios
from minibatch_core.analysis.compare_options import IMPROVED, NOT_JUDGED, REGRESSED, UNCHANGED
from minibatch_core.cli import main
from minibatch_core.running import ab_runner
from minibatch_core.running.ab_runner import MAX_EPOCHS, Version, calibrated, run_pair

REPO = Path(__file__).resolve().parents[1]


def trials(ratio: float, pairs: int = 12, *, load=None, losses_b=(1.0, 0.5), memory_b=300e3) -> list[Trial]:
    """A's time is 10 ms times each pair's load (the machine's state, shared by the pair); B's is
    ``ratio`` times A's, with 1 % jitter."""
    rng = np.random.default_rng(0)
    load = load if load is not None else rng.uniform(1, 8, pairs)  # a machine whose load swings 8x
    out = []
    for p in range(pairs):
        a = 0.01 * load[p]
        b = a * ratio * rng.normal(1, 0.01)
        out += [Trial("A", p, "cfg", a, (1.0, 0.5), 300e3), Trial("B", p, "cfg", b, losses_b, memory_b)]
    return out


def test_paired_ratios_cancel_a_load_that_swings_eightfold():
    rows = judge(trials(1.10))
    assert rows[0].speed == REGRESSED and 1.08 < rows[0].low <= rows[0].ratio <= rows[0].high < 1.12
    same = judge(trials(1.0))[0]
    assert same.speed == UNCHANGED and same.low < 1 < same.high and same.verdict == UNCHANGED
    assert judge(trials(0.8))[0].speed == IMPROVED
    assert list(paired_ratios(trials(2.0, pairs=3), "cfg").round(1)) == [2.0, 2.0, 2.0]


def test_the_threshold_needs_the_whole_interval_above_it():
    assert judge(trials(1.04))[0].speed == UNCHANGED  # below the default 1.05
    assert judge(trials(1.10), max_slowdown=1.2)[0].speed == UNCHANGED


def test_loss_and_memory_are_judged_too():
    row = judge(trials(1.0, losses_b=(1.0, 0.5000001)))[0]
    assert row.loss == "differs" and row.verdict == REGRESSED
    assert judge(trials(1.0, losses_b=(1.0, 0.5000001)), exact_loss={"cfg": False})[0].loss == "not checked"
    assert judge(trials(1.0, memory_b=300e3 + 5e6))[0].memory == REGRESSED


def test_too_few_pairs_are_not_judged():
    row = judge(trials(3.0, pairs=3))[0]
    assert row.speed == NOT_JUDGED and row.verdict == NOT_JUDGED and "3 complete pairs" in row.notes[0]


def test_a_trial_pair_takes_turns_back_to_back_in_a_random_order(monkeypatch, tmp_path):
    log = []

    class FakeWorker:
        def __init__(self, label):
            self.label = label

        def train(self, index):
            log.append((self.label, index))
            # A's epochs take 1 ms x (turn + 1): a machine that slows down as the trial goes on
            turn = sum(1 for lab, i in log if lab == self.label and i == index) - 1
            scale = 1.0 if self.label == "A" else 1.5
            return {"times": [1e-3 * (turn + 1) * scale, 2e-3 * (turn + 1) * scale], "losses": [1.0], "peak": 0}

    class FakeWorkers:
        def __init__(self, versions, configs, work):
            self.started = {v.label: FakeWorker(v.label) for v in versions}

        def __enter__(self):
            return self.started

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(ab_runner, "workers", FakeWorkers)
    versions = [Version("A", "a", tmp_path), Version("B", "b", tmp_path)]
    found = run_pair(versions, [{"epochs": 3}, {"epochs": 3}], tmp_path, blocks=20)
    assert len(log) == 2 * 2 * 20
    turns = [log[i:i + 2] for i in range(0, len(log), 2)]
    # each turn: both versions train the same configuration back to back; configurations round robin
    assert all({t[0][0], t[1][0]} == {"A", "B"} and t[0][1] == t[1][1] for t in turns)
    assert [t[0][1] for t in turns] == [0, 1] * 20
    firsts = [t[0][0] for t in turns]
    assert 5 < firsts.count("A") < 35  # both orders occur
    a, b = found["A"]["results"][0], found["B"]["results"][0]
    assert a["turn_times_s"] == [1e-3 * k for k in range(1, 21)] and a["time_s"] == 1e-3
    assert len(a["epoch_times_s"]) == a["timed_epochs"] == 40
    ta = Trial("A", 0, "c", a["time_s"], (), 0, turn_times_s=tuple(a["turn_times_s"]))
    tb = Trial("B", 0, "c", b["time_s"], (), 0, turn_times_s=tuple(b["turn_times_s"]))
    assert pair_ratio(ta, tb) == pytest.approx(1.5)  # the drift cancels turn by turn


def test_a_pairs_ratio_is_the_median_of_its_turns_and_ignores_one_bad_turn():
    a = Trial("A", 0, "c", 1.0, (), 0, turn_times_s=(1.0, 2.0, 1.0, 3.0, 1.0))
    b = Trial("B", 0, "c", 1.1, (), 0, turn_times_s=(1.1, 2.2, 5.0, 3.3, 1.1))  # turn 3: B hit an episode
    assert pair_ratio(a, b) == pytest.approx(1.1)
    # without turns (trials from elsewhere): the fastest epochs
    assert pair_ratio(Trial("A", 0, "c", 2.0, (), 0), Trial("B", 0, "c", 3.0, (), 0)) == pytest.approx(1.5)


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["ab", "no-such-revision-xyz"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown revision" in err and len(err.splitlines()) == 1
    assert main(["ab", str(tmp_path)]) == 2
    assert "without minibatch_core" in capsys.readouterr().err
    broken = tmp_path / "broken"
    (broken / "minibatch_core").mkdir(parents=True)
    (broken / "minibatch_core" / "__init__.py").write_text("raise ImportError('this version is broken')\n")
    assert main(["ab", str(broken), str(REPO)]) == 2
    err = capsys.readouterr().err.strip()
    assert "fails to import" in err and "this version is broken" in err and len(err.splitlines()) == 1
    assert main(["ab", "HEAD", "--pairs", "2"]) == 2
    assert main(["ab", "HEAD", "--batch-sizes", "0"]) == 2
    assert main(["ab", "HEAD", "--epochs", "1"]) == 2
    assert main(["ab", "HEAD", "--min-time", "-1"]) == 2
    assert main(["ab", "HEAD", "--min-time", "nan"]) == 2
    assert main(["ab", "HEAD", "--blocks", "0"]) == 2
    assert "--min-time" in capsys.readouterr().err


def test_the_pilot_raises_epochs_to_the_minimum_time_and_never_lowers_them():
    configs = [{"engine": "reference", "epochs": 6}, {"engine": "fast", "epochs": 6},
               {"engine": "fast", "epochs": 50}, {"engine": "odd", "epochs": 6}]
    pilot = {"results": [{"time_s": 0.004, "median_time_s": 0.005},  # 0.2 s / 5 ms = 40 timed + 1 warm-up
                         {"time_s": 0.0001, "median_time_s": 0.0001},  # 2,000 + 1, under the cap
                         {"time_s": 0.1, "median_time_s": 0.1},  # 2 + 1 wanted: the 50 asked for stay
                         {"time_s": 0.0, "median_time_s": 0.0}]}  # no measurable time: the cap
    assert [c["epochs"] for c in calibrated(configs, pilot, 0.2)] == [41, 2001, 50, MAX_EPOCHS]
    assert [c["epochs"] for c in calibrated(configs, pilot, 0.0)] == [6, 6, 50, 6]
    assert configs[0]["epochs"] == 6  # the given configurations are not changed in place
    # three round-robin blocks share the minimum time: 0.3 s / 3 / 5 ms = 20 timed epochs + 1 per block
    assert calibrated(configs[:1], {"results": pilot["results"][:1]}, 0.3, blocks=3)[0]["epochs"] == 21


def _checkout_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "minibatch_core"], capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.mark.slow
def test_ab_flags_a_slowed_checkout_and_not_an_identical_one(tmp_path, capsys):
    same = _checkout_copy(tmp_path / "same")
    slow = _checkout_copy(tmp_path / "slow")
    fast = slow / "minibatch_core" / "engines" / "flat_mlp.py"  # fast's (and stacked's) run_epoch
    text = fast.read_text()
    assert "            return self._run_epoch()\n" in text
    # 5 ms per epoch on top of an epoch of well under 1 ms (fast engine, full batch, Wine)
    fast.write_text(text.replace("            return self._run_epoch()\n",
                                 "            __import__('time').sleep(0.005)\n            return self._run_epoch()\n"))
    grid = ["--engines", "fast", "--batch-sizes", "full", "--epochs", "4", "--pairs", "4", "--blocks", "4",
            "--min-time", "0.1"]
    out = tmp_path / "out"
    assert main(["ab", str(same), str(slow), *grid, "--out", str(out), "--markdown", str(tmp_path / "ab.md")]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"ab.csv", "ab.md", "trials.csv"}
    assert "| fast wine cpu bfull s0 |" in (tmp_path / "ab.md").read_text()
    # identical code: loss curves identical bit for bit, and no alarm at a threshold load cannot reach
    assert main(["ab", str(same), str(REPO), *grid, "--max-slowdown", "3", "--out", str(out)]) == 0
    import pandas as pd

    row = pd.read_csv(out / "ab.csv").iloc[0]
    assert row["loss"] == "identical" and row["verdict"] != REGRESSED
