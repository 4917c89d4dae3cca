"""One run in a fresh worker, for a command that never imports torch itself (``minibatch-bench train``).

``trainer.train`` imports torch in the calling process too (it builds the engine and the device there).
A command that only prints the result need not: here the whole call runs in the worker, and what comes
back (``RunResult``: plain dataclasses) unpickles without torch. The worker does exactly what
``train(config)`` does in its worker (the same ``_measure``, after the same warm-up), so the memory
figures are measured the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from minibatch_core.input.config import RunConfig
from minibatch_core.input.datafile import Table
from minibatch_core.running.isolation import run_isolated

if TYPE_CHECKING:
    from minibatch_core.running.results import RunResult


def train_in_worker(config: RunConfig, *, profile: bool = False, live_every_s: float | None = None,
                    table: Table | None = None) -> RunResult:
    """``live_every_s``: a long run prints a progress line on stderr at most this often (None: silent).
    ``table``: the run's data, loaded by the caller (``data.table_for``) while the worker started."""
    return run_isolated(_train_here, config, profile, live_every_s, table)


def _train_here(config: RunConfig, profile: bool, live_every_s: float | None = None,
                table: Table | None = None) -> RunResult:
    from minibatch_core.running import trainer
    from minibatch_core.running.trainer import train

    trainer.LIVE_EVERY_S = live_every_s

    return train(config, isolate=False, profile=profile, fresh_process=True, table=table)  # in the fresh worker
