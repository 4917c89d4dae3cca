"""``minibatch-bench compare BASELINE CURRENT``: verdicts per configuration; exit 1 on a regression.

Two kinds of input pairs: wall-time results (results folders or pytest-benchmark JSON: speed, loss,
memory) and instruction counts (two ``minibatch-bench count`` folders: instruction growth). Mixing
the kinds is refused."""

from __future__ import annotations

import argparse

from minibatch_core.analysis.compare import compare
from minibatch_core.analysis.compare_instructions import compare_counts
from minibatch_core.analysis.compare_options import DEFAULT_MAX_GROWTH, LOSS_MODES, CompareOptions, InstructionOptions
from minibatch_core.analysis.gate_policy import confirmed
from minibatch_core.analysis.result_sets import load_results
from minibatch_core.commands import SUMMARIES
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_csv, atomic_write_text, file_problem
from minibatch_core.presentation.compare_render import confirmation_markdown, print_comparison, to_markdown
from minibatch_core.records import instructions

EXIT_REGRESSED = 1


def add_parser(sub) -> None:
    d = CompareOptions()
    p = sub.add_parser(
        "compare",
        help=SUMMARIES["compare"],
        description="Compare two result sets configuration by configuration (matched on engine, dataset, "
        "device, batch size, seeds and epochs, plus lr/optimizer/hidden when both record them) for speed, "
        "convergence and memory. Each side is a results folder (runs.csv, env.json, calibration.json) or a "
        "pytest-benchmark JSON. Two `minibatch-bench count` folders (instructions.csv) are compared on "
        "instruction growth instead (--max-instruction-growth); a count folder against wall-time results is "
        "refused. Exit 0: nothing regressed; 1: something regressed; 2: bad input.",
    )
    p.add_argument("baseline", metavar="BASELINE", help="results folder, pytest-benchmark JSON or count folder")
    p.add_argument("current", metavar="CURRENT", help="results folder, pytest-benchmark JSON or count folder")
    g = p.add_argument_group("speed")
    g.add_argument("--max-slowdown", type=float, default=d.max_slowdown, metavar="R",
                   help="regress when the bootstrap interval of current/baseline median epoch time lies "
                        f"entirely above R (default {d.max_slowdown}); a configuration measured above the "
                        "machine's core count (runs.csv load_1m) is 'not judged (contended ...)' instead")
    g.add_argument("--normalize", default=d.normalize, metavar="MODE",
                   help="none (seconds; same machine only), calibration (divide by each side's calibration "
                        "workload: across machines) or engine:NAME, e.g. engine:reference (each engine as a "
                        "ratio to NAME in the same run; NAME's own speed is then not judged) (default none)")
    g.add_argument("--confidence", type=float, default=d.confidence,
                   help=f"confidence of the bootstrap interval (default {d.confidence})")
    g.add_argument("--bootstrap", type=int, default=d.bootstrap, metavar="N",
                   help=f"bootstrap resamples (default {d.bootstrap}; seeded, so verdicts are reproducible)")
    g.add_argument("--confirm-with", metavar="CURRENT2",
                   help="a second measurement of the current code: a configuration regresses only when it "
                        "regresses against the baseline in both (a burst of load on a shared machine is not "
                        "a regression; a real one shows up twice)")
    g = p.add_argument_group("instructions (two count folders)")
    g.add_argument("--max-instruction-growth", type=float, default=DEFAULT_MAX_GROWTH, metavar="R",
                   help="regress when current/baseline instructions exceed R; improved below 1/R "
                        f"(default {DEFAULT_MAX_GROWTH}: +2%%)")
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


def input_kind(path: str) -> str:
    return "count folder" if instructions.is_count_folder(path) else "wall-time results"


def check_same_kind(*paths: str) -> str:
    """Both sides count folders, or neither: an instruction count and a wall time are not comparable."""
    kinds = [input_kind(p) for p in paths]
    if len(set(kinds)) > 1:
        what = {"count folder": "a count folder (instructions.csv)", "wall-time results": "not a count folder"}
        described = ", ".join(f"{p} is {what[k]}" for p, k in zip(paths, kinds, strict=True))
        raise MinibatchError(f"mixed inputs: {described}; compare two count folders, or two wall-time results "
                             "(results folders / pytest-benchmark JSON)")
    return kinds[0]


def _check_outputs(args: argparse.Namespace) -> None:
    for flag, path in (("--markdown", args.markdown), ("--csv", args.csv)):
        problem = path and file_problem(path)
        if problem:
            raise MinibatchError(f"{flag} {path!r} cannot be written: {problem}")


def _write_outputs(args: argparse.Namespace, markdown: str, frame) -> None:
    try:
        if args.markdown:
            atomic_write_text(args.markdown, markdown)
        if args.csv:
            atomic_write_csv(args.csv, frame)
    except OSError as err:
        raise MinibatchError(f"{err.filename or 'output'}: cannot be written ({err.strerror})") from None


def run(args: argparse.Namespace) -> int:
    """Exit 1 means one thing only, a regression: every other failure is a MinibatchError (exit 2),
    and the output files are checked before anything is judged."""
    _check_outputs(args)
    paths = [args.baseline, args.current] + ([args.confirm_with] if args.confirm_with else [])
    if check_same_kind(*paths) == "count folder":
        if args.confirm_with:
            raise MinibatchError("--confirm-with is for wall time: instruction counts repeat exactly enough "
                                 "to need no second measurement")
        return run_instructions(args)
    options = options_from_args(args)
    baseline = load_results(args.baseline)
    result = compare(baseline, load_results(args.current), options)
    print_comparison(result)
    markdown = to_markdown(result)
    regressed = result.regressed
    if args.confirm_with:
        second = compare(baseline, load_results(args.confirm_with), options)
        print_comparison(second)
        both = confirmed(result, second)
        markdown = confirmation_markdown(result, second, both)
        regressed = bool(both)
        print(f"confirmation: {len(both)} configuration(s) regressed in both measurements"
              + ("" if both or not result.regressed else " (the first measurement's alarm was not repeated: "
                 "treated as load noise)"))
    _write_outputs(args, markdown, result.to_frame())
    return EXIT_REGRESSED if regressed else 0


def run_instructions(args: argparse.Namespace) -> int:
    options = InstructionOptions(max_growth=args.max_instruction_growth)
    result = compare_counts(instructions.load(args.baseline), instructions.load(args.current), options)
    print_comparison(result)
    _write_outputs(args, to_markdown(result), result.to_frame())
    return EXIT_REGRESSED if result.regressed else 0
