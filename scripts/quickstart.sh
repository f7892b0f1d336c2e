#!/usr/bin/env bash
# The README's first command: install pmaintd into .venv and run every daemon job once (`pmaintd run --once`) on the
# embedded default (sqlite store in ./.pmaintd-state, watching this machine), then show what it stored.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q .
export PMAINTD_STATE_DIR=${PMAINTD_STATE_DIR:-$PWD/.pmaintd-state}
.venv/bin/pmaintd run --once
.venv/bin/pmaintd status
