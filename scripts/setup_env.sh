#!/usr/bin/env bash
# Create .venv (if missing) and install fedrec_nb with its dev tools and the Flower extra into it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch: on a CPU-only Linux machine a plain install pulls a CUDA build of several GB; TORCH_CPU=1 takes PyTorch's CPU build
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ "${TORCH_CPU:-0}" = 1 ]; then
    .venv/bin/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  elif [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "note: no torch in .venv and no NVIDIA GPU: pip is about to install a CUDA build of torch (several GB)." >&2
    echo "      For the CPU build, stop and run: TORCH_CPU=1 bash $0  (or install torch from https://download.pytorch.org/whl/cpu first)" >&2
  fi
fi
.venv/bin/python -m pip install -q -e ".[dev,flower]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
.venv/bin/python -m pip check
