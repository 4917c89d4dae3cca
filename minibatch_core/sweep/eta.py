"""The remaining time of a sweep, estimated from the runs it has timed so far.

A configuration's seeds take about the same time, so once its first run is done its other runs are
estimated from it; a configuration not yet started is estimated from the configurations already timed
on the same engine and device (else from all of them), a rougher guess that the estimate says it holds.
No run timed yet: no estimate (a guess from nothing would only look precise).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def configuration_key(config: Any) -> tuple:
    """A job's configuration: its RunConfig without the seed."""
    return tuple(sorted((k, str(v)) for k, v in vars(config).items() if k != "seed"))


@dataclass(frozen=True)
class Estimate:
    seconds: float
    untimed_configurations: int  # configurations still to run that no run has timed yet (a rougher part)

    def describe(self) -> str:
        rough = (f", {self.untimed_configurations} configuration(s) not yet timed"
                 if self.untimed_configurations else "")
        return f"about {format_duration(self.seconds)} left{rough}"


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@dataclass
class RemainingTime:
    """Seconds per run, per configuration, as jobs finish; ``estimate`` for the jobs still to run."""

    per_run_s: dict[tuple, float] = field(default_factory=dict)
    by_group: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def record(self, job: Any, seconds: float) -> None:
        per_run = seconds / max(1, len(job.seeds))
        key = configuration_key(job.config)
        if key not in self.per_run_s:  # the first run of a configuration sets its figure
            self.per_run_s[key] = per_run
            self.by_group.setdefault((job.config.engine, job.config.device), []).append(per_run)

    def estimate(self, remaining: Sequence[Any]) -> Estimate | None:
        if not self.per_run_s:
            return None
        everything = statistics.median(self.per_run_s.values())
        total, untimed = 0.0, set()
        for job in remaining:
            key = configuration_key(job.config)
            per_run = self.per_run_s.get(key)
            if per_run is None:
                untimed.add(key)
                group = self.by_group.get((job.config.engine, job.config.device))
                per_run = statistics.median(group) if group else everything
            total += per_run * len(job.seeds)
        return Estimate(total, len(untimed))
