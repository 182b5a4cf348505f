#!/usr/bin/env bash
# The project's test command (README): set everything up, then run the Python and JS suites.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export INTERFORMER_SHARED="${INTERFORMER_SHARED:-$(cd .. && pwd)/shared}"
node --test tests/js/
.venv/bin/python -m pytest -q "$@"
