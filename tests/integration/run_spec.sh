#!/usr/bin/env bash
# run_spec.sh - tests/integration/spec_e2e.py (or SCRIPT) in the openai venv
# (tools/pyenv.sh).  Exit 77 (skip) when the venv cannot be had, except
# under CI=true where that fails.
# Usage: run_spec.sh BUILD_DIR SOURCE_DIR [SCRIPT]
set -uo pipefail
BUILD=$1 SRC=$2 SCRIPT=${3:-spec_e2e.py}
PY=$("$SRC/tools/pyenv.sh") || {
  echo "spec_e2e: cannot prepare the Python venv (tools/pyenv.sh)" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 77
}
exec "$PY" "$SRC/tests/integration/$SCRIPT" "$BUILD" "$SRC"
