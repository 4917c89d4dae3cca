"""Presentation of a ``Comparison``: a rich table for the terminal and Markdown for a CI job summary.

Reads verdicts only; every figure shown was computed in ``compare``.
"""

from __future__ import annotations

import math
import re

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from minibatch_core.analysis.compare import (
    IMPROVED,
    MISSING,
    NEW,
    NOT_JUDGED,
    REGRESSED,
    UNCHANGED,
    Comparison,
    RowComparison,
)
from minibatch_core.analysis.contention import contention
from minibatch_core.presentation.labels import fmt_bytes

STATUS_ORDER = (REGRESSED, IMPROVED, UNCHANGED, MISSING, NEW)
STYLE = {REGRESSED: "bold red", IMPROVED: "green", UNCHANGED: "", MISSING: "yellow", NEW: "cyan",
         NOT_JUDGED: "dim"}
MARK = {REGRESSED: "▲", IMPROVED: "▼", UNCHANGED: "", NOT_JUDGED: "", MISSING: "", NEW: ""}
COLUMNS = ("engine", "dataset", "device", "batch", "setup", "seeds", "epochs", "epoch time", "speed ratio [CI]",
           "final loss", "loss curve", "peak memory", "status", "notes")


def _time(x: float, normalize: str) -> str:
    """Seconds as ms; normalized times in their unit: calibration steps, or multiples of an engine."""
    if math.isnan(x):
        return "–"
    def num(v: float) -> str:
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:#.3g}"

    if normalize == "none":
        return f"{num(x * 1e3)} ms"
    return f"{num(x)} cal. steps" if normalize == "calibration" else f"{num(x)} × {normalize[len('engine:'):]}"


def _mark(verdict: str) -> str:
    return f" {MARK[verdict]}" if MARK.get(verdict) else ""


def cells(row: RowComparison, comparison: Comparison) -> dict[str, str]:
    """The table's cells for one row, as plain text (shared by both renderers)."""
    key = row.key
    out = {
        "engine": str(key["engine"]), "dataset": str(key["dataset"]), "device": str(key["device"]),
        "batch": str(row.batch_size) + (f" ({row.batch_spec})" if row.batch_spec != str(row.batch_size) else ""),
        # the rest of the identity (lr, and every axis off the lesson's value), as config_id spells it
        "setup": " ".join(row.config_id.split("|")[4:]),
        "seeds": str(key["seeds"]), "epochs": str(key["epochs"]),
        "status": row.status, "notes": "; ".join(row.notes),
    }
    normalize = comparison.options.normalize
    s, lo, m = row.speed, row.loss, row.memory
    if s is not None:
        out["epoch time"] = f"{_time(s.base_median, normalize)} → {_time(s.cur_median, normalize)}"
        if math.isnan(s.ratio):
            out["speed ratio [CI]"] = "–"
        elif math.isnan(s.low):
            out["speed ratio [CI]"] = f"{s.ratio:.2f} (not judged)"
        else:
            out["speed ratio [CI]"] = f"{s.ratio:.2f} [{s.low:.2f}, {s.high:.2f}]" + _mark(s.verdict)
    if lo is not None:
        if math.isnan(lo.base_final):
            out["final loss"] = "–"
        else:
            rtol = comparison.options.loss_rtol
            trend = REGRESSED if lo.rel_change > rtol else IMPROVED if lo.rel_change < -rtol else UNCHANGED
            out["final loss"] = (f"{lo.base_final:.4g} → {lo.cur_final:.4g} ({lo.rel_change:+.1%})"
                                 + _mark(trend))
        if lo.exact == "differs" and lo.first_difference:
            seed, epoch, b, c = lo.first_difference
            out["loss curve"] = (f"differs in {lo.differing}/{lo.compared} (first: seed {seed} "
                                 f"epoch {epoch}: {b!r} → {c!r}) ▲")
        else:
            shown = {"identical": f"identical ({lo.compared})", "fallback": "not exact (see note)",
                     "not checked": "–"}
            out["loss curve"] = shown.get(lo.exact, lo.exact)
    if m is not None:
        out["peak memory"] = (f"{fmt_bytes(m.base_bytes)} → {fmt_bytes(m.cur_bytes)}"
                              + ("" if math.isnan(m.ratio) or math.isinf(m.ratio) else f" (×{m.ratio:.2f})")
                              + _mark(m.verdict))
    return {c: out.get(c, "") for c in COLUMNS}


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


def summary_line(comparison: Comparison) -> str:
    counts = ", ".join(f"{comparison.count(s)} {s}" for s in STATUS_ORDER)
    if comparison.count(NOT_JUDGED):
        counts += f", {comparison.count(NOT_JUDGED)} {NOT_JUDGED}"
    contended = contended_summary(comparison)
    if contended:
        counts += f"; speed {contended}"
    verdict = "REGRESSION" if comparison.regressed else "no regression"
    warnings = contention_notes(comparison)
    return (f"{verdict}: {counts} ({len(comparison.rows)} configurations)"
            + "".join(f"; WARNING: {w}" for w in warnings))


def settings_line(comparison: Comparison) -> str:
    o = comparison.options
    return (f"normalize {o.normalize}; speed regresses when its "
            f"{o.confidence:.0%} bootstrap interval lies above {o.max_slowdown:g} (sides measured above "
            f"their core count: not judged); loss mode {o.loss_mode}, "
            f"loss rtol {o.loss_rtol:g}; "
            f"memory regresses above ×{o.max_memory_growth:g} and +{fmt_bytes(o.memory_floor_bytes)}")


def header_lines(comparison: Comparison) -> list[str]:
    b, c = comparison.baseline, comparison.current
    return [
        f"baseline: {b.source} ({b.kind}; {b.env.describe()})",
        f"current:  {c.source} ({c.kind}; {c.env.describe()})",
        f"matched on: {', '.join(comparison.keys)}",
        settings_line(comparison),
        *[f"note: {n}" for n in comparison.notes],
    ]


def rich_renderable(comparison: Comparison) -> Group:
    table = Table(title="minibatch-bench compare: baseline → current", show_lines=False, expand=False)
    wraps = ("notes", "loss curve", "final loss", "peak memory", "epoch time", "speed ratio [CI]")
    for col in COLUMNS:
        # identity columns never shrink to nothing in a narrow terminal; long cells fold instead
        table.add_column(col, overflow="fold", no_wrap=col not in wraps,
                         min_width=None if col in wraps else len(col))
    for row in comparison.rows:
        table.add_row(*cells(row, comparison).values(), style=STYLE.get(row.status, ""))
    head = Text("\n".join(header_lines(comparison)), style="dim")
    tail = Text(summary_line(comparison), style="bold red" if comparison.regressed else "bold green")
    return Group(head, table, tail)


def print_comparison(comparison: Comparison, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a CI log: no terminal width to respect, keep rows on one line
            console = Console(width=220)
    console.print(rich_renderable(comparison))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(comparison: Comparison) -> str:
    lines = ["## minibatch-bench compare", "", f"**{summary_line(comparison)}**", ""]
    lines += [f"- {_md_escape(line)}" for line in header_lines(comparison)]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in comparison.rows:
        values = cells(row, comparison)
        values["status"] = f"**{row.status}**" if row.status == REGRESSED else row.status
        lines.append("| " + " | ".join(_md_escape(v) for v in values.values()) + " |")
    normalize = comparison.options.normalize
    lines += ["", "▲ worse, ▼ better than the baseline beyond the thresholds. Speed ratio = current/baseline "
              "median epoch time (warm-up epoch excluded)"
              + (f", each normalized by {normalize}" if normalize != "none" else "") + ".", ""]
    return "\n".join(lines)


def confirmation_markdown(first: Comparison, second: Comparison, both: list[RowComparison]) -> str:
    """Both measurements' tables, then the configurations that regressed in both (the ones that fail)."""
    lines = ["### First measurement", to_markdown(first), "### Second measurement (confirmation)",
             to_markdown(second)]
    if both:
        lines += ["### Regressed in both measurements (these fail)", ""]
        lines += ["- " + " | ".join(str(v) for v in r.key.values()) for r in both]
    else:
        lines += ["No configuration regressed in both measurements: any single alarm is treated as load noise."]
    return "\n".join(lines) + "\n"
