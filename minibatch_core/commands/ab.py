"""``minibatch-bench ab BASE [CURRENT]``: two versions of the project measured interleaved on this
machine, judged on paired per-trial ratios B/A (analysis.ab), trials run by running.ab_runner."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

from minibatch_core.analysis.ab import DEFAULT_MAX_SLOWDOWN, ABRow, Trial, judge
from minibatch_core.analysis.compare_options import REGRESSED
from minibatch_core.commands import SUMMARIES
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_text

EXIT_REGRESSED = 1
DEFAULTS = {"engines": "reference,fast", "batch_sizes": "32,full", "datasets": "wine", "devices": "cpu",
            "seeds": "0", "epochs": 6, "pairs": 8, "min_time": 0.3, "blocks": 16}
COLUMNS = ("configuration", "A", "B", "ratio", "interval", "verdict", "loss", "memory", "pairs", "notes")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ab", help=SUMMARIES["ab"],
        description="Measure two versions of the project (git revisions, or paths to checkouts; CURRENT "
        "defaults to the working tree) in interleaved trial pairs: a fresh worker of each version (one torch "
        "thread), alive together, taking turns in a random order to train each configuration of the grid, "
        "--blocks rounds. Per configuration: the median of the per-pair ratios B/A of the fastest timed epoch, "
        "with a bootstrap interval over the pairs; regressed when the whole interval lies above "
        "--max-slowdown. Loss curves are compared bit for bit on CPU, peak memory as compare does. Exit 0: no "
        "regression; 1: a regression; 2: bad input (unknown revision, a version that fails to import, ...).")
    p.add_argument("base", metavar="BASE", help="version A: a git revision of this project, or a checkout's path")
    p.add_argument("current", metavar="CURRENT", nargs="?", help="version B (default: the working tree)")
    g = p.add_argument_group("the grid (as in `run`)")
    g.add_argument("--engines", default=DEFAULTS["engines"], metavar="E[,E...]",
                   help=f"default {DEFAULTS['engines']}")
    g.add_argument("--batch-sizes", default=DEFAULTS["batch_sizes"], metavar="B[,B...]",
                   help=f"default {DEFAULTS['batch_sizes']}")
    g.add_argument("--datasets", default=DEFAULTS["datasets"], metavar="D[,D...]", help="default wine")
    g.add_argument("--devices", default=DEFAULTS["devices"], metavar="DEV[,DEV...]", help="default cpu")
    g.add_argument("--seeds", default=DEFAULTS["seeds"], metavar="S", help="default 0")
    g.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], metavar="K",
                   help=f"epochs per configuration and trial, the first one untimed (default {DEFAULTS['epochs']})")
    t = p.add_argument_group("trials and verdict")
    t.add_argument("--pairs", type=int, default=DEFAULTS["pairs"], metavar="N",
                   help=f"trial pairs (a fresh worker of A and one of B, taking turns; default {DEFAULTS['pairs']})")
    t.add_argument("--min-time", type=float, default=DEFAULTS["min_time"], metavar="SECONDS",
                   help="timed epochs per configuration and trial add up to at least this (the epochs are raised "
                        "once, from an untimed pilot trial of A, the same for every trial; default "
                        f"{DEFAULTS['min_time']:g})")
    t.add_argument("--blocks", type=int, default=DEFAULTS["blocks"], metavar="N",
                   help="each trial pair trains every configuration N times per version, A and B back to back in a "
                        "random order each time, and keeps each version's fastest epoch over all of them "
                        f"(default {DEFAULTS['blocks']})")
    t.add_argument("--max-slowdown", type=float, default=DEFAULT_MAX_SLOWDOWN, metavar="R",
                   help=f"regress when the interval of B/A lies above R (default {DEFAULT_MAX_SLOWDOWN})")
    t.add_argument("--confidence", type=float, default=0.95, metavar="C", help="interval level (default 0.95)")
    t.add_argument("--order-seed", type=int, default=0, metavar="S", help="seed of the trial order (default 0)")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="write ab.csv, ab.md and trials.csv into DIR")
    o.add_argument("--markdown", metavar="FILE", help="write the table as Markdown (a CI job summary)")
    p.set_defaults(handler=run)


def grid(args: argparse.Namespace) -> list[dict]:
    """Every configuration to measure, expanded and validated as `run` plans its grid."""
    from minibatch_core.sweep.sweep import SweepConfig, plan

    if isinstance(args.epochs, bool) or args.epochs < 2:
        raise MinibatchError(f"--epochs {args.epochs!r} is not valid: use an integer >= 2 (one untimed warm-up)")
    if args.pairs < 4:
        raise MinibatchError(f"--pairs {args.pairs!r} is not valid: use at least 4")
    if isinstance(args.blocks, bool) or not 1 <= args.blocks <= 100:
        raise MinibatchError(f"--blocks {args.blocks!r} is not valid: use an integer in [1, 100]")
    if not (0 <= args.min_time <= 60):
        raise MinibatchError(f"--min-time {args.min_time!r} is not valid: use seconds in [0, 60]")
    if not (args.max_slowdown > 1 and math.isfinite(args.max_slowdown)):
        raise MinibatchError(f"--max-slowdown {args.max_slowdown!r} is not valid: use a number > 1")
    if not 0.5 <= args.confidence < 1:
        raise MinibatchError(f"--confidence {args.confidence!r} is not valid: use a number in [0.5, 1)")
    sweep = SweepConfig.from_mapping({"engines": args.engines, "batch_sizes": args.batch_sizes,
                                      "datasets": args.datasets, "devices": args.devices, "seeds": args.seeds,
                                      "epochs": args.epochs, "threads": 1, "profile": False})
    return [job.config.with_(seed=seed).to_dict() for job in plan(sweep).jobs for seed in job.seeds]


def label(config: dict) -> str:
    return f"{config['engine']} {config['dataset']} {config['device']} b{config['batch_size']} s{config['seed']}"


def _ms(x: float) -> str:
    return "–" if math.isnan(x) else f"{x * 1e3:#.3g} ms"


def cells(row: ABRow) -> dict[str, str]:
    memory = ("–" if math.isnan(row.a_memory) else
              f"{row.a_memory / 1024:.0f} → {row.b_memory / 1024:.0f} KiB ({row.memory})")
    return {"configuration": row.config, "A": _ms(row.a_time_s), "B": _ms(row.b_time_s),
            "ratio": "–" if math.isnan(row.ratio) else f"{row.ratio:.3f}",
            "interval": "–" if math.isnan(row.low) else f"[{row.low:.3f}, {row.high:.3f}]",
            "verdict": row.verdict, "loss": row.loss, "memory": memory, "pairs": str(row.pairs),
            "notes": "; ".join(row.notes)}


def to_markdown(rows: list[ABRow], header: list[str], summary: str) -> str:
    lines = ["## minibatch-bench ab", "", f"**{summary}**", "", *[f"- {h}" for h in header], "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in cells(row).values()) + " |")
    return "\n".join(lines) + "\n"


def _print(rows: list[ABRow], header: list[str], summary: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=200)
    table = Table(title="minibatch-bench ab: A → B")
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*cells(row).values(), style="bold red" if row.verdict == REGRESSED else "")
    console.print("\n".join(header), style="dim")
    console.print(table)
    console.print(summary, style="bold red" if "REGRESSION" in summary else "bold green")


def _write_out(folder: Path, rows: list[ABRow], trials: list[Trial], markdown: str) -> None:
    import pandas as pd

    if folder.exists() and not folder.is_dir():
        raise MinibatchError(f"--out {folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{**{k: v for k, v in vars(r).items() if k != "notes"}, "notes": "; ".join(r.notes)}
                          for r in rows])
    atomic_write_text(folder / "ab.csv", frame.to_csv(index=False))
    # a sequence (losses, turn and epoch times) is one cell of its numbers, space-separated, exactly as repr'd
    cells = [{k: " ".join(map(repr, v)) if isinstance(v, tuple) else v for k, v in vars(t).items()} for t in trials]
    atomic_write_text(folder / "trials.csv", pd.DataFrame(cells).to_csv(index=False))
    atomic_write_text(folder / "ab.md", markdown)


def run(args: argparse.Namespace) -> int:
    from minibatch_core.running.ab_runner import calibrated, check_imports, prepared, run_trial, run_trials

    configs = grid(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minibatch-ab-") as tmp:
        work = Path(tmp)
        with prepared("A", args.base, work) as a, prepared("B", args.current, work) as b:
            for version in (a, b):
                check_imports(version, work)
            print(f"ab: {args.pairs} interleaved trial pairs x {len(configs)} configuration(s); A = {a.spec}, "
                  f"B = {b.spec}; an untimed pilot trial of A sets the epochs", file=sys.stderr, flush=True)
            configs = calibrated(configs, run_trial(a, configs, work), args.min_time, args.blocks)
            raw = run_trials({"A": a, "B": b}, configs, args.pairs, args.order_seed, work,
                             progress=lambda m: print(f"ab: {m}", file=sys.stderr, flush=True), blocks=args.blocks)
            specs = (a.spec, b.spec)
    trials = [Trial(version, pair, label(config), float(res["time_s"]), tuple(res["losses"]),
                    float(res["peak_memory_bytes"] if res["peak_memory_bytes"] is not None else math.nan),
                    float(res["median_time_s"]), int(res["timed_epochs"]), tuple(res["turn_times_s"]),
                    tuple(res["epoch_times_s"]))
              for pair, version, out in raw for config, res in zip(configs, out["results"], strict=True)]
    exact = {label(c): str(c["device"]).startswith("cpu") for c in configs}
    rows = judge(trials, max_slowdown=args.max_slowdown, confidence=args.confidence, exact_loss=exact)
    regressed = [r for r in rows if r.verdict == REGRESSED]
    summary = (f"REGRESSION in {len(regressed)} of {len(rows)} configuration(s)" if regressed else
               f"no regression ({len(rows)} configuration(s))") + f"; {time.perf_counter() - start:.0f} s"
    header = [f"A: {specs[0]}", f"B: {specs[1]}",
              f"{args.pairs} trial pairs, each a fresh worker per version, one thread, taking turns in a random order "
              f"(seed {args.order_seed}); a trial's figure is its fastest timed epoch, over {args.blocks} turn(s) of "
              f"{', '.join(str(c['epochs'] - 1) for c in configs)} timed epochs (at least {args.min_time:g} s per "
              "configuration); "
              f"speed regresses when the {args.confidence:.0%} bootstrap interval of the median per-pair ratio "
              f"B/A lies above {args.max_slowdown:g}; loss curves bit for bit on CPU"]
    markdown = to_markdown(rows, header, summary)
    _print(rows, header, summary)
    if args.out:
        _write_out(Path(args.out), rows, trials, markdown)
    if args.markdown:
        atomic_write_text(args.markdown, markdown)
    return EXIT_REGRESSED if regressed else 0
