#!/usr/bin/env bash
# The main job: set up, then serve the tutorial's Calculator and call it every way wirecall offers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m wirecall.tutorial.demo
