"""The one renderer of a comparison, whatever its metrics (wall time: speed, loss, memory; or instruction
counts): a rich table for the terminal, and Markdown for a file or a CI job summary.

What differs between kinds of comparison is data, in ``compare_views``, chosen by the comparison's
metrics. Reads verdicts only; every figure shown was computed in ``analysis``.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from minibatch_core.analysis.compare import Comparison, RowComparison
from minibatch_core.analysis.compare_options import IMPROVED, MISSING, NEW, NOT_JUDGED, REGRESSED, UNCHANGED
from minibatch_core.presentation.compare_views import VIEWS, WALL_TIME, View
from minibatch_core.presentation.compare_views import contention_notes as contention_notes

STATUS_ORDER = (REGRESSED, IMPROVED, UNCHANGED, MISSING, NEW)
STYLE = {REGRESSED: "bold red", IMPROVED: "green", UNCHANGED: "", MISSING: "yellow", NEW: "cyan",
         NOT_JUDGED: "dim"}
COLUMNS = WALL_TIME.columns  # the wall-time table's


def view_of(comparison: Comparison) -> View:
    return VIEWS[tuple(comparison.metrics)]


def cells(row: RowComparison, comparison: Comparison) -> dict[str, str]:
    """The table's cells for one row, as plain text (the same for the terminal and Markdown)."""
    view = view_of(comparison)
    out = view.identity_cells(row)
    notes = [out.pop("notes", ""), *row.notes]
    for metric in view.metrics:
        part = row.parts.get(metric.name)
        if part is not None:
            out.update(metric.cells(part, comparison))
    out.update(status=row.status, notes="; ".join(filter(None, notes)))
    return {c: out.get(c, "") for c in view.columns}


def summary_line(comparison: Comparison) -> str:
    view = view_of(comparison)
    counts = ", ".join(f"{comparison.count(s)} {s}" for s in STATUS_ORDER)
    if comparison.count(NOT_JUDGED):
        counts += f", {comparison.count(NOT_JUDGED)} {NOT_JUDGED}"
    counts += "".join(f"; {extra}" for m in view.metrics if (extra := m.summary(comparison)))
    return (f"{view.head(comparison)}: {counts} ({len(comparison.rows)} configurations)"
            + "".join(f"; WARNING: {w}" for w in view.warnings(comparison)))


def settings_line(comparison: Comparison) -> str:
    """Every metric's thresholds, in words."""
    return "; ".join(m.settings(comparison.options) for m in view_of(comparison).metrics)


def header_lines(comparison: Comparison) -> list[str]:
    side = view_of(comparison).side
    return [
        f"baseline: {side(comparison.baseline)}",
        f"current:  {side(comparison.current)}",
        f"matched on: {', '.join(comparison.keys)}",
        settings_line(comparison),
        *[f"note: {n}" for n in comparison.notes],
    ]


def rich_renderable(comparison: Comparison) -> Group:
    view = view_of(comparison)
    table = Table(title=view.title, show_lines=False, expand=False)
    wraps = {"notes", *(c for m in view.metrics for c in m.wraps)}
    right = {c for m in view.metrics for c in m.right}
    for col in view.columns:
        # identity columns never shrink to nothing in a narrow terminal; long cells fold instead
        table.add_column(col, overflow="fold", no_wrap=col not in wraps, min_width=None if col in wraps else len(col),
                         justify="right" if col in right else "left")
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
    view = view_of(comparison)
    lines = [view.heading, "", f"**{summary_line(comparison)}**", ""]
    lines += [f"- {_md_escape(line)}" for line in header_lines(comparison)]
    lines += ["", "| " + " | ".join(view.columns) + " |", "|" + "---|" * len(view.columns)]
    for row in comparison.rows:
        values = cells(row, comparison)
        values["status"] = f"**{row.status}**" if row.status == REGRESSED else row.status
        lines.append("| " + " | ".join(_md_escape(v) for v in values.values()) + " |")
    legend = " ".join(text for m in view.metrics if (text := m.legend(comparison)))
    lines += ["", legend, ""]
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
