#!/usr/bin/env bash
# Set up (scripts/setup_env.sh) and run the main job: nbs/06_federated.ipynb through papermill.
# Extra arguments go to papermill, e.g.:  bash scripts/run_federated.sh -p rounds 20 -p partition user
# Relative paths (-p dataset mine/ratings.csv, data_dir, output_dir, checkpoint_dir, OUT=...) are read from the folder
# you run the script in, and the notebook runs there too. FEDREC_SKIP_SETUP=1 skips setup_env.sh; FEDREC_VENV names the
# environment to run (default: the repository's .venv). The results go to $OUT or -p output_dir when given, else to
# runs/<what ran> in that folder (e.g. runs/ml-100k-mf-user-fedavg: `python -m fedrec_nb.records folder -p ...` names it);
# compare finished runs with: .venv/bin/python -m fedrec_nb.records compare runs/*
set -euo pipefail
CALLER=$(pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
abs() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s' "$CALLER/$1" ;; esac; }
cd "$ROOT"
[ "${FEDREC_SKIP_SETUP:-0}" = 1 ] || bash scripts/setup_env.sh
VENV=${FEDREC_VENV:-$ROOT/.venv}
if [ -z "${FEDREC_DATA:-}" ] && [ -d ../shared/data ]; then export FEDREC_DATA=$(realpath ../shared/data); fi
if [ -n "${OUT:-}" ]; then OUT=$(abs "$OUT"); fi
ARGS=()
while [ $# -gt 0 ]; do
  if { [ "$1" = -p ] || [ "$1" = --parameters ] || [ "$1" = -r ] || [ "$1" = --parameters_raw ]; } && [ $# -ge 3 ]; then
    flag=$1 key=$2 val=$3 given=$3; shift 3
    case "$key" in
      dataset) case "$val" in *.csv|*.tsv|*.txt|*.parquet|*/*)
                 val=$(abs "$val")
                 [ -e "$val" ] || { echo "run_federated.sh: dataset $given: no such file; looked at $val (a relative path is read from $CALLER, where you ran the script)" >&2; exit 2; } ;;
               esac ;;
      data_dir) [ "$val" = None ] || { val=$(abs "$val")
                 [ -d "$val" ] || { echo "run_federated.sh: data_dir $given: no such folder; looked at $val (a relative path is read from $CALLER, where you ran the script)" >&2; exit 2; }; } ;;
      output_dir) val=$(abs "$val"); OUT=$val ;;
      checkpoint_dir) [ "$val" = None ] || val=$(abs "$val") ;;
    esac
    ARGS+=("$flag" "$key" "$val")
  else ARGS+=("$1"); shift; fi
done
if [ -z "${OUT:-}" ]; then   # the folder named after what ran (stops here on a misspelled or invalid parameter)
  name=$(cd "$CALLER" && "$VENV/bin/python" -m fedrec_nb.records folder ${ARGS[@]+"${ARGS[@]}"})
  OUT=$(abs "$name")
fi
mkdir -p "$OUT"
# the kernel draws its figures inline (they stay in the output notebook), whatever MPLBACKEND the caller has set
MPLBACKEND=module://matplotlib_inline.backend_inline "$VENV/bin/papermill" nbs/06_federated.ipynb "$OUT/06_federated.out.ipynb" \
  -k python3 --cwd "$CALLER" -p output_dir "$OUT" ${ARGS[@]+"${ARGS[@]}"}
echo "results: $OUT/results.json"
echo "notebook: $OUT/06_federated.out.ipynb"
