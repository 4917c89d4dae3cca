"""A plan as text, printed before training starts (and alone by ``--dry-run``): what will run, how many
runs in how many configurations, the axes that vary, what planning changed and what it left out, and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_CONFIGURATION_LINES = 40  # a big grid lists its first configurations and says how many follow
MAX_DRY_RUN_LINES = 1000  # --dry-run lists more, but a giant grid still stays readable


def _count(n: int, what: str, plural: str | None = None) -> str:
    return f"{n:,} {what if n == 1 else (plural or what + 's')}"


def _configuration_line(config: Any, seeds: Sequence[int]) -> str:
    workers = f" | workers {config.workers}" if config.workers > 1 else ""
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(map(str, seeds))}"
    # hidden widths shape only the mlp: any other model is named instead (and a loss that is not the lesson's)
    model = getattr(config, "model", "mlp")
    shape = f"hidden {','.join(map(str, config.hidden))}" if model == "mlp" else f"model {model}"
    loss = getattr(config, "loss", "cross_entropy")
    shape += f" | loss {loss}" if loss != "cross_entropy" else ""
    return (f"{config.engine} | {config.dataset} | {config.device} | batch {config.batch_spec}{workers} | "
            f"lr {config.lr:g} | {config.optimizer} | {shape} | {config.epochs} epochs | {seed_text}")


def sweep_plan_lines(the_plan: Any, *, all_configurations: bool = False) -> list[str]:
    """The sweep plan (``sweep.sweep.Plan``) as lines: totals, configurations, notes, what was left out."""
    groups: dict[tuple, tuple[Any, list[int]]] = {}
    for job in the_plan.jobs:
        key = tuple((k, str(v)) for k, v in sorted(vars(job.config).items()) if k != "seed")
        groups.setdefault(key, (job.config, []))[1].extend(job.seeds)
    lines = [f"plan: {_count(the_plan.total_runs, 'run')} in {_count(len(groups), 'configuration')} "
             f"({_count(len(the_plan.jobs), 'timed job')}) on {', '.join(the_plan.devices)}"]
    limit = MAX_DRY_RUN_LINES if all_configurations else MAX_CONFIGURATION_LINES
    for config, seeds in list(groups.values())[:limit]:
        lines.append(f"  {_configuration_line(config, seeds)}")
    if len(groups) > limit:
        more = "" if all_configurations else f" (--dry-run lists up to {MAX_DRY_RUN_LINES:,})"
        lines.append(f"  ... and {_count(len(groups) - limit, 'more configuration')}{more}")
    lines += [f"note: {note}" for note in the_plan.notes]
    if the_plan.left_out:
        lines.append(f"left out ({_count(sum(x.runs for x in the_plan.left_out), 'run')} this machine or the "
                     "engine cannot run):")
        lines += [f"  {x.describe()}" for x in the_plan.left_out]
    return lines


def study_plan_lines(the_plan: Any) -> list[str]:
    """The study plan (``sweep.study.StudyPlan``) as lines: totals, then one line per timed pass."""
    study = the_plan.study
    lines = [f"plan: {_count(the_plan.total_runs, 'run')} (learning rate x seed pairs) in "
             f"{_count(len(the_plan.jobs), 'timed pass', 'timed passes')} on {', '.join(the_plan.devices)}; up to "
             f"{study.max_epochs} epochs each, until {', '.join(t.describe() for t in the_plan.targets.values())}"
             + (f"; model {study.model}" if getattr(study, "model", "mlp") != "mlp" else "")
             + (f"; loss {study.loss}" if getattr(study, "loss", "cross_entropy") != "cross_entropy" else "")]
    for job in the_plan.jobs[:MAX_CONFIGURATION_LINES]:
        lrs = sorted({base for _, base, _ in job.pairs})
        lines.append(f"  {job.engine} | {job.dataset} | {job.device} | batch {job.batch_spec} | "
                     f"{len(job.pairs)} run(s): lr {', '.join(f'{lr:g}' for lr in lrs)}")
    if len(the_plan.jobs) > MAX_CONFIGURATION_LINES:
        lines.append(f"  ... and {_count(len(the_plan.jobs) - MAX_CONFIGURATION_LINES, 'more pass', 'more passes')}")
    return lines


def count_plan_lines(configs: Sequence[Any]) -> list[str]:
    """What ``count`` will count: one line per configuration (and seed)."""
    lines = [f"plan: {_count(len(configs), 'configuration')} to count under valgrind"]
    lines += [f"  {_configuration_line(c, [c.seed])}" for c in configs[:MAX_CONFIGURATION_LINES]]
    if len(configs) > MAX_CONFIGURATION_LINES:
        lines.append(f"  ... and {_count(len(configs) - MAX_CONFIGURATION_LINES, 'more configuration')}")
    return lines
