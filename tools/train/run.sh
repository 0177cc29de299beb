#!/usr/bin/env bash
# run.sh - the whole recipe of the embedded default model, from nothing to a
# served, evaluated checkpoint (docs/training.md):
#   corpus (seed 1) -> BPE tokenizer -> training (CPU) -> FP8 checkpoint
#   -> golden logits -> held-out evaluation through dsa-head.
# Usage: tools/train/run.sh [WORK_DIR [MODEL_DIR]]
#   WORK_DIR  corpus, tokenizer, training state, logs (default build/train)
#   MODEL_DIR the checkpoint written (default models/dsa-tiny-r1)
# Environment: STEPS (2000), MINUTES (44, the wall-clock cap of stage 1),
# MINUTES2 (23, stage 2; 0: none), N (60000
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
CFG=${CONFIG:-'{"num_hidden_layers": 3}'}
# stage 1: lr 3e-3 cosine, FP8-aware for its last 15%
(cd tools/train && "$PY" train.py --corpus "../../$WORK/train.jsonl" \
  --tokenizer "../../$WORK/tokenizer" --out "../../$WORK/run1" --steps "${STEPS:-2000}" \
  --minutes "${MINUTES:-44}" --lr 3e-3 --warmup 60 --tokens-per-batch 2048 \
  --config "$CFG") | tee "$WORK/train1.log"
# stage 2 (the shipped model had one, 23 minutes): continued from stage 1,
# lr 1.5e-3 cosine, FP8-aware throughout; MINUTES2=0 skips it
RUN=$WORK/run1
if [ "${MINUTES2:-23}" != 0 ]; then
  (cd tools/train && "$PY" train.py --corpus "../../$WORK/train.jsonl" \
    --tokenizer "../../$WORK/tokenizer" --out "../../$WORK/run2" --seed 1235 \
    --init "../../$WORK/run1/state.pt" --prev-log "../../$WORK/run1/log.json" \
    --steps 2000 --minutes "${MINUTES2:-23}" --lr 1.5e-3 --warmup 20 --qat 1.0 \
    --tokens-per-batch 2048 --config "$CFG") | tee "$WORK/train2.log"
  RUN=$WORK/run2
fi
"$PY" tools/train/convert.py --run "$RUN" --tokenizer "$WORK/tokenizer" --out "$MODEL"
cp "$RUN/loss.png" docs/training-loss.png
"$PY" tools/train/golden.py --model "$MODEL" --out tests/data/golden/dsa-tiny-r1
tools/setup.sh build && ninja -C build
"$(tools/pyenv.sh)" tools/train/eval.py --train-n "${N:-60000}" --json "$WORK/eval.json" \
  --server "build/head/dsa-head --model $MODEL --port 0 --port-file {port_file} --threads 2"
