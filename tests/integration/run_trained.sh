#!/usr/bin/env bash
# run_trained.sh - the trained default model (models/dsa-tiny-r1) through
# the real dsa-head and the official openai client (tools/train/eval.py,
# greedy) on 50 held-out problems and 10 two-turn tool conversations:
#  - >= 95% of the answers have reasoning_content split from content, and
#    >= 95% of the first tool turns come back as one parsed tool call;
#  - >= 95% of all answers equal tests/data/trained/sample_answers.json
#    (the in-process server's, recorded when the model was committed): the
#    serving path does not change what the model says;
#  - problems exactly right >= 70% and tool calls and the answers after them
#    >= 90% (regression floors: 42 of these 50 problems and 10 of 10 tool
#    conversations measured when the model was committed; 78.8% of 500
#    held-out problems and 100 / 99 of 100 tool conversations), below the
#    95% issue 15 asks for (docs/training.md).
# Modes (the serving paths that must not change an answer):
#   single   one in-process CPU worker
#   chunked  --max-num-batched-tokens 48: every prompt prefilled in chunks
#   preempt  a KV cache of 40 blocks of 16 tokens (one 640-token sequence)
#            for 8 concurrent requests: sequences are preempted and recomputed
#   mpi      mpirun: dsa-head driving TP=2 x PP=2 dsa-worker ranks
# Exit 77 (skip) when the openai venv or mpirun (mpi mode) cannot be had,
# except under CI=true where that fails.
# Usage: run_trained.sh BUILD_DIR SOURCE_DIR MODE
set -uo pipefail
BUILD=$1 SRC=$2 MODE=$3
skip() {
  echo "trained_$MODE: $*" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 77
}
PY=$("$SRC/tools/pyenv.sh") || skip "cannot prepare the Python venv (tools/pyenv.sh)"
MODEL="$SRC/models/dsa-tiny-r1"
HEAD="$BUILD/head/dsa-head" WORKER="$BUILD/worker/dsa-worker"
[ -f "$MODEL/config.json" ] || { echo "missing $MODEL"; exit 1; }
[ -x "$HEAD" ] || { echo "missing $HEAD"; exit 1; }
HARGS="--model $MODEL --served-model-name dsa-tiny-r1 --port 0 --port-file {port_file} \
--log-format text --disable-log-requests --max-model-len 1024 --threads 1"
case $MODE in
single)  SERVER="$HEAD $HARGS" ;;
chunked) SERVER="$HEAD $HARGS --max-num-batched-tokens 48" ;;
preempt) SERVER="${HEAD} ${HARGS/--max-model-len 1024/--max-model-len 640} --block-size 16 \
--num-gpu-blocks-override 40 --no-enable-prefix-caching" ;;
mpi)
  command -v mpirun >/dev/null 2>&1 || skip "mpirun not found"
  [ -x "$WORKER" ] || { echo "missing $WORKER"; exit 1; }
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
  export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
  export OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_plm_rsh_agent=false
  export OMPI_MCA_rmaps_base_mapping_policy=:oversubscribe
  export LSAN_OPTIONS="suppressions=$SRC/tests/mpi/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0"
  SERVER="mpirun --oversubscribe -np 1 $HEAD $HARGS --block-size 16 : -np 4 $WORKER \
--model $MODEL --tp 2 --threads 1 --block-size 16 --max-model-len 1024 --num-blocks 256 \
--max-num-seqs 8"
  ;;
*) echo "unknown mode $MODE"; exit 2 ;;
esac
exec "$PY" "$SRC/tools/train/eval.py" --server "$SERVER" --problems 50 --tools 10 \
  --concurrency 8 --min-accuracy 0.7 --min-tool-accuracy 0.9 --min-format 0.95 \
  --expect "$SRC/tests/data/trained/sample_answers.json" --min-same 0.95 --start-timeout 180
