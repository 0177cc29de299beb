#!/usr/bin/env bash
# run_lm_eval_tests.sh - meson test wrapper for tests/integration/test_lm_eval.py:
# lm-evaluation-harness against dsa-head on the tiny checkpoint.  Prepares
# both venvs (tools/pyenv.sh for the server helper, tools/pyenv-lmeval.sh
# for lm_eval), makes the checkpoint with dsa-mkmodel and runs the tests.
# Exit 77 (skip) when a venv or the tools cannot be had outside CI; under
# CI=true that fails.
# Usage: run_lm_eval_tests.sh BUILD_DIR SOURCE_DIR [unittest args...]
set -uo pipefail
BUILD="$1"
SRC="$2"
skip() {
  echo "lm_eval: $*" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 77
}
PY=$("$SRC/tools/pyenv.sh") || skip "cannot prepare the Python venv (tools/pyenv.sh)"
LMPY=$("$SRC/tools/pyenv-lmeval.sh") || skip "cannot prepare the lm_eval venv (tools/pyenv-lmeval.sh)"
[ -x "$BUILD/tools/dsa-mkmodel" ] || skip "dsa-mkmodel not built"
[ -x "$BUILD/head/dsa-head" ] || skip "dsa-head not built"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dsa-lm-eval.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$BUILD/tools/dsa-mkmodel" --out "$TMP/tiny" >/dev/null || exit 1
export DSA_HEAD="$BUILD/head/dsa-head" DSA_MODEL="$TMP/tiny" DSA_MODEL_SLOW="$TMP/tiny"
export DSA_LMEVAL_PY="$LMPY"
if [ -n "${ASAN_OPTIONS:-}" ] && ldd "$DSA_HEAD" 2>/dev/null | grep -q asan; then
  export DSA_TEST_TIME_SCALE=3
fi
"$PY" "$SRC/tests/integration/test_lm_eval.py" "${@:3}"
