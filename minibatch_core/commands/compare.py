"""``minibatch-bench compare BASELINE CURRENT``: verdicts per configuration; exit 1 on a regression."""

from __future__ import annotations

import argparse

from minibatch_core.analysis.compare import LOSS_MODES, CompareOptions, compare, load_results
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_csv, atomic_write_text, file_problem
from minibatch_core.presentation.compare_render import print_comparison, to_markdown

EXIT_REGRESSED = 1


def add_parser(sub) -> None:
    d = CompareOptions()
    p = sub.add_parser(
        "compare",
        help="compare a current result set with a baseline; exit 1 on a regression",
        description="Compare two result sets configuration by configuration (matched on engine, dataset, "
        "device, batch size, seeds and epochs, plus lr/optimizer/hidden when both record them) for speed, "
        "convergence and memory. Each side is a results folder (runs.csv, env.json, calibration.json) or a "
        "pytest-benchmark JSON. Exit 0: nothing regressed; 1: something regressed; 2: bad input.",
    )
    p.add_argument("baseline", metavar="BASELINE", help="results folder or pytest-benchmark JSON")
    p.add_argument("current", metavar="CURRENT", help="results folder or pytest-benchmark JSON")
    g = p.add_argument_group("speed")
    g.add_argument("--max-slowdown", type=float, default=d.max_slowdown, metavar="R",
                   help="regress when current/baseline median epoch time exceeds R and its bootstrap "
                        f"interval lies above 1 (default {d.max_slowdown})")
    g.add_argument("--normalize", default=d.normalize, metavar="MODE",
                   help="none (seconds; same machine only), calibration (divide by each side's calibration "
                        "workload: across machines) or engine:NAME, e.g. engine:reference (each engine as a "
                        "ratio to NAME in the same run; NAME's own speed is then not judged) (default none)")
    g.add_argument("--confidence", type=float, default=d.confidence,
                   help=f"confidence of the bootstrap interval (default {d.confidence})")
    g.add_argument("--bootstrap", type=int, default=d.bootstrap, metavar="N",
                   help=f"bootstrap resamples (default {d.bootstrap}; seeded, so verdicts are reproducible)")
    g = p.add_argument_group("convergence")
    g.add_argument("--loss-mode", choices=LOSS_MODES, default=d.loss_mode,
                   help="exact: any change in any epoch loss of any seed regresses (CPU, same torch version, "
                        "cpu_capability and CPU vendor; otherwise it falls back to tolerance and says so); "
                        "tolerance: only --loss-rtol (default tolerance)")
    g.add_argument("--loss-rtol", type=float, default=d.loss_rtol,
                   help="regress when the final epoch loss (mean across seeds) is worse than the baseline's "
                        f"by more than this fraction (default {d.loss_rtol})")
    g = p.add_argument_group("memory")
    g.add_argument("--max-memory-growth", type=float, default=d.max_memory_growth, metavar="R",
                   help="regress when peak memory grows by more than this factor "
                        f"(default {d.max_memory_growth})")
    g.add_argument("--memory-floor-bytes", type=int, default=d.memory_floor_bytes, metavar="B",
                   help="...and by more than B bytes: CPU peaks are RSS deltas that move in pages "
                        f"(default {d.memory_floor_bytes} = 1 MiB)")
    g = p.add_argument_group("output")
    g.add_argument("--markdown", metavar="FILE",
                   help="also write the table as Markdown (e.g. for a CI job summary)")
    g.add_argument("--csv", metavar="FILE",
                   help="also write every verdict and figure as CSV, one row per configuration")
    p.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace) -> CompareOptions:
    return CompareOptions(
        max_slowdown=args.max_slowdown, normalize=args.normalize, loss_mode=args.loss_mode,
        loss_rtol=args.loss_rtol, max_memory_growth=args.max_memory_growth,
        memory_floor_bytes=args.memory_floor_bytes, confidence=args.confidence, bootstrap=args.bootstrap,
    )


def run(args: argparse.Namespace) -> int:
    """Exit 1 means one thing only, a regression: every other failure is a MinibatchError (exit 2),
    and the output files are checked before anything is judged."""
    options = options_from_args(args)
    for flag, path in (("--markdown", args.markdown), ("--csv", args.csv)):
        problem = path and file_problem(path)
        if problem:
            raise MinibatchError(f"{flag} {path!r} cannot be written: {problem}")
    baseline = load_results(args.baseline)
    current = load_results(args.current)
    result = compare(baseline, current, options)
    print_comparison(result)
    try:
        if args.markdown:
            atomic_write_text(args.markdown, to_markdown(result))
        if args.csv:
            atomic_write_csv(args.csv, result.to_frame())
    except OSError as err:
        raise MinibatchError(f"{err.filename or 'output'}: cannot be written ({err.strerror})") from None
    return EXIT_REGRESSED if result.regressed else 0
