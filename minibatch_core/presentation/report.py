"""A sweep folder's summary tables, plots, report.md and self-contained report.html, from its records.

``build(folder)`` reads runs.csv (+ profile.csv, env.json, calibration.json when present) and writes
everything else; it never trains, so ``minibatch-bench report DIR`` and the end of a sweep are the same
code. The report opens with the answer (``presentation.answer``), then one table per question
(``presentation.findings``), then the details. Every number in it is computed from the records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from minibatch_core.analysis import learning, outcomes, tables
from minibatch_core.analysis.contention import Contention, contention
from minibatch_core.analysis.scaling import scaling
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_csv, atomic_write_text, read_json_if_present
from minibatch_core.presentation import findings, scaling_plot, summary_tables
from minibatch_core.presentation import plots as plotting
from minibatch_core.presentation.answer import answer_paragraphs, headline_groups
from minibatch_core.presentation.document import (
    Block,
    Bullets,
    Callout,
    Heading,
    Image,
    Para,
    Table,
    render_html,
    render_markdown,
)
from minibatch_core.presentation.labels import fmt_seconds
from minibatch_core.presentation.verdict import LEARNED_NOTE, verdict_table
from minibatch_core.records.consistency import check_against_settings, check_calibration
from minibatch_core.records.io import CALIBRATION_JSON, ENV_JSON, PROFILE_CSV, RUNS_CSV, load_profile
from minibatch_core.running.envinfo import describe_machine, executor_notes

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
SCALING_CSV = "scaling.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


def setup_items(runs: pd.DataFrame, env: dict[str, Any]) -> list[str]:
    sweep = env.get("sweep") or {}
    n_runs = runs["run_id"].nunique()
    datasets = ", ".join(f"{d} (N={int(n)})" for d, n in
                         runs.groupby("dataset", sort=False)["n_samples"].first().items()) \
        if "n_samples" in runs else ", ".join(runs["dataset"].unique())
    items = [
        f"Datasets: {datasets}",
        f"Batch sizes: {', '.join(tables.batch_order(runs))}",
        f"Devices: {', '.join(runs['device'].unique())}",
        f"Engines: {', '.join(tables.engine_order(runs['engine'].unique().tolist()))}",
        f"Seeds: {', '.join(str(s) for s in sorted(runs['seed'].unique()))}",
        f"Epochs per run: {', '.join(str(int(e)) for e in sorted(runs['epochs'].unique()))} "
        "(epoch 1 is the warm-up, excluded from epoch-time statistics)",
        f"Learning rates: {', '.join(f'{lr:g}' for lr in sorted(runs['lr'].unique()))}; optimizer: "
        f"{', '.join(runs['optimizer'].unique())}; hidden widths: {', '.join(runs['hidden'].unique())}",
        f"Runs recorded: {n_runs}" + (f" of {env['runs_total']} planned" if env.get("runs_total") else ""),
    ]
    if sweep.get("scale") and sweep.get("scale") != "none":
        items.append(f"Feature scaling: {sweep['scale']}")
    if env.get("status"):
        items.append(f"Sweep status: {env['status']}"
                     + (f", wall time {fmt_seconds(env['sweep_wall_s'])}" if env.get("sweep_wall_s") else ""))
    if env.get("argv"):
        argv = [str(a) for a in env["argv"]]
        if Path(argv[0]).name in ("minibatch-bench", "__main__.py"):
            argv[0] = "minibatch-bench"
        items.append("Command: `" + " ".join(argv) + "`")
    return items


def environment_items(env: dict[str, Any], calibration: list[dict] | None) -> list[str]:
    if not env:
        return ["No env.json in this folder: the environment was not recorded."]
    versions = env.get("versions") or {}
    items = [f"Machine: {describe_machine(env)}",
             f"Python {env.get('python')} on {env.get('platform')}",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v), *executor_notes(env)]
    git = env.get("git")
    if git:
        items.append(f"Code: git commit {git['commit'][:12]}" + (" (with uncommitted changes)" if git.get("dirty")
                                                                else ""))
    loads = [env.get("load_average_start"), env.get("load_average_end")]
    if any(loads):
        items.append("System load (1/5/15-minute averages) at the start: "
                     + " / ".join(f"{x:g}" for x in loads[0] or [])
                     + ("; at the end: " + " / ".join(f"{x:g}" for x in loads[1]) if loads[1] else "")
                     + f" on {env.get('cpu_cores', '?')} cores")
    for c in calibration or []:
        items.append(f"Calibration workload on {c['device']}: {fmt_seconds(c['step_s'])} per step "
                     f"({c['workload']}); compare uses it to normalize times across machines")
    return items


def _question_blocks(question: findings.Question, warn: Contention | None) -> list[Block]:
    blocks: list[Block] = [Heading(2, question.title)]
    if warn is not None:
        blocks.append(Callout(warn.short()))
    return blocks + [Para(question.answer), Table(question.table)]


def _n_samples(runs: pd.DataFrame) -> dict[str, int]:
    if "n_samples" not in runs:
        return {}
    return {str(d): int(n) for d, n in runs.groupby("dataset", sort=False)["n_samples"].first().items()}


def build(folder: str | Path) -> dict[str, Path]:
    """Rebuild summary.csv, summary.md, plots/, report.md and report.html from the folder's records."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MinibatchError(f"{str(folder)!r} is not a folder: give a sweep's output folder (with {RUNS_CSV})")
    if not (folder / RUNS_CSV).exists():
        raise MinibatchError(f"{str(folder)!r} has no {RUNS_CSV}: give a sweep's output folder")
    runs = tables.read_runs(folder / RUNS_CSV)
    profile = load_profile(folder / PROFILE_CSV)
    env = read_json_if_present(folder / ENV_JSON) or {}
    if not isinstance(env, dict):
        raise MinibatchError(f"{folder / ENV_JSON}: holds a JSON {type(env).__name__}, not the object a sweep "
                             "writes: a damaged file")
    calibration = check_calibration(read_json_if_present(folder / CALIBRATION_JSON), str(folder / CALIBRATION_JSON))
    check_against_settings(runs, env, str(folder / RUNS_CSV))
    machine = describe_machine(env)
    warn = contention(runs, env)

    split = tables.profile_split(profile) if profile is not None else None
    # runs.csv is checked once, by the loader: everything below gets that frame (checked=True). The plots
    # are drawn in forked workers (presentation.parallel) while this process computes the tables; a drawing
    # error is raised where the serial order raised it: after the summary's, before the rest's
    drawing = plotting.start_all(runs, split, folder / PLOTS_DIR, checked=True)
    try:
        configs = outcomes.config_outcomes(runs, checked=True)
        summary = outcomes.with_divergence(tables.summarize(runs, checked=True), runs, configs=configs)
        written = {
            "summary_csv": atomic_write_csv(folder / SUMMARY_CSV, summary),
            "summary_md": atomic_write_text(folder / SUMMARY_MD, summary_tables.summary_markdown(
                summary, machine, warn.sentence() if warn is not None else None)),
        }
    except BaseException:
        drawing.close()  # before the plots in that order: this error, not theirs
        raise
    try:
        scaled = scaling(runs, checked=True)  # data-parallel runs at several worker counts; empty otherwise
        if not scaled.empty:
            written["scaling_csv"] = atomic_write_csv(folder / SCALING_CSV, scaled)
        learned = learning.config_learning(runs, checked=True)
        ttl = outcomes.time_to_loss(runs, outcomes.target_losses(configs, learning=learned), checked=True)
        answer = answer_paragraphs(configs, ttl, _n_samples(runs), warn, learned)
        answer_table = verdict_table(headline_groups(configs, learned))
        questions = [(findings.epoch_time_question(configs), warn), (findings.loss_question(configs), None),
                     (findings.time_to_target_question(configs, ttl), warn)]
        engines = findings.engine_question(summary, list(dict.fromkeys(configs["dataset"])))
        if engines is not None:
            questions.append((engines, warn))
        profile_table = summary_tables.display_profile(split) if split is not None else None
        summary_table = summary_tables.display_summary(summary)
    finally:
        made = drawing.results()
    hero, *other_plots = made
    if not scaled.empty:
        made.append(scaling_plot.scaling_plot(scaled, folder / PLOTS_DIR / "scaling.png"))

    sources = f"`{RUNS_CSV}`" + (f" and `{PROFILE_CSV}`" if profile is not None else "")
    blocks: list[Block] = [
        Heading(1, "minibatch-bench report"),
        Para(f"Sweep folder `{folder.name}`, measured on {machine}. Every number below is computed from "
             f"{sources}; \"median of N seeds\" figures come with the lowest and highest seed."),
    ]
    if warn is not None:
        blocks.append(Callout(warn.sentence()))
    blocks += [Heading(2, "The answer"), *[Para(p) for p in answer], Image(hero.path, hero.title, hero.caption,
                                                                          hero=True)]
    for question, question_warn in questions:
        blocks += _question_blocks(question, question_warn)
    blocks += [Heading(2, "Did each batch size learn?"), Para(LEARNED_NOTE), Table(answer_table)]
    if not scaled.empty:
        p = made[-1]
        blocks += [Heading(2, "Data-parallel scaling (ddp)"),
                   Para(f"Runs of a distributed engine at several worker counts W, global batch fixed "
                        f"(`{SCALING_CSV}`). Efficiency = samples/s at W ÷ (W × samples/s at W=1); all-reduce "
                        "share = time in the gradient all-reduce (a DDP comm hook on rank 0) ÷ epoch time."),
                   Bullets(scaling_plot.findings(scaled)), Image(p.path, p.title, p.caption)]
    if split is not None:
        blocks += [Heading(2, "Where the time goes"),
                   Para("Mean time per training step split into data loading, forward, backward and optimizer, "
                        "measured on extra instrumented steps of the first seed after training (synchronized on "
                        "CUDA, so phases add up to slightly more than an uninstrumented step)."
                        + (" For ddp the gradient all-reduce is its own phase, taken out of backward."
                           if "allreduce_s" in split and (split["allreduce_s"] > 0).any() else "")),
                   Table(profile_table)]
    blocks.append(Heading(2, "Plots"))
    for p in other_plots:
        blocks += [Heading(3, p.title), Image(p.path, p.title, p.caption)]
    blocks += [Heading(2, "Setup"), Bullets(setup_items(runs, env)),
               Heading(2, "Environment"), Bullets(environment_items(env, calibration)),
               Heading(2, "Summary: every configuration"),
               Para(summary_tables.SUMMARY_NOTE
                    + (" \"speedup vs X\": X's per-model epoch time ÷ this row's at the same batch size."
                       if any(c.startswith("speedup_vs_") for c in summary) else "")),
               Table(summary_table)]
    methods = sorted(runs["memory_method"].dropna().unique()) if "memory_method" in runs else []
    if methods:
        blocks += [Heading(2, "How memory was measured"), Bullets(list(methods))]

    written["report_md"] = atomic_write_text(folder / REPORT_MD, render_markdown(blocks, folder))
    written["report_html"] = atomic_write_text(folder / REPORT_HTML,
                                               render_html(blocks, f"minibatch-bench report: {folder.name}"))
    written.update({f"plot_{p.name}": p.path for p in made})
    return written
