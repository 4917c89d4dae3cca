"""The study's files as rows: study.csv (one row per run), runs.csv (per run x epoch, with validation
columns) and checks.csv (per run x target check). Column lists are the contract; units in names."""

from __future__ import annotations

from typing import Any

import pandas as pd

from minibatch_core.running.to_target import ToTargetRun

STUDY_CSV = "study.csv"
RUNS_CSV = "runs.csv"
CHECKS_CSV = "checks.csv"

# axes first (what identifies a run), then the to-target figures, then what the run used
STUDY_COLUMNS = [
    "run_id", "dataset", "engine", "device", "device_name", "batch_spec", "batch_size", "lr", "base_lr",
    "lr_policy", "warmup_epochs", "warmup_steps", "seed", "optimizer", "hidden", "scale", "val_fraction",
    "data_seed", "target_metric", "target_value",
    "reached", "steps_to_target", "epochs_to_target", "samples_to_target", "time_to_target_s",
    "eval_resolution_steps",
    "steps_run", "epochs_run", "train_time_s", "eval_time_s", "n_checks", "stopped", "final_val_loss",
    "final_val_accuracy", "best_val_accuracy", "min_val_loss", "max_epochs", "time_budget_s", "full_budget",
    "n_train", "n_val", "steps_per_epoch", "replicas", "torch_threads",
]
RUNS_COLUMNS = [
    "run_id", "engine", "dataset", "device", "device_name", "batch_spec", "batch_size", "seed", "lr",
    "optimizer", "hidden", "epochs", "epoch", "epoch_loss", "val_loss", "val_accuracy", "epoch_time_s",
    "cumulative_time_s", "warmup", "steps", "samples_per_s", "replicas", "n_samples", "base_lr", "lr_policy",
    "warmup_epochs",
]
CHECKS_COLUMNS = ["run_id", "dataset", "engine", "device", "batch_size", "lr", "seed", "step", "epoch_fraction",
                  "samples", "val_loss", "val_accuracy", "train_time_s"]


def run_id(job, lr: float, seed: int, study) -> str:
    """``fast|digits|cpu|b16|s0|lr0.01`` (+ the policy and warm-up when they are not the default)."""
    parts = [job.engine, job.dataset, job.device, f"b{job.batch_spec}", f"s{seed}", f"lr{lr:.4g}"]
    if study.lr_policy != "constant":
        parts.append(study.lr_policy)
    if study.warmup_epochs:
        parts.append(f"w{study.warmup_epochs:g}")
    return "|".join(parts)


def _hidden(study) -> str:
    return "-".join(str(w) for w in study.hidden)


def study_rows(result: ToTargetRun, *, study, job, split, target, device_name: str,
               torch_threads: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for (lr, base, seed), out in zip(job.pairs, result.replicas, strict=True):
        accs = [c.val_accuracy for c in out.checks]
        losses = [c.val_loss for c in out.checks]
        rows.append({
            "run_id": run_id(job, lr, seed, study), "dataset": job.dataset, "engine": job.engine,
            "device": job.device, "device_name": device_name, "batch_spec": job.batch_spec,
            "batch_size": job.batch_size, "lr": lr, "base_lr": base, "lr_policy": study.lr_policy,
            "warmup_epochs": study.warmup_epochs, "warmup_steps": job.warmup_steps, "seed": seed,
            "optimizer": study.optimizer, "hidden": _hidden(study), "scale": study.scale,
            "val_fraction": split.val_fraction, "data_seed": split.seed, "target_metric": target.metric,
            "target_value": target.value, "reached": out.reached, "steps_to_target": out.steps_to_target,
            "epochs_to_target": out.epochs_to_target, "samples_to_target": out.samples_to_target,
            "time_to_target_s": out.time_to_target_s, "eval_resolution_steps": out.eval_resolution_steps,
            "steps_run": result.steps_run, "epochs_run": result.epochs_run,
            "train_time_s": result.train_time_s, "eval_time_s": result.eval_time_s,
            "n_checks": result.n_checks, "stopped": result.stopped,
            "final_val_loss": losses[-1] if losses else None,
            "final_val_accuracy": accs[-1] if accs else None,
            "best_val_accuracy": max(accs) if accs else None, "min_val_loss": min(losses) if losses else None,
            "max_epochs": study.max_epochs, "time_budget_s": study.time_budget_s,
            "full_budget": study.full_budget, "n_train": split.train.n_samples, "n_val": split.val.n_samples,
            "steps_per_epoch": result.steps_per_epoch, "replicas": len(job.pairs),
            "torch_threads": torch_threads,
        })
    frame = pd.DataFrame(rows, columns=STUDY_COLUMNS)
    return frame.astype({"steps_to_target": "Int64", "samples_to_target": "Int64"})


def epoch_rows(result: ToTargetRun, *, study, job, split, target, device_name: str,
               torch_threads: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    n = split.train.n_samples
    for (lr, base, seed), out in zip(job.pairs, result.replicas, strict=True):
        cumulative = 0.0
        for e in out.epochs:
            cumulative += e.time_s
            rows.append({
                "run_id": run_id(job, lr, seed, study), "engine": job.engine, "dataset": job.dataset,
                "device": job.device, "device_name": device_name, "batch_spec": job.batch_spec,
                "batch_size": job.batch_size, "seed": seed, "lr": lr, "optimizer": study.optimizer,
                "hidden": _hidden(study), "epochs": study.max_epochs, "epoch": e.epoch,
                "epoch_loss": e.train_loss, "val_loss": e.val_loss, "val_accuracy": e.val_accuracy,
                "epoch_time_s": e.time_s, "cumulative_time_s": cumulative, "warmup": e.epoch == 1,
                "steps": e.steps, "samples_per_s": n / e.time_s if e.time_s > 0 else 0.0,
                "replicas": len(job.pairs), "n_samples": n, "base_lr": base, "lr_policy": study.lr_policy,
                "warmup_epochs": study.warmup_epochs,
            })
    return pd.DataFrame(rows, columns=RUNS_COLUMNS)


def check_rows(result: ToTargetRun, *, study, job, split, target, device_name: str,
               torch_threads: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    spe, n = result.steps_per_epoch, split.train.n_samples
    for (lr, _base, seed), out in zip(job.pairs, result.replicas, strict=True):
        rid = run_id(job, lr, seed, study)
        for c in out.checks:
            epochs, within = divmod(c.step, spe)
            rows.append({"run_id": rid, "dataset": job.dataset, "engine": job.engine, "device": job.device,
                         "batch_size": job.batch_size, "lr": lr, "seed": seed, "step": c.step,
                         "epoch_fraction": c.step / spe, "samples": epochs * n + min(within * job.batch_size, n),
                         "val_loss": c.val_loss, "val_accuracy": c.val_accuracy,
                         "train_time_s": c.train_time_s})
    return pd.DataFrame(rows, columns=CHECKS_COLUMNS)
