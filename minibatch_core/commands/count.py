"""``minibatch-bench count``: CPU instructions of a fixed amount of training per configuration, counted
under valgrind's callgrind (a measure of work that a busy machine does not move), into
``DIR/instructions.csv`` and ``DIR/env.json``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from minibatch_core.commands import SUMMARIES
from minibatch_core.commands.options import DATASET_HELP, add_data_options
from minibatch_core.engines import engine_names
from minibatch_core.errors import MinibatchError

DEFAULT_EPOCHS = 2
DEFAULT_SEEDS = "0"  # the count hardly depends on the seed (only through the shuffle): one is enough

# argparse dest -> SweepConfig field: the grid is parsed and validated exactly as `run` does it
_FLAG_FIELDS = {
    "datasets": "datasets", "batch_sizes": "batch_sizes", "engines": "engines", "seeds": "seeds",
    "lrs": "lrs", "optimizer": "optimizer", "hidden": "hidden", "models": "models", "loss": "loss",
    "target": "target", "scale": "scale",
    "n_samples": "n_samples", "n_features": "n_features", "n_classes": "n_classes", "data_seed": "data_seed",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "count",
        help=SUMMARIES["count"],
        description="Count the CPU instructions each configuration executes in a fixed amount of training, "
        "under valgrind's callgrind: per configuration one warm-up epoch, then --epochs counted epochs, on "
        "one torch thread; all configurations in one valgrind process (importing torch under valgrind costs "
        "about 15 s). Unlike wall time, the count does not change with the load of a shared machine, so "
        "`minibatch-bench compare BASE CUR` on two count folders can gate on a growth of a few percent. "
        "Writes DIR/instructions.csv (one row per configuration) and DIR/env.json. Needs valgrind "
        "(apt-get install valgrind). CPU only. Lists are comma-separated.",
    )
    g = p.add_argument_group("the grid (as in `run`)")
    g.add_argument("--datasets", metavar="D[,D...]", default="wine", help=f"datasets: {DATASET_HELP} (default wine)")
    g.add_argument("--batch-sizes", metavar="B[,B...]", default="1,32,full",
                   help="positive integers and/or 'full' (default 1,32,full)")
    g.add_argument("--engines", metavar="E[,E...]", default="all",
                   help="training engines, or 'all' (default: every engine that trains in one process)")
    g.add_argument("--seeds", metavar="S", default=DEFAULT_SEEDS,
                   help=f"seeds as a list and/or ranges: 0,1,2 or 0-9 (default {DEFAULT_SEEDS}: counts vary with "
                   "the seed only through the shuffle)")
    g.add_argument("--lrs", metavar="LR[,LR...]", default="0.001", help="learning rates, > 0 (default 0.001)")
    g.add_argument("--devices", metavar="DEV", default="cpu",
                   help="cpu only: instructions are counted on the CPU; CUDA runs are gated on wall time")
    g.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, metavar="K",
                   help=f"counted epochs per configuration, after one uncounted warm-up epoch (default "
                   f"{DEFAULT_EPOCHS}); recorded as measured_epochs, and epochs = K + 1")
    m = p.add_argument_group("model and optimizer")
    m.add_argument("--optimizer", metavar="OPT[,OPT...]", default="adam", help="adam and/or sgd (default adam)")
    m.add_argument("--hidden", nargs="+", metavar="W,W", default=["10,10"],
                   help="hidden widths; several architectures separated by spaces (default 10,10)")
    m.add_argument("--models", metavar="M[,M...]", default="mlp",
                   help="models: mlp (default), linear, cnn, package.module:function or path/file.py:function")
    m.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy",
                   help="cross_entropy (default) or mse (float targets)")
    add_data_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="output folder (default results/instructions-<UTC timestamp>)")
    o.add_argument("--yes", action="store_true",
                   help="count more than 10,000 configurations, or more than 100,000 epochs, instead of refusing")
    o.add_argument("--overwrite", action="store_true",
                   help="replace an instructions.csv already in DIR (e.g. to refresh a committed baseline), or "
                        "write into a folder holding other files (count's own files are replaced, others stay)")
    p.set_defaults(handler=run)


def refuse_cuda(devices: str) -> None:
    for device in (d.strip().lower() for d in devices.split(",") if d.strip()):
        if device.startswith("cuda") or device == "auto":
            raise MinibatchError(f"device {device!r}: count measures CPU instructions only; CUDA training is "
                                 "judged on wall time (`minibatch-bench run`, then `compare`)")
        if device != "cpu":
            raise MinibatchError(f"device {device!r} is not valid for count: use cpu")


def configs_from_args(args: argparse.Namespace) -> list:
    """Every configuration to count, expanded and validated as `run` plans its grid."""
    from minibatch_core.sweep.sweep import SweepConfig, plan

    if isinstance(args.epochs, bool) or args.epochs < 1:
        raise MinibatchError(f"--epochs {args.epochs!r} is not valid: use an integer >= 1 (counted epochs)")
    from minibatch_core.engines import get_engine

    given = {f: getattr(args, dest) for dest, f in _FLAG_FIELDS.items() if getattr(args, dest, None) is not None}
    # one valgrind process counts one process: an engine that trains over several is left out of `all`,
    # and refused by name
    names = engine_names() if str(given.get("engines", "all")).strip() == "all" else \
        [e.strip() for e in str(given["engines"]).split(",") if e.strip()]
    distributed = [n for n in names if n in engine_names() and get_engine(n).distributed]
    if distributed and given.get("engines", "all") != "all":
        raise MinibatchError(f"engine {distributed[0]!r} trains over several processes; count runs one process "
                             "under valgrind: leave it out (it is judged on wall time)")
    given["engines"] = ",".join(n for n in names if n not in distributed)
    given["hidden"] = ";".join(given["hidden"])  # --hidden 10,10 32,32: one architecture per word
    # threads = 1: callgrind runs one thread at a time, and the count must not include spin-waits
    sweep = SweepConfig.from_mapping({**given, "devices": "cpu", "epochs": args.epochs + 1, "threads": 1,
                                      "workers": 1, "profile": False})
    return [job.config.with_(seed=seed) for job in plan(sweep).jobs for seed in job.seeds]


def choose_folder(out: str | None, overwrite: bool) -> Path:
    from minibatch_core.commands.run_folder import claim_folder
    from minibatch_core.records import instructions
    from minibatch_core.records.instructions import INSTRUCTIONS_CSV

    if out and (Path(out) / "runs.csv").exists():
        raise MinibatchError(f"--out {out!r} holds a sweep (runs.csv): give count a folder of its own")
    # instructions.write replaces count's two files whole; a user's other files stay
    return claim_folder(out, "count", result=INSTRUCTIONS_CSV, holding=INSTRUCTIONS_CSV,
                        marker_files=(instructions.ENV_JSON,), legacy=lambda env: env.get("kind") == instructions.KIND,
                        overwrite=overwrite, prefix="instructions-")[0]


def run(args: argparse.Namespace) -> int:
    from minibatch_core.fsio import out_marker
    from minibatch_core.records import instructions
    from minibatch_core.running.counting import count_instructions, find_valgrind
    from minibatch_core.running.envinfo import collect

    refuse_cuda(args.devices)
    find_valgrind()  # before anything is planned or loaded: the one line on how to install it
    folder = choose_folder(args.out, args.overwrite)  # a folder that is not count's: refused before planning
    configs = configs_from_args(args)
    if not args.yes:
        from minibatch_core.input.config import MAX_EPOCHS, MAX_RUNS

        if len(configs) > MAX_RUNS or args.epochs > MAX_EPOCHS:
            raise MinibatchError(f"{len(configs):,} configurations of {args.epochs:,} epochs: above what count runs "
                                 f"without asking ({MAX_RUNS:,} configurations, {MAX_EPOCHS:,} epochs): narrow the "
                                 "grid, or add --yes")
    folder = choose_folder(args.out, args.overwrite)
    from minibatch_core.presentation.plan_text import count_plan_lines

    for line in count_plan_lines(configs):
        print(f"minibatch-bench count: {line}", file=sys.stderr)
    print(f"counting {len(configs)} configuration(s) under valgrind (one process; about 15 s to import torch, "
          "then each configuration's warm-up and counted epochs)...", file=sys.stderr)
    start = time.perf_counter()
    outcome = count_instructions(configs)
    machine = collect({"command": "count", "configurations": len(configs)})
    wall_s = round(time.perf_counter() - start, 1)
    path = instructions.write(folder, outcome, {"wall_s": wall_s, "argv": machine.pop("argv"),
                                                "machine": machine, **out_marker("count")})
    for c in outcome.counts:
        model = f" model {c.config.model}" if c.config.model != "mlp" else ""
        print(f"{c.config.engine:>10} {c.config.dataset}{model} batch {c.config.batch_spec:>4} seed {c.config.seed}: "
              f"{c.instructions:>14,} instructions, {c.instructions_per_step:>12,.0f} per step")
    print(f"{len(outcome.counts)} configuration(s) counted in {wall_s:.0f} s -> {path}")
    return 0
