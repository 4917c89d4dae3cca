"""The one writer of a study's records: a ``ToTargetRun`` -> study.csv rows (one per run), runs.csv rows
(per run x epoch, runs.csv's schema with the validation columns) and checks.csv rows (per run x check).
Columns and their meanings: ``records.study_columns`` and ``records.columns``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from minibatch_core.input.specs import source_hash
from minibatch_core.records import identity as ident
from minibatch_core.records.columns import RUN_COLUMNS, names
from minibatch_core.records.study_axes import STUDY_IDENTITY
from minibatch_core.records.study_columns import CHECKS_COLUMNS, STUDY_COLUMNS

STUDY_CSV = "study.csv"
RUNS_CSV = "runs.csv"
CHECKS_CSV = "checks.csv"


def _identity(study, job, split, lr: float, torch_threads: int, n_samples: int, device: str) -> dict[str, Any]:
    return ident.identity(engine=job.engine, dataset=job.dataset, device=device,
                          batch_spec=job.batch_spec, lr=lr, optimizer=study.optimizer, hidden=study.hidden,
                          epochs=study.max_epochs, target=study.target, scale=study.scale,
                          data_seed=split.seed, torch_threads=torch_threads, workers=1, n_samples=n_samples,
                          n_features=split.train.n_features, n_classes=split.train.n_classes,
                          model=getattr(study, "model", "mlp"), loss=getattr(study, "loss", "cross_entropy"),
                          model_hash=source_hash(getattr(study, "model", "mlp")))


def _study_suffix(study) -> str:
    """``|lr_policy=linear|warmup_epochs=1`` for the study axes off their default."""
    values = {"lr_policy": study.lr_policy, "warmup_epochs": study.warmup_epochs,
              "val_fraction": study.val_fraction}
    return "".join(f"|{k}={v:g}" if isinstance(v, float) else f"|{k}={v}"
                   for k, v in values.items() if STUDY_IDENTITY.get(k) is not None and v != STUDY_IDENTITY[k])


def run_ids(study, job, split, lr: float, seed: int, torch_threads: int, n_samples: int,
            device: str) -> tuple[str, str]:
    """(run_id, config_id): a sweep's ids (``fast|digits|cpu|b16|s0|lr0.01|scale=standard``) plus the study
    axes off their default."""
    identity = _identity(study, job, split, lr, torch_threads, n_samples, device)
    suffix = _study_suffix(study)
    return ident.run_id(identity, seed) + suffix, ident.config_id(identity) + suffix


def study_rows(result: Any, *, study, job, split, target, device: str, device_name: str, torch_threads: int,
               n_samples: int) -> pd.DataFrame:
    """One study.csv row per run of the pass."""
    rows: list[dict[str, Any]] = []
    for (lr, base, seed), out in zip(job.pairs, result.replicas, strict=True):
        accs = [c.val_accuracy for c in out.checks]
        losses = [c.val_loss for c in out.checks]
        identity = _identity(study, job, split, lr, torch_threads, n_samples, device)
        run_id, config_id = run_ids(study, job, split, lr, seed, torch_threads, n_samples, device)
        rows.append({
            **identity, "run_id": run_id, "config_id": config_id, "device_name": device_name,
            "batch_size": job.batch_size, "base_lr": base, "lr_policy": study.lr_policy,
            "warmup_epochs": study.warmup_epochs, "warmup_steps": job.warmup_steps, "seed": seed,
            "val_fraction": split.val_fraction, "target_metric": target.metric,
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
            "search_round": getattr(job, "search_round", 0),
            "step_budget": getattr(job, "step_budget", None) or study.max_epochs * result.steps_per_epoch,
            "budget_rule": getattr(job, "budget_rule", "max epochs"),
        })
    frame = pd.DataFrame(rows, columns=names(STUDY_COLUMNS))
    return frame.astype({"steps_to_target": "Int64", "samples_to_target": "Int64"})


def epoch_rows(result: Any, *, study, job, split, target, device: str, device_name: str, torch_threads: int,
               n_samples: int) -> pd.DataFrame:
    """runs.csv rows: the schema of a sweep's runs.csv; eval_* (whole-dataset figures) and memory are not
    measured by a study and stay empty; val_loss / val_accuracy are the held-out figures."""
    rows: list[dict[str, Any]] = []
    n = split.train.n_samples
    for (lr, _base, seed), out in zip(job.pairs, result.replicas, strict=True):
        identity = _identity(study, job, split, lr, torch_threads, n_samples, device)
        # a pass stops at the target, so the run holds the epochs its pass trained, not the budget's:
        # runs.csv's `epochs` says how many it holds (the loader checks a run is whole against it)
        identity = {**identity, "epochs": len(out.epochs)}
        run_id, config_id = run_ids(study, job, split, lr, seed, torch_threads, n_samples, device)
        cumulative = 0.0
        for e in out.epochs:
            cumulative += e.time_s
            rows.append({
                **identity, "run_id": run_id, "config_id": config_id, "device_name": device_name,
                "batch_size": job.batch_size, "seed": seed, "epoch": e.epoch, "epoch_loss": e.train_loss,
                "eval_loss": None, "eval_accuracy": None, "val_loss": e.val_loss, "val_accuracy": e.val_accuracy,
                "epoch_time_s": e.time_s, "cumulative_time_s": cumulative, "warmup": e.epoch == 1,
                "steps": e.steps, "samples_per_s": n / e.time_s if e.time_s > 0 else 0.0,
                "diverged": False, "replicas": len(job.pairs), "memory_method": "not measured (study)",
            })
    frame = pd.DataFrame(rows, columns=names(RUN_COLUMNS))
    return frame.astype({"diverged_epoch": "Int64", "peak_memory_bytes": "Int64"})


def check_rows(result: Any, *, study, job, split, target, device: str, device_name: str, torch_threads: int,
               n_samples: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    spe, n = result.steps_per_epoch, split.train.n_samples
    for (lr, _base, seed), out in zip(job.pairs, result.replicas, strict=True):
        rid, _ = run_ids(study, job, split, lr, seed, torch_threads, n_samples, device)
        for c in out.checks:
            epochs, within = divmod(c.step, spe)
            rows.append({"run_id": rid, "dataset": job.dataset, "engine": job.engine, "device": device,
                         "batch_size": job.batch_size, "lr": lr, "seed": seed, "step": c.step,
                         "epoch_fraction": c.step / spe, "samples": epochs * n + min(within * job.batch_size, n),
                         "val_loss": c.val_loss, "val_accuracy": c.val_accuracy,
                         "train_time_s": c.train_time_s})
    return pd.DataFrame(rows, columns=names(CHECKS_COLUMNS))
