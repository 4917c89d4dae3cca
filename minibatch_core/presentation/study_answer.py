"""The study report's answer, in plain words: first what does not depend on the machine (steps to target
by batch size, the two regimes, B_crit and B_simple with their intervals), then time to target on this
machine (per-step cost, which batch sizes cannot be told apart from the fastest, what parallel hardware
changes), with the contention warning beside the times it affects."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from minibatch_core.analysis.study import fastest
from minibatch_core.presentation.labels import fmt_seconds


def _g(x: Any, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}g}"


def _steps(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:,.0f}" if x >= 100 or float(x).is_integer() else f"{x:.1f}"


def _fixed(x: float, decimals: int) -> str:
    text = f"{x:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def figure(c: dict[str, Any], name: str, label: str, digits: int = 3, eq: str = " = ",
           decimals: int | None = None) -> str:
    """``B_crit = 133 [95, 156]`` (the figure, then its interval; ``decimals``: fixed-point, for slopes)."""
    value = c.get(name)
    if value is None:
        return f"{label}{eq}–"

    def show(x: float) -> str:
        return _fixed(x, decimals) if decimals is not None else _g(x, digits)

    band = c.get(f"{name}_interval")
    if band:
        return f"{label}{eq}{show(value)} [{show(band[0])}, {show(band[1])}]"
    return f"{label}{eq}{show(value)}"  # no interval: the paragraph says once why


def batch_label(size: int, n_train: int) -> str:
    return f"full batch ({size})" if size == n_train else f"batch {size}"


def indistinguishable(group: pd.DataFrame, fastest_size: int) -> list[int] | None:
    """Batch sizes whose time range over seeds (min to max, at their best rate) overlaps the fastest's,
    the fastest included; None when the ranges are not measured (one seed)."""
    reached = group[group["status"] != "none reached"]
    if reached.empty or (reached["seeds_reached"].astype(int) < 2).all():
        return None
    win = reached[reached["batch_size"] == fastest_size].iloc[0]
    lo, hi = float(win["min_time_s"]), float(win["max_time_s"])
    keep = reached[(reached["min_time_s"].astype(float) <= hi) & (reached["max_time_s"].astype(float) >= lo)]
    return sorted(int(b) for b in keep["batch_size"])


def overlap_phrase(sizes: list[int], grid: list[int]) -> str:
    """``batch 32-64 are indistinguishable here`` for neighbours in the grid, else a list."""
    if len(sizes) < 2:
        return "no other batch size's time range overlaps it"
    positions = [grid.index(s) for s in sizes if s in grid]
    if len(positions) == len(sizes) and positions == list(range(positions[0], positions[0] + len(sizes))):
        return f"batch {sizes[0]}-{sizes[-1]} are indistinguishable here"
    return "batch " + ", ".join(str(s) for s in sizes[:-1]) + f" and {sizes[-1]} are indistinguishable here"


def measured_part(group: pd.DataFrame, c: dict[str, Any], where: str, target: str, n_train: int,
                  search: list[dict[str, Any]]) -> str:
    """The hardware-independent paragraph."""
    reached = group[group["status"] != "none reached"].sort_values("batch_size")
    steps = "; ".join(f"{batch_label(int(r['batch_size']), n_train)}: {_steps(r['median_steps'])}"
                      for _, r in reached.iterrows())
    text = (f"{where}, with each batch size given its best learning rate, the median steps to {target} were: "
            f"{steps}.")
    if c.get("b_crit"):
        small = figure(c, "slope_small", "slope", eq=" ", decimals=2)
        large = figure(c, "slope_large", "slope", eq=" ", decimals=2)
        level = c.get("confidence_level")
        how = (f" ({level:.0%} intervals, bootstrap over {c.get('bootstrap_seeds')} seeds)" if c.get("b_crit_interval")
               else f" ({c['interval_note']})" if c.get("interval_note") else "")
        text += (f" Steps fall with {small} on log-log axes (−1 is perfect scaling) up to about the measured "
                 f"critical batch {figure(c, 'b_crit', 'B_crit')}, then flatten ({large} above it); "
                 f"{figure(c, 's_min', 'S_min')} steps, {figure(c, 'e_min', 'E_min')} examples{how}.")
    elif c.get("fit", {}).get("note"):
        text += f" Critical batch: {c['fit']['note']}."
    for _, r in group[group["status"] == "none reached"].iterrows():
        had = r.get("max_steps_run")
        text += (f" {batch_label(int(r['batch_size']), n_train).capitalize()} never reached the target at any "
                 f"learning rate" + (f" within the {int(had):,} steps it had." if pd.notna(had) else "."))
    text += " " + search_sentence(search, n_train)
    return text.rstrip()


def search_sentence(search: list[dict[str, Any]], n_train: int) -> str:
    if not search:
        return ""
    if all(s.get("outcome") == "search off" for s in search):
        edge = "" if not search else " (the rates were not searched: --no-lr-search)"
        return f"Learning rates: the grid only{edge}."
    bound = [s for s in search if str(s.get("outcome", "")).startswith("stopped at a bound")]
    added = sum(len(r["lrs"]) for s in search for r in s.get("rounds", []))
    text = f"The learning-rate search added {added} rate(s) beyond and between the grid's"
    if bound:
        return text + "; at " + "; ".join(f"{batch_label(int(s['batch_size']), n_train)} it {s['outcome']}"
                                          for s in bound) + "."
    return text + "; every batch size's best rate is inside the rates tried."


def noise_part(c: dict[str, Any]) -> str:
    if not c.get("b_simple"):
        return ""
    noise = c.get("noise") or {}
    runs = c.get("b_simple_runs", 1)
    text = (f"The gradient-noise prediction, averaged over the measurements before the target ({runs} measuring "
            f"run(s) of the model in the reference loop at batch {noise.get('train_batch', '?')}, "
            f"lr {_g(noise.get('lr'))}), is {figure(c, 'b_simple', 'B_simple')}")
    if c.get("b_simple_start") is not None:
        text += (f"; at the start {figure(c, 'b_simple_start', 'B_simple')}, at the step the target was reached "
                 f"{figure(c, 'b_simple_at_target', 'B_simple')}")
    text += (". The average before the target is the one compared with B_crit: steps to target integrate over the "
             "whole way there, along which the noise scale grows")
    if c.get("ratio_b_simple_over_b_crit"):
        text += f"; {figure(c, 'ratio_b_simple_over_b_crit', 'B_simple / B_crit', 2)}"
    if c.get("b_simple_interval_note"):
        text += f" ({c['b_simple_interval_note']})"
    elif c.get("b_simple_interval"):
        text += f" ({c.get('confidence_level', 0.9):.0%} intervals, bootstrap over the {runs} runs)"
    return text + "."


def time_part(group: pd.DataFrame, w: pd.Series, c: dict[str, Any], n_train: int, passes: int,
              warning: str | None, rows: pd.DataFrame | None = None) -> str:
    """Time to target on this machine: the fastest, per-step costs, the indistinguishable batch sizes,
    what parallel hardware changes; the contention warning right after the figures."""
    seeds = int(w["seeds"])
    # a multi-replica pass trains K runs at once: one model's share is the pass's time / K
    spread = (f"median of {seeds} seeds, range {fmt_seconds(w['min_time_s'] / passes)}–"
              f"{fmt_seconds(w['max_time_s'] / passes)}" if seeds > 1 else "1 seed: no spread measured")
    shared = (f"; per model: one pass trained all {passes} runs of that batch size together in "
              f"{fmt_seconds(w['median_time_s'])}" if passes > 1 else "")
    text = (f"On this machine, {batch_label(int(w['batch_size']), n_train)} reached it in the least training time: "
            f"{fmt_seconds(w['median_time_s'] / passes)}{' per model' if passes > 1 else ''} "
            f"({spread}, lr {w['best_lr']:.3g}{shared}).")
    reached = group[group["status"] != "none reached"].sort_values("batch_size")
    cost = reached.assign(per_step=reached["median_time_s"].astype(float) / reached["median_steps"].astype(float))
    ends = cost.iloc[[0, -1]] if len(cost) > 1 else cost
    costs = [f"{fmt_seconds(r['per_step'])} at {batch_label(int(r['batch_size']), n_train)}"
             for _, r in ends.iterrows()]
    text += " A step cost " + " and ".join(costs) + ": time = steps × cost per step."
    same = indistinguishable(group, int(w["batch_size"]))
    grid = [int(b) for b in group.sort_values("batch_size")["batch_size"]]
    if same is None:
        text += " With one seed no time range is measured, so which batch sizes are faster cannot be told apart."
    else:
        text += f" Time ranges over seeds overlap the fastest's for: {overlap_phrase(same, grid)}."
    if passes > 1 and rows is not None and "replicas" in rows and rows["replicas"].nunique() > 1:
        text += (f" The passes held {int(rows['replicas'].min())} to {passes} runs (the search's rounds are "
                 "smaller passes), so these times compare only roughly.")
    if warning:
        text += f" {warning}"
    b_crit = c.get("b_crit")
    text += (" Times depend on the hardware: on parallel hardware (a GPU, or many cores) where a step costs about "
             "the same at any batch size up to its capacity, time follows steps, which favour the largest batch up "
             f"to B_crit{f' (about {_g(b_crit)})' if b_crit else ''}; beyond it steps barely fall.")
    return text


def answer(best: pd.DataFrame, study: pd.DataFrame, critical: list[dict[str, Any]],
           meta: dict[str, Any], warning: str | None = None) -> list[str]:
    """Paragraphs per dataset x engine x device: measured (hardware-independent), noise scale, time here."""
    out = []
    crit = {(c["dataset"], c["engine"], c["device"]): c for c in critical}
    search = meta.get("lr_search") or []
    for _, w in fastest(best).iterrows():
        key = (w["dataset"], w["engine"], w["device"])
        rows = study[(study["dataset"] == key[0]) & (study["engine"] == key[1]) & (study["device"] == key[2])]
        group = best[(best["dataset"] == key[0]) & (best["engine"] == key[1]) & (best["device"] == key[2])]
        first = rows.iloc[0]
        n_train = int(first["n_train"])
        target = meta.get("targets", {}).get(key[0], {}).get("text") or \
            f"validation {first['target_metric']} target {first['target_value']:g}"
        where = (f"On {key[0]} ({n_train:,} training rows, {int(first['n_val']):,} held out; engine {key[1]}, "
                 f"{key[2]})")
        if w["batch_size"] is None or pd.isna(w["batch_size"]):
            had = int(pd.to_numeric(rows["steps_run"], errors="coerce").max())
            hits = int(rows["reached"].astype(bool).sum())
            lead = (f"{where}, {hits} of {len(rows)} runs reached {target} within their budget (at most {had:,} "
                    "steps), but at no batch size and learning rate did the median seed reach it, so no batch size "
                    "has a best learning rate." if hits else
                    f"{where}, no run reached {target} within its budget (at most {had:,} steps).")
            best_acc = pd.to_numeric(rows["best_val_accuracy"], errors="coerce").max()  # NaN: mse, no accuracy
            seen = (f"The best validation accuracy any run saw was {best_acc:.3f}, lowest validation loss"
                    if pd.notna(best_acc) else "The lowest validation loss any run saw was")
            out.append(f"{lead} {seen} {rows['min_val_loss'].min():.4f}: choose a reachable target, a larger "
                       "budget, more seeds or other learning rates.")
            continue
        c = crit.get(key, {})
        mine = [s for s in search if (s.get("dataset"), s.get("engine"), s.get("device")) == key]
        out.append(measured_part(group, c, where, target, n_train, mine))
        if noise_part(c):
            out.append(noise_part(c))
        passes = int(rows["replicas"].max()) if "replicas" in rows else 1
        out.append(time_part(group, w, c, n_train, passes, warning, rows))
    return out
