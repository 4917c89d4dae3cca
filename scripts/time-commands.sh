#!/usr/bin/env bash
# How long the commands a new user types take (docs/timings.md): each timed REPEATS times (default 3),
# median wall-clock seconds, with the load average before and after, as a Markdown table.
#
#   bash scripts/time-commands.sh            # --help, train, a data-file error, the default run
#   SKIP_RUN=1 bash scripts/time-commands.sh # without the default run (the slowest)
#
# PYTHON picks the interpreter. Runs from the repository root, so it times this checkout's code.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
REPEATS=${REPEATS:-3}
export MPLBACKEND=Agg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'a,b,t\n1,2,0\n3,x,1\n' > "$work/broken.csv"

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
time_one() {  # label, command...: prints a table row
  local label=$1; shift
  local samples=()
  for _ in $(seq "$REPEATS"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    samples+=("$(echo "$t1 - $t0" | bc)")
  done
  printf '| `%s` | %.2f s | %s |\n' "$label" "$(printf '%s\n' "${samples[@]}" | median)" \
    "$(printf '%.2f ' "${samples[@]}")"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(getconf _NPROCESSORS_ONLN) cores"
echo
echo "| command | median | every repeat |"
echo "|---|---|---|"
time_one "minibatch-bench --help" "$PY" -m minibatch_core --help
time_one "minibatch-bench train" "$PY" -m minibatch_core train
time_one "minibatch-bench train --dataset broken.csv (error)" \
  "$PY" -m minibatch_core train --dataset "$work/broken.csv" --target t
if [ -z "${SKIP_RUN:-}" ]; then
  n=0
  run_default() { n=$((n + 1)); "$PY" -m minibatch_core run --quiet --out "$work/run$n-$RANDOM"; }
  time_one "minibatch-bench run" run_default
fi
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
