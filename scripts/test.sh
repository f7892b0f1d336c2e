#!/usr/bin/env bash
# The README's test command: install what the tests need, then run the whole suite (pytest).
# Extra arguments go to pytest, e.g. scripts/test.sh -k snmp -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
exec .venv/bin/python -m pytest "$@"
