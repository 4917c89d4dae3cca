#!/usr/bin/env bash
# The regression gate (docs/gates.md): `minibatch-bench gate`, whose policy lives in Python
# (minibatch_core/commands/gate.py, minibatch_core/analysis/gate_policy.py, tested in tests/test_gate.py).
# Used by .ci/run and .github/workflows/bench.yml.
#
#   bash scripts/regression-gate.sh [MARKDOWN_FILE]
#
# 1. Instructions (the gate): every configuration of results/baseline-instructions/ counted again under
#    valgrind; exit 1 when one grows by more than MINIBATCH_MAX_INSTRUCTION_GROWTH (default 1.02).
# 2. Wall time: MINIBATCH_WALL_TIME=ab (default): `minibatch-bench ab` of the baseline revision
#    (MINIBATCH_AB_BASE, else results/ab-base.txt, else the merge base with main) against the working tree,
#    interleaved trials; a regression fails. Baseline revision not in the clone (shallow): one line, then the
#    stored-baseline sweep as information. inform: the quick sweep vs results/baseline, only a changed loss
#    curve fails; gate: speed, loss and memory fail (re-measured once on an alarm); skip: neither.
# Exit 0: nothing regressed; 1: a regression; 2: bad input.
# MINIBATCH_MAX_SLOWDOWN (calibration-normalized wall-time threshold), MINIBATCH_BASELINE (wall-time
# baseline, default results/baseline), MINIBATCH_INSTRUCTIONS_BASELINE (default
# results/baseline-instructions) override the defaults; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# One torch thread, as the baselines were recorded: this model's ops gain nothing from a second thread,
# and on a shared 2-core machine each parallel region waits for a descheduled thread.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
args=(--instructions-baseline "${MINIBATCH_INSTRUCTIONS_BASELINE:-results/baseline-instructions}"
      --wall-baseline "${MINIBATCH_BASELINE:-results/baseline}"
      --wall-time "${MINIBATCH_WALL_TIME:-ab}")
[ -n "${MINIBATCH_AB_BASE:-}" ] && args+=(--ab-base "$MINIBATCH_AB_BASE")
[ -n "${MINIBATCH_MAX_SLOWDOWN:-}" ] && args+=(--max-slowdown "$MINIBATCH_MAX_SLOWDOWN")
[ -n "${MINIBATCH_MAX_INSTRUCTION_GROWTH:-}" ] && args+=(--max-instruction-growth "$MINIBATCH_MAX_INSTRUCTION_GROWTH")
[ -n "${1:-}" ] && args+=(--markdown "$1")
exec "$PY" -m minibatch_core gate "${args[@]}"
