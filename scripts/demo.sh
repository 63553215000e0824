#!/usr/bin/env bash
# The main job: install what the demo needs (wirecall with its runtime extras: speed, cli,
# http, grpc; not the test toolchain nor the Debian test services), then serve the tutorial's
# Calculator and call it every way wirecall offers. scripts/setup.sh sets up the test bench.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[all]'
exec .venv/bin/python -m wirecall.tutorial.demo
