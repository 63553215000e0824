#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up, lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff";  .venv/bin/ruff check src tests benchmarks examples
echo "== mypy --strict src"; .venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
