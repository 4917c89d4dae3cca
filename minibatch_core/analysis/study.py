"""Study tables: the best learning rate per batch size, the critical-batch fit and the two regimes' slopes.

Method (Shallue et al. 2018): per batch size, the learning rate with the lowest *median steps to target*
over seeds wins; a run that never reached the target counts as infinitely many steps, so a rate whose
median seed did not reach it never wins. McCandlish et al. 2018: steps S and examples E = B*S trade off
as (S/S_min - 1)(E/E_min - 1) = 1, i.e. S(B) = S_min + E_min / B, fitted here to the per-batch best
median steps by least squares on log S (scipy.optimize.least_squares, parameters kept positive);
B_crit = E_min / S_min.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

GROUP = ["dataset", "engine", "device"]
BEST_COLUMNS = [
    *GROUP, "batch_spec", "batch_size", "status", "best_lr", "best_base_lr", "tied_lrs", "lr_at_grid_edge",
    "seeds", "seeds_reached", "median_steps", "min_steps", "max_steps", "median_samples", "median_epochs",
    "median_time_s", "min_time_s", "max_time_s", "median_resolution_steps", "lrs_tried", "lrs_reaching",
    "max_steps_run",
]


def _steps(frame: pd.DataFrame) -> pd.Series:
    """Steps to target with a censored run as +inf (it did not get there within its budget)."""
    steps = pd.to_numeric(frame["steps_to_target"], errors="coerce").astype(float)
    return steps.where(frame["reached"].astype(bool), math.inf)


def best_lrs(study: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x engine x device x batch size: the winning rate and its figures over seeds.
    status: ``ok``, ``tie`` (several rates share the lowest median; the smallest is shown, all in
    tied_lrs) or ``none reached`` (no rate's median seed reached the target)."""
    rows: list[dict[str, Any]] = []
    frame = study.assign(_steps=_steps(study))
    for key, per_batch in frame.groupby([*GROUP, "batch_size"], sort=True):
        lrs = sorted(per_batch["lr"].unique())
        medians = {lr: float(np.median(per_batch.loc[per_batch["lr"] == lr, "_steps"])) for lr in lrs}
        best = min(medians.values())
        base = dict(zip([*GROUP, "batch_size"], key, strict=True))
        row: dict[str, Any] = {**base, "batch_spec": str(per_batch["batch_spec"].iloc[0]),
                               "lrs_tried": len(lrs),
                               "lrs_reaching": sum(1 for v in medians.values() if math.isfinite(v)),
                               # the most steps any run of this batch size had: "never reached" within these
                               "max_steps_run": int(pd.to_numeric(per_batch["steps_run"], errors="coerce").max())
                               if "steps_run" in per_batch and per_batch["steps_run"].notna().any() else None}
        if not math.isfinite(best):
            rows.append({**row, "status": "none reached", "seeds": int(per_batch["seed"].nunique()),
                         "seeds_reached": 0})
            continue
        tied = [lr for lr in lrs if medians[lr] == best]
        lr = tied[0]
        runs = per_batch[per_batch["lr"] == lr]
        ok = runs[runs["reached"].astype(bool)]
        times = ok["time_to_target_s"].astype(float)
        steps = ok["_steps"]
        rows.append({
            **row, "status": "tie" if len(tied) > 1 else "ok", "best_lr": lr,
            "best_base_lr": float(runs["base_lr"].iloc[0]), "tied_lrs": ";".join(f"{t:.4g}" for t in tied),
            "lr_at_grid_edge": lr in (lrs[0], lrs[-1]) and len(lrs) > 1,
            "seeds": len(runs), "seeds_reached": len(ok), "median_steps": best,
            "min_steps": float(steps.min()), "max_steps": float(steps.max()),
            "median_samples": float(np.median(ok["samples_to_target"].astype(float))),
            "median_epochs": float(np.median(ok["epochs_to_target"].astype(float))),
            # time: median over the seeds that reached (the median seed did, so this is its neighbourhood)
            "median_time_s": float(np.median(times)), "min_time_s": float(times.min()),
            "max_time_s": float(times.max()),
            "median_resolution_steps": float(np.median(ok["eval_resolution_steps"].astype(float))),
        })
    return pd.DataFrame(rows, columns=BEST_COLUMNS)


@dataclass
class CriticalFit:
    s_min: float | None = None
    e_min: float | None = None
    b_crit: float | None = None
    n_points: int = 0
    r2_log: float | None = None  # R^2 of log steps explained by the fit
    rms_log_residual: float | None = None  # root-mean-square of ln(S_measured / S_fit)
    s_min_rel_se: float | None = None  # standard errors relative to the value (from the Jacobian)
    e_min_rel_se: float | None = None
    ok: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_critical_batch(batch: np.ndarray, steps: np.ndarray,
                       start: tuple[float, float] | None = None) -> CriticalFit:
    """Fit S(B) = S_min + E_min / B to (B, S) points by least squares on ln S (``start``: an initial
    (S_min, E_min), e.g. the full data's fit when refitting bootstrap resamples)."""
    from scipy.optimize import least_squares

    b = np.asarray(batch, dtype=float)
    s = np.asarray(steps, dtype=float)
    keep = np.isfinite(s) & (s > 0) & (b > 0)
    b, s = b[keep], s[keep]
    if len(b) < 3:
        return CriticalFit(n_points=len(b), note=f"{len(b)} batch sizes reached the target; the fit needs 3")

    def residual(theta: np.ndarray) -> np.ndarray:
        s_min, e_min = np.exp(theta)
        return np.log(s_min + e_min / b) - np.log(s)

    guess = start if start is not None else (s.min() / 2, float((b * s).min()) / 2)
    def jacobian(theta: np.ndarray) -> np.ndarray:  # analytic: d ln S / d ln S_min, d ln S / d ln E_min
        s_min, e_min = np.exp(theta)
        total = s_min + e_min / b
        return np.column_stack([s_min / total, (e_min / b) / total])

    sol = least_squares(residual, np.log([max(guess[0], 1e-9), max(guess[1], 1e-9)]), jac=jacobian, method="lm")
    s_min, e_min = (float(v) for v in np.exp(sol.x))
    r = sol.fun
    log_s = np.log(s)
    total = float(((log_s - log_s.mean()) ** 2).sum())
    rel_se: list[float | None] = [None, None]
    dof = len(b) - 2
    if dof > 0:
        try:
            cov = np.linalg.inv(sol.jac.T @ sol.jac) * float((r ** 2).sum()) / dof
            rel_se = [float(math.sqrt(max(cov[i, i], 0.0))) for i in range(2)]  # se of ln(param) = rel. se
        except np.linalg.LinAlgError:
            pass
    fit = CriticalFit(s_min=s_min, e_min=e_min, b_crit=e_min / s_min, n_points=len(b),
                      r2_log=1 - float((r ** 2).sum()) / total if total > 0 else None,
                      rms_log_residual=float(math.sqrt((r ** 2).mean())),
                      s_min_rel_se=rel_se[0], e_min_rel_se=rel_se[1], ok=bool(sol.success))
    if fit.b_crit is not None and not (b.min() <= fit.b_crit <= b.max()):
        fit.note = "B_crit lies outside the batch sizes measured: an extrapolation"
    return fit


@dataclass
class RegimeSlopes:
    small: float | None = None  # d ln S / d ln B for B <= B_crit (perfect scaling: -1)
    small_batches: str = ""
    large: float | None = None  # for B >= B_crit (maximal data parallelism: 0)
    large_batches: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def regime_slopes(batch: np.ndarray, steps: np.ndarray, b_crit: float | None) -> RegimeSlopes:
    """Least-squares slopes of ln S on ln B below and above B_crit (each side needs two points; with
    fewer, that side uses the two batch sizes nearest that end and says so)."""
    b = np.asarray(batch, dtype=float)
    s = np.asarray(steps, dtype=float)
    keep = np.isfinite(s) & (s > 0)
    b, s = b[keep], s[keep]
    order = np.argsort(b)
    b, s = b[order], s[order]
    out = RegimeSlopes()
    if len(b) < 2:
        out.note = "fewer than two batch sizes reached the target"
        return out
    split = b_crit if b_crit is not None else float(np.exp(np.log(b).mean()))
    notes = []
    for name, mask, fallback in (("small", b <= split, slice(0, 2)), ("large", b >= split, slice(-2, None))):
        if mask.sum() < 2:
            mask = np.zeros(len(b), dtype=bool)
            mask[fallback] = True
            notes.append(f"{name}-batch regime has fewer than two sizes on its side of B_crit: "
                         f"slope of the two {'smallest' if name == 'small' else 'largest'}")
        slope = float(np.polyfit(np.log(b[mask]), np.log(s[mask]), 1)[0])
        setattr(out, name, slope)
        setattr(out, f"{name}_batches", ",".join(str(int(v)) for v in b[mask]))
    out.note = "; ".join(notes)
    return out


def fastest(best: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x engine x device, the batch size with the lowest median time to target, with its
    speed-up over the smallest and the largest batch sizes (NaN where those never reached)."""
    rows = []
    for key, group in best.groupby(GROUP, sort=True):
        reached = group[group["status"] != "none reached"]
        if reached.empty:
            rows.append({**dict(zip(GROUP, key, strict=True)), "batch_size": None})
            continue
        win = reached.loc[reached["median_time_s"].astype(float).idxmin()]
        smallest, largest = group.iloc[0], group.iloc[-1]

        def ratio(other: pd.Series, win_s: float = float(win["median_time_s"])) -> float:
            t = other.get("median_time_s")
            return float(t) / win_s if pd.notna(t) else math.nan

        rows.append({**dict(zip(GROUP, key, strict=True)), "batch_size": int(win["batch_size"]),
                     "batch_spec": win["batch_spec"], "median_time_s": float(win["median_time_s"]),
                     "min_time_s": float(win["min_time_s"]), "max_time_s": float(win["max_time_s"]),
                     "best_lr": float(win["best_lr"]), "seeds": int(win["seeds"]),
                     "speedup_vs_smallest": ratio(smallest), "smallest_batch": int(smallest["batch_size"]),
                     "speedup_vs_largest": ratio(largest), "largest_batch": int(largest["batch_size"])})
    return pd.DataFrame(rows)


def noise_run_choice(best: pd.DataFrame, dataset: str, device: str) -> dict[str, Any] | None:
    """Which configuration the gradient-noise measurement follows: the lesson's batch size 32 when the
    grid has it, else the smallest batch size >= 32 (else the largest), each at its best learning rate.
    Chosen without looking at B_crit, so the prediction is not fitted to the measurement."""
    rows = best[(best["dataset"] == dataset) & (best["device"] == device) & (best["status"] != "none reached")]
    if rows.empty:
        return None
    rows = rows.sort_values("batch_size")
    at_least = rows[rows["batch_size"] >= 32]
    pick = at_least.iloc[0] if not at_least.empty else rows.iloc[-1]
    return {"batch_size": int(pick["batch_size"]), "lr": float(pick["best_lr"]),
            "median_steps": float(pick["median_steps"]), "engine": str(pick["engine"])}


def critical_batch(best: pd.DataFrame, noise: dict[tuple[str, str], dict[str, Any]],
                   study: pd.DataFrame | None = None,
                   noise_points: dict[tuple[str, str], pd.DataFrame] | None = None) -> list[dict[str, Any]]:
    """critical_batch.json's entries: per dataset x engine x device, the fit, the slopes, B_simple and
    their ratio, each with its bootstrap median and interval over seeds when ``study`` (study.csv's rows)
    is given. ``noise`` maps (dataset, device) to a NoiseScale.to_dict() (the first seed's run);
    ``noise_points`` to noise.csv's rows of every measuring run (one per seed)."""
    from minibatch_core.analysis.study_bootstrap import (
        BOOTSTRAP_SEED,
        CONFIDENCE,
        RESAMPLES,
        batch_grids,
        bootstrap_fit,
        interval,
        ratio_draws,
    )
    from minibatch_core.analysis.study_noise import noise_summary

    out = []
    for key, group in best.groupby(GROUP, sort=True):
        dataset, engine, device = key
        reached = group[group["status"] != "none reached"].sort_values("batch_size")
        b = reached["batch_size"].to_numpy(dtype=float)
        s = reached["median_steps"].to_numpy(dtype=float)
        fit = fit_critical_batch(b, s)
        slopes = regime_slopes(b, s, fit.b_crit)
        measured = noise.get((dataset, device)) or {}
        b_simple = measured.get("b_simple")
        entry: dict[str, Any] = {
            "dataset": dataset, "engine": engine, "device": device,
            "b_crit": fit.b_crit, "s_min": fit.s_min, "e_min": fit.e_min, "fit": fit.to_dict(),
            "b_simple": b_simple,
            "ratio_b_simple_over_b_crit": (b_simple / fit.b_crit) if b_simple and fit.b_crit else None,
            "slopes": slopes.to_dict(), "slope_small": slopes.small, "slope_large": slopes.large,
            "batch_sizes": [int(v) for v in b], "best_median_steps": [float(v) for v in s],
            "batch_sizes_none_reached": [int(v) for v in group.loc[group["status"] == "none reached",
                                                                    "batch_size"]],
            "noise": measured,
        }
        if study is not None:
            rows = study[(study["dataset"] == dataset) & (study["engine"] == engine) & (study["device"] == device)]
            boot = bootstrap_fit(batch_grids(rows))
            entry.update(boot.fields())
            entry.update({"confidence_level": CONFIDENCE, "bootstrap_resamples": RESAMPLES,
                          "bootstrap_seed": BOOTSTRAP_SEED, "bootstrap_seeds": boot.n_seeds,
                          "interval_note": boot.note})
            fields, window = noise_summary((noise_points or {}).get((dataset, device)))
            if fields:
                entry.update(fields)
                b_simple = entry["b_simple"]
                entry["ratio_b_simple_over_b_crit"] = (b_simple / fit.b_crit) if b_simple and fit.b_crit else None
            ratio = (ratio_draws(window, boot.draws["b_crit"])
                     if window is not None and boot.estimable else None)
            finite = ratio[np.isfinite(ratio)] if ratio is not None else np.array([])
            entry["ratio_b_simple_over_b_crit_median"] = float(np.median(finite)) if len(finite) else None
            entry["ratio_b_simple_over_b_crit_interval"] = interval(ratio) if ratio is not None else None
        out.append(entry)
    return out
