"""A bench JSON's calibration lives beside machine_info (pytest-benchmark compares machine_info), older
files keep working, and `compare` judges a bench JSON's load as it judges a sweep folder's."""

from __future__ import annotations

import json

from test_compare import benchmark_json, make_runs

from minibatch_core.analysis.compare import compare
from minibatch_core.analysis.compare_options import CompareOptions
from minibatch_core.analysis.result_sets import load_results
from minibatch_core.presentation.compare_render import contention_notes


def _new_layout(path, *, load: float, cores: int = 2):
    """What bench/conftest.py now writes: the calibration as a top-level key, the core count in
    machine_info, and each run's load_1m in its records."""
    frame = make_runs(1)
    frame["load_1m"] = load
    benchmark_json(frame, path)
    data = json.loads(path.read_text())
    data["minibatch_calibration"] = data["machine_info"].pop("minibatch_calibration")
    data["machine_info"]["cpu_cores"] = cores
    path.write_text(json.dumps(data))
    return path


def test_calibration_is_read_beside_machine_info_and_inside_it_in_older_files(tmp_path):
    new = load_results(_new_layout(tmp_path / "new.json", load=0.5))
    old = load_results(benchmark_json(make_runs(1), tmp_path / "old.json"))
    assert "minibatch_calibration" not in json.loads((tmp_path / "new.json").read_text())["machine_info"]
    assert new.calibration == old.calibration and new.calibration["cpu"][0] > 0


def test_compare_warns_about_a_loaded_machine_in_bench_json(tmp_path):
    busy = load_results(_new_layout(tmp_path / "busy.json", load=3.6))
    quiet = load_results(_new_layout(tmp_path / "quiet.json", load=0.4))
    notes = contention_notes(compare(quiet, busy, CompareOptions()))
    assert notes == ["current measured on a contended machine (load 3.6 on 2 cores): speed figures unreliable"]
    assert contention_notes(compare(quiet, quiet, CompareOptions())) == []


def test_older_bench_json_counts_cores_from_cpuinfo(tmp_path):
    frame = make_runs(1)
    frame["load_1m"] = 2.9
    path = benchmark_json(frame, tmp_path / "old.json")
    data = json.loads(path.read_text())
    data["machine_info"]["cpu"]["count"] = 2  # py-cpuinfo's logical CPU count, in every pytest-benchmark JSON
    path.write_text(json.dumps(data))
    side = load_results(path)
    assert contention_notes(compare(side, side, CompareOptions()))[0].endswith("(load 2.9 on 2 cores): speed "
                                                                                "figures unreliable")
