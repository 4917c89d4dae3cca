"""``minibatch-bench compare`` and ``baseline update``: verdicts on result sets with known changes.

The result sets are synthetic (runs.csv-shaped, seeded noise), so nothing here depends on how fast this
machine is; the one real sweep is compared on convergence, never on its timing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from minibatch_core.analysis.compare import (
    IMPROVED,
    MISSING,
    NEW,
    NOT_JUDGED,
    REGRESSED,
    UNCHANGED,
    CompareOptions,
    bootstrap_ratio,
    compare,
    load_results,
)
from minibatch_core.cli import main
from minibatch_core.errors import MinibatchError
from minibatch_core.presentation.compare_render import to_markdown
from minibatch_core.records.io import check_runs
from minibatch_core.records.rows import json_records

ENGINES = ("reference", "fast")
BATCHES = ((1, "1"), (32, "32"), (178, "full"))
N = 178
KIB, MIB = 1024, 1024 * 1024
ENV = {"versions": {"torch": "2.13.0+cpu"}, "cpu_model": "AMD EPYC", "torch_cpu_capability": "AVX512",
       "status": "complete"}

SLOW = ("fast", 32)  # (engine, batch_size) of the known changes
LOSSY = ("reference", 1)
HUNGRY = ("fast", 178)
GONE = ("reference", 178)


def make_runs(draw: int, *, epochs: int = 5, seeds=(0, 1, 2), slowdown: dict | None = None,
              loss_factor: dict | None = None, memory: dict | None = None, drop: set = frozenset(),
              machine: float = 1.0, calibration_s: float = 2e-4, noise: float = 0.08,
              replicas: int = 1) -> pd.DataFrame:
    """A runs.csv-shaped frame. Epoch times are lognormal around a per-configuration level (``draw``
    seeds the noise); loss curves are a deterministic function of engine, batch size and seed, as
    they are for a deterministic engine on CPU; peak memory jitters by a few 4 KiB pages."""
    rng = np.random.default_rng(draw)
    slowdown, loss_factor, memory = slowdown or {}, loss_factor or {}, memory or {}
    rows = []
    for engine in ENGINES:
        for bs, spec in BATCHES:
            cfg = (engine, bs)
            if cfg in drop:
                continue
            level = {1: 0.05, 32: 0.004, 178: 0.001}[bs] * (0.4 if engine == "fast" else 1.0)
            level *= machine * slowdown.get(cfg, 1.0)
            times = None
            for seed in seeds:
                if times is None or replicas == 1:
                    times = level * rng.lognormal(0.0, noise, epochs)
                peak = memory.get(cfg, 300 * KIB) + 4096 * int(rng.integers(0, 8))
                cumulative = 0.0
                for e in range(1, epochs + 1):
                    loss = ((1.2 + 0.3 * seed / 7 + bs / 1000) * math.exp(-0.15 * e)
                            + 0.05 * (engine == "fast"))
                    cumulative += times[e - 1]
                    rows.append({
                        "run_id": f"{engine}|wine|cpu|b{spec}|s{seed}", "engine": engine, "dataset": "wine",
                        "device": "cpu", "device_name": "AMD EPYC", "batch_spec": spec, "batch_size": bs,
                        "seed": seed, "lr": 0.001, "optimizer": "adam", "hidden": "10-10", "epochs": epochs,
                        "epoch": e, "epoch_loss": loss * loss_factor.get(cfg, 1.0), "eval_loss": loss,
                        "eval_accuracy": 0.5, "epoch_time_s": times[e - 1], "cumulative_time_s": cumulative,
                        "warmup": e == 1, "steps": math.ceil(N / bs), "samples_per_s": N / times[e - 1],
                        "peak_memory_bytes": peak, "replicas": replicas,
                        "calibration_step_s": calibration_s * machine,
                    })
    return pd.DataFrame(rows)


def write_set(folder: Path, frame: pd.DataFrame, env: dict | None = None,
              calibration: list | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "runs.csv", index=False)
    (folder / "env.json").write_text(json.dumps(ENV if env is None else env))
    if calibration is not None:
        (folder / "calibration.json").write_text(json.dumps(calibration))
    return folder


def statuses(comparison) -> dict[tuple, str]:
    return {(r.key["engine"], int(r.key["batch_size"])): r.status for r in comparison.rows}


def known_changes(draw: int, **kw) -> pd.DataFrame:
    return make_runs(draw, slowdown={SLOW: 2.0}, loss_factor={LOSSY: 1.5}, memory={HUNGRY: 24 * MIB},
                     drop={GONE}, **kw)


# The judging mechanics are tested at --max-slowdown 1.5 (a regression needs its whole interval above
# it), explicit so that they do not depend on the default (1.25).

# --- the acceptance test ------------------------------------------------------------------

@pytest.mark.parametrize("loss_mode", ["tolerance", "exact"])
def test_flags_exactly_the_known_changes_and_lists_the_missing(tmp_path, loss_mode):
    base = load_results(write_set(tmp_path / "base", make_runs(1)))
    cur = load_results(write_set(tmp_path / "cur", known_changes(2)))
    result = compare(base, cur, CompareOptions(max_slowdown=1.5, loss_mode=loss_mode))
    got = statuses(result)
    assert got[SLOW] == REGRESSED and got[LOSSY] == REGRESSED and got[HUNGRY] == REGRESSED
    assert got[GONE] == MISSING
    others = {k: v for k, v in got.items() if k not in (SLOW, LOSSY, HUNGRY, GONE)}
    assert others and set(others.values()) == {UNCHANGED}, others
    rows = {(r.key["engine"], int(r.key["batch_size"])): r for r in result.rows}
    # each regression for its own reason, and only that one
    assert rows[SLOW].speed.verdict == REGRESSED and 1.7 < rows[SLOW].speed.ratio < 2.3
    assert rows[SLOW].speed.low > 1 and rows[SLOW].loss.verdict == UNCHANGED
    assert rows[LOSSY].loss.verdict == REGRESSED and rows[LOSSY].loss.rel_change == pytest.approx(0.5)
    assert rows[LOSSY].speed.verdict == UNCHANGED and rows[LOSSY].memory.verdict == UNCHANGED
    assert rows[HUNGRY].memory.verdict == REGRESSED and rows[HUNGRY].speed.verdict == UNCHANGED
    assert result.regressed and result.count(MISSING) == 1 and result.count(REGRESSED) == 3


@pytest.mark.parametrize("normalize", ["none", "calibration", "engine:reference"])
def test_pure_noise_passes(tmp_path, normalize):
    """Same distribution, different draws: no configuration may be flagged, over several draws."""
    for draw in range(6):
        base = load_results(write_set(tmp_path / f"b{draw}", make_runs(100 + draw)))
        cur = load_results(write_set(tmp_path / f"c{draw}", make_runs(200 + draw)))
        result = compare(base, cur, CompareOptions(normalize=normalize, loss_mode="exact"))
        assert not result.regressed, to_markdown(result)
        assert {r.status for r in result.rows} <= {UNCHANGED, IMPROVED}
        assert result.count(IMPROVED) == 0


def test_a_real_speedup_is_shown_as_improved(tmp_path):
    base = load_results(write_set(tmp_path / "b", make_runs(1)))
    cur = load_results(write_set(tmp_path / "c", make_runs(2, slowdown={SLOW: 0.5})))
    result = compare(base, cur, CompareOptions(max_slowdown=1.5))
    assert statuses(result)[SLOW] == IMPROVED and not result.regressed


# --- speed normalization --------------------------------------------------------------------------

def test_calibration_cancels_a_slower_machine_but_keeps_a_real_slowdown(tmp_path):
    base = load_results(write_set(tmp_path / "b", make_runs(1)))
    slower_machine = load_results(write_set(tmp_path / "c", make_runs(2, machine=1.6)))
    # seconds alone blame every configuration (1.6x, its interval above 1.2 everywhere)
    raw = compare(base, slower_machine, CompareOptions(max_slowdown=1.2))
    assert raw.count(REGRESSED) == len(raw.rows)
    assert not compare(base, slower_machine, CompareOptions(max_slowdown=1.5, normalize="calibration")).regressed
    both = load_results(write_set(tmp_path / "d", make_runs(3, machine=1.6, slowdown={SLOW: 2.0})))
    result = compare(base, both, CompareOptions(max_slowdown=1.5, normalize="calibration"))
    assert {k for k, v in statuses(result).items() if v == REGRESSED} == {SLOW}


def test_calibration_json_repeats_widen_the_interval(tmp_path):
    frame = make_runs(1).drop(columns="calibration_step_s")
    noisy = [{"device": "cpu", "step_s": 2e-4, "repeats_step_s": [1.5e-4, 2e-4, 2.6e-4, 1.8e-4, 2.2e-4]}]
    steady = [{"device": "cpu", "step_s": 2e-4, "repeats_step_s": [2e-4]}]
    base_noisy = load_results(write_set(tmp_path / "b", frame, calibration=noisy))
    base_steady = load_results(write_set(tmp_path / "s", frame, calibration=steady))
    cur = load_results(write_set(tmp_path / "c", make_runs(2)))
    opts = CompareOptions(max_slowdown=1.5, normalize="calibration")
    def speeds(base):
        return {(r.key["engine"], r.key["batch_size"]): r.speed for r in compare(base, cur, opts).rows}

    wide, narrow = speeds(base_noisy), speeds(base_steady)
    assert all(wide[k].high - wide[k].low > narrow[k].high - narrow[k].low for k in wide)


def test_engine_reference_normalization(tmp_path):
    base = load_results(write_set(tmp_path / "b", make_runs(1)))
    # the whole machine 1.6x slower: reference and fast together, so the ratio fast/reference holds
    cur = load_results(write_set(tmp_path / "c", make_runs(2, machine=1.6, slowdown={SLOW: 2.0})))
    result = compare(base, cur, CompareOptions(max_slowdown=1.5, normalize="engine:reference"))
    rows = {(r.key["engine"], int(r.key["batch_size"])): r for r in result.rows}
    for bs, _ in BATCHES:
        ref = rows[("reference", bs)]
        assert ref.speed.verdict == NOT_JUDGED and ref.speed.ratio == 1.0
        assert "normalizer" in ref.speed.note
    assert rows[SLOW].speed.verdict == REGRESSED
    assert rows[("fast", 1)].speed.verdict == UNCHANGED


def test_normalization_without_its_data_is_bad_input(tmp_path):
    base = load_results(write_set(tmp_path / "b", make_runs(1).drop(columns="calibration_step_s")))
    cur = load_results(write_set(tmp_path / "c", make_runs(2)))
    with pytest.raises(MinibatchError, match="no calibration for device cpu"):
        compare(base, cur, CompareOptions(normalize="calibration"))
    only_fast = load_results(write_set(tmp_path / "f", make_runs(3)[lambda f: f.engine == "fast"]))
    with pytest.raises(MinibatchError, match="has no reference runs"):
        compare(only_fast, only_fast, CompareOptions(normalize="engine:reference"))


# --- convergence ----------------------------------------------------------------------------------

def test_exact_mode_detects_a_one_ulp_change(tmp_path):
    frame = make_runs(1)
    changed = frame.copy()
    i = changed.index[(changed.engine == "fast") & (changed.batch_size == 1) & (changed.seed == 2)
                      & (changed.epoch == 3)][0]
    changed.loc[i, "epoch_loss"] = np.nextafter(changed.loc[i, "epoch_loss"], np.inf)
    base = load_results(write_set(tmp_path / "b", frame))
    cur = load_results(write_set(tmp_path / "c", changed))
    exact = compare(base, cur, CompareOptions(loss_mode="exact"))
    assert {k for k, v in statuses(exact).items() if v == REGRESSED} == {("fast", 1)}
    row = next(r for r in exact.rows if r.status == REGRESSED)
    assert row.loss.exact == "differs" and row.loss.differing == 1 and row.loss.first_difference[:2] == (2, 3)
    assert not compare(base, cur, CompareOptions(loss_mode="tolerance")).regressed


@pytest.mark.parametrize("change", [{"versions": {"torch": "2.12.0+cpu"}}, {"torch_cpu_capability": "AVX2"},
                                    {"cpu_model": "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz"}])
def test_exact_mode_falls_back_when_bits_cannot_match(tmp_path, change):
    frame = make_runs(1)
    changed = frame.copy()
    changed["epoch_loss"] *= 1 + 1e-6  # what another torch or other kernels legitimately do
    base = load_results(write_set(tmp_path / "b", frame))
    cur = load_results(write_set(tmp_path / "c", changed, env={**ENV, **change}))
    result = compare(base, cur, CompareOptions(loss_mode="exact"))
    assert not result.regressed
    assert all(r.loss.exact == "fallback" and "exact loss check skipped" in " ".join(r.notes)
               for r in result.rows)
    assert any("fell back" in n for n in result.notes)
    # the tolerance check still guards convergence under the fallback
    worse = changed.copy()
    worse.loc[(worse.engine == "fast") & (worse.batch_size == 32), "epoch_loss"] *= 1.5
    cur = load_results(write_set(tmp_path / "w", worse, env={**ENV, **change}))
    assert {k for k, v in statuses(compare(base, cur, CompareOptions(loss_mode="exact"))).items()
            if v == REGRESSED} == {("fast", 32)}


def test_exact_mode_is_not_applied_to_cuda(tmp_path):
    frame = make_runs(1).assign(device="cuda:0")
    changed = frame.assign(epoch_loss=frame.epoch_loss * (1 + 1e-7))
    result = compare(load_results(write_set(tmp_path / "b", frame)),
                     load_results(write_set(tmp_path / "c", changed)), CompareOptions(loss_mode="exact"))
    assert not result.regressed and all(r.loss.exact == "fallback" for r in result.rows)


# --- memory ---------------------------------------------------------------------------------------

def test_memory_floor_ignores_page_level_growth(tmp_path):
    base = load_results(write_set(tmp_path / "b", make_runs(1)))
    # 300 KiB -> 800 KiB: a large ratio, but less than a MiB, which RSS of this model can wander by
    cur = load_results(write_set(tmp_path / "c", make_runs(2, memory={HUNGRY: 800 * KIB})))
    assert statuses(compare(base, cur))[HUNGRY] == UNCHANGED
    assert statuses(compare(base, cur, CompareOptions(memory_floor_bytes=0)))[HUNGRY] == REGRESSED


# --- statistics -----------------------------------------------------------------------------------

def test_bootstrap_is_reproducible_and_row_order_free(tmp_path):
    frame = known_changes(2)
    base = load_results(write_set(tmp_path / "b", make_runs(1)))
    a = compare(base, load_results(write_set(tmp_path / "c", frame))).to_frame()
    shuffled = frame.sample(frac=1.0, random_state=0)
    b = compare(base, load_results(write_set(tmp_path / "d", shuffled))).to_frame()
    cols = ["engine", "batch_size", "status", "speed_ratio", "speed_low", "speed_high"]
    key = ["engine", "batch_size"]
    pd.testing.assert_frame_equal(a[cols].sort_values(key).reset_index(drop=True),
                                  b[cols].sort_values(key).reset_index(drop=True))


def test_bootstrap_interval_covers_the_ratio():
    rng = np.random.default_rng(0)
    base, cur = rng.lognormal(0, 0.1, 12), 2 * rng.lognormal(0, 0.1, 12)
    ratio, low, high = bootstrap_ratio(base, cur, rng=np.random.default_rng(1))
    assert low < ratio < high and low > 1.5 and high < 2.6


def test_multi_seed_engine_times_count_once(tmp_path):
    frame = make_runs(1, replicas=3)
    rs = load_results(write_set(tmp_path / "b", frame))
    result = compare(rs, rs)
    assert all(r.speed.n_base == 4 for r in result.rows)  # 5 epochs - warm-up, not x 3 seeds


# --- matching -------------------------------------------------------------------------------------

def test_unmatched_seeds_are_listed_not_dropped(tmp_path):
    base = load_results(write_set(tmp_path / "b", make_runs(1)))
    cur_frame = make_runs(2)
    cur_frame = cur_frame[~((cur_frame.engine == "fast") & (cur_frame.batch_size == 1)
                            & (cur_frame.seed == 2))]
    result = compare(base, load_results(write_set(tmp_path / "c", cur_frame)))
    rows = [r for r in result.rows if r.key["engine"] == "fast" and r.key["batch_size"] == 1]
    assert sorted(r.status for r in rows) == [MISSING, NEW]
    assert any("seeds" in " ".join(r.notes) for r in rows)
    assert not result.regressed


# --- pytest-benchmark JSON ------------------------------------------------------------------------

def benchmark_json(frame: pd.DataFrame, path: Path, *, env: dict | None = None) -> Path:
    """The frame in pytest-benchmark's --benchmark-json layout (as pytest-benchmark 5 writes it), as the
    bench harness fills it: each case's runs.csv rows in ``extra_info["runs"]`` (one case per engine x batch
    size x seed; a multi-seed engine's case holds every seed), a few convenience keys beside them, and
    machine_info["minibatch_calibration"]."""
    env = ENV if env is None else env
    # through the one loader first, so the rows carry every runs.csv column (config_id, n_samples, ...)
    frame = check_runs(frame, "synthetic runs")
    case = ["engine", "batch_spec"] + ([] if (frame.replicas > 1).any() else ["seed"])
    benches = []
    for _, g in frame.groupby(case, sort=False):
        g = g.sort_values(["seed", "epoch"])
        first = g[g.seed == g.seed.min()]
        engine, spec = first.engine.iloc[0], first.batch_spec.iloc[0]
        timed = first[~first.warmup]["epoch_time_s"].tolist()
        benches.append({
            "group": None, "name": f"test_train_epoch[{engine}-cpu-{spec}]",
            "fullname": f"bench/test_bench_training.py::test_train_epoch[{engine}-cpu-{spec}]",
            "params": {"engine": engine, "device": "cpu", "batch_size": spec},
            "param": f"{engine}-cpu-{spec}",
            "extra_info": {
                "engine": engine, "dataset": "wine", "device": "cpu", "batch_size": int(first.batch_size.iloc[0]),
                "batch_spec": spec, "final_epoch_loss": float(first.epoch_loss.iloc[-1]),
                "peak_memory_bytes": int(first.peak_memory_bytes.iloc[0]), "epoch_times_s": timed,
                "runs": json_records(g),
            },
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                        "min_time": 5e-06, "warmup": False},
            "stats": {"min": min(timed), "max": max(timed), "mean": float(np.mean(timed)),
                      "median": float(np.median(timed)), "rounds": len(timed), "iterations": 1,
                      "data": timed},
        })
    data = {
        "machine_info": {"node": "x", "processor": "x86_64", "python_version": "3.11.7",
                         "cpu": {"brand_raw": env["cpu_model"], "arch": "X86_64"},
                         # as bench/conftest.py writes it (cpu_capability: see README, Regression checks)
                         "torch": {"version": env["versions"]["torch"], "threads": 1,
                                   "cpu_capability": env["torch_cpu_capability"]},
                         "minibatch_calibration": {
                             "cpu": {"step_s": float(frame.calibration_step_s.iloc[0])}}},
        "commit_info": {"id": "unversioned"}, "benchmarks": benches,
        "datetime": "2026-11-23T20:00:00", "version": "5.2.3",
    }
    path.write_text(json.dumps(data, allow_nan=False))  # strict JSON, as the harness's records are
    return path


def test_pytest_benchmark_json_is_judged_the_same_way(tmp_path):
    base = load_results(benchmark_json(make_runs(1), tmp_path / "b.json"))
    cur = load_results(benchmark_json(known_changes(2), tmp_path / "c.json"))
    assert base.kind == "pytest-benchmark JSON" and base.env.cpu_capability == "AVX512"
    result = compare(base, cur, CompareOptions(max_slowdown=1.5, loss_mode="exact", normalize="calibration"))
    got = statuses(result)
    assert {k for k, v in got.items() if v == REGRESSED} == {SLOW, LOSSY, HUNGRY}
    assert got[GONE] == MISSING and result.count(UNCHANGED) == len(got) - 4
    noise = load_results(benchmark_json(make_runs(3), tmp_path / "n.json"))
    assert not compare(base, noise, CompareOptions(loss_mode="exact")).regressed
    # and a JSON side matches a results-folder side of the same measurements, loss curves bit for bit
    folder = load_results(write_set(tmp_path / "f", make_runs(1)))
    cross = compare(folder, base, CompareOptions(loss_mode="exact"))
    assert not cross.regressed and all(r.loss.exact == "identical" for r in cross.rows)


def test_multi_seed_benchmark_unrolls_every_seed(tmp_path):
    frame = make_runs(1, replicas=2, seeds=(0, 1))
    path = benchmark_json(frame, tmp_path / "m.json")
    data = json.loads(path.read_text())
    assert len(data["benchmarks"]) == len(ENGINES) * len(BATCHES)  # one case trains both seeds in one pass
    assert all({r["seed"] for r in b["extra_info"]["runs"]} == {0, 1} for b in data["benchmarks"])
    rs = load_results(path)
    folder = load_results(write_set(tmp_path / "f", frame))
    result = compare(folder, rs, CompareOptions(loss_mode="exact"))
    assert not result.regressed and {r.status for r in result.rows} == {UNCHANGED}
    assert all(r.loss.exact == "identical" and r.loss.compared == 10 for r in result.rows)
    assert all(r.speed.n_cur == 4 for r in result.rows)  # shared epoch times counted once


@pytest.mark.slow  # runs pytest-benchmark in a subprocess
def test_real_pytest_benchmark_output_loads(tmp_path):
    """What pytest-benchmark itself writes (here from trivial benchmarks that store records the way the
    harness does) loads; a benchmark without records is left out with a note, not an error."""
    (tmp_path / "test_tiny.py").write_text(textwrap.dedent("""
        import pytest

        def rows(batch_size):
            times = [0.01, 0.008, 0.009]
            return [{"run_id": f"reference|wine|cpu|b{batch_size}|s0|lr0.001", "engine": "reference",
                     "dataset": "wine", "device": "cpu", "batch_spec": str(batch_size), "batch_size": batch_size,
                     "seed": 0, "lr": 0.001, "epochs": 3, "epoch": e, "epoch_loss": 1.0 - 0.1 * e,
                     "eval_loss": 1.0 - 0.1 * e, "eval_accuracy": 0.5, "epoch_time_s": times[e - 1],
                     "cumulative_time_s": sum(times[:e]), "warmup": e == 1, "steps": -(-178 // batch_size),
                     "samples_per_s": 178 / times[e - 1], "peak_memory_bytes": 4096, "diverged_epoch": None}
                    for e in (1, 2, 3)]

        @pytest.mark.parametrize("batch_size", [1, 32])
        def test_tiny(benchmark, batch_size):
            benchmark.extra_info["runs"] = rows(batch_size)
            benchmark.pedantic(sum, args=(range(100),), rounds=5, iterations=1)

        def test_no_records(benchmark):
            benchmark(sum, range(10))
    """))
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tiny.py",
                           "--benchmark-only", "--benchmark-save-data", f"--benchmark-json={out}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rs = load_results(out)
    assert rs.kind == "pytest-benchmark JSON"
    assert sorted(rs.frame.batch_size.unique()) == [1, 32]
    assert rs.frame.groupby("batch_size").epoch_time_s.count().tolist() == [3, 3]
    assert rs.frame.config_id.tolist()[:1] == ["reference|wine|cpu|b1|lr0.001"]  # the identity is rebuilt
    assert any("ignored 1 benchmark(s) without minibatch records" in n for n in rs.notes)
    result = compare(rs, rs, CompareOptions(loss_mode="exact"))
    assert not result.regressed and len(result.rows) == 2


def test_a_benchmark_json_without_records_is_bad_input(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"benchmarks": [{"name": "t", "extra_info": {"engine": "reference"}}]}))
    with pytest.raises(MinibatchError, match="no minibatch benchmarks in it"):
        load_results(path)


# --- real runs ------------------------------------------------------------------------------------

def _real_runs(folder: Path) -> Path:
    """Real measurements of a tiny grid in runs.csv form (records.rows.run_rows is what sweeps write)."""
    from minibatch_core import RunConfig, train_seeds
    from minibatch_core.records.rows import run_rows
    from minibatch_core.running.envinfo import collect

    frames = [run_rows(r) for batch in (32, "full")
              for r in train_seeds(RunConfig(batch_size=batch, epochs=3), [0, 1], isolate=False)]
    folder.mkdir()
    pd.concat(frames, ignore_index=True).to_csv(folder / "runs.csv", index=False)
    (folder / "env.json").write_text(json.dumps(collect(), default=str))
    return folder


@pytest.mark.slow  # measures real runs first
def test_real_runs_compared_with_themselves_pass_and_reruns_are_bit_identical(tmp_path):
    a, b = load_results(_real_runs(tmp_path / "a")), load_results(_real_runs(tmp_path / "b"))
    assert a.env.torch_version and a.env.cpu_capability  # what the exact check relies on is recorded
    same = compare(a, a, CompareOptions(loss_mode="exact"))
    assert not same.regressed and {r.status for r in same.rows} == {UNCHANGED} and len(same.rows) == 2
    assert all(r.loss.exact == "identical" and r.speed.ratio == 1.0 for r in same.rows)
    # measured again: the same loss curves to the bit (its timing is not judged: no timing in tests)
    rerun = compare(a, b, CompareOptions(loss_mode="exact", max_slowdown=1e9, max_memory_growth=1e9))
    assert all(r.loss.exact == "identical" and r.loss.compared == 6 for r in rerun.rows)
    assert not rerun.regressed


# --- the CLI --------------------------------------------------------------------------------------

def test_cli_exit_codes_and_markdown(tmp_path, capsys):
    base = write_set(tmp_path / "b", make_runs(1))
    noise = write_set(tmp_path / "n", make_runs(2))
    changed = write_set(tmp_path / "c", known_changes(3))
    md = tmp_path / "out" / "compare.md"
    assert main(["compare", str(base), str(noise), "--loss-mode", "exact", "--markdown", str(md)]) == 0
    assert "no regression" in md.read_text()
    code = main(["compare", str(base), str(changed), "--normalize", "calibration", "--max-slowdown", "1.5",
                 "--markdown", str(md)])
    assert code == 1
    text = md.read_text()
    assert text.count("| **regressed** |") == 3 and text.count("| missing |") == 1
    assert "| engine | dataset | device | batch |" in text
    out = capsys.readouterr().out
    assert "regressed" in out and "missing" in out
    assert not list(md.parent.glob(".*.tmp"))  # written atomically, no temp file left behind


@pytest.mark.parametrize("args, message", [
    (["{base}", "{tmp}/nowhere"], "no such file or folder"),
    (["{base}", "{tmp}"], "no runs.csv"),
    (["{base}", "{other}"], "nothing matched"),
    (["{base}", "{base}", "--normalize", "fastest"], "--normalize 'fastest' is not known"),
    (["{base}", "{nocal}", "--normalize", "calibration"], "no calibration"),
    (["{base}", "{broken}"], "missing column"),
    (["{base}", "{badjson}"], "unreadable JSON"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    paths = {"tmp": tmp_path, "base": write_set(tmp_path / "b", make_runs(1)),
             "other": write_set(tmp_path / "o", make_runs(1).assign(dataset="iris")),
             "nocal": write_set(tmp_path / "nc", make_runs(1).drop(columns="calibration_step_s")),
             "broken": write_set(tmp_path / "x", make_runs(1).drop(columns="epoch_loss"))}
    paths["badjson"] = tmp_path / "bad.json"
    paths["badjson"].write_text("{not json")
    code = main(["compare", *[a.format(**paths) for a in args]])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("minibatch-bench compare: error:") and message in err


# --- baseline update ------------------------------------------------------------------------------

def test_baseline_update_swaps_in_a_complete_folder(tmp_path, capsys):
    config = tmp_path / "quick.toml"
    config.write_text("epochs = 5\n")
    sweep_out = write_set(tmp_path / "sweep", make_runs(1), calibration=[{"device": "cpu", "step_s": 2e-4}])
    (sweep_out / "summary.md").write_text("| table |\n")
    (sweep_out / "loss_vs_epoch.png").write_bytes(b"\x89PNG")
    target = tmp_path / "results" / "baseline"
    write_set(target, make_runs(9))
    (target / "stale.txt").write_text("old")
    assert main(["baseline", "update", "--config", str(config), "--dir", str(target),
                 "--from-results", str(sweep_out)]) == 0
    assert sorted(p.name for p in target.iterdir()) == ["calibration.json", "env.json", "quick-sweep.toml",
                                                        "runs.csv", "summary.md"]
    assert (target / "runs.csv").read_bytes() == (sweep_out / "runs.csv").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["baseline"]  # no temp folder left
    assert "baseline updated" in capsys.readouterr().out


def test_baseline_update_failure_keeps_the_old_baseline(tmp_path, capsys):
    config = tmp_path / "quick.toml"
    config.write_text("epochs = 5\n")
    incomplete = write_set(tmp_path / "sweep", make_runs(1))  # no calibration.json
    target = write_set(tmp_path / "results" / "baseline", make_runs(9))
    before = (target / "runs.csv").read_bytes()
    assert main(["baseline", "update", "--config", str(config), "--dir", str(target),
                 "--from-results", str(incomplete)]) == 2
    assert "no calibration.json" in capsys.readouterr().err
    assert (target / "runs.csv").read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["baseline"]
