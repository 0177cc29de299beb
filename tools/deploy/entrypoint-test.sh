#!/bin/bash
# Runs the Docker image's entry point (tools/deploy/docker-entrypoint.sh)
# against the built programs, as the image would: DSA_TP=2 x DSA_PP=2 CPU
# workers, a tiny model from dsa-mkmodel, an API-key file.  Checks /health
# 200, a completion with the key (200) and without it (401), then a SIGTERM
# to the entry point: the job exits 0 within 60 s and leaves no process.
#   tools/deploy/entrypoint-test.sh [BUILD_DIR]   (default: build)
# The image itself is not built here: its base images (nvidia/cuda) come
# from a container registry this sandbox cannot reach, and no Docker daemon
# runs here (docs/deploy-rehearsal.md).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd) || exit 1
say() { echo "entrypoint-test: $*"; }
for f in head/dsa-head worker/dsa-worker tools/dsa-mkmodel; do
  [ -x "$BUILD/$f" ] || { say "missing $BUILD/$f"; exit 1; }
done
command -v mpirun >/dev/null || { say "mpirun not found"; [ "${CI:-}" = true ] && exit 1; exit 77; }

TMP=$(mktemp -d /tmp/dsa-entry.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  for p in $(pgrep -f "$TMP" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

"$BUILD/tools/dsa-mkmodel" --out "$TMP/model" --heads 4 --inter 128 --moe-inter 32 --vocab 512 \
  --layers 2 --hidden 64 --seed 11 >"$TMP/mk.log" 2>&1 || { cat "$TMP/mk.log"; exit 1; }
echo sk-entry-test >"$TMP/api-keys"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The image's environment (Dockerfile ENV), the CPU instead of CUDA.
export PATH="$BUILD/head:$BUILD/worker:$PATH" DSA_MODEL=$TMP/model \
  DSA_API_KEY_FILE=$TMP/api-keys DSA_TP=2 DSA_PP=2 DSA_DEVICE=cpu DSA_SERVED_MODEL_NAME=tiny
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
  OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1 \
  OMPI_MCA_plm_rsh_agent=false
# ASan builds: Open MPI's own allocations live until exit (tests/mpi does the same)
export LSAN_OPTIONS="suppressions=$ROOT/tests/mpi/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0"

# A free port is only free until the head binds it: another program on the
# machine may take it in between, so a start that failed on exactly that is
# tried again on a new port (three tries).
for try in 1 2 3; do
  port=$(free_port)
  export DSA_PORT=$port
  "$ROOT/tools/deploy/docker-entrypoint.sh" --log-format text --max-model-len 256 >"$TMP/job.log" 2>&1 &
  PID=$!
  code=000
  for _ in $(seq 1 120); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health")
    [ "$code" = 200 ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 1
  done
  [ "$code" = 200 ] && break
  grep -q "address already in use" "$TMP/job.log" || break
  wait "$PID" 2>/dev/null
  say "port $port was taken before the head bound it (try $try); another port"
done
[ "$code" = 200 ] || { tail -30 "$TMP/job.log"; say "FAIL: /health answered $code"; exit 1; }
grep -q "TP=2 x PP=2" "$TMP/job.log" || { cat "$TMP/job.log"; say "FAIL: not TP=2 x PP=2"; exit 1; }
body='{"model":"tiny","prompt":"Hello","max_tokens":4}'
ok=$(curl -s -o "$TMP/out.json" -w '%{http_code}' --max-time 30 -H "Authorization: Bearer sk-entry-test" \
  -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$port/v1/completions")
if [ "$ok" != 200 ] || ! grep -q '"text_completion"' "$TMP/out.json"; then
  cat "$TMP/out.json"; say "FAIL: completion with the key answered $ok"; exit 1
fi
noauth=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
  -d "$body" "http://127.0.0.1:$port/v1/completions")
[ "$noauth" = 401 ] || { say "FAIL: without a key: $noauth (want 401)"; exit 1; }

kill -TERM "$PID"
start=$SECONDS
while kill -0 "$PID" 2>/dev/null && [ $((SECONDS - start)) -lt 60 ]; do sleep 0.5; done
if kill -0 "$PID" 2>/dev/null; then say "FAIL: still running 60 s after SIGTERM"; exit 1; fi
wait "$PID"
rc=$?
PID=
sleep 1
left=$(pgrep -f "$TMP" | tr '\n' ' ')
[ -z "$left" ] || { say "FAIL: processes left: $left"; exit 1; }
[ "$rc" = 0 ] || { tail -10 "$TMP/job.log"; say "FAIL: exit $rc after SIGTERM"; exit 1; }
say "PASS: TP=2 x PP=2 under the entry point: /health 200, completion 200, no key 401, SIGTERM exit 0 in $((SECONDS - start)) s"
