#!/usr/bin/env bash
# bench.sh - structured-output engine against xgrammar in one run, on the
# same corpus, tokenizer (DeepSeek-V3, 129,280 ids) and machine.
# Usage: tools/grammar/bench.sh BUILD_DIR [REPEAT]   (docs/perf/structured.md)
set -euo pipefail
BUILD="${1:-build}"
REPEAT="${2:-3}"
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
TOK="$SRC/tests/data/deepseek-v3-tokenizer"
GOLDEN="$SRC/tests/data/grammar/golden.jsonl"
PY=$("$SRC/tools/grammar/xgr-venv.sh")
echo "== dsa grammar engine (C)"
"$BUILD/tools/bench_grammar" "$TOK" "$GOLDEN" "$REPEAT"
echo "== xgrammar $("$PY" -c 'import importlib.metadata as m; print(m.version("xgrammar"))')"
"$PY" "$SRC/tools/grammar/bench_xgr.py" "$TOK" "$GOLDEN" "$REPEAT" 2>/dev/null
