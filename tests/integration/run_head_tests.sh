#!/usr/bin/env bash
# run_head_tests.sh - meson test wrapper for the scripts of tests/integration:
# prepares the Python venv (tools/pyenv.sh, pinned openai), makes two tiny
# checkpoints with dsa-mkmodel and runs the tests.  Exit 77 (skip) when the
# venv or the tools cannot be had outside CI; under CI=true that fails.
# Usage: run_head_tests.sh BUILD_DIR SOURCE_DIR [SCRIPT.py] [unittest args]
#   SCRIPT.py: a test script of tests/integration (default test_head.py);
#   test_lm_eval.py also gets the lm_eval venv (tools/pyenv-lmeval.sh).
set -uo pipefail
BUILD="$1"
SRC="$2"
shift 2
SCRIPT=test_head.py
case "${1:-}" in *.py) SCRIPT="$1"; shift ;; esac
skip() {
  echo "head_e2e: $*" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 77
}
PY=$("$SRC/tools/pyenv.sh") || skip "cannot prepare the Python venv (tools/pyenv.sh)"
if [ "$SCRIPT" = test_lm_eval.py ]; then # lm-evaluation-harness has a venv of its own
  DSA_LMEVAL_PY=$("$SRC/tools/pyenv-lmeval.sh") ||
    skip "cannot prepare the lm_eval venv (tools/pyenv-lmeval.sh)"
  export DSA_LMEVAL_PY
fi
[ -x "$BUILD/tools/dsa-mkmodel" ] || skip "dsa-mkmodel not built"
[ -x "$BUILD/head/dsa-head" ] || skip "dsa-head not built"
command -v curl >/dev/null || skip "curl missing"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dsa-head-e2e.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$BUILD/tools/dsa-mkmodel" --out "$TMP/tiny" >/dev/null || exit 1
"$BUILD/tools/dsa-mkmodel" --out "$TMP/tiny-slow" --hidden 512 --layers 4 --inter 1024 \
  --moe-inter 256 --heads 8 --kv-lora-rank 128 --q-lora-rank 128 --nope 64 --rope 32 \
  --v 64 >/dev/null || exit 1
export DSA_HEAD="$BUILD/head/dsa-head" DSA_MODEL="$TMP/tiny" DSA_MODEL_SLOW="$TMP/tiny-slow"
export DSA_MKMODEL="$BUILD/tools/dsa-mkmodel"
# ASan builds are slower: give time-based waits more room
if [ -n "${ASAN_OPTIONS:-}" ] && ldd "$DSA_HEAD" 2>/dev/null | grep -q asan; then
  export DSA_TEST_TIME_SCALE=3
fi
"$PY" "$SRC/tests/integration/$SCRIPT" "$@"
