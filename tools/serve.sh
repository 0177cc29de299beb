#!/usr/bin/env bash
# serve.sh - sets everything up, builds, and serves the embedded default
# model with dsa-head (one in-process CPU worker) on 127.0.0.1:${PORT:-8000}.
# The default model is models/dsa-tiny-r1: a 4.6M-parameter DeepSeek-V3
# (MLA, noaux_tc MoE, MTP layer; FP8 weights) trained here on synthetic
# R1-style reasoning and tool-call conversations (docs/training.md).
# Pass a checkpoint directory to serve that instead; `random` serves a tiny
# random checkpoint made by dsa-mkmodel (shapes only, its text is noise).
# Extra arguments after the model go to dsa-head.
# Usage: tools/serve.sh [MODEL_DIR|random [dsa-head options...]]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh build
ninja -C build
MODEL="${1:-models/dsa-tiny-r1}"
[ $# -gt 0 ] && shift
if [ "$MODEL" = random ]; then
  MODEL=build/random-model
  [ -f "$MODEL/config.json" ] || build/tools/dsa-mkmodel --out "$MODEL"
fi
exec build/head/dsa-head --model "$MODEL" --served-model-name default-model \
  --port "${PORT:-8000}" "$@"
