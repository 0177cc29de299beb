#!/usr/bin/env bash
# structured.sh - the end-to-end benchmark of docs/perf/structured.md: makes
# a small BF16 checkpoint with the DeepSeek-V3 vocabulary (129,280 ids) and
# tokenizer (tests/data/deepseek-v3-tokenizer), kept in WORKDIR between
# runs, then runs tools/bench/structured.py (constrained vs unconstrained
# decode speed through the real dsa-head) with the test venv's openai.
# Usage: tools/bench/structured.sh [WORKDIR] [BUILD_DIR] [structured.py args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${1:-/tmp/dsa-bench-structured}"
BUILD="${2:-build}"
shift $(( $# < 2 ? $# : 2 ))
ninja -C "$BUILD" tools/dsa-mkmodel head/dsa-head >/dev/null
PY="$(tools/pyenv.sh)"
M="$WORK/v3vocab"
if [ ! -f "$M/config.json" ]; then
  "$BUILD/tools/dsa-mkmodel" --out "$M" --hidden 512 --layers 4 --heads 8 --vocab 129280 \
    --inter 1024 --moe-inter 256 --experts 16 --experts-per-tok 4 --shared-experts 1 \
    --n-group 4 --topk-group 2 --dense-layers 1 --q-lora-rank 128 --kv-lora-rank 128 \
    --nope 32 --rope 16 --v 32 --dtype bf16 --max-pos 4096
  cp tests/data/deepseek-v3-tokenizer/tokenizer.json \
     tests/data/deepseek-v3-tokenizer/tokenizer_config.json "$M/"
fi
"$PY" tools/bench/structured.py --head "$BUILD/head/dsa-head" --model "$M" "$@"
