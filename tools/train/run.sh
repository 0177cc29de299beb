#!/usr/bin/env bash
# run.sh - the whole recipe of the embedded default model, from nothing to a
# served, evaluated checkpoint (docs/training.md):
#   corpus (seed 1) -> BPE tokenizer -> training (CPU, two stages) -> FP8
#   checkpoint -> golden logits -> held-out evaluation through dsa-head.
# Usage: tools/train/run.sh [WORK_DIR [MODEL_DIR]]
#   WORK_DIR  corpora, tokenizer, training states, logs (default build/train)
#   MODEL_DIR the checkpoint written (default models/dsa-tiny-r1)
# Environment: MINUTES_A (7: stage A, copies alone), MINUTES_B (53: stage B,
# the corpus with copies at ~10%), TOOL_FRAC (0.5: the share of the
# corpus's tool conversations stage B trains on), LR_A
# (stage A's lr, 3e-3), N (100000 training conversations; the tokenizer is
# trained on the first 60000),
# COPY_A (60000) and COPY_B (10000) copy examples, THREADS (2), CONFIG (JSON
# overrides of tools/train/model.py's DEFAULT; default: 3 layers, 8 heads of
# qk_nope 16 / rope 16 / v 16, which learnt the copy task far faster per
# step than 4 heads of 32/16/32: docs/training.md).
# The MTP module is trained from 60% of stage B on (before that only the
# main model runs, 1.4x the tokens per second), the last 15% through FP8
# rounding. The schedule of each stage follows its wall-clock cap (the step
# caps are out of reach on the CPU); the log records it.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-build/train}
MODEL=${2:-models/dsa-tiny-r1}
PY=$(tools/train/venv.sh | tail -1)/bin/python
N=${N:-100000}
THREADS=${THREADS:-2}
mkdir -p "$WORK"
python3 tools/train/corpus.py --seed 1 --n "$N" --out "$WORK/train.jsonl"
# the copy warm-up alone, and the corpus with copies at a low weight (their
# own random stream: the held-out sets do not change)
python3 tools/train/corpus.py --seed 1 --n 0 --copy "${COPY_A:-60000}" --out "$WORK/copy.jsonl"
python3 tools/train/corpus.py --seed 1 --n "$N" --copy "${COPY_B:-10000}" \
  --out "$WORK/train_copy.jsonl"
# the tokenizer from the first 60,000 conversations (the same text for any N)
head -n 60000 "$WORK/train.jsonl" > "$WORK/tok_corpus.jsonl"
"$PY" tools/train/tokenizer.py --corpus "$WORK/tok_corpus.jsonl" --out "$WORK/tokenizer" \
  --vocab-size 1344
CFG=${CONFIG:-'{"num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 8,
  "qk_nope_head_dim": 16, "v_head_dim": 16}'}
TR="$PY tools/train/train.py --tokenizer $WORK/tokenizer --tokens-per-batch 2048 --steps 1000000 \
  --threads $THREADS"
# stage A: copying from the question, which the real corpus alone never
# taught (docs/training.md); constant lr after the warm-up, no FP8 rounding,
# no MTP
$TR --corpus "$WORK/copy.jsonl" --out "$WORK/runA" --seed 1234 --config "$CFG" \
  --minutes "${MINUTES_A:-7}" --lr "${LR_A:-3e-3}" --warmup 60 --lr-floor 1 --qat 0 \
  --mtp-from 1.1 \
  | tee "$WORK/trainA.log"
# stage B: continued on the real corpus + copies, lr 3e-3 cosine to 3e-4,
# the MTP module from 60% on, FP8-aware for the last 15%; half of the tool
# conversations (their prompts are long, and tool calls were right from a
# quarter of the fifth run on)
$TR --corpus "$WORK/train_copy.jsonl" --out "$WORK/runB" --seed 1235 --config "$CFG" \
  --init "$WORK/runA/state.pt" --prev-log "$WORK/runA/log.json" \
  --minutes "${MINUTES_B:-53}" --lr 3e-3 --warmup 20 --qat 0.15 --mtp-from 0.6 --tool-frac "${TOOL_FRAC:-0.5}" \
  | tee "$WORK/trainB.log"
RUN=$WORK/runB
"$PY" tools/train/convert.py --run "$RUN" --tokenizer "$WORK/tokenizer" --out "$MODEL"
cp "$RUN/loss.png" docs/training-loss.png
"$PY" tools/train/golden.py --model "$MODEL" --out tests/data/golden/dsa-tiny-r1
"$PY" tools/golden/mtp_golden.py --model "$MODEL" --out tests/data/golden/dsa-tiny-r1-mtp \
  --prompt-from tests/data/golden/dsa-tiny-r1/golden.json
tools/setup.sh build && ninja -C build
"$(tools/pyenv.sh)" tools/train/eval.py --train-n "$N" --per-kind 60 --json "$WORK/eval.json" \
  --server "build/head/dsa-head --model $MODEL --port 0 --port-file {port_file} --threads 2"
