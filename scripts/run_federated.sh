#!/usr/bin/env bash
# Set up (scripts/setup_env.sh) and run the main job: nbs/06_federated.ipynb through papermill.
# Extra arguments go to papermill, e.g.:  bash scripts/run_federated.sh -p rounds 20 -p partition user
# The results go to runs/<what ran> (e.g. runs/ml-100k-mf-user-fedavg; `python -m fedrec_nb.records folder` names it),
# or to $OUT when it is set; compare finished runs with: .venv/bin/python -m fedrec_nb.records compare runs/*
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ -z "${FEDREC_DATA:-}" ] && [ -d ../shared/data ]; then export FEDREC_DATA=$(realpath ../shared/data); fi
OUT=${OUT:-$(.venv/bin/python -m fedrec_nb.records folder "$@")}   # stops here on a misspelled or invalid parameter
mkdir -p "$OUT"
export MPLBACKEND=Agg
.venv/bin/papermill nbs/06_federated.ipynb "$OUT/06_federated.out.ipynb" -k python3 --cwd nbs -p output_dir "$(realpath "$OUT")" "$@"
echo "results: $OUT/results.json"
