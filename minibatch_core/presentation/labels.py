"""Every label and unit people read: numbers, batch sizes, engines, phases, axes, missing vs diverged.

Tables, plots, the report and compare's rendering all take their words from here, so "full (178)" or
"epoch time (ms)" is spelled once.
"""

from __future__ import annotations

import math

from minibatch_core.input.config import batch_sort_key as batch_sort_key  # the one order of batch specs

MISSING = "–"  # not available: not measured, not applicable
DIVERGED = "diverged"  # measured, and the loss became non-finite: a result, not a gap


def _missing(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


# --- numbers ------------------------------------------------------------------------------------------------

def fmt_seconds(s: float | None) -> str:
    if _missing(s):
        return MISSING
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} µs"


def fmt_seconds_short(s: float | None) -> str:
    """Three significant digits: for table cells and sentences where 80.74 ms reads as 80.7 ms."""
    if _missing(s):
        return MISSING
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale or unit == "µs":
            v = s / scale
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:.0f} {unit}"
    return MISSING


def fmt_seconds_range(lo: float | None, hi: float | None) -> str:
    """'37.8–37.9 ms' (one unit when both share it), else '850 µs–1.2 ms'."""
    a, b = fmt_seconds_short(lo), fmt_seconds_short(hi)
    if a.split(" ")[-1] == b.split(" ")[-1] and " " in a:
        return f"{a.split(' ')[0]}–{b}"
    return f"{a}–{b}"


def fmt_bytes(n: float | None) -> str:
    if _missing(n):
        return MISSING
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


def fmt_ratio(x: float | None) -> str:
    return MISSING if _missing(x) else f"{x:.2f}×"


def fmt_times(x: float | None) -> str:
    """A factor in prose: 22×, 2.7×, 1.1×."""
    if _missing(x):
        return MISSING
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×"


def fmt_count(x: float | None) -> str:
    return MISSING if _missing(x) else f"{x:,.0f}"


def fmt_num(x: float | None, digits: int = 4) -> str:
    return MISSING if _missing(x) else f"{x:.{digits}f}"


def fmt_loss(x: float | None) -> str:
    """A loss to three significant digits (0.610, 12.1); the curves differ long before the 4th digit."""
    if _missing(x):
        return MISSING
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def plural(n: float, word: str, many: str | None = None) -> str:
    """``plural(1, "epoch")`` -> "1 epoch"; ``plural(3, "epoch")`` -> "3 epochs"."""
    count = f"{n:g}" if isinstance(n, float) else str(n)
    return f"{count} {word if n == 1 else (many or word + 's')}"


def diverged_text(epoch: float | None, n: int = 0, of: int = 0) -> str:
    """"diverged at epoch 2", "diverged (2 of 3 seeds, from epoch 1)"."""
    where = "" if _missing(epoch) else f"at epoch {int(epoch)}"
    if of > 1 and n != of:
        return f"{DIVERGED} ({n} of {of} seeds" + (f", first {where}" if where else "") + ")"
    return f"{DIVERGED} {where}".strip()


# --- batch sizes, engines, phases -----------------------------------------------------------------------

def batch_label(spec: str, size: int | float | None = None) -> str:
    """'1', '32', 'full (178)'; a spec that resolved to another size shows both: '200 (178)'."""
    spec = str(spec)
    if size is None or _missing(float(size)):
        return spec
    size = int(size)
    if spec == "full":
        return f"full ({size})"
    return spec if spec == str(size) else f"{spec} ({size})"


PHASE_NAMES = {"data": "data loading", "forward": "forward", "backward": "backward",
               "allreduce": "gradient all-reduce", "optimizer": "optimizer step"}


def phase_label(phase: str) -> str:
    return PHASE_NAMES.get(phase, phase)


def axis_value(value: object) -> str:
    """An axis value in prose: 0.001 not 0.0010000, '' or NaN as 'none'."""
    if isinstance(value, float):
        return "none" if math.isnan(value) else f"{value:g}"
    return str(value) if value != "" else "none"


def setup_label(dataset: str, device: str) -> str:
    return f"{dataset} · {device}"


# --- axes -------------------------------------------------------------------------------------------------

AXIS = {
    "epoch": "epoch (passes over the data)",
    "epoch_loss": "epoch loss (cross-entropy, log scale)",
    "cumulative_time": "cumulative training time (log scale)",
    "batch_size": "batch size (samples per step, log scale)",
    "batch": "batch size (samples per step)",
    "epoch_time": "epoch time (ms, log scale)",
    "epoch_time_per_model": "epoch time per model (ms, log scale)",
    "memory_kib": "KiB",
    "samples_per_s": "samples/s (log scale)",
    "samples_per_s_replicas": "samples/s × replicas (log scale)",
    "step_share": "share of a step's time (%)",
}


def axis_label(name: str) -> str:
    return AXIS[name]


def seconds_tick(value: float, _pos: object = None) -> str:
    """Tick labels for a time axis in seconds: '500 µs', '2 ms', '1 s' (never 10^-3)."""
    if value <= 0:
        return ""
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if value >= scale * 0.999 or unit == "µs":
            return f"{value / scale:g} {unit}"
    return f"{value:g}"


def plain_tick(value: float, _pos: object = None) -> str:
    """Tick labels for a log axis of plain values: '0.5', '20', '5000', then '1e4', '2e8' (never 1e+06)."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def count_tick(value: float, _pos: object = None) -> str:
    """Tick labels for counts: '500', '20k', '1.5M' (never 2e+06)."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"
