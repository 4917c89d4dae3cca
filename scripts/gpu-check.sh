#!/usr/bin/env bash
# Prove every CUDA path on a machine with an NVIDIA GPU, in about five minutes, with a verdict per check
# (docs/gpu.md lists them; the logic is scripts/gpu_check.py, lint-checked like the package).
#
#   bash scripts/gpu-check.sh            # every check
#   bash scripts/gpu-check.sh --quick    # skip the pytest suites (the CUDA tests and bench cases)
#
# Without a GPU it says so in one line and exits 0. Exit 0: every check passed; 1: a check failed.
# PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
# the checkout's package, installed or not (python puts scripts/, not the root, on sys.path)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
