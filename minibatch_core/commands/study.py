"""``minibatch-bench study``: for each batch size, tune the learning rate and count the steps and time to a
validation target; fit the critical batch and predict it from the gradient noise scale.

``run_study`` is the same from Python (``from minibatch_core import StudyConfig, run_study``). It lives at
the top layer because it strings every layer together: plan and train (sweep), select and fit
(analysis), measure the noise scale along the chosen run (sweep -> running), then write the report
(presentation).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minibatch_core.commands import SUMMARIES
from minibatch_core.commands.executor_options import add_executor_options, executor_from_args
from minibatch_core.commands.options import DATASET_HELP, add_data_options
from minibatch_core.errors import MinibatchError


@dataclass
class StudyOutcome:
    folder: Path
    wall_s: float
    runs: int
    critical: list[dict[str, Any]]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "study",
        help=SUMMARIES["study"],
        description="For every batch size, train a grid of learning rates x seeds until a validation target "
        "is met (checked within epochs), pick the best rate by median steps to target, fit the critical batch "
        "(McCandlish et al. 2018) and predict it from the gradient noise scale. Writes study.csv, runs.csv, "
        "checks.csv, best_lr.csv, noise.csv, critical_batch.json, plots/ and report.md/.html.",
    )
    g = p.add_argument_group("the grid")
    g.add_argument("--dataset", "--datasets", dest="datasets", default="wine", metavar="D[,D...]",
                   help=f"datasets: {DATASET_HELP} (default wine)")
    g.add_argument("--batch-sizes", default="pow2", metavar="B[,B...]",
                   help="positive integers, 'full', and/or 'pow2' (= 1, 2, 4, ... below N, plus full); default pow2")
    g.add_argument("--lrs", default="1e-3:1e-1:5", metavar="LRS",
                   help="learning rates: a list (0.001,0.01) and/or A:B:K = K log-spaced values from A to B "
                   "(default 1e-3:1e-1:5)")
    g.add_argument("--lr-policy", default="constant", choices=("constant", "linear", "sqrt"),
                   help="constant: the rates as given at every batch size; linear/sqrt: the rates are set at "
                   "batch 32 and scaled by B/32 or sqrt(B/32) (default constant)")
    g.add_argument("--warmup-epochs", type=float, default=0.0, metavar="W",
                   help="linear learning-rate warm-up over the first W epochs (default 0)")
    g.add_argument("--lr-search", dest="lr_search", action="store_true", default=True,
                   help="extend the rates by one grid step while a batch size's best rate is at an end of the "
                   "rates tried, then refine around the best (default on)")
    g.add_argument("--no-lr-search", dest="lr_search", action="store_false", help="train the grid's rates only")
    g.add_argument("--seeds", default="0,1", metavar="S", help="seeds: 0,1,2 or 0-9 (default 0,1)")
    g.add_argument("--engines", default="stacked", metavar="E[,E...]",
                   help="fast (one run per pass) and/or stacked (every lr x seed of a batch size in one pass); "
                   "default stacked")
    g.add_argument("--devices", default="cpu", metavar="DEV[,DEV...]", help="cpu, cuda, cuda:N, auto (default cpu)")
    t = p.add_argument_group("target and budget")
    t.add_argument("--target-accuracy", type=float, metavar="A", help="validation accuracy to reach, in (0, 1]")
    t.add_argument("--target-loss", type=float, metavar="L",
                   help="validation loss to reach, > 0 (with --loss mse: the mean squared error; required)")
    t.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="held-out fraction, in (0, 0.9]; stratified by class (float targets: a plain random "
                   "split), split seed --data-seed (default 0.2)")
    t.add_argument("--max-epochs", type=int, default=40, metavar="E",
                   help="epoch budget per run (default 40); larger batch sizes get at least the steps the smallest "
                   "batch size needed at its best rate")
    t.add_argument("--max-steps", metavar="STEPS",
                   help="step budget per run, the same for every batch size (replaces the epoch budget)")
    t.add_argument("--time-budget", type=float, metavar="S", help="training-time budget per pass, seconds")
    t.add_argument("--full-budget", action="store_true", help="keep training to the budget after the target")
    t.add_argument("--eval-every", type=int, metavar="STEPS",
                   help="check the target every STEPS steps (default: geometric spacing, >= 8 per epoch)")
    t.add_argument("--no-noise-scale", action="store_true", help="skip the gradient-noise prediction B_simple")
    m = p.add_argument_group("model and optimizer")
    m.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="default adam (the lesson's)")
    m.add_argument("--hidden", default="10,10", metavar="W[,W...]", help="hidden widths of the mlp (default 10,10)")
    m.add_argument("--model", "--models", dest="model", default="mlp", metavar="SPEC",
                   help="the model: mlp (default), linear, cnn, package.module:function or path/file.py:function "
                   "(one per study)")
    # no argparse choices: StudyConfig refuses an unknown loss in one line, as every other bad value
    m.add_argument("--loss", default="cross_entropy", metavar="LOSS",
                   help="cross_entropy (class numbers; accuracy reported; default) or mse (float targets of "
                   "shape (N,) or (N, k); no accuracy, so give --target-loss)")
    m.add_argument("--threads", default="1", metavar="N",
                   help="torch intra-op threads while training: an integer, or auto = torch's default (default 1)")
    add_data_options(p)
    for action in p._actions:  # in a study the data seed also draws the held-out split
        if action.dest == "data_seed":
            action.help = "seed of the train/validation split, and of generated (synthetic) data (default 0)"
    add_executor_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="output folder (default results/study-<UTC timestamp>): a "
                   "folder that does not exist, is empty, or was made by `study`; one that already holds a "
                   "study.csv, or files study did not make, is refused")
    o.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds a study or other files: study's own files are "
                        "replaced, any other file stays")
    o.add_argument("--no-isolate", action="store_true",
                   help="train every pass in this process instead of a fresh worker process per pass (the same "
                   "steps and losses; timings then share the process's state)")
    o.add_argument("--quiet", action="store_true", help="no progress; print only the output folder")
    o.add_argument("--dry-run", action="store_true",
                   help="print the plan (passes, runs, targets) and exit without training or writing anything")
    o.add_argument("--yes", action="store_true",
                   help="run a plan above the limits (more than 10,000 runs, or --max-epochs above 100,000) "
                        "instead of refusing it")
    p.set_defaults(handler=run)


def study_from_args(args: argparse.Namespace):
    from minibatch_core.sweep.study import StudyConfig

    return StudyConfig(
        datasets=args.datasets, batch_sizes=args.batch_sizes, lrs=args.lrs, lr_policy=args.lr_policy,
        warmup_epochs=args.warmup_epochs, seeds=args.seeds, engines=args.engines, devices=args.devices,
        target_accuracy=args.target_accuracy, target_loss=args.target_loss, val_fraction=args.val_fraction,
        data_seed=args.data_seed, max_epochs=args.max_epochs, max_steps=args.max_steps, lr_search=args.lr_search,
        time_budget_s=args.time_budget,
        full_budget=args.full_budget, eval_every=args.eval_every, optimizer=args.optimizer, hidden=args.hidden,
        model=args.model, loss=args.loss,
        scale=args.scale, target=args.target, n_samples=args.n_samples, n_features=args.n_features,
        n_classes=args.n_classes, noise_scale=not args.no_noise_scale, threads=args.threads,
    )


# what `study` writes into its folder: the only files --overwrite replaces
OWN_FILES = ("study.csv", "runs.csv", "checks.csv", "best_lr.csv", "noise.csv", "critical_batch.json",
             "study.json", "report.md", "report.html")


def choose_folder(out: str | Path | None, overwrite: bool = False) -> Path:
    from minibatch_core.commands.run_folder import claim_folder

    return claim_folder(out, "study", result="study.csv", holding="a study (study.csv)", marker_files=("study.json",),
                        legacy=lambda meta: isinstance(meta.get("study"), dict), overwrite=overwrite,
                        prefix="study-")[0]


def run_study(study, out: str | Path | None = None, *, on_progress=None, on_plan=None,
              executor=None, overwrite: bool = False, confirmed: bool = True, isolate: bool = True) -> StudyOutcome:
    """Plan (every value checked before a folder exists), train, analyse, predict, report. ``on_plan``
    gets the plan's lines (``presentation.plan_text``) before anything trains; ``executor``:
    ``sweep.executors.ExecutorOptions`` (default local: one pass at a time, each in a fresh worker process
    of this command unless ``isolate`` is false, as ``train`` and ``run`` train)."""
    import pandas as pd

    from minibatch_core.analysis.study import best_lrs, critical_batch, noise_run_choice
    from minibatch_core.fsio import atomic_write_csv, atomic_write_text, out_marker, remove_own_files
    from minibatch_core.presentation.study_report import BEST_LR_CSV, CRITICAL_JSON, NOISE_CSV, build_study_report
    from minibatch_core.records.hardware import split_by_hardware
    from minibatch_core.records.study_rows import STUDY_CSV
    from minibatch_core.running.envinfo import collect
    from minibatch_core.sweep.executors import open_executor
    from minibatch_core.sweep.study import execute, measure_noise, plan

    the_plan = plan(study)
    if not confirmed:
        _check_size(the_plan.total_runs, study.max_epochs)
    if isolate and (executor is None or executor.kind == "local"):
        from minibatch_core.running.isolation import start_workers

        start_workers(study.engines)  # the workers' imports (seconds) run while this process sets up
    folder = choose_folder(out, overwrite)
    if on_plan:
        from minibatch_core.presentation.plan_text import study_plan_lines

        on_plan(study_plan_lines(the_plan))
    runner = open_executor(executor)  # a cluster that cannot be reached: one line, before anything is written
    try:
        if overwrite:
            remove_own_files(folder, OWN_FILES)
        folder.mkdir(parents=True, exist_ok=True)
        env = {**collect(study.to_dict()), **out_marker("study"),
               "executor": runner.describe() if hasattr(runner, "describe") else {"kind": runner.name}}
        wall = execute(the_plan, folder, env, on_progress=on_progress, executor=runner, isolate=isolate)
    finally:  # a local Ray instance stops before the noise measurement and the report's plot workers
        runner.close()
    frame = split_by_hardware(pd.read_csv(folder / STUDY_CSV))
    best = best_lrs(frame)
    atomic_write_csv(folder / BEST_LR_CSV, best)
    noise: dict[tuple[str, str], dict[str, Any]] = {}
    noise_points: dict[tuple[str, str], pd.DataFrame] = {}
    points = []
    if study.noise_scale:
        for dataset in study.datasets:
            choice = noise_run_choice(best, dataset, the_plan.devices[0])
            if choice is None:
                continue
            per_dataset = []
            # one measuring run per seed: B_simple's interval resamples them (the first is the one described)
            for seed in study.seeds:
                if on_progress:
                    on_progress(len(frame), len(frame),
                                f"gradient noise scale | {dataset} | seed {seed}")
                scale = measure_noise(the_plan, dataset, choice["batch_size"], choice["lr"], choice["median_steps"],
                                      seed=seed, course=seed == study.seeds[0])
                if seed == study.seeds[0]:
                    for device in the_plan.devices:
                        noise[(dataset, device)] = scale.to_dict()
                per_dataset += [{"dataset": dataset, **vars(p), "seed": seed,
                                 "steps_to_target": scale.steps_to_target} for p in scale.points]
            for device in the_plan.devices:
                noise_points[(dataset, device)] = pd.DataFrame(per_dataset)
            points += per_dataset
        from dataclasses import fields

        from minibatch_core.running.noise import NoisePoint

        columns = ["dataset", *(f.name for f in fields(NoisePoint)), "seed", "steps_to_target"]
        noise_frame = pd.DataFrame(points, columns=columns).astype({"steps_to_target": "Int64"})
        atomic_write_csv(folder / NOISE_CSV, noise_frame)
    critical = critical_batch(best, noise, frame, noise_points)
    atomic_write_text(folder / CRITICAL_JSON, json.dumps(critical, indent=2, default=_json_default) + "\n")
    build_study_report(folder)
    return StudyOutcome(folder, wall, len(frame), critical)


def _check_size(runs: int, epochs: int) -> None:
    from minibatch_core.input.config import MAX_EPOCHS, MAX_RUNS

    if runs > MAX_RUNS:
        raise MinibatchError(f"this study plans {runs:,} runs, above the {MAX_RUNS:,} that `study` starts without "
                             "asking: narrow the lists (seeds, lrs, batch sizes) or add --yes")
    if epochs > MAX_EPOCHS:
        raise MinibatchError(f"--max-epochs {epochs:,} is above the {MAX_EPOCHS:,} that `study` trains without "
                             "asking: give fewer, or add --yes")


def _json_default(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def run(args: argparse.Namespace) -> int:
    if args.out:  # a folder that is not ours is refused before anything is planned or loaded
        choose_folder(args.out, args.overwrite)
    study = study_from_args(args)
    if args.dry_run:
        from minibatch_core.presentation.plan_text import study_plan_lines
        from minibatch_core.sweep.study import plan

        print("\n".join(study_plan_lines(plan(study))))
        print("dry run: nothing was trained or written")
        return 0

    def show(done: int, total: int, label: str) -> None:
        print(f"[{done}/{total}] {label}", file=sys.stderr, flush=True)

    def show_plan(lines: list[str]) -> None:
        for line in lines:
            print(f"minibatch-bench study: {line}", file=sys.stderr)

    options = executor_from_args(args)
    outcome = run_study(study, args.out, on_progress=None if args.quiet else show,
                        on_plan=None if args.quiet else show_plan, executor=options,
                        overwrite=args.overwrite, confirmed=args.yes, isolate=not args.no_isolate)
    if args.quiet:
        print(outcome.folder)
        return 0
    print(f"{outcome.runs} runs in {outcome.wall_s:.1f} s -> {outcome.folder}: study.csv, critical_batch.json, "
          "report.html")
    for c in outcome.critical:
        level = c.get("confidence_level")
        note = (f" ({level:.0%} intervals over {c.get('bootstrap_seeds')} seeds)" if c.get("b_crit_interval")
                else f" ({c['interval_note']})" if c.get("interval_note") else "")
        where = f"{c['dataset']} · {c['engine']} · {c['device']}"
        print(f"  {where}: B_crit {_fmt(c.get('b_crit'), c.get('b_crit_interval'))}, "
              f"S_min {_fmt(c.get('s_min'), c.get('s_min_interval'))}, "
              f"B_simple {_fmt(c.get('b_simple'), c.get('b_simple_interval'))}, slopes "
              f"{_fmt(c['slopes'].get('small'), c.get('slope_small_interval'), '.2f')} / "
              f"{_fmt(c['slopes'].get('large'), c.get('slope_large_interval'), '.2f')}{note}")
    return 0


def _fmt(x: float | None, band: list[float] | None = None, spec: str = ".3g") -> str:
    if x is None:
        return "–"
    return f"{x + 0.0:{spec}}" + (f" [{band[0]:{spec}}, {band[1]:{spec}}]" if band else "")
