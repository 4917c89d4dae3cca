"""Tables, findings, plots and report from records with known numbers (no training, no timing)."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from minibatch_core.analysis.tables import summarize
from minibatch_core.cli import main
from minibatch_core.presentation.plots import REGISTRY

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N = 178
EPOCH_TIME = {"1": 0.4, "32": 0.1, "full": 0.05}  # reference; warm-up epochs take 3x as long
ENGINE_FACTOR = {"reference": 1.0, "fast": 0.5, "stacked": 0.5}  # stacked: a pass trains 2 replicas
REPLICAS = {"reference": 1, "fast": 1, "stacked": 2}
LOSS_BASE = {"1": 1.0, "32": 2.0, "full": 4.0}
MACHINE = "Test CPU 9000"


def synthetic_runs(epochs: int = 3, seeds: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    rows = []
    for engine, factor in ENGINE_FACTOR.items():
        for spec, t in EPOCH_TIME.items():
            size = N if spec == "full" else int(spec)
            for seed in seeds:
                cumulative = 0.0
                for epoch in range(1, epochs + 1):
                    time_s = t * factor * (3 if epoch == 1 else 1)
                    cumulative += time_s
                    rows.append({
                        "run_id": f"{engine}|wine|cpu|b{spec}|s{seed}|lr0.001", "engine": engine, "dataset": "wine",
                        "device": "cpu", "device_name": MACHINE, "batch_spec": spec, "batch_size": size,
                        "seed": seed, "lr": 0.001, "optimizer": "adam", "hidden": "10-10", "epochs": epochs,
                        "epoch": epoch, "epoch_loss": (LOSS_BASE[spec] + 0.1 * seed) / epoch,
                        "eval_loss": (LOSS_BASE[spec] + 0.1 * seed) / epoch, "eval_accuracy": 0.5 + 0.1 * epoch,
                        "epoch_time_s": time_s, "cumulative_time_s": cumulative, "warmup": epoch == 1,
                        "steps": -(-N // size), "samples_per_s": N / time_s,
                        "peak_memory_bytes": 4096 * (10 + size), "param_bytes": 1132, "grad_bytes": 1132,
                        "optimizer_state_bytes": 2288, "activation_bytes": 172 * size,
                        "replicas": REPLICAS[engine], "n_samples": N, "calibration_step_s": 5e-4,
                    })
    return pd.DataFrame(rows)


def synthetic_profile() -> pd.DataFrame:
    rows = []
    for spec, split in {"1": (1, 2, 3, 4), "32": (4, 2, 2, 2), "full": (10, 5, 3, 2)}.items():
        for phase, us in zip(["data", "forward", "backward", "optimizer"], split, strict=True):
            rows.append({"engine": "reference", "dataset": "wine", "device": "cpu", "batch_spec": spec,
                         "batch_size": N if spec == "full" else int(spec), "phase": phase,
                         "mean_step_s": us * 1e-6})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    synthetic_runs().to_csv(out / "runs.csv", index=False)
    synthetic_profile().to_csv(out / "profile.csv", index=False)
    (out / "env.json").write_text(json.dumps({"cpu_model": MACHINE, "cpu_cores": 2, "torch_threads": 2,
                                              "gpus": [], "versions": {"torch": "9.9"}, "status": "complete"}))
    assert main(["report", str(out)]) == 0
    return out


def test_summary_ratios_and_speedups() -> None:
    s = summarize(synthetic_runs()).set_index(["engine", "batch_spec"])
    # warm-up excluded: medians are the steady epoch times
    assert s.loc[("reference", "1"), "epoch_time_median_s"] == pytest.approx(0.4)
    assert s.loc[("reference", "1"), "warmup_time_median_s"] == pytest.approx(1.2)
    assert s.loc[("reference", "1"), "time_ratio_vs_b32"] == pytest.approx(4.0)
    assert s.loc[("reference", "full"), "time_ratio_vs_b32"] == pytest.approx(0.5)
    final_b1 = np.mean([1.0 / 3, 1.1 / 3])
    final_b32 = np.mean([2.0 / 3, 2.1 / 3])
    assert s.loc[("reference", "1"), "final_loss_mean"] == pytest.approx(final_b1)
    assert s.loc[("reference", "1"), "final_loss_std"] == pytest.approx(np.std([1.0 / 3, 1.1 / 3], ddof=1))
    assert s.loc[("reference", "1"), "loss_ratio_vs_b32"] == pytest.approx(final_b1 / final_b32)
    assert s.loc[("fast", "32"), "speedup_vs_reference"] == pytest.approx(2.0)
    # stacked: the pass takes half the reference time and trains 2 models -> 4x per model
    assert s.loc[("stacked", "1"), "epoch_time_per_model_s"] == pytest.approx(0.1)
    assert s.loc[("stacked", "1"), "speedup_vs_reference"] == pytest.approx(4.0)
    assert s.loc[("stacked", "1"), "model_samples_per_s_median"] == pytest.approx(2 * N / 0.2)
    assert "speedup_vs_sklearn" not in s.columns  # only for engines in the sweep
    assert (s["n_seeds"] == 2).all() and (s["n_timed_epochs"] == 4).all()


def _section(md: str, title: str) -> str:
    """The text of one ``## title`` section of report.md."""
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_report_opens_with_the_answer(folder: Path) -> None:
    md = (folder / "report.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:4] == ["## The answer", "## Time per epoch", "## Loss after 3 epochs",
                            "## Time to a target loss"]
    answer = _section(md, "The answer")
    # b1's final losses are 1.0/3 and 1.1/3: median 0.35; b32's 2.0/3 and 2.1/3; full's 4.0/3 and 4.1/3
    assert ("batch size 1 reached the lowest training loss with the reference engine: 0.35 (median of 2 seeds, "
            "range 0.333–0.367), against 0.683 (0.667–0.7) for batch size 32 and 1.35 (1.33–1.37) for batch size "
            "full (178)") in answer
    # target = b32's median final loss 0.683: b32's seed 0 gets there at epoch 3 (0.3 + 0.1 + 0.1 s), seed 1
    # never (0.7), so the median of the two is 0.5 s; b1 gets there at epoch 2 in both seeds (1.2 + 0.4 s)
    assert ("batch size 32 got to 0.683 (batch size 32's median final loss) soonest: 500 ms (median of 2 seeds, "
            "the 1 that never got there counted as slowest), 3.2× sooner than batch size 1; batch size full "
            "(178) did not get there in 3 epochs.") in answer
    assert ("Batch size 1 wins per epoch but not per second: it makes 178 optimizer steps per epoch to batch "
            "size 32's 6, so each of its epochs took 4.0× as long (400 ms vs 100 ms).") in answer
    assert "Every engine agrees on the winner per second (batch size 32)" in answer
    # the hero plot follows the answer, before any table
    assert answer.index("(plots/loss_vs_time.png)") > answer.index("soonest")
    assert "|" not in answer


def test_question_tables_are_computed_from_the_data(folder: Path) -> None:
    md = (folder / "report.md").read_text()
    times = _section(md, "Time per epoch")
    assert "Shortest epochs: batch size full (178) for every engine." in times
    assert "its epochs took 4.0× as long as batch 32's" in times
    assert "| reference | 400 ms (4.0×) | 100 ms | 50 ms (0.5×) |" in times
    assert "| stacked | 100 ms (4.0×) | 25 ms | 12.5 ms (0.5×) |" in times  # per model: pass ÷ 2 replicas
    loss = _section(md, "Loss after 3 epochs")
    assert "Lowest training loss after 3 epochs: batch size 1 for every engine." in loss
    assert "| reference | 0.35 (0.333–0.367) | 0.683 (0.667–0.7) | 1.35 (1.33–1.37) |" in loss
    target = _section(md, "Time to a target loss")
    # b32's seed 1 ends at 0.7 > 0.683: one of two seeds; full never gets there
    assert "| reference | 0.683 | 1.6 s | 500 ms; 1 of 2 seeds | not reached in 3 epochs |" in target
    assert ("Soonest in training time to batch size 32's median final loss (the lesson's choice): batch size "
            "32 for every engine") in target
    engines = _section(md, "Engines against the lesson's loop")
    assert "fast 2.0×; stacked 4.0×" in engines
    assert "nan" not in md.lower()


def test_plurals_follow_the_count(tmp_path: Path) -> None:
    synthetic_runs(epochs=1).to_csv(tmp_path / "runs.csv", index=False)
    assert main(["report", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "## Loss after 1 epoch\n" in md and "after 1 epochs" not in md
    assert "not reached in 1 epochs" not in md


def test_contention_is_flagged_on_every_speed_finding(tmp_path: Path) -> None:
    runs = synthetic_runs()
    runs["load_1m"] = np.where(runs["engine"] == "fast", 3.5, 0.5)  # fast's runs saw load 3.5 on 2 cores
    runs.to_csv(tmp_path / "runs.csv", index=False)
    (tmp_path / "env.json").write_text(json.dumps({"cpu_model": MACHINE, "cpu_cores": 2}))
    assert main(["report", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    head = md.split("## The answer")[0]
    assert "⚠ Timings are contended: 6 of 18 runs ended with the 1-minute load average above the 2 cores" in head
    assert "(timings contended: see the warning above)" in _section(md, "The answer")
    for speed in ("Time per epoch", "Time to a target loss", "Engines against the lesson's loop"):
        assert "⚠ contended machine (load 3.5 on 2 cores)" in _section(md, speed), speed
    assert "⚠" not in _section(md, "Loss after 3 epochs")  # losses do not depend on the load
    html_text = (tmp_path / "report.html").read_text()
    assert html_text.count('class="warning"') == 4
    assert "⚠ Timings are contended" in (tmp_path / "summary.md").read_text()


def test_summary_md_names_the_machine(folder: Path) -> None:
    md = (folder / "summary.md").read_text()
    assert f"Measured on: {MACHINE}, 2 cores, torch threads: 2, no GPU" in md
    assert "IQR" in md and "speedup vs reference" in md


def test_plots_are_valid_pngs(folder: Path) -> None:
    names = [spec.name for spec in REGISTRY]
    assert len(names) == 6
    for name in names:
        path = folder / "plots" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.width >= 500 and img.height >= 300, (name, img.size)
    md = (folder / "report.md").read_text()
    assert all(f"(plots/{n}.png)" in md for n in names)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.links: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs.get("src", ""))
        if tag in ("link", "script") or (tag == "a" and attrs.get("href", "").startswith("http")):
            self.links.append(tag)
        if tag == "table":
            self.tables += 1


def test_html_is_self_contained(folder: Path) -> None:
    parser = _Images()
    text = (folder / "report.html").read_text()
    parser.feed(text)
    parser.close()
    assert text.startswith("<!DOCTYPE html>")
    assert len(parser.srcs) == 6 and not parser.links
    assert parser.tables == 7  # time, loss, time-to-target, engines, did each batch size learn, profile, summary
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_SIGNATURE


def test_a_sentence_in_a_table_wraps_and_figures_stay_on_one_line() -> None:
    from minibatch_core.presentation.document import render_html
    from minibatch_core.presentation.report import Table

    why = "1: 0.0003 (best rate 0.003 at the low end of the rates tried: extend to 0.0003)"
    frame = pd.DataFrame({"batch": ["32"], "time": ["45.54 ms (34.47 ms–56.62 ms)"], "rates added": [why],
                          "B_crit": ["14.7 [0.465, 23.5]"]})
    cells = render_html([Table(frame)], "t").split("<tbody>")[1]
    assert "<td>32</td><td>45.54 ms (34.47 ms–56.62 ms)</td>" in cells
    assert "<td>14.7<br>[0.465, 23.5]</td>" in cells  # a figure above its interval: half the width
    assert f'<td class="prose">{why}</td>' in cells


def test_report_bad_folder_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2  # a folder without runs.csv
    (tmp_path / "runs.csv").write_text("a,b\n1,2\n")
    assert main(["report", str(tmp_path)]) == 2  # not a runs.csv
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("minibatch-bench report: error:") for line in lines)
    assert "lacks the columns" in lines[2]
