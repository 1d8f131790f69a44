#!/usr/bin/env bash
# Check the docs site as far as this machine can build it (Quarto cannot be installed here): the sidebar lists every
# notebook, nbdev's own processing for the site runs on every notebook, every notebook renders to HTML from its saved
# outputs and loads in headless Chromium without script errors, notebooks that draw plots show images, and a
# screenshot of the federated page is kept. Details: scripts/check_docs.py. Output: out/docs_check/ (gitignored).
# Usage: bash scripts/check_docs.sh [--only REGEX] [--out DIR]     (run after scripts/setup_env.sh or scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "check_docs: no .venv here; run 'bash scripts/setup_env.sh' first" >&2; exit 2
fi
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "check_docs: installing Debian's chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "check_docs: $CHROMIUM not found; install Debian's chromium (sudo apt-get install -y chromium) or set CHROMIUM" >&2
    exit 2
  fi
fi
export CHROMIUM MPLBACKEND=Agg PYTHONWARNINGS=ignore
exec .venv/bin/python scripts/check_docs.py --chromium "$CHROMIUM" "$@"
