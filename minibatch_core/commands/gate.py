"""``minibatch-bench gate``: the CI regression gate (what scripts/regression-gate.sh and .ci/run run).

1. Instructions (the gate): count again every configuration of the committed instruction baseline, under
   valgrind, and fail when one grows by more than --max-instruction-growth.
2. Wall time: the quick sweep against the committed wall-time baseline, re-measured once when something
   fails, failing only for configurations that fail in both sweeps (analysis.gate_policy). With
   ``--wall-time inform`` (the default) only the loss curve, bit-exact on CPU, can fail the gate: speed and
   memory verdicts are shown as information, because on a shared machine identical code measures up to
   the slowdowns recorded in docs/gates.md.

Exit 0: nothing regressed; 1: a regression; 2: bad input (a missing baseline, no valgrind, ...).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from minibatch_core.analysis.compare import CompareOptions, compare, load_results
from minibatch_core.analysis.compare_instructions import DEFAULT_MAX_GROWTH, InstructionOptions, compare_counts
from minibatch_core.analysis.gate_policy import PARTS_ALL, PARTS_EXACT, WALL_TIME_MODES, confirmed, failing_rows
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_text
from minibatch_core.presentation import compare_instructions_render as irender
from minibatch_core.presentation import compare_render
from minibatch_core.records import instructions

EXIT_REGRESSED = 1
# The gate's wall-time threshold (calibration-normalized): above the largest ratio measured between
# back-to-back quick sweeps of identical code on a shared 2-core machine, 312.6 (docs/gates.md): the
# calibration is measured once per sweep, so load that changes during a sweep is not cancelled by it.
GATE_MAX_SLOWDOWN = 350.0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "gate",
        help="the CI regression gate: instruction counts vs a committed baseline, plus wall time",
        description="Count the instructions of every configuration in the instruction baseline again (valgrind) "
        "and fail when one grows by more than --max-instruction-growth; then run the quick sweep and compare its "
        "wall time, loss curves and memory with the wall-time baseline (re-measured once on an alarm; only "
        "configurations failing in both sweeps count). With --wall-time inform (default) only a changed loss "
        "curve fails on the wall-time side; speed and memory are information. Exit 0: nothing regressed; 1: a "
        "regression; 2: bad input.",
    )
    p.add_argument("--instructions-baseline", default="results/baseline-instructions", metavar="DIR",
                   help="count folder to gate on (default results/baseline-instructions); 'none' skips the count")
    p.add_argument("--max-instruction-growth", type=float, default=DEFAULT_MAX_GROWTH, metavar="R",
                   help=f"regress when instructions grow by more than R (default {DEFAULT_MAX_GROWTH})")
    p.add_argument("--wall-baseline", default="results/baseline", metavar="DIR",
                   help="results folder of the quick sweep (default results/baseline)")
    p.add_argument("--wall-time", choices=WALL_TIME_MODES, default="inform",
                   help="inform (default): speed and memory shown, only a changed loss curve fails; gate: speed, "
                   "loss and memory all fail (confirmed by a second sweep); skip: no sweep")
    p.add_argument("--sweep-config", default="bench/quick-sweep.toml", metavar="FILE",
                   help="the sweep to measure (default bench/quick-sweep.toml, what results/baseline holds)")
    p.add_argument("--max-slowdown", type=float, default=GATE_MAX_SLOWDOWN, metavar="R",
                   help=f"wall-time speed threshold, calibration-normalized (default {GATE_MAX_SLOWDOWN})")
    p.add_argument("--markdown", metavar="FILE", help="write every table as Markdown (a CI job summary)")
    p.add_argument("--keep", metavar="DIR", help="keep the counts and sweeps in DIR (default: a temporary folder)")
    p.set_defaults(handler=run)


def _sweep(config: str, out: Path) -> Path:
    # one torch thread through the environment, as `baseline update` recorded results/baseline
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "minibatch_core", "run", "--config", config, "--quiet",
                           "--out", str(out)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise MinibatchError(f"the sweep for the wall-time check failed: {(done.stderr.strip() or 'no output')[-300:]}")
    return out


def instruction_gate(args: argparse.Namespace, work: Path) -> tuple[bool, str]:
    from minibatch_core.running.counting import count_instructions

    baseline = instructions.load(args.instructions_baseline)
    options = InstructionOptions(max_growth=args.max_instruction_growth)
    print(f"gate: counting the {len(baseline.frame)} configuration(s) of {args.instructions_baseline} under "
          "valgrind...", file=sys.stderr, flush=True)
    current = instructions.write(work / "instructions", count_instructions(instructions.configs(baseline)))
    result = compare_counts(baseline, instructions.load(current.parent), options)
    irender.print_instruction_comparison(result)
    return result.regressed, irender.to_markdown(result)


def wall_time_check(args: argparse.Namespace, work: Path) -> tuple[bool, str]:
    parts = PARTS_ALL if args.wall_time == "gate" else PARTS_EXACT
    options = CompareOptions(max_slowdown=args.max_slowdown, normalize="calibration", loss_mode="exact")
    baseline = load_results(args.wall_baseline)
    print(f"gate: quick sweep ({args.sweep_config}) vs {args.wall_baseline} (wall time: {args.wall_time})...",
          file=sys.stderr, flush=True)
    first = compare(baseline, load_results(_sweep(args.sweep_config, work / "sweep1")), options)
    compare_render.print_comparison(first)
    lead = ("" if args.wall_time == "gate" else
            "_Wall time is information here: only a changed loss curve fails the gate (instruction counts gate "
            "the speed)._\n\n")
    if not failing_rows(first, parts):
        return False, lead + compare_render.to_markdown(first)
    print("gate: the first sweep failed; measuring once more to rule out a burst of load", file=sys.stderr)
    second = compare(baseline, load_results(_sweep(args.sweep_config, work / "sweep2")), options)
    compare_render.print_comparison(second)
    both = confirmed(first, second, parts)
    print(f"gate: {len(both)} configuration(s) failed in both sweeps", file=sys.stderr)
    return bool(both), lead + compare_render.confirmation_markdown(first, second, both)


def run(args: argparse.Namespace) -> int:
    if args.instructions_baseline == "none" and args.wall_time == "skip":
        raise MinibatchError("nothing to check: --instructions-baseline none and --wall-time skip")
    if args.instructions_baseline != "none":
        instructions.load(args.instructions_baseline)  # a missing or damaged baseline: exit 2 before any work
    if args.wall_time != "skip":
        CompareOptions(max_slowdown=args.max_slowdown)
        load_results(args.wall_baseline)
    with tempfile.TemporaryDirectory(prefix="minibatch-gate-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sections, failed = [], []
        if args.instructions_baseline != "none":
            regressed, md = instruction_gate(args, work)
            sections.append(md)
            if regressed:
                failed.append("instructions")
        if args.wall_time != "skip":
            regressed, md = wall_time_check(args, work)
            sections.append(md)
            if regressed:
                failed.append("wall-time check (" + ("speed, loss or memory" if args.wall_time == "gate"
                                                     else "loss curve") + ")")
    verdict = f"gate: REGRESSION in {', '.join(failed)}" if failed else "gate: no regression"
    print(verdict)
    if args.markdown:
        atomic_write_text(args.markdown, f"# minibatch-bench gate\n\n**{verdict}**\n\n" + "\n\n".join(sections))
    return EXIT_REGRESSED if failed else 0
