#!/usr/bin/env bash
# Installs minibatch-bench into the active Python environment, torch first.
#
#   bash scripts/install.sh          # the package and what it needs to run
#   bash scripts/install.sh --test   # ... plus pytest, pytest-benchmark and ruff
#
# Why torch is handled here rather than left to pip: an open-ended `torch` requirement with no torch
# installed makes pip fetch the newest CUDA build (several GB) even on a machine with no GPU. So:
#   1. an already installed torch is always kept;
#   2. otherwise, on a machine without an NVIDIA GPU, only a CPU build is accepted (`torch==V+cpu`):
#      from a local wheel where pip's configured find-links has one (torch's own dependencies then
#      come from pip's normal index), else from the PyTorch CPU index;
#   3. with an NVIDIA GPU, the regular build from the package index.
# MINIBATCH_TORCH_VERSION picks the version (default 2.13.0); PYTHON picks the interpreter.
set -euo pipefail

PY=${PYTHON:-python3}
TORCH_VERSION=${MINIBATCH_TORCH_VERSION:-2.13.0}
EXTRAS=""
for arg in "$@"; do
  case "$arg" in
    --test) EXTRAS="[test]" ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
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
  CPU_INDEX=https://download.pytorch.org/whl/cpu
  TRIED=()
  # A local wheel? Asked of pip itself (its find-links, from pip.conf or PIP_FIND_LINKS) with
  # --no-index --no-deps --dry-run: no network, nothing installed, well under a second.
  if pip_install --dry-run --no-index --no-deps "torch==$TORCH_VERSION+cpu" >/dev/null 2>&1; then
    # The local version pin (+cpu) matches only that wheel; its dependencies (filelock, sympy, ...)
    # are usually not on the local disk and come from pip's normal index: --no-index would fail on them.
    echo "install.sh: torch from the local wheel in pip's find-links, its dependencies from pip's index"
    pip_install "torch==$TORCH_VERSION+cpu" && TORCH_OK=1
    TRIED+=("the local wheel in pip's find-links with dependencies from pip's index")
  else
    echo "install.sh: no torch $TORCH_VERSION+cpu wheel in pip's find-links"
    TRIED+=("pip's find-links (no torch $TORCH_VERSION+cpu wheel there)")
  fi
  if [ -z "${TORCH_OK:-}" ]; then
    echo "install.sh: torch from the PyTorch CPU index $CPU_INDEX"
    pip_install "torch==$TORCH_VERSION+cpu" --index-url "$CPU_INDEX" --retries 2 && TORCH_OK=1
    TRIED+=("the PyTorch CPU index $CPU_INDEX")
  fi
  if [ -z "${TORCH_OK:-}" ]; then
    tried=$(printf '%s; ' "${TRIED[@]}")
    echo "install.sh: error: could not install torch==$TORCH_VERSION+cpu; tried ${tried%; } (pip's messages above)" >&2
    exit 1
  fi
fi

echo "install.sh: torch ready after ${SECONDS} s; installing minibatch-bench$EXTRAS and its requirements"
# torch is now present, so the package's `torch>=2.3` requirement installs nothing more.
pip_install -e ".$EXTRAS"
command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
echo "install.sh: done in ${SECONDS} s ($("$PY" -c 'import torch, minibatch_core; print("torch", torch.__version__, "| minibatch-bench", minibatch_core.__version__)'))"
