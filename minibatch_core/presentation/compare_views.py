"""What the compare renderer shows for each metric (its columns, cells, thresholds in words, legend) and
for each kind of comparison (identity columns, how a side is described, the verdict's words).

Data only: the rendering itself, the same for every kind, is ``compare_render``. Every figure shown was
computed in ``analysis``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minibatch_core.analysis.compare import Comparison, RowComparison
from minibatch_core.analysis.compare_options import IMPROVED, NOT_JUDGED, REGRESSED, UNCHANGED
from minibatch_core.analysis.contention import contention
from minibatch_core.presentation.labels import fmt_bytes

MARK = {REGRESSED: "▲", IMPROVED: "▼", UNCHANGED: "", NOT_JUDGED: ""}


def mark(verdict: str) -> str:
    return f" {MARK[verdict]}" if MARK.get(verdict) else ""


def _none(_: Comparison) -> str:
    return ""


@dataclass(frozen=True)
class MetricView:
    name: str  # the metric's (analysis.compare_options.Metric.name): the row attribute with its verdict
    columns: tuple[str, ...]
    cells: Callable[[Any, Comparison], dict[str, str]]  # (its verdict, the comparison) -> text per column
    settings: Callable[[Any], str]  # its thresholds in words, from the comparison's options
    legend: Callable[[Comparison], str] = _none  # under the Markdown table
    summary: Callable[[Comparison], str] = _none  # added to the summary line when not empty
    wraps: tuple[str, ...] = ()  # columns whose long cells wrap in a terminal
    right: tuple[str, ...] = ()  # right-aligned columns


@dataclass(frozen=True)
class View:
    title: str  # the terminal table's
    heading: str  # the Markdown section's
    identity: tuple[str, ...]  # the columns before the metrics'
    identity_cells: Callable[[RowComparison], dict[str, str]]  # may add "notes" (said before the row's)
    side: Callable[[Any], str]  # one side in words, for the header
    head: Callable[[Comparison], str]  # the summary's verdict
    metrics: tuple[MetricView, ...]
    warnings: Callable[[Comparison], list[str]] = lambda _: []

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.identity, *(c for m in self.metrics for c in m.columns), "status", "notes")


# --- wall time: speed, loss, memory ------------------------------------------------------------------------

def _time(x: float, normalize: str) -> str:
    """Seconds as ms; normalized times in their unit: calibration steps, or multiples of an engine."""
    if math.isnan(x):
        return "–"

    def num(v: float) -> str:
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:#.3g}"

    if normalize == "none":
        return f"{num(x * 1e3)} ms"
    return f"{num(x)} cal. steps" if normalize == "calibration" else f"{num(x)} × {normalize[len('engine:'):]}"


def _speed_cells(s, comparison: Comparison) -> dict[str, str]:
    normalize = comparison.options.normalize
    ratio = ("–" if math.isnan(s.ratio) else f"{s.ratio:.2f} (not judged)" if math.isnan(s.low)
             else f"{s.ratio:.2f} [{s.low:.2f}, {s.high:.2f}]" + mark(s.verdict))
    return {"epoch time": f"{_time(s.base_median, normalize)} → {_time(s.cur_median, normalize)}",
            "speed ratio [CI]": ratio}


def _loss_cells(lo, comparison: Comparison) -> dict[str, str]:
    out = {"final loss": "–"}
    if not math.isnan(lo.base_final):
        rtol = comparison.options.loss_rtol
        trend = REGRESSED if lo.rel_change > rtol else IMPROVED if lo.rel_change < -rtol else UNCHANGED
        out["final loss"] = f"{lo.base_final:.4g} → {lo.cur_final:.4g} ({lo.rel_change:+.1%})" + mark(trend)
    if lo.exact == "differs" and lo.first_difference:
        seed, epoch, b, c = lo.first_difference
        out["loss curve"] = (f"differs in {lo.differing}/{lo.compared} (first: seed {seed} "
                             f"epoch {epoch}: {b!r} → {c!r}) ▲")
    else:
        shown = {"identical": f"identical ({lo.compared})", "fallback": "not exact (see note)", "not checked": "–"}
        out["loss curve"] = shown.get(lo.exact, lo.exact)
    return out


def _memory_cells(m, _: Comparison) -> dict[str, str]:
    ratio = "" if math.isnan(m.ratio) or math.isinf(m.ratio) else f" (×{m.ratio:.2f})"
    return {"peak memory": f"{fmt_bytes(m.base_bytes)} → {fmt_bytes(m.cur_bytes)}{ratio}" + mark(m.verdict)}


def contention_notes(comparison: Comparison) -> list[str]:
    """One warning per side whose sweep ran on a machine loaded beyond its cores. Evidence: the side's
    per-run ``load_1m`` column, else its env.json (``env_data``)."""
    out = []
    for name, side in (("current", comparison.current), ("baseline", comparison.baseline)):
        found = contention(side.frame, side.env_data)
        if found is not None:
            out.append(f"{name} measured on a {found.short()}")
    return out


def contended_summary(comparison: Comparison) -> str:
    """``3 not judged (contended: current load 5.2 on 2 cores)``, or '' when every side was quiet."""
    rows = [r for r in comparison.rows if r.speed is not None and r.speed.contended]
    if not rows:
        return ""
    worst = max((r.speed.contended for r in rows),
                key=lambda t: max(float(x) for x in re.findall(r"load ([0-9.]+)", t)))
    return f"{len(rows)} not judged (contended: {worst})"


SPEED = MetricView(
    "speed", ("epoch time", "speed ratio [CI]"), _speed_cells,
    lambda o: (f"normalize {o.normalize}; speed regresses when its {o.confidence:.0%} bootstrap interval lies "
               f"above {o.max_slowdown:g} (sides measured above their core count: not judged)"),
    legend=lambda c: ("▲ worse, ▼ better than the baseline beyond the thresholds. Speed ratio = current/baseline "
                      "median epoch time (warm-up epoch excluded)"
                      + (f", each normalized by {c.options.normalize}" if c.options.normalize != "none" else "")
                      + "."),
    summary=lambda c: f"speed {s}" if (s := contended_summary(c)) else "",
    wraps=("epoch time", "speed ratio [CI]"))
LOSS = MetricView("loss", ("final loss", "loss curve"), _loss_cells,
                  lambda o: f"loss mode {o.loss_mode}, loss rtol {o.loss_rtol:g}", wraps=("final loss", "loss curve"))
MEMORY = MetricView("memory", ("peak memory",), _memory_cells,
                    lambda o: (f"memory regresses above ×{o.max_memory_growth:g} and "
                               f"+{fmt_bytes(o.memory_floor_bytes)}"), wraps=("peak memory",))


def _wall_identity(row: RowComparison) -> dict[str, str]:
    key = row.key
    return {"engine": str(key["engine"]), "dataset": str(key["dataset"]), "device": str(key["device"]),
            "batch": str(row.batch_size) + (f" ({row.batch_spec})" if row.batch_spec != str(row.batch_size) else ""),
            # the rest of the identity (lr, and every axis off the lesson's value), as config_id spells it
            "setup": " ".join(row.config_id.split("|")[4:]),
            "seeds": str(key["seeds"]), "epochs": str(key["epochs"])}


WALL_TIME = View(
    "minibatch-bench compare: baseline → current", "## minibatch-bench compare",
    ("engine", "dataset", "device", "batch", "setup", "seeds", "epochs"), _wall_identity,
    lambda rs: f"{rs.source} ({rs.kind}; {rs.env.describe()})",
    lambda c: "REGRESSION" if c.regressed else "no regression",
    (SPEED, LOSS, MEMORY), warnings=contention_notes)


# --- instruction counts -------------------------------------------------------------------------------------

# identity columns shown in their own cells; any other that differs from the lesson's default is a note
_SHOWN = {"engine", "dataset", "batch_spec", "batch_size", "seed", "measured_epochs"}
_DEFAULTS = {"device": "cpu", "lr": "0.001", "optimizer": "adam", "hidden": "10-10", "target": "",
             "scale": "none", "data_seed": "0", "torch_threads": "1", "workers": "1"}


def _off_default(key: dict[str, Any]) -> list[str]:
    return [f"{c} {v}" for c, v in key.items() if c not in _SHOWN and c in _DEFAULTS and str(v) != _DEFAULTS[c]]


def _growth(i) -> str:
    return "–" if math.isnan(i.ratio) else f"{i.ratio - 1:+.2%}"


def growth_text(row: RowComparison) -> str:
    return "–" if row.instructions is None else _growth(row.instructions)


def describe(row: RowComparison) -> str:
    """The configuration in words, for the summary: ``fast wine batch 32 seed 0``."""
    k = row.key
    return " ".join([k["engine"], k["dataset"], f"batch {k['batch_spec']}", f"seed {k['seed']}", *_off_default(k)])


def _count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _per_step(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:,.0f}"


def _instruction_identity(row: RowComparison) -> dict[str, str]:
    k = row.key
    batch = k["batch_spec"] + (f" ({k['batch_size']})" if k["batch_spec"] != k["batch_size"] else "")
    return {"engine": k["engine"], "dataset": k["dataset"], "batch": batch, "seed": k["seed"],
            "counted epochs": k["measured_epochs"], "notes": "; ".join(_off_default(k))}


def _instruction_cells(i, _: Comparison) -> dict[str, str]:
    return {"instructions": f"{_count(i.base)} → {_count(i.cur)}",
            "per step": f"{_per_step(i.base_per_step)} → {_per_step(i.cur_per_step)}",
            "growth": _growth(i)}


def _count_side(cs) -> str:
    e = cs.env
    return (f"{cs.source} (valgrind {e.get('valgrind_version', '?')}, torch {e.get('torch_version', '?')}, "
            f"cpu_capability under valgrind {e.get('cpu_capability_under_valgrind', '?')})")


def _instruction_head(comparison: Comparison) -> str:
    worst = [f"{describe(r)} {growth_text(r)}" for r in comparison.rows if r.status == REGRESSED]
    return ("INSTRUCTION REGRESSION (" + "; ".join(worst) + ")") if worst else "no instruction regression"


INSTRUCTIONS = MetricView(
    "instructions", ("instructions", "per step", "growth"), _instruction_cells,
    lambda o: (f"regresses when instructions grow by more than ×{o.max_growth:g} ({o.max_growth - 1:+.1%}); "
               f"improves below ×{1 / o.max_growth:.4f}"),
    legend=lambda _: ("Instructions executed in the counted epochs (after one warm-up epoch), under valgrind's "
                      "callgrind, one torch thread; growth = current/baseline - 1."),
    right=("instructions", "per step", "growth"))
INSTRUCTION_COUNTS = View(
    "minibatch-bench compare (instructions): baseline → current", "## minibatch-bench compare: instructions",
    ("engine", "dataset", "batch", "seed", "counted epochs"), _instruction_identity, _count_side,
    _instruction_head, (INSTRUCTIONS,))

VIEWS = {tuple(m.name for m in v.metrics): v for v in (WALL_TIME, INSTRUCTION_COUNTS)}
