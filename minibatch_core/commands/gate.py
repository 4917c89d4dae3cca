"""``minibatch-bench gate``: the CI regression gate (what scripts/regression-gate.sh and .ci/run run).

1. Instructions (the gate): count again every configuration of the committed instruction baseline, under
   valgrind, and fail when one grows by more than --max-instruction-growth.
2. Wall time, ``--wall-time ab`` (the default): ``minibatch-bench ab`` of the baseline revision against the
   working tree, interleaved trials on this machine (a stored baseline measured at another time under
   another load is the wrong experiment on a shared machine). A regression there fails the gate; where
   valgrind cannot count (CUDA, ddp) it is the only verdict. The baseline revision: --ab-base, else the
   first line of results/ab-base.txt (committed), else the merge base with main. When that revision is not
   in the clone (a shallow CI clone) or cannot be measured, the gate says so in one line and falls back
   to the stored-baseline sweep as information (``inform``). ``inform``/``gate``: the quick sweep against
   the committed wall-time baseline, re-measured once on an alarm (analysis.gate_policy).

Exit 0: nothing regressed; 1: a regression; 2: bad input (a missing baseline, no valgrind, ...).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from minibatch_core.analysis.compare import compare
from minibatch_core.analysis.compare_instructions import compare_counts
from minibatch_core.analysis.compare_options import DEFAULT_MAX_GROWTH, CompareOptions, InstructionOptions
from minibatch_core.analysis.gate_policy import PARTS_ALL, PARTS_EXACT, WALL_TIME_MODES, confirmed, failing_rows
from minibatch_core.analysis.result_sets import load_results
from minibatch_core.commands import SUMMARIES
from minibatch_core.errors import MinibatchError
from minibatch_core.fsio import atomic_write_text
from minibatch_core.presentation import compare_render
from minibatch_core.records import instructions

EXIT_REGRESSED = 1
AB_BASE_FILE = Path("results/ab-base.txt")  # committed: the revision the gate's ab measures against
# The gate's wall-time threshold (calibration-normalized): above the largest ratio measured between
# back-to-back quick sweeps of identical code on a shared 2-core machine, 312.6 (docs/gates.md): the
# calibration is measured once per sweep, so load that changes during a sweep is not cancelled by it.
GATE_MAX_SLOWDOWN = 350.0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "gate",
        help=SUMMARIES["gate"],
        description="Count the instructions of every configuration in the instruction baseline again (valgrind) "
        "and fail when one grows by more than --max-instruction-growth; then (--wall-time ab, the default) run "
        "`minibatch-bench ab` of the baseline revision (--ab-base, results/ab-base.txt, or the merge base with "
        "main) against the working tree and fail on its regressions; where that revision is missing (a shallow "
        "clone) the stored-baseline sweep is shown as information instead. --wall-time inform|gate: the quick "
        "sweep vs --wall-baseline (re-measured once on an alarm). Exit 0: nothing regressed; 1: a regression; "
        "2: bad input.",
    )
    p.add_argument("--instructions-baseline", default="results/baseline-instructions", metavar="DIR",
                   help="count folder to gate on (default results/baseline-instructions); 'none' skips the count")
    p.add_argument("--max-instruction-growth", type=float, default=DEFAULT_MAX_GROWTH, metavar="R",
                   help=f"regress when instructions grow by more than R (default {DEFAULT_MAX_GROWTH})")
    p.add_argument("--wall-baseline", default="results/baseline", metavar="DIR",
                   help="results folder of the quick sweep (default results/baseline)")
    p.add_argument("--wall-time", choices=WALL_TIME_MODES, default="ab",
                   help="ab (default): `minibatch-bench ab` of the baseline revision against the working tree "
                   "(a regression fails); inform: the quick sweep vs --wall-baseline, only a changed loss curve "
                   "fails; gate: speed, loss and memory all fail (confirmed by a second sweep); skip: neither")
    p.add_argument("--ab-base", metavar="REV",
                   help=f"baseline revision for ab (default: the first line of {AB_BASE_FILE}, else the merge base "
                   "with main)")
    p.add_argument("--ab-args", default="", metavar="ARGS",
                   help="extra options for ab, e.g. \"--devices cuda --pairs 20\" (default: ab's default grid)")
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
    compare_render.print_comparison(result)
    return result.regressed, compare_render.to_markdown(result)


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


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def ab_base(given: str | None) -> tuple[str | None, str]:
    """(revision, where it came from), or (None, why there is none) in one line."""
    if given:
        rev, source = given, "--ab-base"
    elif AB_BASE_FILE.is_file():
        lines = [ln.split("#")[0].strip() for ln in AB_BASE_FILE.read_text(encoding="utf-8").splitlines()]
        rev, source = next((ln for ln in lines if ln), None), str(AB_BASE_FILE)
        if rev is None:
            return None, f"{AB_BASE_FILE} names no revision"
    else:
        rev = next((b for ref in ("origin/main", "main", "origin/master", "master")
                    if (b := _git("merge-base", "HEAD", ref))), None)
        source = "the merge base with main"
        if rev is None:
            return None, ("no baseline revision (no --ab-base, no results/ab-base.txt, no main branch to "
                          "merge-base with)")
    if _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}") is None:
        shallow = _git("rev-parse", "--is-shallow-repository") == "true"
        return None, (f"the baseline revision {rev} ({source}) is not in this clone"
                      + (" (a shallow clone: `git fetch --unshallow` brings it)" if shallow else ""))
    return rev, source


def _run_ab(rev: str, markdown: Path, out: Path, extra: list[str]) -> int:
    # a process of its own: ab's trials and its exit code, exactly as a user's `minibatch-bench ab` runs
    return subprocess.run([sys.executable, "-m", "minibatch_core", "ab", rev, "--markdown", str(markdown),
                           "--out", str(out), *extra]).returncode


def ab_check(args: argparse.Namespace, work: Path) -> tuple[bool, str]:
    """ab of the baseline revision against the working tree; the stored-baseline sweep as information
    where no baseline revision can be measured."""
    rev, source = ab_base(args.ab_base)
    why = source
    if rev is not None:
        print(f"gate: ab {rev} ({source}) against the working tree...", file=sys.stderr, flush=True)
        md = work / "ab.md"
        code = _run_ab(rev, md, work / "ab", args.ab_args.split())
        if code in (0, EXIT_REGRESSED) and md.is_file():
            return code == EXIT_REGRESSED, md.read_text(encoding="utf-8")
        why = f"ab against {rev} could not measure (exit {code}; its message above)"
    print(f"gate: no A/B verdict: {why}; falling back to the stored-baseline sweep as information",
          file=sys.stderr, flush=True)
    load_results(args.wall_baseline)
    regressed, md = wall_time_check(argparse.Namespace(**{**vars(args), "wall_time": "inform"}), work)
    return regressed, f"_No A/B verdict: {why}. Fallback: the stored-baseline sweep, as information._\n\n{md}"


def run(args: argparse.Namespace) -> int:
    if args.instructions_baseline == "none" and args.wall_time == "skip":
        raise MinibatchError("nothing to check: --instructions-baseline none and --wall-time skip")
    if args.instructions_baseline != "none":
        instructions.load(args.instructions_baseline)  # a missing or damaged baseline: exit 2 before any work
    if args.wall_time != "skip":  # ab's fallback is the stored-baseline sweep: its baseline must load too
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
        if args.wall_time == "ab":
            regressed, md = ab_check(args, work)
            sections.append(md)
            if regressed:
                failed.append("A/B wall time against the baseline revision (speed, loss or memory)")
        elif args.wall_time != "skip":
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
