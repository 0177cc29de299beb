#!/usr/bin/env bash
# run_conformance_tests.sh - meson test wrapper for
# tests/integration/test_conformance.py (vLLM parameter conformance through
# the official openai SDK): prepares the venv (tools/pyenv.sh), makes the
# tiny checkpoint with dsa-mkmodel and runs the suite against dsa-head.
# Exit 77 (skip) when the venv or the tools cannot be had outside CI; under
# CI=true that fails.
# Usage: run_conformance_tests.sh BUILD_DIR SOURCE_DIR [unittest args...]
set -uo pipefail
BUILD="$1"
SRC="$2"
skip() {
  echo "conformance: $*" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 77
}
PY=$("$SRC/tools/pyenv.sh") || skip "cannot prepare the Python venv (tools/pyenv.sh)"
[ -x "$BUILD/tools/dsa-mkmodel" ] || skip "dsa-mkmodel not built"
[ -x "$BUILD/head/dsa-head" ] || skip "dsa-head not built"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dsa-conformance.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$BUILD/tools/dsa-mkmodel" --out "$TMP/tiny" >/dev/null || exit 1
export DSA_HEAD="$BUILD/head/dsa-head" DSA_MODEL="$TMP/tiny" DSA_MODEL_SLOW="$TMP/tiny"
if [ -n "${ASAN_OPTIONS:-}" ] && ldd "$DSA_HEAD" 2>/dev/null | grep -q asan; then
  export DSA_TEST_TIME_SCALE=3
fi
"$PY" "$SRC/tests/integration/test_conformance.py" "${@:3}"
