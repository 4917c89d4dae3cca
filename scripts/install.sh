#!/usr/bin/env bash
# Installs minibatch-bench into the active Python environment, torch first.
#
#   bash scripts/install.sh          # the package and what it needs to run
#   bash scripts/install.sh --test   # ... plus pytest, pytest-benchmark and ruff
#
# Why torch is handled here rather than left to pip: an open-ended `torch` requirement with no torch
# installed makes pip fetch the newest CUDA build (several GB) even on a machine with no GPU. So:
#   1. an already installed torch is always kept;
#   2. otherwise, on a machine without an NVIDIA GPU, only a CPU build is accepted (`torch==V+cpu`,
#      from local wheels first, then the PyTorch CPU index);
#   3. with an NVIDIA GPU, the regular build from the package index.
# MINIBATCH_TORCH_VERSION picks the version (default 2.13.0); PYTHON picks the interpreter.
set -euo pipefail

PY=${PYTHON:-python3}
TORCH_VERSION=${MINIBATCH_TORCH_VERSION:-2.13.0}
EXTRAS=""
for arg in "$@"; do
  case "$arg" in
    --test) EXTRAS="[test]" ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (accepted: --test, --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if "$PY" -c "import torch" 2>/dev/null; then
  echo "install.sh: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "install.sh: NVIDIA GPU found; installing torch==$TORCH_VERSION (CUDA build)"
  pip_install "torch==$TORCH_VERSION"
else
  echo "install.sh: no GPU; installing the CPU build torch==$TORCH_VERSION+cpu"
  # Local wheels (pip's find-links) first: no network, seconds. Then the PyTorch CPU index.
  pip_install --no-index "torch==$TORCH_VERSION+cpu" 2>/dev/null \
    || pip_install "torch==$TORCH_VERSION+cpu" --index-url https://download.pytorch.org/whl/cpu
fi

# torch is now present, so the package's `torch>=2.1` requirement installs nothing more.
pip_install -e ".$EXTRAS"
command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
echo "install.sh: done ($("$PY" -c 'import torch, minibatch_core; print("torch", torch.__version__, "| minibatch-bench", minibatch_core.__version__)'))"
