"""The regression gate's policy, in one tested place (it was a shell heredoc before).

A wall-time alarm on a shared machine can be a burst of someone else's load rather than the code, so
the gate measures once more and fails only for configurations that regress in BOTH measurements (a real
regression, a slower loop, a changed loss curve, more memory, shows up both times in the same
configuration). Which verdict parts may fail the gate is a choice: ``PARTS_ALL`` (speed, loss and memory)
when wall time gates; ``PARTS_EXACT`` (the loss curve only, deterministic on CPU) when wall time is
information and instruction counts gate the speed.
"""

from __future__ import annotations

from collections.abc import Iterable

from minibatch_core.analysis.compare import Comparison, RowComparison
from minibatch_core.analysis.compare_options import REGRESSED

PARTS_ALL = ("speed", "loss", "memory")
PARTS_EXACT = ("loss",)
# ab (default): interleaved A/B trials against a baseline revision (commands.ab); the others: the
# stored-baseline sweep (inform: only a changed loss curve fails; gate: speed and memory too); skip
WALL_TIME_MODES = ("ab", "inform", "gate", "skip")


def row_key(row: RowComparison) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in row.key.items()))


def failing_rows(comparison: Comparison, parts: Iterable[str] = PARTS_ALL) -> list[RowComparison]:
    """Rows where one of ``parts`` (speed, loss, memory) regressed."""
    parts = tuple(parts)
    return [r for r in comparison.rows
            if any(p in r.parts and r.parts[p].verdict == REGRESSED for p in parts)]


def confirmed(first: Comparison, second: Comparison, parts: Iterable[str] = PARTS_ALL) -> list[RowComparison]:
    """The first comparison's rows that fail (in ``parts``) in both comparisons, matched by configuration."""
    parts = tuple(parts)
    again = {row_key(r) for r in failing_rows(second, parts)}
    return [r for r in failing_rows(first, parts) if row_key(r) in again]

