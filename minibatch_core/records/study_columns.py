"""The columns of a study's study.csv (one row per run) and checks.csv (one row per run x target check):
name, type, unit and meaning, in the order they are written. The study's runs.csv uses runs.csv's
schema (``columns.RUN_COLUMNS``), whose ``val_loss`` / ``val_accuracy`` columns a study fills. study.csv
holds every identity column (``records.identity.IDENTITY_COLUMNS``): those not listed here come last."""

from __future__ import annotations

from dataclasses import replace

from minibatch_core.records.columns import BOOL, FLOAT, INT, RUN_COLUMNS, STR, Column, _c
from minibatch_core.records.identity import IDENTITY_COLUMNS

STUDY_COLUMNS: tuple[Column, ...] = (
    _c("run_id", STR, "as in runs.csv, plus `|<axis>=<value>` for the study axes off their default", required=True),
    _c("config_id", STR, "the run's configuration (every axis but the seed), as run_id without `|s<seed>`"),
    _c("dataset", STR, "as in runs.csv", required=True),
    _c("engine", STR, "`fast` (one run per pass) or `stacked` (every lr x seed of a batch size in one pass)",
       required=True),
    _c("device", STR, "as in runs.csv", required=True),
    _c("device_name", STR, "as in runs.csv"),
    _c("batch_spec", STR, "batch size as asked: `1`, `32`, `full`", required=True),
    _c("batch_size", INT, "rows per step (`full` = the training rows)", "samples", required=True),
    _c("lr", FLOAT, "the learning rate the run used (after the policy)", required=True),
    _c("base_lr", FLOAT, "the grid's rate before the policy (the rate at batch 32 for linear/sqrt)"),
    _c("lr_policy", STR, "`constant`, `linear` (lr = base x B/32) or `sqrt` (lr = base x sqrt(B/32))",
       fill="constant"),
    _c("warmup_epochs", FLOAT, "linear warm-up length", "epochs", fill=0.0),
    _c("warmup_steps", INT, "the warm-up in steps (warmup_epochs x steps per epoch, rounded)", "steps", fill=0),
    _c("seed", INT, "as in runs.csv", required=True),
    _c("optimizer", STR, "as in runs.csv", fill="adam"),
    _c("hidden", STR, "as in runs.csv", fill="10-10"),
    _c("scale", STR, "as in runs.csv", fill="none"),
    _c("target", STR, "label column of a file dataset", fill=""),
    _c("n_samples", INT, "rows of the dataset before the split", "rows"),
    _c("n_features", INT, "the dataset's width", "features"),
    _c("n_classes", INT, "the dataset's classes"),
    _c("val_fraction", FLOAT, "held-out share of the rows (stratified split)", "0..1"),
    _c("data_seed", INT, "seed of the split (and of generated data)"),
    _c("torch_threads", INT, "as in runs.csv"),
    _c("target_metric", STR, "`accuracy` (validation accuracy >= target_value) or `loss` (validation loss <= it)",
       required=True),
    _c("target_value", FLOAT, "the target level", required=True),
    _c("reached", BOOL, "whether the run met the target within its budget (a run that did not is kept: censored)",
       required=True, nullable=False),
    _c("steps_to_target", INT, "optimizer steps until the first check that met the target (empty: not reached)",
       "steps"),
    _c("epochs_to_target", FLOAT, "steps_to_target / steps per epoch", "epochs"),
    _c("samples_to_target", INT, "training rows processed until then", "samples"),
    _c("time_to_target_s", FLOAT, "training time until then (evaluation excluded; stacked: the whole pass)", "s"),
    _c("eval_resolution_steps", INT, "steps between that check and the one before it: steps_to_target is an upper "
       "bound within this many steps (not reached: the last gap)", "steps"),
    _c("steps_run", INT, "steps the pass trained (its budget used)", "steps"),
    _c("epochs_run", FLOAT, "epochs the pass trained", "epochs"),
    _c("train_time_s", FLOAT, "training time of the pass", "s"),
    _c("eval_time_s", FLOAT, "time spent on target checks and epoch bookkeeping (outside the clock)", "s"),
    _c("n_checks", INT, "target checks in the pass"),
    _c("stopped", STR, "why the pass ended: `target reached`, `max epochs` or `time budget`"),
    _c("final_val_loss", FLOAT, "validation loss at the last check", "nats"),
    _c("final_val_accuracy", FLOAT, "validation accuracy at the last check", "0..1"),
    _c("best_val_accuracy", FLOAT, "the highest validation accuracy over the checks", "0..1"),
    _c("min_val_loss", FLOAT, "the lowest validation loss over the checks", "nats"),
    _c("max_epochs", INT, "the epoch budget", "epochs"),
    _c("time_budget_s", FLOAT, "the training-time budget of a pass (empty: none)", "s"),
    _c("full_budget", BOOL, "whether runs kept training after the target", fill=False),
    _c("n_train", INT, "training rows", "rows"),
    _c("n_val", INT, "validation rows", "rows"),
    _c("steps_per_epoch", INT, "ceil(n_train / batch_size)", "steps"),
    _c("replicas", INT, "runs trained in the same pass", fill=1),
    _c("search_round", INT, "0: the grid's rates; 1, 2, ...: the learning-rate search's rounds for this batch size "
       "(rates added beyond an edge optimum, then refined around the best; study.json's `lr_search` says why)",
       fill=0),
    _c("step_budget", INT, "the steps the pass could train (its budget in steps)", "steps"),
    _c("budget_rule", STR, "what set step_budget: `max epochs` (max_epochs x steps_per_epoch), `max steps` "
       "(--max-steps) or `smallest batch's steps` (raised to the steps the smallest batch size needed at its "
       "best rate)", fill="max epochs"),
    _c("host", STR, "as in runs.csv: the machine that trained the pass", fill=""),
    _c("executor", STR, "as in runs.csv: `local` or `ray`", fill="local"),
)


def _identity_columns(listed: tuple[Column, ...]) -> tuple[Column, ...]:
    """Every identity column of runs.csv (``records.identity``) the list above does not name, "as in runs.csv":
    a study.csv row holds its run's whole configuration, whatever axes there are."""
    known = {c.name for c in listed}
    return tuple(replace(c, meaning="as in runs.csv", required=False, nullable=True) for c in RUN_COLUMNS
                 if c.name in IDENTITY_COLUMNS and c.name not in known)


STUDY_COLUMNS += _identity_columns(STUDY_COLUMNS)

CHECKS_COLUMNS: tuple[Column, ...] = (
    _c("run_id", STR, "as in study.csv", required=True),
    _c("dataset", STR, "as in study.csv"),
    _c("engine", STR, "as in study.csv"),
    _c("device", STR, "as in study.csv"),
    _c("batch_size", INT, "as in study.csv", "samples"),
    _c("lr", FLOAT, "as in study.csv"),
    _c("seed", INT, "as in study.csv"),
    _c("step", INT, "optimizer steps done when checked", "steps", required=True),
    _c("epoch_fraction", FLOAT, "step / steps per epoch", "epochs"),
    _c("samples", INT, "training rows processed", "samples"),
    _c("val_loss", FLOAT, "validation loss", "nats"),
    _c("val_accuracy", FLOAT, "validation accuracy", "0..1"),
    _c("train_time_s", FLOAT, "training time of the pass until the check", "s"),
)


if __name__ == "__main__":
    from minibatch_core.records.columns import markdown

    print("## study.csv\n\n" + markdown(STUDY_COLUMNS) + "\n\n## checks.csv\n\n" + markdown(CHECKS_COLUMNS))
