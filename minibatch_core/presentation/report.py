"""A sweep folder's summary tables, plots, report.md and self-contained report.html, from its records.

``build(folder)`` reads runs.csv (+ profile.csv, env.json, calibration.json when present) and writes
everything else; it never trains, so ``minibatch-bench report DIR`` and the end of a sweep are the same
code. Every number in the prose below is computed from the records.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from minibatch_core.analysis import tables
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_csv, atomic_write_text
from minibatch_core.presentation import plots as plotting
from minibatch_core.presentation import summary_tables
from minibatch_core.presentation.units import fmt_bytes, fmt_num, fmt_ratio, fmt_seconds
from minibatch_core.records.io import CALIBRATION_JSON, ENV_JSON, PROFILE_CSV, RUNS_CSV
from minibatch_core.running.envinfo import busy_warning, describe_machine

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


# --- document blocks, rendered to Markdown and to HTML from the same list -----------------------------------

@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True)
class Image:
    path: Path
    title: str
    caption: str


Block = Heading | Para | Bullets | Table | Image


def render_markdown(blocks: list[Block], folder: Path) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            out.append(summary_tables.markdown_table(b.frame))
        elif isinstance(b, Image):
            out.append(f"![{b.title}]({b.path.relative_to(folder).as_posix()})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; }
td:nth-child(-n+4), th:nth-child(-n+4) { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 .25em; border-radius: 3px; }
"""


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(blocks: list[Block], title: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in b.frame.columns)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                           for row in b.frame.itertuples(index=False))
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.title)}">'
                       f"<figcaption><b>{html.escape(b.title)}.</b> {html.escape(b.caption)}</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# --- findings, computed from the records --------------------------------------------------------------------

def _group_name(row: pd.Series | dict) -> str:
    return f"{row['engine']} · {row['dataset']} · {row['device']}"


def _batch(spec: str, size: int) -> str:
    return "full (" + str(int(size)) + ")" if spec == "full" else str(spec)


GROUP_KEYS = ["engine", *tables.MATCH_KEYS]


def findings_budget(runs: pd.DataFrame) -> list[str]:
    """Which batch size reached the lowest loss within the same wall time."""
    frame = tables.loss_within_budget(runs)
    out = []
    for _, group in frame.groupby(GROUP_KEYS, sort=False, dropna=False):
        if len(group) < 2:
            continue
        first = group.loc[group["total_time_s"].idxmin()]
        reached = group.dropna(subset=["loss_at_budget"])
        if reached.empty:
            continue
        best = reached.loc[reached["loss_at_budget"].idxmin()]
        others = []
        for _, r in group.iterrows():
            if r.name == best.name:
                continue
            if np.isnan(r["loss_at_budget"]):
                others.append(f"batch size {_batch(r['batch_spec'], r['batch_size'])} had not finished its "
                              "first epoch")
            else:
                others.append(f"{_batch(r['batch_spec'], r['batch_size'])}: {fmt_num(r['loss_at_budget'])} "
                              f"after {r['epochs_within_budget']:g} epochs")
        out.append(
            f"{_group_name(best)}: within the same wall-time budget of {fmt_seconds(first['budget_s'])} (the time "
            f"batch size {_batch(first['batch_spec'], first['batch_size'])} needed for all {int(first['epochs'])} "
            f"epochs), batch size {_batch(best['batch_spec'], best['batch_size'])} reached the lowest loss, "
            f"{fmt_num(best['loss_at_budget'])} after {best['epochs_within_budget']:g} epochs"
            + (f" ({'; '.join(others)})." if others else ".")
        )
    return out


def findings_target(runs: pd.DataFrame) -> list[str]:
    """Which batch size got down to a loss every batch size reached soonest in wall time."""
    frame = tables.time_to_target(runs)
    out = []
    for _, group in frame.groupby(GROUP_KEYS, sort=False, dropna=False):
        if len(group) < 2:
            continue
        best = group.loc[group["time_to_target_s"].idxmin()]
        others = ", ".join(f"{_batch(r['batch_spec'], r['batch_size'])}: {fmt_seconds(r['time_to_target_s'])}"
                           for _, r in group.iterrows() if r.name != best.name)
        out.append(
            f"{_group_name(best)}: to reach an epoch loss of {fmt_num(best['target_loss'])} (the highest final "
            f"loss among these batch sizes, so all of them got there), batch size "
            f"{_batch(best['batch_spec'], best['batch_size'])} was quickest: {fmt_seconds(best['time_to_target_s'])} "
            f"of training (epoch {int(best['epoch_reached'])}), vs {others}."
        )
    return out


def findings_batch_ratios(summary: pd.DataFrame) -> list[str]:
    """How much slower (per epoch) and how much lower (final loss) each batch size is than 32."""
    out = []
    for _, group in summary.groupby(GROUP_KEYS, sort=False, dropna=False):
        lesson = group[group["batch_spec"] == tables.LESSON_BATCH]
        if lesson.empty or len(group) < 2:
            continue
        b32 = lesson.iloc[0]
        parts = []
        for _, r in group.iterrows():
            if r["batch_spec"] == tables.LESSON_BATCH:
                continue
            t = r["time_ratio_vs_b32"]
            speed = (f"took {t:.1f}× as long per epoch as batch 32" if t >= 1
                     else f"was {1 / t:.1f}× faster per epoch than batch 32")
            parts.append(
                f"batch size {_batch(r['batch_spec'], r['batch_size'])} {speed} "
                f"({fmt_seconds(r['epoch_time_median_s'])} vs {fmt_seconds(b32['epoch_time_median_s'])}) and "
                f"ended at {fmt_ratio(r['loss_ratio_vs_b32'])} batch 32's final loss "
                f"({fmt_num(r['final_loss_mean'])} vs {fmt_num(b32['final_loss_mean'])})"
            )
        if parts:
            out.append(f"{_group_name(b32)}: " + "; ".join(parts) + ".")
    return out


def findings_best(summary: pd.DataFrame) -> list[str]:
    out = []
    for _, group in summary.groupby(GROUP_KEYS, sort=False, dropna=False):
        if len(group) < 2:
            continue
        best = group.loc[group["final_loss_mean"].idxmin()]
        acc = group.loc[group["final_eval_accuracy_mean"].idxmax()]
        text = (f"{_group_name(best)}: after {int(best['epochs'])} epochs the lowest final loss came from batch size "
                f"{_batch(best['batch_spec'], best['batch_size'])} ({fmt_num(best['final_loss_mean'])} ± "
                f"{fmt_num(best['final_loss_std'])} across {int(best['n_seeds'])} seeds)")
        text += (f"; the highest eval accuracy from batch size {_batch(acc['batch_spec'], acc['batch_size'])} "
                 f"({acc['final_eval_accuracy_mean']:.1%}).")
        out.append(text)
    return out


def findings_engines(summary: pd.DataFrame, machine: str) -> list[str]:
    out = []
    for base in tables.BASELINE_ENGINES:
        column = f"speedup_vs_{base}"
        if column not in summary:
            continue
        # each baseline against the engines that are not baselines (plus sklearn vs reference, once)
        skip = set(tables.BASELINE_ENGINES[: tables.BASELINE_ENGINES.index(base) + 1])
        others = summary[~summary["engine"].isin(skip) & summary[column].notna()]
        for (engine, dataset, device), group in others.groupby(["engine", "dataset", "device"], sort=False):
            parts = ", ".join(
                f"{fmt_ratio(r[column])} at batch size {_batch(r['batch_spec'], r['batch_size'])}"
                for _, r in group.iterrows())
            replicas = int(group["replicas"].max())
            note = (f" (per-model time: one pass trains {replicas} replicas, pass time ÷ {replicas})"
                    if replicas > 1 else "")
            out.append(f"{engine} vs {base} on {dataset} · {device}: per-epoch speedup {parts}{note} "
                       "(above 1× = faster).")
    if out:
        out.append(f"Engine speedups measured on: {machine}.")
    return out


def findings_profile(split: pd.DataFrame | None) -> list[str]:
    if split is None or split.empty:
        return []
    out = []
    phases = [p for p in tables.PHASES if f"{p}_share" in split]
    for (engine, dataset, device), group in split.groupby(["engine", "dataset", "device"], sort=False):
        parts = []
        for _, r in group.iterrows():
            top = max(phases, key=lambda p: r[f"{p}_share"])
            parts.append(f"batch size {_batch(r['batch_spec'], r['batch_size'])}: {top} "
                         f"{r[f'{top}_share']:.0%} of {fmt_seconds(r['total_step_s'])}/step")
        out.append(f"{engine} · {dataset} · {device}, largest share of a step — " + "; ".join(parts) + ".")
    return out


def findings_memory(summary: pd.DataFrame) -> list[str]:
    out = []
    for _, group in summary.groupby(GROUP_KEYS, sort=False, dropna=False):
        if len(group) < 2:
            continue
        lo = group.loc[group["peak_memory_median_bytes"].idxmin()]
        hi = group.loc[group["peak_memory_median_bytes"].idxmax()]
        out.append(f"{_group_name(lo)}: median peak memory from {fmt_bytes(lo['peak_memory_median_bytes'])} "
                   f"(batch size {_batch(lo['batch_spec'], lo['batch_size'])}) to "
                   f"{fmt_bytes(hi['peak_memory_median_bytes'])} "
                   f"(batch size {_batch(hi['batch_spec'], hi['batch_size'])}).")
    return out


# --- the report --------------------------------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MinibatchError(f"{str(path)!r} is not readable JSON: {err}") from None


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
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)]
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
    warning = busy_warning(env)
    if warning:
        items.append(warning)
    for c in calibration or []:
        items.append(f"Calibration workload on {c['device']}: {fmt_seconds(c['step_s'])} per step "
                     f"({c['workload']}); compare uses it to normalize times across machines")
    return items


def build(folder: str | Path) -> dict[str, Path]:
    """Rebuild summary.csv, summary.md, plots/, report.md and report.html from the folder's records."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MinibatchError(f"{str(folder)!r} is not a folder: give a sweep's output folder (with {RUNS_CSV})")
    if not (folder / RUNS_CSV).exists():
        raise MinibatchError(f"{str(folder)!r} has no {RUNS_CSV}: give a sweep's output folder")
    runs = tables.read_runs(folder / RUNS_CSV)
    profile = tables.read_profile(folder / PROFILE_CSV)
    env = _read_json(folder / ENV_JSON) or {}
    calibration = _read_json(folder / CALIBRATION_JSON)
    machine = describe_machine(env)

    summary = tables.summarize(runs)
    split = tables.profile_split(profile) if profile is not None else None
    written = {
        "summary_csv": atomic_write_csv(folder / SUMMARY_CSV, summary),
        "summary_md": atomic_write_text(folder / SUMMARY_MD, summary_tables.summary_markdown(summary, machine)),
    }
    made = plotting.make_all(runs, split, folder / PLOTS_DIR)
    by_name = {p.name: p for p in made}

    sections = [
        ("Epoch time and final loss against batch size 32 (the lesson's choice)", findings_batch_ratios(summary)),
        ("Lowest loss within the same wall time", findings_budget(runs)),
        ("Time to a loss every batch size reached", findings_target(runs)),
        ("Lowest final loss and best accuracy", findings_best(summary)),
        ("Engines", findings_engines(summary, machine)),
        ("Where a step's time goes", findings_profile(split)),
        ("Memory", findings_memory(summary)),
    ]
    findings: list[Block] = []
    for title, items in sections:
        if items:
            findings += [Heading(3, title), Bullets(items)]
    blocks: list[Block] = [
        Heading(1, "minibatch-bench report"),
        Para(f"Sweep folder `{folder.name}`, measured on {machine}. Everything below is computed from "
             f"`{RUNS_CSV}`" + (f" and `{PROFILE_CSV}`" if profile is not None else "") + "."
             + (" " + busy_warning(env) if busy_warning(env) else "")),
        Heading(2, "Findings"),
        *(findings or [Para("Not enough configurations to compare (one batch size and one engine).")]),
        Heading(2, "Setup"),
        Bullets(setup_items(runs, env)),
        Heading(2, "Environment"),
        Bullets(environment_items(env, calibration)),
        Heading(2, "Summary"),
        Para("One row per configuration across seeds. Epoch time: median over all epochs after the warm-up of "
             "all seeds; IQR: 25th–75th percentile of the same epochs. Final loss: mean ± std across seeds. "
             "\"vs b32\": ratio to batch size 32 (the lesson's choice) on the same engine, dataset and device."
             + (" \"speedup vs X\": X's per-model epoch time ÷ this row's at the same batch size."
                if any(c.startswith("speedup_vs_") for c in summary) else "")
             + (" Multi-seed engines: per-model time = pass time ÷ replicas; samples/s counts samples × replicas."
                if (summary["replicas"] > 1).any() else "")),
        Table(summary_tables.display_summary(summary)),
        Heading(2, "Plots"),
    ]
    for name in ("loss_vs_epoch", "loss_vs_time", "epoch_time_vs_batch_size", "throughput",
                 "peak_memory_vs_batch_size"):
        p = by_name[name]
        blocks += [Heading(3, p.title), Image(p.path, p.title, p.caption)]
    if split is not None:
        p = by_name["profile_split"]
        blocks += [Heading(2, "Where the time goes"),
                   Para("Mean time per training step split into data loading, forward, backward and optimizer, "
                        "measured on extra instrumented steps of the first seed after training (synchronized on "
                        "CUDA, so phases add up to slightly more than an uninstrumented step)."),
                   Table(summary_tables.display_profile(split)), Image(p.path, p.title, p.caption)]
    methods = sorted(runs["memory_method"].dropna().unique()) if "memory_method" in runs else []
    if methods:
        blocks += [Heading(2, "How memory was measured"), Bullets(list(methods))]

    written["report_md"] = atomic_write_text(folder / REPORT_MD, render_markdown(blocks, folder))
    written["report_html"] = atomic_write_text(folder / REPORT_HTML,
                                               render_html(blocks, f"minibatch-bench report: {folder.name}"))
    written.update({f"plot_{p.name}": p.path for p in made})
    return written
