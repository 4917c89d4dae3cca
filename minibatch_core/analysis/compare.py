"""Baseline vs current: load either input kind into one tidy frame, match configurations, judge.

Pure: nothing here prints or formats for people (that is ``compare_render``). Every verdict is a
function of the inputs and ``CompareOptions`` alone; the bootstrap RNG is seeded per configuration,
so the same inputs always give the same verdicts.

The tidy frame is the shape of ``runs.csv`` (one row per run x epoch), whichever input it came from:
a pytest-benchmark JSON is unrolled into the same columns (see ``_frame_from_benchmark_json``).
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from minibatch_core.errors import MinibatchError
from minibatch_core.records.identity import IDENTITY_COLUMNS
from minibatch_core.records.io import load_runs, rows_frame

# A configuration is its full identity (every axis but the seed, from the records layer) and its set of
# seeds: runs that differ in any axis are never compared as the same thing.
# (the resolved batch size follows from batch_spec and the data; it is kept for display)
KEYS = (*IDENTITY_COLUMNS, "batch_size", "seeds")

IMPROVED, UNCHANGED, REGRESSED, MISSING, NEW = "improved", "unchanged", "regressed", "missing", "new"
NOT_JUDGED = "not judged"
LOSS_MODES = ("tolerance", "exact")
MIN_TIME_SAMPLES = 3  # below this a bootstrap interval is degenerate (and would look falsely certain)


@dataclass(frozen=True)
class CompareOptions:
    # Measured, not chosen: no false alarm in 40 back-to-back comparisons of identical code (20 of
    # pytest-benchmark JSONs, 20 of quick sweeps, one thread) on a shared 2-core machine at load average
    # 0.5 to 10.9, where the largest ratio with its interval above 1 was 65.9 (docs/gates.md,
    # scripts/false_alarm_rate.py). On a quiet, dedicated machine pass a smaller --max-slowdown.
    max_slowdown: float = 70.0
    normalize: str = "none"  # none | calibration | engine:NAME
    loss_mode: str = "tolerance"  # tolerance | exact
    loss_rtol: float = 0.05
    max_memory_growth: float = 1.20
    # CPU peak memory is an RSS delta: it moves by whole pages and allocator arenas, tens to hundreds
    # of KiB for this model, with run-to-run jitter of a few pages. Differences below this never regress.
    memory_floor_bytes: int = 1 << 20
    confidence: float = 0.95
    bootstrap: int = 2000
    rng_seed: int = 0

    def __post_init__(self) -> None:
        if not (self.max_slowdown > 1 and math.isfinite(self.max_slowdown)):
            raise MinibatchError(f"--max-slowdown {self.max_slowdown!r} is not valid: use a number > 1")
        if not (self.max_memory_growth > 1 and math.isfinite(self.max_memory_growth)):
            raise MinibatchError(
                f"--max-memory-growth {self.max_memory_growth!r} is not valid: use a number > 1")
        if not (self.loss_rtol >= 0 and math.isfinite(self.loss_rtol)):
            raise MinibatchError(f"--loss-rtol {self.loss_rtol!r} is not valid: use a number >= 0")
        if self.memory_floor_bytes < 0:
            raise MinibatchError(f"--memory-floor-bytes {self.memory_floor_bytes!r} is not valid: use >= 0")
        if not 0.5 <= self.confidence < 1:
            raise MinibatchError(f"--confidence {self.confidence!r} is not valid: use a number in [0.5, 1)")
        if self.bootstrap < 100:
            raise MinibatchError(f"--bootstrap {self.bootstrap!r} is not valid: use at least 100 resamples")
        if self.loss_mode not in LOSS_MODES:
            raise MinibatchError(
                f"--loss-mode {self.loss_mode!r} is not known: use one of {', '.join(LOSS_MODES)}")
        if not (self.normalize in ("none", "calibration") or
                (self.normalize.startswith("engine:") and self.normalize[len("engine:"):])):
            raise MinibatchError(
                f"--normalize {self.normalize!r} is not known: use none, calibration or engine:NAME "
                "(e.g. engine:reference)"
            )

    @property
    def reference_engine(self) -> str | None:
        return self.normalize[len("engine:"):] if self.normalize.startswith("engine:") else None


@dataclass
class Environment:
    """What decides whether CPU loss curves can be bit-identical across two result sets."""

    torch_version: str | None = None
    cpu_capability: str | None = None
    cpu_model: str | None = None
    numpy_version: str | None = None  # these two compute the sklearn engine's losses
    sklearn_version: str | None = None
    torch_threads: str | None = None

    @property
    def cpu_vendor(self) -> str | None:
        # MKL/oneDNN pick kernels by vendor as well as by ISA: an Intel and an AMD CPU that both
        # report AVX512 to ATen can still round differently.
        if not self.cpu_model:
            return None
        model = self.cpu_model.lower()
        for vendor in ("intel", "amd", "apple", "arm"):
            if vendor in model:
                return vendor
        return model

    def describe(self) -> str:
        return (f"torch {self.torch_version or '?'}, cpu_capability {self.cpu_capability or '?'}, "
                f"CPU {self.cpu_model or '?'}")


@dataclass
class ResultSet:
    source: str
    kind: str  # "results folder" | "pytest-benchmark JSON"
    frame: pd.DataFrame  # runs.csv-shaped, plus a "seeds" column (the configuration's seed set)
    env: Environment
    # device -> calibration step samples (seconds); one value when only the median was recorded
    calibration: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    env_data: dict[str, Any] = field(default_factory=dict)  # env.json as recorded (load, cores): contention


# --- loading ---------------------------------------------------------------------------------------

def load_results(path: str | Path) -> ResultSet:
    """A results folder (``runs.csv``, ``env.json``, ``calibration.json``) or a pytest-benchmark JSON."""
    p = Path(path)
    if p.is_dir():
        return _load_folder(p)
    if p.is_file() and p.suffix.lower() == ".json":
        return _load_benchmark_json(p)
    if p.is_file() and p.name.endswith(".csv"):
        return _load_folder(p.parent, runs=p)
    if not p.exists():
        raise MinibatchError(
            f"{path}: no such file or folder (give a results folder or a pytest-benchmark JSON)")
    raise MinibatchError(f"{path}: not a results folder, runs.csv or pytest-benchmark .json file")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MinibatchError(f"{path}: unreadable JSON ({err.__class__.__name__}: {err})") from None


def _find(d: Any, names: tuple[str, ...]) -> Any:
    """First non-dict value under any of ``names``, searching nested dicts breadth-first (env layouts
    vary: ``{"torch": "2.13.0"}``, ``{"versions": {"torch": ...}}``, pytest-benchmark's ``cpu.brand_raw``)."""
    queue = [d]
    while queue:
        cur = queue.pop(0)
        if not isinstance(cur, dict):
            continue
        for name in names:
            value = cur.get(name)
            if value not in (None, "") and not isinstance(value, (dict, list)):
                return value
        queue += [v for k, v in cur.items() if isinstance(v, dict) and k not in ("config", "sweep")]
    return None


def _environment(d: dict) -> Environment:
    def text(*names: str) -> str | None:
        value = _find(d, names)
        return None if value is None else str(value)

    # the bench harness writes machine_info["torch"] = {"version": ..., "threads": ...}
    torch_info = d.get("torch") if isinstance(d.get("torch"), dict) else {}
    return Environment(
        torch_version=text("torch_version", "torch") or
        (str(torch_info["version"]) if torch_info.get("version") else None),
        cpu_capability=text("cpu_capability", "torch_cpu_capability"),
        cpu_model=text("cpu_model", "brand_raw", "cpu"),
        numpy_version=text("numpy_version", "numpy"),
        sklearn_version=text("sklearn_version", "scikit-learn", "sklearn"),
        torch_threads=text("torch_threads") or
        (str(torch_info["threads"]) if torch_info.get("threads") else None),
    )


def _calibration_entries(data: Any) -> dict[str, list[float]]:
    """Accepts one Calibration dict, a list of them, or {device: Calibration dict | step_s}."""
    entries: dict[str, list[float]] = {}

    def add(device: str, item: Any) -> None:
        if isinstance(item, (int, float)):
            entries[device] = [float(item)]
        elif isinstance(item, dict) and item.get("step_s") is not None:
            repeats = item.get("repeats_step_s") or [item["step_s"]]
            entries[str(item.get("device", device))] = [float(x) for x in repeats]

    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                add(str(item.get("device", "cpu")), item)
    elif isinstance(data, dict):
        if "step_s" in data:
            add(str(data.get("device", "cpu")), data)
        else:
            for device, item in data.items():
                add(str(device), item)
    return entries


def _load_folder(folder: Path, runs: Path | None = None) -> ResultSet:
    runs = runs or folder / "runs.csv"
    if not runs.is_file():
        raise MinibatchError(f"{folder}: no runs.csv here (give a results folder or a pytest-benchmark JSON)")
    frame = load_runs(runs)
    env_path = folder / "env.json"
    env_data = _read_json(env_path) if env_path.is_file() else {}
    cal_path = folder / "calibration.json"
    calibration = _calibration_entries(_read_json(cal_path)) if cal_path.is_file() else {}
    if "calibration_step_s" in frame.columns:
        # runs.csv's column is the contract; calibration.json only adds the repeats behind it
        for device, steps in frame.groupby("device")["calibration_step_s"]:
            steps = steps.dropna()
            if len(steps) and str(device) not in calibration:
                calibration[str(device)] = [float(steps.median())]
    notes = [] if env_data else [f"{folder}: no env.json (environment unknown)"]
    status = env_data.get("status") if isinstance(env_data, dict) else None
    recorded = env_data.get("runs_done") if isinstance(env_data, dict) else None
    if status == "complete" and isinstance(recorded, int) and not isinstance(recorded, bool):
        found = int(frame["run_id"].nunique())
        if found != recorded:  # e.g. a runs.csv cut at a line boundary: no row is malformed, runs are gone
            raise MinibatchError(f"{runs}: holds {found} runs but env.json records {recorded} completed: "
                                 "truncated or from another sweep")
    if status not in (None, "complete"):
        notes.append(f"{folder}: the sweep is not complete (env.json status: {status}); "
                     "its absent runs show as missing/new")
    return ResultSet(str(runs.parent if runs.name == "runs.csv" else runs), "results folder",
                     _with_seeds(frame), _environment(env_data), calibration, notes,
                     env_data if isinstance(env_data, dict) else {})


def _frame_from_benchmark_json(data: dict, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The bench harness stores each case's runs.csv rows in ``extra_info["runs"]`` (the records
    layer's writer), so a bench JSON is read as the same records as a results folder."""
    rows: list[dict] = []
    ignored = 0
    for bench in data.get("benchmarks") or []:
        runs = (bench.get("extra_info") or {}).get("runs")
        if isinstance(runs, list) and runs:
            rows += runs
        else:
            ignored += 1
    notes = [f"{source}: ignored {ignored} benchmark(s) without minibatch records (extra_info['runs'])"
             ] if ignored else []
    return (rows_frame(rows, source) if rows else pd.DataFrame()), notes


def _load_benchmark_json(path: Path) -> ResultSet:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise MinibatchError(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    frame, notes = _frame_from_benchmark_json(data, str(path))
    if frame.empty:
        raise MinibatchError(f"{path}: no minibatch benchmarks in it (none has extra_info['runs'] records: "
                             "made by `pytest bench --benchmark-only` of this version?)")
    machine = data.get("machine_info") or {}
    calibration = _calibration_entries(machine.get("minibatch_calibration") or {})
    return ResultSet(str(path), "pytest-benchmark JSON", _with_seeds(frame), _environment(machine),
                     calibration, notes)


def _with_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``seeds``: the configuration's seed set, part of what is matched (a two-seed median is not
    the same measurement as a three-seed one)."""
    frame = frame.copy()
    frame["seeds"] = frame.groupby("config_id")["seed"].transform(
        lambda s: ",".join(str(x) for x in sorted(set(s))))
    return frame


# --- matching and verdicts ---------------------------------------------------------------------------

@dataclass
class SpeedVerdict:
    verdict: str
    ratio: float = float("nan")  # current / baseline of the (normalized) median epoch time
    low: float = float("nan")
    high: float = float("nan")
    base_median: float = float("nan")  # seconds, or normalized units when normalize != none
    cur_median: float = float("nan")
    n_base: int = 0
    n_cur: int = 0
    note: str = ""


@dataclass
class LossVerdict:
    verdict: str
    base_final: float = float("nan")  # final epoch loss, mean across seeds
    cur_final: float = float("nan")
    rel_change: float = float("nan")
    exact: str = "not checked"  # identical | differs | not checked | fallback
    differing: int = 0  # (seed, epoch) losses that differ, exact mode
    compared: int = 0
    first_difference: tuple[int, int, float, float] | None = None  # seed, epoch, baseline, current
    note: str = ""
    diverged: str = ""  # which side has a diverged seed: "current" | "baseline" | "both" | ""


@dataclass
class MemoryVerdict:
    verdict: str
    base_bytes: float = float("nan")  # median across seeds of each run's peak
    cur_bytes: float = float("nan")
    ratio: float = float("nan")
    note: str = ""


@dataclass
class RowComparison:
    key: dict[str, Any]
    status: str
    batch_spec: str = ""
    speed: SpeedVerdict | None = None
    loss: LossVerdict | None = None
    memory: MemoryVerdict | None = None
    notes: list[str] = field(default_factory=list)
    batch_size: int = 0  # resolved
    config_id: str = ""


@dataclass
class Comparison:
    baseline: ResultSet
    current: ResultSet
    options: CompareOptions
    keys: tuple[str, ...]
    rows: list[RowComparison]
    notes: list[str]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def regressed(self) -> bool:
        return any(r.status == REGRESSED for r in self.rows)

    def to_frame(self) -> pd.DataFrame:
        """One flat row per configuration (for tests, CSV export, or a notebook)."""
        out = []
        for r in self.rows:
            d = {**r.key, "status": r.status, "batch_spec": r.batch_spec}
            for prefix, part in (("speed", r.speed), ("loss", r.loss), ("memory", r.memory)):
                if part is not None:
                    d.update({f"{prefix}_{k}": v for k, v in vars(part).items()})
            d["notes"] = "; ".join(r.notes)
            out.append(d)
        return pd.DataFrame(out)


def _config_groups(rs: ResultSet, keys: tuple[str, ...]) -> dict[tuple, pd.DataFrame]:
    frame = rs.frame.copy()
    for col in keys:
        # a key that one run lacks is "" rather than NaN, which never equals itself
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "")
    return {k if isinstance(k, tuple) else (k,): g for k, g in frame.groupby(list(keys), sort=False)}


def _timed_samples(group: pd.DataFrame) -> np.ndarray:
    # sorted, so the seeded bootstrap sees the same sequence however the rows were ordered
    timed = group[~group["warmup"]].dropna(subset=["epoch_time_s"]).sort_values(["seed", "epoch"])
    if (timed["replicas"].fillna(1) > 1).any():
        # a multi-seed engine times all seeds in one pass: each epoch's time is repeated on every
        # seed's row and counts once
        timed = timed.drop_duplicates(subset=["epoch", "epoch_time_s"])
    return timed["epoch_time_s"].to_numpy(dtype=float)


def _rng(options: CompareOptions, key: tuple) -> np.random.Generator:
    # seeded by the configuration, not its position, so adding rows never changes another row's verdict
    return np.random.default_rng([options.rng_seed, zlib.crc32("|".join(map(str, key)).encode())])


def _boot_medians(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) == 1:
        return np.full(n, x[0])
    return np.median(x[rng.integers(0, len(x), size=(n, len(x)))], axis=1)


def bootstrap_ratio(base: np.ndarray, cur: np.ndarray, *, base_den: np.ndarray | None = None,
                    cur_den: np.ndarray | None = None, n_boot: int = 2000, confidence: float = 0.95,
                    rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Ratio of medians current/baseline, each optionally divided by the median of a normalizer's
    samples, with a percentile bootstrap interval. Each sample set is resampled on its own (the two
    sides, and a normalizer, are independent measurements)."""
    rng = rng or np.random.default_rng(0)

    def point(x, den):
        return float(np.median(x)) / (float(np.median(den)) if den is not None else 1.0)

    def boot(x, den):
        b = _boot_medians(x, n_boot, rng)
        return b / _boot_medians(den, n_boot, rng) if den is not None else b

    ratio = point(cur, cur_den) / point(base, base_den)
    ratios = boot(cur, cur_den) / boot(base, base_den)
    alpha = 1 - confidence
    low, high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return ratio, float(low), float(high)


def _normalizer(rs: ResultSet, side: str, key: dict[str, Any], groups: dict[tuple, pd.DataFrame],
                keys: tuple[str, ...], options: CompareOptions) -> tuple[np.ndarray | None, str]:
    """Samples to divide this configuration's times by (None: no normalization), or a reason why none."""
    if options.normalize == "none":
        return None, ""
    if options.normalize == "calibration":
        steps = rs.calibration.get(key["device"])
        if not steps:
            raise MinibatchError(
                f"--normalize calibration: the {side} ({rs.source}) has no calibration for device "
                f"{key['device']} (no calibration_step_s column, calibration.json or minibatch_calibration)")
        return np.asarray(steps, dtype=float), ""
    ref_key = tuple(options.reference_engine if k == "engine" else key[k] for k in keys)
    ref = groups.get(ref_key)
    if ref is None:
        return None, f"no {options.reference_engine} run of this configuration in the {side} to normalize by"
    samples = _timed_samples(ref)
    if len(samples) == 0:
        return None, f"the {options.reference_engine} run in the {side} has no timed epochs"
    return samples, ""


def _judge_speed(key: dict, b: pd.DataFrame, c: pd.DataFrame, ctx: dict,
                 options: CompareOptions) -> SpeedVerdict:
    if options.reference_engine is not None and key["engine"] == options.reference_engine:
        return SpeedVerdict(NOT_JUDGED, ratio=1.0, base_median=1.0, cur_median=1.0,
                            note=f"speed not judged: {key['engine']} is the normalizer (its ratios are 1.0)")
    if diverged_seeds(b) or diverged_seeds(c):
        return SpeedVerdict(NOT_JUDGED, note="speed not judged: a run diverged (its epochs are not the same work)")
    base, cur = _timed_samples(b), _timed_samples(c)
    if min(len(base), len(cur)) < MIN_TIME_SAMPLES:
        return SpeedVerdict(NOT_JUDGED, n_base=len(base), n_cur=len(cur),
                            note=f"speed not judged: fewer than {MIN_TIME_SAMPLES} timed epochs on a side "
                                 f"(baseline {len(base)}, current {len(cur)})")
    base_den, why_b = _normalizer(ctx["baseline"], "baseline", key, ctx["base_groups"], ctx["keys"], options)
    cur_den, why_c = _normalizer(ctx["current"], "current", key, ctx["cur_groups"], ctx["keys"], options)
    if why_b or why_c:
        return SpeedVerdict(NOT_JUDGED, n_base=len(base), n_cur=len(cur),
                            note=f"speed not judged: {why_b or why_c}")
    ratio, low, high = bootstrap_ratio(base, cur, base_den=base_den, cur_den=cur_den,
                                       n_boot=options.bootstrap, confidence=options.confidence,
                                       rng=_rng(options, tuple(key.values())))
    scale_b = float(np.median(base_den)) if base_den is not None else 1.0
    scale_c = float(np.median(cur_den)) if cur_den is not None else 1.0
    if ratio > options.max_slowdown and low > 1:
        verdict = REGRESSED
    elif ratio < 1 / options.max_slowdown and high < 1:
        verdict = IMPROVED
    else:
        verdict = UNCHANGED
    return SpeedVerdict(verdict, ratio, low, high, float(np.median(base)) / scale_b,
                        float(np.median(cur)) / scale_c, len(base), len(cur))


def _final_losses(g: pd.DataFrame) -> pd.Series:
    """Each seed's loss at its last recorded epoch, NaN included: a missing final loss is never replaced by
    the epoch before (a NaN there is a divergence, see ``diverged_seeds``)."""
    last = g.sort_values("epoch").groupby("seed").tail(1)
    return last.set_index("seed")["epoch_loss"].sort_index()


def diverged_seeds(g: pd.DataFrame) -> dict[int, int]:
    """seed -> the epoch it diverged at: recorded as diverged, or (files from before the column, or
    doctored ones) any non-finite epoch loss, which counts from its first such epoch."""
    out: dict[int, int] = {}
    for seed, runs in g.sort_values("epoch").groupby("seed"):
        flagged = runs[runs["diverged"].astype(bool)]
        bad = runs[~np.isfinite(runs["epoch_loss"].astype(float))]
        epochs = [int(e) for e in flagged["diverged_epoch"].dropna()] + [int(e) for e in bad["epoch"]]
        if len(flagged) or epochs:
            out[int(seed)] = min(epochs) if epochs else int(runs["epoch"].max())
    return out


def _describe_divergence(found: dict[int, int]) -> str:
    return ", ".join(f"seed {s} at epoch {e}" for s, e in sorted(found.items()))


def exact_check_reason(baseline: Environment, current: Environment, device: str, engine: str = "") -> str:
    """Why bit-exact loss curves cannot be expected ('' when they can): the same losses to the bit need
    the same code (torch; numpy and scikit-learn for the sklearn engine) on the same CPU kernels (ATen's
    dispatch level, and the vendor, which MKL/oneDNN/OpenBLAS also dispatch on)."""
    if not device.startswith("cpu"):
        return f"device {device} (GPU kernels are not bit-reproducible across runs)"
    checks = [("torch version", baseline.torch_version, current.torch_version),
              ("cpu_capability", baseline.cpu_capability, current.cpu_capability),
              ("CPU vendor", baseline.cpu_vendor, current.cpu_vendor)]
    if engine == "sklearn":
        checks += [("numpy version", baseline.numpy_version, current.numpy_version),
                   ("scikit-learn version", baseline.sklearn_version, current.sklearn_version)]
    for what, a, b in checks:
        if a is None or b is None:
            return f"{what} unknown on the {'baseline' if a is None else 'current'} side"
        if a != b:
            return f"{what} differs ({a} vs {b})"
    return ""


def _judge_divergence(b: pd.DataFrame, c: pd.DataFrame) -> LossVerdict | None:
    """The loss verdict when either side diverged (None when neither did): a seed that converged in the
    baseline and diverged in the current regresses; the same seeds diverging on both sides cannot be
    judged (and is never called unchanged)."""
    db, dc = diverged_seeds(b), diverged_seeds(c)
    if not db and not dc:
        return None
    fb, fc = _final_losses(b), _final_losses(c)
    base_final, cur_final = float(fb.mean()), float(fc.mean())  # NaN when a seed diverged
    new = {s: e for s, e in dc.items() if s not in db}
    if new:
        return LossVerdict(REGRESSED, base_final, cur_final, diverged="current",
                           note=f"diverged in the current ({_describe_divergence(new)}) where the baseline "
                                "converged")
    if set(dc) == set(db):
        return LossVerdict(NOT_JUDGED, base_final, cur_final, diverged="both",
                           note=f"loss not judged: diverged on both sides (baseline {_describe_divergence(db)}; "
                                f"current {_describe_divergence(dc)})")
    fixed = {s: e for s, e in db.items() if s not in dc}
    return LossVerdict(IMPROVED, base_final, cur_final, diverged="baseline",
                       note=f"the baseline diverged ({_describe_divergence(fixed)}); the current converged")


def _judge_loss(key: dict, b: pd.DataFrame, c: pd.DataFrame, ctx: dict,
                options: CompareOptions) -> LossVerdict:
    divergence = _judge_divergence(b, c)
    if divergence is not None:
        return divergence
    fb, fc = _final_losses(b).dropna(), _final_losses(c).dropna()
    if fb.empty or fc.empty:
        return LossVerdict(NOT_JUDGED, note="no epoch losses on a side")
    base_final, cur_final = float(fb.mean()), float(fc.mean())
    rel = (cur_final - base_final) / abs(base_final) if base_final != 0 else (
        0.0 if cur_final == base_final else math.copysign(math.inf, cur_final - base_final))
    verdict = REGRESSED if rel > options.loss_rtol else IMPROVED if rel < -options.loss_rtol else UNCHANGED
    out = LossVerdict(verdict, base_final, cur_final, rel)
    if options.loss_mode != "exact":
        return out
    why = exact_check_reason(ctx["baseline"].env, ctx["current"].env, key["device"], key["engine"])
    if why:
        out.exact = "fallback"
        out.note = f"exact loss check skipped: {why}; judged on --loss-rtol only"
        return out
    lb = b.set_index(["seed", "epoch"])["epoch_loss"]
    lc = c.set_index(["seed", "epoch"])["epoch_loss"]
    if lb.index.has_duplicates or lc.index.has_duplicates:
        raise MinibatchError(f"{key}: more than one row per seed and epoch; cannot compare loss curves")
    both = lb.to_frame("base").join(lc.to_frame("cur"), how="outer")
    # NaN == NaN here: an epoch with no loss on both sides is not a change
    same = (both["base"] == both["cur"]) | (both["base"].isna() & both["cur"].isna())
    out.compared = len(both)
    out.differing = int((~same).sum())
    if out.differing:
        (seed, epoch), first = next(iter(both[~same].iterrows()))
        out.first_difference = (int(seed), int(epoch), float(first["base"]), float(first["cur"]))
        out.exact = "differs"
        out.verdict = REGRESSED
    else:
        out.exact = "identical"
    return out


def _peak_per_seed(g: pd.DataFrame) -> pd.Series:
    return g.groupby("seed")["peak_memory_bytes"].max().dropna()


def _judge_memory(b: pd.DataFrame, c: pd.DataFrame, options: CompareOptions) -> MemoryVerdict:
    pb, pc = _peak_per_seed(b), _peak_per_seed(c)
    if pb.empty or pc.empty:
        return MemoryVerdict(NOT_JUDGED, note="no peak memory on a side")
    base, cur = float(pb.median()), float(pc.median())
    ratio = cur / base if base > 0 else (1.0 if cur == base else math.inf)
    floor = options.memory_floor_bytes
    if cur - base > floor and ratio > options.max_memory_growth:
        verdict = REGRESSED
    elif base - cur > floor and ratio < 1 / options.max_memory_growth:
        verdict = IMPROVED
    else:
        verdict = UNCHANGED
    return MemoryVerdict(verdict, base, cur, ratio)


def _rollup(parts: list[str]) -> str:
    if REGRESSED in parts:
        return REGRESSED
    return IMPROVED if IMPROVED in parts else UNCHANGED


def _near_miss(key: dict, others: dict[tuple, pd.DataFrame], keys: tuple[str, ...], side: str) -> str:
    """Point at a configuration that differs from this one in a single axis (seeds, epochs, scale ...)."""
    for other in others:
        o = dict(zip(keys, other, strict=True))
        diff = [k for k in keys if o[k] != key[k]]
        if len(diff) == 1:
            return f"the {side} has it with {diff[0]} {o[diff[0]]}"
    return ""


def _closest_difference(base: dict[tuple, pd.DataFrame], cur: dict[tuple, pd.DataFrame],
                        keys: tuple[str, ...]) -> str:
    """Which axes keep the nearest pair of configurations apart, e.g. ``scale: none vs standard``."""
    best: list[str] | None = None
    for b in base:
        for c in cur:
            diff = [f"{k}: {bv} vs {cv}" for k, bv, cv in zip(keys, b, c, strict=True) if bv != cv]
            if best is None or len(diff) < len(best):
                best = diff
    return "they differ in " + "; ".join(best or []) + " (baseline vs current)"


def _natural(key: tuple) -> tuple:
    """Numbers by value (batch 1, 32, 178), text alphabetically."""
    return tuple((0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v))
                 for v in key)


def compare(baseline: ResultSet, current: ResultSet, options: CompareOptions | None = None) -> Comparison:
    options = options or CompareOptions()
    keys = KEYS
    base_groups, cur_groups = _config_groups(baseline, keys), _config_groups(current, keys)
    ctx = {"baseline": baseline, "current": current, "base_groups": base_groups, "cur_groups": cur_groups,
           "keys": keys}
    matched = [k for k in base_groups if k in cur_groups]
    if not matched:
        raise MinibatchError(
            f"nothing matched: no configuration of {current.source} ({len(cur_groups)}) is in "
            f"{baseline.source} ({len(base_groups)}); {_closest_difference(base_groups, cur_groups, keys)}")
    for rs, side in ((baseline, "baseline"), (current, "current")):
        ref = options.reference_engine
        if ref is not None and ref not in set(rs.frame["engine"]):
            raise MinibatchError(f"--normalize engine:{ref}: the {side} ({rs.source}) has no {ref} runs")

    rows: list[RowComparison] = []
    for k in sorted(set(base_groups) | set(cur_groups), key=_natural):
        key = dict(zip(keys, k, strict=True))
        b, c = base_groups.get(k), cur_groups.get(k)
        first = (b if b is not None else c).iloc[0]
        spec, size = str(first["batch_spec"]), int(first["batch_size"])
        if b is None or c is None:
            side, others = ("new", base_groups) if b is None else ("missing", cur_groups)
            hint = _near_miss(key, others, keys, "baseline" if b is None else "current")
            note = (f"only in the {'current' if b is None else 'baseline'}" + (f"; {hint}" if hint else ""))
            rows.append(RowComparison(key, NEW if b is None else MISSING, spec, notes=[note], batch_size=size,
                                      config_id=str(first["config_id"])))
            continue
        speed = _judge_speed(key, b, c, ctx, options)
        loss = _judge_loss(key, b, c, ctx, options)
        memory = _judge_memory(b, c, options)
        notes = [p.note for p in (speed, loss, memory) if p.note]
        status = _rollup([speed.verdict, loss.verdict, memory.verdict])
        if loss.diverged == "both" and status != REGRESSED:
            status = NOT_JUDGED  # all-NaN on both sides is no evidence of "unchanged"
        rows.append(RowComparison(key, status, spec,
                                  speed, loss, memory, notes, batch_size=size, config_id=str(first["config_id"])))

    notes = [*baseline.notes, *current.notes]
    if None not in (baseline.env.torch_threads, current.env.torch_threads) and \
            baseline.env.torch_threads != current.env.torch_threads:
        notes.append(f"torch threads differ (baseline {baseline.env.torch_threads}, current "
                     f"{current.env.torch_threads}): speed ratios include that difference")
    if options.loss_mode == "exact":
        why = exact_check_reason(baseline.env, current.env, "cpu")
        if why:
            notes.append(f"exact loss mode fell back to --loss-rtol {options.loss_rtol:g} on CPU: {why}")
            for row in rows:  # said once in the header rather than on every row
                row.notes = [n.replace(why, "see the header note") for n in row.notes]
    return Comparison(baseline, current, options, keys, rows, notes)
