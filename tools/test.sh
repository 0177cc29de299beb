#!/usr/bin/env bash
# test.sh - sets everything up, builds and runs the test suite.
# Usage: tools/test.sh [--asan]
#   --asan  builds into build-asan with AddressSanitizer + UBSan and runs the
#           suite there.
# Prints "tests: N passed, N failed, N skipped" last (Criterion test cases,
# summed over the test executables) and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build
SETUP_ARGS=(--buildtype=release -Db_ndebug=false)
if [ "${1:-}" = "--asan" ]; then
  BUILD=build-asan
  # The CUDA sources are compiled once, in build/ (the sanitizers do not
  # apply to nvcc's device code, and no test runs them without a GPU).
  SETUP_ARGS=(--buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false -Dcuda=disabled)
fi
tools/setup.sh build
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" "${SETUP_ARGS[@]}"
fi
ninja -C "$BUILD"
status=0
meson test -C "$BUILD" --print-errorlogs --num-processes 2 || status=$?
python3 tools/test_summary.py "$BUILD/meson-logs/testlog.json" || status=1
exit $status
