#!/usr/bin/env bash
# sched_bench.sh - scheduler benchmark (docs/perf/scheduler.md): starts
# dsa-head on MODEL, drives it with dsa-bench (random dataset, ignore_eos)
# at each concurrency level, then a shared-prefix run with and without
# prefix caching; stops the server.  Results: OUT/*.json and OUT/*.txt.
# Usage: sched_bench.sh BUILD MODEL OUT [CONCURRENCY...]
# Env: IN (prompt tokens, 96), OUTLEN (output tokens, 16), NP (prompts per
# level: max(4, 2*concurrency) capped at NPMAX=128), THREADS (0: all cores).
set -euo pipefail
BUILD=$1 MODEL=$2 OUT=$3
shift 3
LEVELS=${*:-1 8 32 128}
IN=${IN:-96} OUTLEN=${OUTLEN:-16} NPMAX=${NPMAX:-128}
mkdir -p "$OUT"
PORTFILE=$(mktemp)
SRV=""
start() {
  rm -f "$PORTFILE"
  "$BUILD/head/dsa-head" --model "$MODEL" --port 0 --port-file "$PORTFILE" \
    --served-model-name bench --max-model-len 1024 --max-num-seqs 128 \
    --max-num-batched-tokens 512 --threads "${THREADS:-0}" --log-format text \
    --log-level warn --disable-log-requests "$@" >"$OUT/head.log" 2>&1 &
  SRV=$!
  for _ in $(seq 600); do [ -s "$PORTFILE" ] && break; sleep 0.5; done
  PORT=$(cat "$PORTFILE")
}
stop() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null || true; SRV=""; }
trap stop EXIT
bench() { # name, extra dsa-bench args
  local name=$1; shift
  "$BUILD/tools/dsa-bench" --port "$PORT" --model "$MODEL" --served-model-name bench \
    --ignore-eos --disable-tqdm --save-result --result-dir "$OUT" \
    --result-filename "$name.json" --percentile-metrics ttft,tpot,itl,e2el \
    --metric-percentiles 50,99 "$@" >"$OUT/$name.txt" 2>&1
}
start
for c in $LEVELS; do
  np=$((2 * c)); [ $np -lt 4 ] && np=4; [ $np -gt "$NPMAX" ] && np=$NPMAX
  # a seed per level: no level reuses another's prompts (and prefix cache)
  bench "c$c" --random-input-len "$IN" --random-output-len "$OUTLEN" --num-prompts $np \
    --max-concurrency "$c" --seed "$c"
done
# shared prefix, one request at a time: TTFT with and without the cache
PFX=${PFX:-256}
bench prefix-on --random-prefix-len "$PFX" --random-input-len 16 --random-output-len 4 \
  --num-prompts 6 --max-concurrency 1
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E "^vllm:(prefix|num_preempt|prompt_tokens)" >"$OUT/metrics-on.txt"
stop
start --no-enable-prefix-caching
bench prefix-off --random-prefix-len "$PFX" --random-input-len 16 --random-output-len 4 \
  --num-prompts 6 --max-concurrency 1
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E "^vllm:(prefix|num_preempt|prompt_tokens)" >"$OUT/metrics-off.txt"
stop
