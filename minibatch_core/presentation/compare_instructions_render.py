"""Presentation of an ``InstructionComparison``: a rich table for the terminal, Markdown for a CI summary.

Reads verdicts only; every figure shown was computed in ``analysis.compare_instructions``.
"""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from minibatch_core.analysis.compare_instructions import (
    IMPROVED,
    MISSING,
    NEW,
    REGRESSED,
    UNCHANGED,
    InstructionComparison,
    InstructionRow,
)

STATUS_ORDER = (REGRESSED, IMPROVED, UNCHANGED, MISSING, NEW)
STYLE = {REGRESSED: "bold red", IMPROVED: "green", UNCHANGED: "", MISSING: "yellow", NEW: "cyan"}
COLUMNS = ("engine", "dataset", "batch", "seed", "counted epochs", "instructions", "per step", "growth",
           "status", "notes")
# identity columns shown in their own cells; any other that differs from the lesson's default is a note
_SHOWN = {"engine", "dataset", "batch_spec", "batch_size", "seed", "measured_epochs"}
_DEFAULTS = {"device": "cpu", "lr": "0.001", "optimizer": "adam", "hidden": "10-10", "target": "",
             "scale": "none", "data_seed": "0", "torch_threads": "1", "workers": "1"}


def _count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _per_step(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:,.0f}"


def growth_text(row: InstructionRow) -> str:
    return "–" if math.isnan(row.ratio) else f"{row.growth:+.2%}"


def describe(row: InstructionRow) -> str:
    """The configuration in words, for the summary: ``fast wine batch 32 seed 0``."""
    k = row.key
    extra = [f"{c} {v}" for c, v in k.items() if c not in _SHOWN and c in _DEFAULTS and str(v) != _DEFAULTS[c]]
    return " ".join([k["engine"], k["dataset"], f"batch {k['batch_spec']}", f"seed {k['seed']}", *extra])


def cells(row: InstructionRow) -> dict[str, str]:
    k = row.key
    batch = k["batch_spec"] + (f" ({k['batch_size']})" if k["batch_spec"] != k["batch_size"] else "")
    extra = [f"{c} {v}" for c, v in k.items() if c not in _SHOWN and c in _DEFAULTS and str(v) != _DEFAULTS[c]]
    return {"engine": k["engine"], "dataset": k["dataset"], "batch": batch, "seed": k["seed"],
            "counted epochs": k["measured_epochs"], "instructions": f"{_count(row.base)} → {_count(row.cur)}",
            "per step": f"{_per_step(row.base_per_step)} → {_per_step(row.cur_per_step)}",
            "growth": growth_text(row), "status": row.status, "notes": "; ".join(filter(None, [*extra, row.note]))}


def summary_line(comparison: InstructionComparison) -> str:
    counts = ", ".join(f"{comparison.count(s)} {s}" for s in STATUS_ORDER)
    worst = [f"{describe(r)} {growth_text(r)}" for r in comparison.rows if r.status == REGRESSED]
    head = ("INSTRUCTION REGRESSION (" + "; ".join(worst) + ")") if worst else "no instruction regression"
    return f"{head}: {counts} ({len(comparison.rows)} configurations)"


def header_lines(comparison: InstructionComparison) -> list[str]:
    def side(cs) -> str:
        e = cs.env
        return (f"{cs.source} (valgrind {e.get('valgrind_version', '?')}, torch {e.get('torch_version', '?')}, "
                f"cpu_capability under valgrind {e.get('cpu_capability_under_valgrind', '?')})")

    g = comparison.options.max_growth
    return [f"baseline: {side(comparison.baseline)}", f"current:  {side(comparison.current)}",
            f"regresses when instructions grow by more than ×{g:g} ({g - 1:+.1%}); improves below ×{1 / g:.4f}",
            *[f"note: {n}" for n in comparison.notes]]


def rich_renderable(comparison: InstructionComparison) -> Group:
    table = Table(title="minibatch-bench compare (instructions): baseline → current")
    for col in COLUMNS:
        table.add_column(col, overflow="fold", no_wrap=col != "notes",
                         justify="right" if col in ("instructions", "per step", "growth") else "left")
    for row in comparison.rows:
        table.add_row(*cells(row).values(), style=STYLE.get(row.status, ""))
    head = Text("\n".join(header_lines(comparison)), style="dim")
    tail = Text(summary_line(comparison), style="bold red" if comparison.regressed else "bold green")
    return Group(head, table, tail)


def print_instruction_comparison(comparison: InstructionComparison, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a CI log: keep rows on one line
            console = Console(width=200)
    console.print(rich_renderable(comparison))


def to_markdown(comparison: InstructionComparison) -> str:
    lines = ["## minibatch-bench compare: instructions", "", f"**{summary_line(comparison)}**", ""]
    lines += [f"- {line}" for line in header_lines(comparison)]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in comparison.rows:
        values = cells(row)
        values["status"] = f"**{row.status}**" if row.status == REGRESSED else row.status
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in values.values()) + " |")
    lines += ["", "Instructions executed in the counted epochs (after one warm-up epoch), under valgrind's "
              "callgrind, one torch thread; growth = current/baseline - 1.", ""]
    return "\n".join(lines)
