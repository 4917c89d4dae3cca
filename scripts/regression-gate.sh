#!/usr/bin/env bash
# The regression gate (README, "Regression checks"): the quick sweep, then `compare` against the committed
# baseline in the modes that hold across machines. Used by .ci/run and .github/workflows/bench.yml.
#
#   bash scripts/regression-gate.sh [MARKDOWN_FILE]
#
# Exit 0: nothing regressed; 1: a regression; 2: bad input.
# A speed alarm on a shared machine can be a burst of someone else's load rather than the code: when the
# first sweep regresses, the sweep is measured once more, and the gate fails only for configurations that
# regress in both sweeps. A real regression (a slower loop, a changed loss curve, more memory) shows up
# both times, in the same configuration.
# MINIBATCH_MAX_SLOWDOWN overrides the tolerated normalized slowdown, MINIBATCH_BASELINE the baseline folder
# (default results/baseline); PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
MAX_SLOWDOWN=${MINIBATCH_MAX_SLOWDOWN:-2.0}
BASELINE=${MINIBATCH_BASELINE:-results/baseline}
# One torch thread, as `baseline update` records the baseline: this model's ops gain nothing from a
# second thread, and on a shared 2-core machine each parallel region waits for a descheduled thread.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
MARKDOWN=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

attempt() {
  # (set -e does not apply inside a function called from `||`: each failure returns explicitly)
  "$PY" -m minibatch_core run --config bench/quick-sweep.toml --out "$work/sweep$1" --quiet >/dev/null || return 2
  "$PY" -m minibatch_core compare "$BASELINE" "$work/sweep$1" \
    --loss-mode exact --normalize calibration --max-slowdown "$MAX_SLOWDOWN" \
    --markdown "$work/compare$1.md" --csv "$work/compare$1.csv"
}

# configurations that regressed in both sweeps' verdict CSVs (exit 1 when there is one)
cat > "$work/both.py" <<'PYEOF'
import sys

import pandas as pd

keys = ["engine", "dataset", "device", "batch_size", "seeds", "epochs"]
flagged = [set(map(tuple, f.loc[f["status"] == "regressed", keys].to_numpy()))
           for f in (pd.read_csv(p, dtype=str, keep_default_na=False) for p in sys.argv[1:])]
both = sorted(flagged[0] & flagged[1])
for row in both:
    print("- " + " | ".join(row))
if not both:
    print("regression-gate: no configuration regressed in both sweeps: treated as load noise", file=sys.stderr)
sys.exit(1 if both else 0)
PYEOF

code=0
attempt 1 || code=$?
cp "$work/compare1.md" "$work/compare.md" 2>/dev/null || true
if [ "$code" -eq 1 ]; then
  echo "regression-gate: the first sweep regressed; measuring once more to rule out a burst of load"
  code=0
  attempt 2 || code=$?
  if [ "$code" -eq 1 ]; then
    code=0
    "$PY" "$work/both.py" "$work/compare1.csv" "$work/compare2.csv" > "$work/both.txt" || code=$?
  fi
  { echo "### First sweep (flagged)"; cat "$work/compare1.md"; echo
    echo "### Second sweep"; cat "$work/compare2.md" 2>/dev/null; echo
    if [ -s "$work/both.txt" ]; then echo "### Regressed in both sweeps (the gate fails on these)"; cat "$work/both.txt"; fi
  } > "$work/compare.md"
fi
if [ -n "$MARKDOWN" ] && [ -f "$work/compare.md" ]; then
  cp "$work/compare.md" "$MARKDOWN.tmp" && mv -f "$MARKDOWN.tmp" "$MARKDOWN"
fi
exit "$code"
