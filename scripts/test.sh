#!/usr/bin/env bash
# Set up (scripts/setup_env.sh) and run every test: the notebooks (nbdev_test) and tests/ (pytest).
# Cells marked `#| slow` or `#| cuda` are skipped; pass FLAGS="slow" to run the slow ones too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ -z "${FEDREC_DATA:-}" ] && [ -d ../shared/data ]; then export FEDREC_DATA=$(realpath ../shared/data); fi
export MPLBACKEND=Agg PATH="$PWD/.venv/bin:$PATH"
echo "FEDREC_DATA=${FEDREC_DATA:-<unset>}"
nbdev_test --n_workers 2 --timing ${FLAGS:+--flags "$FLAGS"}
set +e
python -m pytest -q tests
rc=$?
set -e
[ $rc -eq 5 ] && { echo "pytest: no tests collected"; rc=0; }
exit $rc
