#!/bin/bash
# Container entry point: head + DSA_TP x DSA_PP workers on this node.
# Arguments, if any, are appended to dsa-head's command line.
#   DSA_MODEL DSA_PORT DSA_API_KEY_FILE DSA_TP DSA_PP  (Dockerfile ENV)
#   DSA_DEVICE (cuda)  DSA_SERVED_MODEL_NAME (the model directory's name)
#   DSA_MPIRUN_ARGS (extra mpirun options)
# The workers form the layout (--tp ranks a stage, PP = ranks / TP); the head
# is told it and refuses another.  A SIGTERM (docker stop) goes to dsa-head
# alone, which drains and then shuts the workers down: mpirun would forward
# it to every rank and stop the workers under a draining head.
set -euo pipefail
: "${DSA_MODEL:?}" "${DSA_PORT:?}" "${DSA_TP:?}" "${DSA_PP:?}"
workers=$((DSA_TP * DSA_PP))
head_args=(--model "$DSA_MODEL" --host 0.0.0.0 --port "$DSA_PORT"
  --tensor-parallel-size "$DSA_TP" --pipeline-parallel-size "$DSA_PP")
[ -n "${DSA_API_KEY_FILE:-}" ] && head_args+=(--api-key-file "$DSA_API_KEY_FILE")
[ -n "${DSA_SERVED_MODEL_NAME:-}" ] && head_args+=(--served-model-name "$DSA_SERVED_MODEL_NAME")
# shellcheck disable=SC2086
mpirun --bind-to none --oversubscribe ${DSA_MPIRUN_ARGS:-} \
  -np 1 dsa-head "${head_args[@]}" "$@" \
  : -np "$workers" dsa-worker --model "$DSA_MODEL" --tp "$DSA_TP" --device "${DSA_DEVICE:-cuda}" &
mpirun_pid=$!
trap 'pkill -TERM -P "$mpirun_pid" -x dsa-head || kill -TERM "$mpirun_pid"' TERM INT
rc=0
while kill -0 "$mpirun_pid" 2>/dev/null; do
  wait "$mpirun_pid" && rc=0 || rc=$?
done
exit "$rc"
