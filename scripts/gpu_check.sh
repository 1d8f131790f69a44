#!/usr/bin/env bash
# GPU check of the federated job and the vectorized trainer, for a machine with a CUDA GPU, PyTorch and no network.
#
# Here (with network), once:   bash scripts/gpu_check.sh --prepare [--python 3.12]
#   downloads papermill, ipykernel, fastcore and scikit-surprise (+ their needs) as wheels for that Python into
#   wheelhouse/ and copies the MovieLens zips into wheelhouse/data/ (wheelhouse/ is git-ignored: carry it along).
# On the GPU machine:          bash scripts/gpu_check.sh [--quick]
#   installs those wheels (no index), makes fedrec_nb importable, then
#   1. runs nbs/06_federated.ipynb through papermill: dataset=synthetic-ml-1m (real ML-1M users/movies, 1,000,209
#      generated ratings), device=cuda, 6,040 one-user clients, engine=vectorized;
#   2. runs benchmarks/bench_vectorized.py on cuda: 6,040 one-user clients (ML-1M shape), 10 IID clients (ML-1M shape),
#      943 one-user clients (real ML-100K);
#   3. prints the figures (seconds per round, samples/s, peak GPU memory) next to their targets.
# Outputs go to $OUT (when set, e.g. by a remote runner) or runs/gpu_check. --quick: fewer rounds, smaller
# sequential samples, shorter time limits, and only the benchmarks of the newer paths (about 5-6 minutes in all).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
QUICK=0; PREPARE=0; TARGET_PY=3.12
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --prepare) PREPARE=1 ;;
    --python) TARGET_PY="$2"; shift ;;
    -h|--help) sed -n 2,17p "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --quick, --prepare [--python X.Y])" >&2; exit 2 ;;
  esac
  shift
done

if [ $PREPARE = 1 ]; then
  PLAT=""
  for p in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 \
           manylinux_2_17 manylinux2014 manylinux2010 manylinux_2_12 manylinux1 manylinux_2_5; do PLAT="$PLAT --platform ${p}_x86_64"; done
  PIP=${PIP:-.venv/bin/python -m pip}
  mkdir -p wheelhouse/data
  $PIP download -q --only-binary=:all: --python-version "$TARGET_PY" --implementation cp $PLAT -d wheelhouse \
      papermill ipykernel "fastcore>=1.12.3,<2" pytest || { echo "pip download failed" >&2; exit 1; }
  $PIP download -q --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp $PLAT -d wheelhouse \
      "opacus==1.6.0" || echo "note: no opacus wheel (the DP tests and runs need it)"
  $PIP download -q --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp $PLAT -d wheelhouse \
      "scikit-surprise>=1.1.5,<1.2" || echo "note: no scikit-surprise wheel for Python $TARGET_PY (06_federated does not need it)"
  echo "$TARGET_PY" > wheelhouse/PYTHON_VERSION
  DATA=${FEDREC_DATA:-../shared/data}
  for z in ml-100k.zip ml-1m-metadata.zip; do
    if [ -f "$DATA/$z" ]; then cp "$DATA/$z" wheelhouse/data/; else echo "warning: $DATA/$z not found" >&2; fi
  done
  echo "wheelhouse/: $(ls wheelhouse/*.whl | wc -l) wheels for Python $TARGET_PY, $(du -sh wheelhouse | cut -f1) in all; data: $(ls wheelhouse/data)"
  echo "carry 'wheelhouse' to the GPU machine and run: bash scripts/gpu_check.sh [--quick]"
  exit 0
fi

START=$(date +%s)
OUTDIR=${OUT:-runs/gpu_check}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG="$OUTDIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1
say() { echo "[gpu_check $(($(date +%s) - START))s] $*"; }

# --- environment
VER=$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
say "python $VER ($($PY -c 'import sys; print(sys.executable)')), torch $($PY -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if ! $PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then say "no CUDA GPU visible: stopping"; exit 1; fi
if [ -d wheelhouse ]; then
  [ -f wheelhouse/PYTHON_VERSION ] && [ "$(cat wheelhouse/PYTHON_VERSION)" != "$VER" ] && \
    say "warning: wheelhouse/ was made for Python $(cat wheelhouse/PYTHON_VERSION), this is $VER"
  if ! $PY -c 'import papermill, ipykernel, fastcore' 2>/dev/null; then
    say "installing papermill, ipykernel, fastcore from wheelhouse/ (no index)"
    if ! $PY -m pip install -q --no-index --find-links wheelhouse papermill ipykernel fastcore; then
      say "pip install into the environment failed; installing into /tmp/gpu_site instead"
      $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_site wheelhouse/*.whl
      export PYTHONPATH="/tmp/gpu_site${PYTHONPATH:+:$PYTHONPATH}"
    fi
  fi
  $PY -c 'import opacus' 2>/dev/null || $PY -m pip install -q --no-index --no-deps --find-links wheelhouse opacus 2>/dev/null \
    || say "opacus not installed (the DP accountant's tests will fail)"
  $PY -c 'import surprise' 2>/dev/null || $PY -m pip install -q --no-index --no-deps --find-links wheelhouse scikit-surprise 2>/dev/null \
    || say "scikit-surprise not installed (not needed here)"
  [ -d wheelhouse/data ] && export FEDREC_DATA=${FEDREC_DATA:-$(cd wheelhouse/data && pwd)}
fi
# fedrec_nb itself: editable install without dependencies, or the source tree on PYTHONPATH
$PY -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || say "pip install -e . failed: using PYTHONPATH"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
for d in "${FEDREC_DATA:-}" ../shared/data shared/data; do
  if [ -n "$d" ] && [ -f "$d/ml-1m-metadata.zip" ]; then export FEDREC_DATA=$(cd "$d" && pwd); break; fi
done
say "FEDREC_DATA=${FEDREC_DATA:-<unset>}"
$PY -c 'import papermill, fedrec_nb.vectorized' || { say "papermill or fedrec_nb cannot be imported: stopping"; exit 1; }
export MPLBACKEND=Agg PYTHONUNBUFFERED=1

# --- 0. the vectorized trainer's tests, CUDA ones included (CUDA against the CPU reference, graph replay against eager)
$PY -c 'import pytest' 2>/dev/null || $PY -m pip install -q --no-index --find-links wheelhouse pytest 2>/dev/null \
  || { [ -d /tmp/gpu_site ] || $PY -m pip install -q --no-index --no-deps --target /tmp/gpu_site wheelhouse/*.whl; }
say "pytest tests/test_vectorized.py tests/test_cuda.py (CUDA: the vectorized, implicit, per-client, DP, SGD and sparse defence paths)"
timeout 300 $PY -m pytest -q -p no:cacheprovider -rfEs --tb=short tests/test_vectorized.py tests/test_cuda.py tests/test_dot_engine.py 2>&1 | tee "$OUTDIR/pytest_cuda.txt" | tail -40
say "pytest exit status ${PIPESTATUS[0]}"

if [ $QUICK = 1 ]; then ROUNDS=2; NB_LIMIT=200; SEQ=100; BR=2; else ROUNDS=3; NB_LIMIT=300; SEQ=300; BR=3; fi

# --- 1. the main job through papermill on cuda, ML-1M shape, one client per user
say "papermill nbs/06_federated.ipynb: synthetic-ml-1m, cuda, partition=user, 6,040 clients, $ROUNDS rounds"
timeout $NB_LIMIT $PY -m papermill nbs/06_federated.ipynb "$OUTDIR/06_federated.cuda.ipynb" --cwd nbs -k python3 \
  -p dataset synthetic-ml-1m -p device cuda -p partition user -p num_clients 6040 -p rounds $ROUNDS \
  -p engine vectorized -p output_dir "$OUTDIR/federated" --log-level WARNING
say "papermill exit status $?"

# --- 2. benchmarks on cuda (each prints both sides and the ratio)
bench() { local name=$1; shift; say "bench_vectorized.py $*"; timeout 150 $PY benchmarks/bench_vectorized.py "$@" --device cuda --json "$OUTDIR/bench_$name.json" || say "bench $name failed or timed out"; }
bench users1m   users --dataset synthetic-ml-1m --model hybrid --rounds $BR --seq-clients $SEQ
bench users100k users --dataset ml-100k --model hybrid --rounds $BR --seq-clients $SEQ
say "bench_implicit.py on cuda: 943 one-user clients of ML-100K, every model of the federated ranking figures"
timeout 200 $PY benchmarks/bench_implicit.py --device cuda --seq-clients $SEQ --repeat 2 --json "$OUTDIR/bench_implicit.json" 2>&1 | tee "$OUTDIR/bench_implicit.txt" || say "bench_implicit failed or timed out"
say "bench_defences.py on cuda: DP-FedAvg and every robust aggregator against FedAvg, 943 one-user clients"
timeout 200 $PY benchmarks/bench_defences.py --device cuda --rounds $BR --json "$OUTDIR/bench_defences.json" || say "bench_defences failed or timed out"
if [ $QUICK = 0 ]; then
  bench iid1m     iid   --dataset synthetic-ml-1m --model hybrid --rounds $BR --seq-clients 1
  bench iid1m_exp iid   --dataset synthetic-ml-1m --model expanded --rounds $BR --seq-clients 1
  bench peruser100k users --dataset ml-100k --preset per-user --rounds $BR --seq-clients $SEQ
  bench iid1m_b2048 iid --dataset synthetic-ml-1m --model hybrid --rounds $BR --batch-size 2048 --no-seq
  say "bench_cuda_graphs.py: 10 IID clients, eager / CUDA graphs / graphs + torch.compile"
  timeout 240 $PY benchmarks/bench_cuda_graphs.py --model hybrid --rounds $BR 2>&1 | grep -v "warn" | tee "$OUTDIR/bench_cuda_graphs.txt" || say "bench_cuda_graphs failed or timed out"
fi

# --- 3. the figures
$PY scripts/gpu_check.py "$OUTDIR"
say "done; outputs in $OUTDIR"
