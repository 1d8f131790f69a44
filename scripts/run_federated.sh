#!/usr/bin/env bash
# Set up (scripts/setup_env.sh) and run the main job: nbs/06_federated.ipynb through papermill.
# Extra arguments go to papermill, e.g.:  bash scripts/run_federated.sh -p rounds 20 -p partition user
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ -z "${FEDREC_DATA:-}" ] && [ -d ../shared/data ]; then export FEDREC_DATA=$(realpath ../shared/data); fi
OUT=${OUT:-runs/federated}
mkdir -p "$OUT"
export MPLBACKEND=Agg
.venv/bin/papermill nbs/06_federated.ipynb "$OUT/06_federated.out.ipynb" -k python3 --cwd nbs -p output_dir "$(realpath "$OUT")" "$@"
echo "results: $OUT/results.json"
