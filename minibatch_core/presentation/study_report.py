"""A study folder's plots, report.md and self-contained report.html: the answer first, then one hero
plot, then the details. Reads study.csv, critical_batch.json, noise.csv and study.json; never trains."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd

from minibatch_core.analysis.study import best_lrs
from minibatch_core.analysis.study_bootstrap import MIN_SEEDS
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import MAX_RESULTS_BYTES, atomic_write_text, read_bytes_checked, read_json_if_present
from minibatch_core.presentation import study_plots
from minibatch_core.presentation.labels import fmt_seconds
from minibatch_core.presentation.report import Bullets, Heading, Image, Para, Table, render_html, render_markdown
from minibatch_core.presentation.study_answer import answer
from minibatch_core.records.hardware import split_by_hardware
from minibatch_core.records.study_rows import STUDY_CSV
from minibatch_core.running.envinfo import busy_warning, describe_machine, executor_notes
from minibatch_core.sweep.study import STUDY_JSON

CRITICAL_JSON = "critical_batch.json"
NOISE_CSV = "noise.csv"
BEST_LR_CSV = "best_lr.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


def _read_csv(path: Path) -> pd.DataFrame:
    """A study's own CSV, bounded like every results file."""
    try:
        return pd.read_csv(io.BytesIO(read_bytes_checked(path, limit=MAX_RESULTS_BYTES, what="study file")))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise MinibatchError(f"{path}: not a readable CSV ({str(err).splitlines()[0] if str(err) else err})") \
            from None


def _g(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}g}"


def _steps(x: float | None) -> str:
    """Steps read as counts: 30,000 and 126.5 rather than 3e+04."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}" if x >= 100 or float(x).is_integer() else f"{x:.1f}"


def _batch(row: pd.Series) -> str:
    return f"{row['batch_spec']} ({int(row['batch_size'])})" if row["batch_spec"] == "full" else str(row["batch_spec"])


def best_table(best: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in best.iterrows():
        reached = r["status"] != "none reached"
        rows.append({
            "dataset": r["dataset"], "engine": r["engine"], "device": r["device"], "batch": _batch(r),
            "best lr": _g(r["best_lr"]) if reached else (
                f"none reached within {int(r['max_steps_run']):,} steps" if pd.notna(r.get("max_steps_run"))
                else "none reached"),
            "status": r["status"] + (" (grid end)" if reached and bool(r["lr_at_grid_edge"]) else ""),
            "seeds reached": f"{int(r['seeds_reached'])}/{int(r['seeds'])}",
            "steps (median, range)": f"{_steps(r['median_steps'])} ({_steps(r['min_steps'])}–{_steps(r['max_steps'])})"
            if reached else "–",
            "epochs": _g(r["median_epochs"]) if reached else "–",
            "time (median, range)": f"{fmt_seconds(r['median_time_s'])} ({fmt_seconds(r['min_time_s'])}–"
                                    f"{fmt_seconds(r['max_time_s'])})" if reached else "–",
            "resolution (steps)": _g(r["median_resolution_steps"]) if reached else "–",
            "lrs reaching / tried": f"{int(r['lrs_reaching'])}/{int(r['lrs_tried'])}",
        })
    return pd.DataFrame(rows)


def with_interval(c: dict[str, Any], name: str, digits: int = 3) -> str:
    """``133 [95, 156]`` (the figure, then its bootstrap interval), ``133 [none]`` when none could be
    estimated (the row's ``interval`` column says so and a note below the table why), the figure alone for
    records without intervals."""
    value = _g(c.get(name), digits)
    if f"{name}_interval" not in c:
        return value
    band = c.get(f"{name}_interval")
    if band:
        return f"{value} [{_g(band[0], digits)}, {_g(band[1], digits)}]"
    return f"{value} [none]" if value != "–" else value


def _interval_column(c: dict[str, Any], note_key: str, over: str) -> str:
    """The level of a row's intervals and what the bootstrap resampled, or ``none`` where the analysis recorded why
    there are none (``critical_notes`` prints that reason below the table)."""
    if c.get(note_key):
        return "none (note below)"
    level = c.get("confidence_level")
    return f"{level:.0%} over {over}" if level else "–"  # the method section: a bootstrap, and how


def critical_notes(c: dict[str, Any]) -> list[str]:
    """What the analysis recorded about a row of the critical-batch tables (the fit, the slopes, why an
    interval is missing), each said once."""
    notes = (c.get("fit", {}).get("note"), c.get("slopes", {}).get("note"), c.get("interval_note"),
             c.get("b_simple_interval_note"))
    return list(dict.fromkeys(n for n in notes if n))


def critical_tables(critical: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two tables, so each fits a page: the critical batch measured (the fit to steps vs batch size) and
    predicted (the gradient noise scale). Each row says its intervals' level, or ``none`` (the reason is
    among ``critical_notes``)."""
    measured, predicted = [], []
    for c in critical:
        fit, noise = c.get("fit", {}), c.get("noise", {})
        sl = c.get("slopes", {})
        slopes = {"slope_small": c.get("slope_small", sl.get("small")),
                  "slope_large": c.get("slope_large", sl.get("large"))}
        key = {"dataset": c["dataset"], "engine": c["engine"], "device": c["device"]}
        measured.append({
            **key, "B_crit (measured)": with_interval(c, "b_crit"), "S_min": with_interval(c, "s_min"),
            "E_min": with_interval(c, "e_min"),
            "fit R² (log)": _g(fit.get("r2_log")), "rms log resid.": _g(fit.get("rms_log_residual"), 2),
            "points": fit.get("n_points", 0),
            "slope small B": with_interval({**c, **slopes}, "slope_small"),
            "slope large B": with_interval({**c, **slopes}, "slope_large"),
            "interval": _interval_column(c, "interval_note", f"{c.get('bootstrap_seeds')} seeds"),
        })
        predicted.append({
            **key, "B_simple (predicted: before target)": with_interval(c, "b_simple"),
            "B_simple at start": with_interval(c, "b_simple_start"),
            "B_simple at target": with_interval(c, "b_simple_at_target"),
            "B_simple / B_crit": with_interval(c, "ratio_b_simple_over_b_crit"),
            "interval": _interval_column(c, "b_simple_interval_note",
                                         f"{c.get('b_simple_runs', 1)} runs") if noise else "–",
            "noise cost": fmt_seconds(noise.get("measure_s")) if noise else "–",
        })
    return pd.DataFrame(measured), pd.DataFrame(predicted)


def search_table(search: list[dict[str, Any]]) -> pd.DataFrame:
    """Per batch size: the rates the search added, round by round and why, how it ended, the step budget."""
    rows = []
    for s in search:
        rounds = s.get("rounds") or []
        rows.append({
            "dataset": s.get("dataset"), "engine": s.get("engine"), "device": s.get("device"),
            "batch": s.get("batch_spec"),
            "rates added (round: rates, why)": "; ".join(
                f"{r['round']}: {', '.join(_g(x) for x in r['lrs'])} ({r['reason']})" for r in rounds) or "none",
            "search ended": s.get("outcome") or "–",
            "step budget": f"{int(s['step_budget']):,} ({s.get('budget_rule')})" if s.get("step_budget") else "–",
        })
    return pd.DataFrame(rows)


def method_items(meta: dict[str, Any], study: pd.DataFrame) -> list[str]:
    s = meta.get("study", {})
    res = study.loc[study["reached"].astype(bool), "eval_resolution_steps"]
    items = [
        "Held-out target: " + "; ".join(f"{d}: {v['train_rows']:,} training / {v['val_rows']:,} validation rows "
                                        f"({'stratified' if v.get('stratified', True) else 'random'}, split seed "
                                        f"{v['split_seed']})" for d, v in meta.get("splits", {}).items())
        + ("; loss mse (float targets: no accuracy, and no classes to stratify the split on)"
           if s.get("loss") == "mse" else "") + ".",
        "Per batch size, every learning rate x seed trains until the target is met on the validation rows "
        + ("" if not s.get("lr_search", False) else "(searched: while a batch size's best rate sat at an end of "
           "the rates tried, one more rate a grid step beyond it was trained, then two between the best and its "
           "neighbours) ")
        + (f"(budget {s.get('max_steps')} steps at every batch size" if s.get("max_steps") else
           f"(budget {s.get('max_epochs')} epochs, raised for larger batch sizes to the steps the smallest batch size "
           "needed at its best rate")
        + (f", {s.get('time_budget_s')} s" if s.get("time_budget_s") else "")
        + (", kept training to the full budget" if s.get("full_budget") else "; a run stops at the end of the "
           "epoch in which every replica of its pass met the target") + ").",
        "Steps to target are resolved within an epoch: the target is checked "
        + (f"every {s['eval_every']} steps and at every epoch end" if s.get("eval_every") else
           "at geometrically spaced steps (each at most ~19% after the previous), at least 8 times per "
           "epoch and at every epoch end")
        + (f"; the median resolution of the runs that reached it is {res.median():.3g} steps "
           f"(max {res.max():.0f}), recorded per run as eval_resolution_steps." if len(res) else "."),
        "Best learning rate = lowest median steps to target over seeds (a run that did not reach the target "
        "counts as infinitely many steps). Learning-rate policy: "
        f"{s.get('lr_policy', 'constant')}" + (f", {s.get('warmup_epochs'):g} warm-up epoch(s)"
                                               if s.get("warmup_epochs") else "") + ".",
        "Time to target: training time only (the shuffle included; evaluation excluded), synchronized on CUDA. "
        "With the stacked engine it is the time of the whole pass, all replicas together.",
        "Measured critical batch: S(B) = S_min + E_min/B, the form of (S/S_min − 1)(E/E_min − 1) = 1 "
        "(McCandlish et al. 2018), fitted to the best-rate median steps by least squares on log S; "
        "B_crit = E_min/S_min. Predicted: B_simple = tr(Σ)/|G|² from gradient norms at two batch sizes "
        "(their App. A) of the study's loss, averaged over the measurements before the target along the study's "
        "model trained in the reference loop, one measuring run per seed.",
        "Intervals: bootstrap over seeds (each batch size's seeds resampled with replacement, the best rate "
        "reselected and the curve refitted, 1,000 times; the measuring runs resampled likewise for B_simple); "
        f"central 90% percentile interval. With fewer than {MIN_SEEDS} seeds no interval is estimated: a "
        "resample of one or two values only reshuffles them.",
    ]
    return items


def build_study_report(folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    if not (folder / STUDY_CSV).exists():
        raise MinibatchError(f"{str(folder)!r} holds no {STUDY_CSV}: not a study folder")
    study = split_by_hardware(_read_csv(folder / STUDY_CSV))
    meta = read_json_if_present(folder / STUDY_JSON) or {}
    critical = read_json_if_present(folder / CRITICAL_JSON) or []
    best = best_lrs(study)
    plots = folder / PLOTS_DIR
    written: dict[str, Path] = {
        "steps": study_plots.plot_steps_to_target(best, study, critical, plots / "steps_to_target.png"),
        "time": study_plots.plot_time_to_target(best, study, plots / "time_to_target.png"),
        "best_lr": study_plots.plot_best_lr(best, study, plots / "best_lr.png"),
    }
    noise_path = folder / NOISE_CSV
    if noise_path.exists():
        noise = _read_csv(noise_path)
        if not noise.empty:
            written["noise"] = study_plots.plot_noise_scale(noise, critical, plots / "noise_scale.png")
    blocks: list = [Heading(1, f"Batch-size study: {folder.name}"), Heading(2, "The answer")]
    warning = busy_warning(meta)
    blocks += [Para(t) for t in answer(best, study, critical, meta, warning)]
    blocks.append(Image(written["steps"], "Steps to target vs batch size",
                        "Each batch size at its best learning rate; log-log. Dotted: perfect scaling from the "
                        "smallest batch. Orange: the fitted McCandlish curve; dashed: measured B_crit; dash-dot: "
                        "predicted B_simple; shaded: their bootstrap intervals. Red triangles: no rate reached the "
                        "target (marker at the budget)."))
    blocks += [Heading(2, "Per batch size: the best learning rate and its figures"), Table(best_table(best))]
    search = search_table(meta.get("lr_search") or [])
    if not search.empty:
        blocks += [Heading(2, "Learning-rate search and step budgets"), Table(search)]
    blocks += [Heading(2, "Critical batch: measured and predicted"), *map(Table, critical_tables(critical))]
    blocks += [Para(f"{c['dataset']} · {c['engine']} · {c['device']}: {note}.")
               for c in critical for note in critical_notes(c)]
    blocks.append(Image(written["time"], "Time to target vs batch size",
                        "Training wall time to the target at each batch size's best learning rate (median, "
                        "range over seeds). " + (warning or "Load during the study: see the setup below.")))
    blocks.append(Image(written["best_lr"], "Best learning rate vs batch size",
                        "Linear (dotted) and square-root (dashed) scaling drawn through the best rate at the "
                        "batch size nearest 32. A circled point sits at an end of the grid."))
    if "noise" in written:
        blocks.append(Image(written["noise"], "Gradient noise scale over training",
                            "B_simple grows as the loss falls; the prediction averages the measurements "
                            "before the target (dotted line)."))
    blocks += [Heading(2, "Method"), Bullets(method_items(meta, study))]
    env_items = [f"Machine: {describe_machine(meta)}",
                 f"Load average (1, 5, 15 min) at start: {meta.get('load_average_start', '–')}, at end: "
                 f"{meta.get('load_average_end', '–')}",
                 f"Study wall time: {_g(meta.get('study_wall_s'))} s for {meta.get('runs_done', '?')} runs"]
    env_items += executor_notes(meta)
    if warning:
        env_items.append(warning)
    blocks += [Heading(2, "Setup"), Bullets(env_items)]
    written["report_md"] = atomic_write_text(folder / REPORT_MD, render_markdown(blocks, folder))
    written["report_html"] = atomic_write_text(folder / REPORT_HTML,
                                               render_html(blocks, f"minibatch-bench study: {folder.name}"))
    return written
