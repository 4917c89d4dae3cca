"""``minibatch-bench run``: the main job. A sweep of batch size x device x seeds x datasets x engines into a
results folder with runs.csv, tables, plots and a report."""

from __future__ import annotations

import argparse
import sys

from minibatch_core.commands import SUMMARIES
from minibatch_core.commands.executor_options import add_executor_options, executor_from_args, executor_from_toml
from minibatch_core.commands.options import add_axis_options, given_axes
from minibatch_core.commands.run_execute import execute_and_report
from minibatch_core.commands.run_folder import (  # noqa: F401  (importable from here, as before)
    DEFAULT_ROOT,
    LATEST,
    OWN_FILES,
    _check_writable,
    choose_folder,
    point_latest,
)
from minibatch_core.errors import MinibatchError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help=SUMMARIES["run"],
        description="Measure every combination of the lists below, one timed run at a time, into a results "
        "folder: runs.csv (one row per run x epoch), profile.csv, calibration.json, env.json, summary.csv/.md, "
        "plots/*.png, report.md and a self-contained report.html. Lists are comma-separated.",
    )
    p.add_argument("--config", metavar="FILE", help="read settings from a TOML file (keys as the options below, "
                   "e.g. batch_sizes = [1, 32, \"full\"]); options given here override it")
    add_axis_options(p)
    add_executor_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="output folder (default results/<UTC timestamp>/ with "
                   "results/latest pointing to it): a folder that does not exist, is empty, or was made by `run`; "
                   "one that already holds a runs.csv, or files run did not make, is refused")
    o.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds a finished sweep or other files: run's own files "
                        "(runs.csv, env.json, ...) are replaced, any other file stays")
    o.add_argument("--yes", action="store_true",
                   help="run a plan above the limits (more than 10,000 runs, or more than 100,000 epochs a run) "
                        "instead of refusing it")
    o.add_argument("--resume", metavar="DIR",
                   help="finish an interrupted sweep in DIR: re-plan from its recorded settings (env.json), "
                        "skip the runs already in its runs.csv, run the rest, rebuild the report. Refused when "
                        "the code or settings would differ from those recorded (options given here count)")
    o.add_argument("--force", action="store_true",
                   help="with --resume: resume even when the code or settings differ from those recorded")
    o.add_argument("--quiet", action="store_true", help="no progress bar; print only the output folder")
    o.add_argument("--dry-run", action="store_true",
                   help="print the plan (configurations, runs, what was left out and why) and exit without "
                        "training or writing anything")
    o.add_argument("--no-profile", action="store_true",
                   help="skip the per-phase step-time split (profile.csv and its plot)")
    o.add_argument("--no-isolate", action="store_true",
                   help="train in this process instead of a fresh worker per run (memory figures less exact)")
    p.set_defaults(handler=run)


def sweep_from_args(args: argparse.Namespace, base=None):
    from minibatch_core.sweep.sweep_config import SweepConfig, sweep_from_toml

    base = sweep_from_toml(args.config, base) if args.config else (base or SweepConfig())
    given = given_axes(args)
    if args.no_profile:
        given["profile"] = False
    return SweepConfig.from_mapping(given, base=base)


def run(args: argparse.Namespace) -> int:
    from minibatch_core.running.preflight import check_dataset

    if args.out and not args.resume:  # a folder that is not ours is refused before anything starts
        choose_folder(args.out, args.overwrite)
    if args.datasets and not args.config:  # a broken file named here fails before torch is imported
        for dataset in (d.strip() for d in args.datasets.split(",") if d.strip()):
            check_dataset(dataset, args.target)
    if args.overwrite and args.resume:
        raise MinibatchError("--overwrite does not apply to --resume (it adds to the folder's sweep)")
    if args.force and not args.resume:
        raise MinibatchError("--force only applies to --resume")
    sweep = None
    if not args.resume:  # the settings and the plan's size (no torch needed): checked before anything starts
        from minibatch_core.sweep.sweep_config import check_plan_size

        sweep = sweep_from_args(args)
        check_plan_size(sweep, args.yes)  # before the grid is expanded: that alone took minutes for 10**6 runs
    if not args.no_isolate and not args.dry_run:
        # Then, before this process imports anything heavy: the worker forkserver's imports (torch,
        # scikit-learn, the engines: about 3 s) are the longest step before the first run can start, and
        # they run on another core while this process plans, probes the machine and loads the plotting
        # libraries (below).
        from minibatch_core.running.isolation import start_workers

        start_workers(list(sweep.engines) if sweep is not None else _engines_hint(args))
    if sweep is None:
        return _resume(args)
    from minibatch_core.fsio import out_marker
    from minibatch_core.running.envinfo import collect
    from minibatch_core.sweep.sweep import plan

    for dataset in sweep.datasets:  # a data file's problems and notes, once, before anything loads it
        for note in check_dataset(dataset, sweep.target):
            print(note, file=sys.stderr)
    the_plan = plan(sweep)  # every value checked before a folder exists or anything trains
    if args.dry_run:
        return _dry_run(the_plan)
    options = executor_from_args(args, executor_from_toml(args.config) if args.config else None)
    folder, default_place = choose_folder(args.out, args.overwrite)
    _print_plan(args, the_plan)
    executor = _open(options)  # a cluster that cannot be reached: one line, before anything is written
    try:
        if args.overwrite:
            from minibatch_core.fsio import remove_own_files

            remove_own_files(folder, OWN_FILES)
        folder.mkdir(parents=True, exist_ok=True)
        config = {**sweep.to_dict(), "devices_expanded": list(the_plan.devices), "isolate": not args.no_isolate}
        env = {**collect(config), **out_marker("run")}
        env["classes"] = class_numbers(sweep)
        # the report's plotting libraries (about 0.4 s after pandas): loaded now, while the worker forkserver
        # still imports torch on the other core, instead of after the last run
        import minibatch_core.presentation.report  # noqa: F401
    except BaseException:
        executor.close()
        raise
    return execute_and_report(args, the_plan, folder, env, default_place, executor=executor)


def _open(options):
    """The executor, connected; env.json's ``executor`` entry comes from its ``describe``."""
    from minibatch_core.sweep.executors import open_executor

    return open_executor(options)


def _engines_hint(args: argparse.Namespace) -> list[str]:
    """The engines the worker forkserver of a resumed sweep preloads: those named by --engines (read here,
    before the recorded settings are read), else the default sweep's. A name not known here is left to the
    sweep's own check; engines not preloaded are imported by their first worker."""
    from minibatch_core.engines import default_engine_names, engine_names

    named = [e.strip() for e in (args.engines or "").split(",") if e.strip()]
    if named == ["all"]:
        return engine_names()
    return [e for e in named if e in engine_names()] or default_engine_names()


def _resume(args: argparse.Namespace) -> int:
    from minibatch_core.fsio import out_marker
    from minibatch_core.running.envinfo import collect
    from minibatch_core.sweep.resume import differences, read_recorded, remaining
    from minibatch_core.sweep.sweep import plan, utc_now

    if args.out:
        raise MinibatchError("--resume writes into its own folder: drop --out")
    recorded = read_recorded(args.resume)
    sweep = sweep_from_args(args, base=recorded.sweep)
    full_plan = plan(sweep)
    env = {**collect({**sweep.to_dict(), "devices_expanded": list(full_plan.devices), "isolate": not args.no_isolate}),
           **out_marker("run")}
    changed = differences(recorded, sweep, not args.no_isolate, full_plan.devices, env)
    if changed and not args.force:
        raise MinibatchError(f"--resume {args.resume!r}: it would run with other code or settings than those "
                             f"recorded ({'; '.join(changed)}); resuming would mix two experiments in one "
                             "folder: use a new folder, or --force")
    _check_writable(recorded.folder, f"--resume {args.resume!r}")
    the_plan, kept, n_kept = remaining(full_plan, recorded.runs)
    if args.dry_run:
        print(f"resuming {recorded.folder}: {n_kept} runs recorded, {the_plan.total_runs} to run")
        return _dry_run(the_plan)
    options = executor_from_args(args, recorded.env.get("executor"))  # the recorded executor unless flags say
    _print_plan(args, the_plan)
    if not args.quiet:
        print(f"resuming {recorded.folder}: {n_kept} runs recorded, {the_plan.total_runs} to run", file=sys.stderr)
    history = list(recorded.env.get("resumed_utc") or [])
    env = {**env, "classes": class_numbers(sweep), "resumed_utc": [*history, utc_now()],
           "resumed_with_changes": changed or None}
    calibration = recorded.calibration if n_kept else None
    return execute_and_report(args, the_plan, recorded.folder, env, False, kept_runs=kept,
                               kept_profiles=recorded.profiles if kept is not None else None,
                               calibration=calibration, executor=_open(options))


def _print_plan(args: argparse.Namespace, the_plan) -> None:
    """Before anything trains, on stderr: the whole plan, or with --quiet only what planning changed or
    left out (those must not pass unnoticed)."""
    from minibatch_core.presentation.plan_text import sweep_plan_lines

    if args.quiet:
        lines = [f"note: {n}" for n in the_plan.notes] + [f"left out: {x.describe()}" for x in the_plan.left_out]
    else:
        lines = sweep_plan_lines(the_plan)
    for line in lines:
        print(f"minibatch-bench run: {line}", file=sys.stderr)


def _dry_run(the_plan) -> int:
    """--dry-run: the plan on stdout, nothing trained, no folder written."""
    from minibatch_core.presentation.plan_text import sweep_plan_lines

    print("\n".join(sweep_plan_lines(the_plan, all_configurations=True)))
    print("dry run: nothing was trained or written")
    return 0


def class_numbers(sweep) -> dict[str, dict[str, str]]:
    """Per dataset (as runs.csv names it), which label became which class number: {"0": "class_0", ...}."""
    from minibatch_core.input.data import load_dataset

    out: dict[str, dict[str, str]] = {}
    for name in sweep.datasets:
        ds = load_dataset(name, target=sweep.target, n_samples=sweep.n_samples, n_features=sweep.n_features,
                          n_classes=sweep.n_classes, data_seed=sweep.data_seed)
        out[ds.name] = {str(i): label for i, label in enumerate(ds.class_names)}
    return out


