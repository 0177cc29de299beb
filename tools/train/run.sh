#!/usr/bin/env bash
# run.sh - the whole recipe of the embedded default model, from nothing to a
# served, evaluated checkpoint (docs/training.md):
#   corpus (seed 1) -> BPE tokenizer -> training (CPU) -> FP8 checkpoint
#   -> golden logits -> held-out evaluation through dsa-head.
# Usage: tools/train/run.sh [WORK_DIR [MODEL_DIR]]
#   WORK_DIR  corpus, tokenizer, training state, logs (default build/train)
#   MODEL_DIR the checkpoint written (default models/dsa-tiny-r1)
# Environment: STEPS (2000), MINUTES (44, the wall-clock cap), N (60000
# training conversations), CONFIG (JSON overrides of tools/train/model.py's
# DEFAULT; the shipped model used {"num_hidden_layers": 3}).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-build/train}
MODEL=${2:-models/dsa-tiny-r1}
PY=$(tools/train/venv.sh | tail -1)/bin/python
mkdir -p "$WORK"
python3 tools/train/corpus.py --seed 1 --n "${N:-60000}" --out "$WORK/train.jsonl"
"$PY" tools/train/tokenizer.py --corpus "$WORK/train.jsonl" --out "$WORK/tokenizer" \
  --vocab-size 1344
(cd tools/train && "$PY" train.py --corpus "../../$WORK/train.jsonl" \
  --tokenizer "../../$WORK/tokenizer" --out "../../$WORK/run" --steps "${STEPS:-2000}" \
  --minutes "${MINUTES:-44}" --lr 3e-3 --warmup 60 --tokens-per-batch 2048 \
  --config "${CONFIG:-{\"num_hidden_layers\": 3\}}") | tee "$WORK/train.log"
"$PY" tools/train/convert.py --run "$WORK/run" --tokenizer "$WORK/tokenizer" --out "$MODEL"
cp "$WORK/run/loss.png" docs/training-loss.png
"$PY" tools/train/golden.py --model "$MODEL" --out tests/data/golden/dsa-tiny-r1
tools/setup.sh build && ninja -C build
"$(tools/pyenv.sh)" tools/train/eval.py --train-n "${N:-60000}" --json "$WORK/eval.json" \
  --server "build/head/dsa-head --model $MODEL --port 0 --port-file {port_file} --threads 2"
