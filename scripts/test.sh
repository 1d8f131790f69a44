#!/usr/bin/env bash
# Set up (scripts/setup_env.sh) and run every test: the notebooks (nbdev_test) and tests/ (pytest).
# Cells marked `#| slow` or `#| cuda` are skipped; pass FLAGS="slow" to run the slow ones too.
# Data: FEDREC_DATA, else ../shared/data beside the clone, else the cache (~/.cache/fedrec_nb or FEDREC_CACHE), which
# `python -m fedrec_nb.data fetch ml-100k` fills once (GroupLens with its MD5, else the package index's recbole wheel
# with its SHA-256) before any test runs; the tests and notebooks then read it without the network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ -z "${FEDREC_DATA:-}" ] && [ -d ../shared/data ]; then export FEDREC_DATA=$(realpath ../shared/data); fi
export MPLBACKEND=Agg PATH="$PWD/.venv/bin:$PATH"
echo "FEDREC_DATA=${FEDREC_DATA:-<unset>}"
python -m fedrec_nb.data fetch ml-100k
nbdev_test --n_workers 2 --timing ${FLAGS:+--flags "$FLAGS"}
set +e
python -m pytest -q tests
rc=$?
set -e
[ $rc -eq 5 ] && { echo "pytest: no tests collected"; rc=0; }
exit $rc
