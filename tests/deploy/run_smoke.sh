#!/usr/bin/env bash
# run_smoke.sh - tools/deploy/smoke.sh against the real dsa-head on loopback
# (a dsa-mkmodel checkpoint, an API key, --served-model-name as the playbook
# passes it).  smoke.sh must pass there, and must fail, naming the check,
# when the endpoint is wrong in each way it checks: a wrong key, a served
# name other than the expected one, a head that takes no key, a public
# endpoint that serves /metrics, nothing listening.
# Usage: run_smoke.sh BUILD_DIR SOURCE_DIR.  Exit 77 (skip) when a tool is
# missing outside CI; under CI=true that is a failure.
set -uo pipefail
BUILD="$1" SRC="$2"
HEAD="$BUILD/head/dsa-head" MK="$BUILD/tools/dsa-mkmodel" SMOKE="$SRC/tools/deploy/smoke.sh"
missing() {
  echo "deploy_smoke: $1" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 77
}
for t in "$HEAD" "$MK"; do [ -x "$t" ] || missing "$t not built"; done
for t in curl python3; do command -v $t >/dev/null || missing "$t missing"; done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dsa-smoke-test.XXXXXX")
PIDS=()
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
fail=0
check() { # check NAME COND-RESULT MESSAGE
  if [ "$2" = 0 ]; then echo "PASS  $1"; else echo "FAIL  $1: $3"; fail=1; fi
}

# start NAME ARGS...: a dsa-head on an ephemeral port; sets PORT.
start() {
  local name=$1
  shift
  "$HEAD" --model "$TMP/tiny" --host 127.0.0.1 --port 0 --port-file "$TMP/$name.port" \
    --threads 1 --log-format text --disable-log-requests "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do [ -s "$TMP/$name.port" ] && break; sleep 0.1; done
  [ -s "$TMP/$name.port" ] || { echo "dsa-head ($name) did not start"; cat "$TMP/$name.log"; exit 1; }
  PORT=$(cat "$TMP/$name.port")
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ] && return
    sleep 0.2
  done
  echo "dsa-head ($name) never became healthy"; cat "$TMP/$name.log"; exit 1
}

"$MK" --out "$TMP/tiny" >/dev/null || exit 1
KEY=sk-smoke-test
MODEL=deepseek-ai/DeepSeek-V3
start keyed --api-key "$KEY" --served-model-name "$MODEL"
URL="http://127.0.0.1:$PORT"

# run NAME [ENV=...] ARGS...: smoke.sh's exit status; output in $TMP/NAME.out
run() {
  local name=$1
  shift
  env SMOKE_TIMEOUT=60 "$@" >"$TMP/$name.out" 2>&1
  echo $?
}

# SMOKE_WAIT: a no-op here (already healthy) but the path operators use.
rc=$(run good SMOKE_MODEL="$MODEL" SMOKE_WAIT=30 "$SMOKE" "$URL" "$KEY")
out=$(cat "$TMP/good.out")
n_pass=$(grep -c '^PASS' <<<"$out")
check "smoke.sh passes against dsa-head (5 checks)" \
  "$([ "$rc" = 0 ] && [ "$n_pass" = 5 ] && grep -q '^SMOKE: PASS' <<<"$out" &&
     grep -q "serving \"$MODEL\"" <<<"$out" && grep -q 'content chunks' <<<"$out"; echo $?)" "exit $rc: $out"
printf '    %s\n' "$out"

rc=$(run wrongkey "$SMOKE" "$URL" "not-the-key")
check "a wrong key fails models and stream" \
  "$([ "$rc" = 1 ] && grep -q '^FAIL  models' "$TMP/wrongkey.out" && grep -q '^FAIL  stream' "$TMP/wrongkey.out"; echo $?)" \
  "exit $rc: $(cat "$TMP/wrongkey.out")"

rc=$(run wrongmodel SMOKE_MODEL=some-other-model "$SMOKE" "$URL" "$KEY")
check "another served name fails models" \
  "$([ "$rc" = 1 ] && grep -q '^FAIL  models.* 200 ' "$TMP/wrongmodel.out" &&
     grep -q '^PASS  health' "$TMP/wrongmodel.out"; echo $?)" "exit $rc: $(cat "$TMP/wrongmodel.out")"

rc=$(run public "$SMOKE" --public "$URL" "$KEY")
check "--public fails when /metrics is served" \
  "$([ "$rc" = 1 ] && grep -q '^FAIL  metrics' "$TMP/public.out" && [ "$(grep -c '^PASS' "$TMP/public.out")" = 5 ]; echo $?)" \
  "exit $rc: $(cat "$TMP/public.out")"

start open
rc=$(run open "$SMOKE" "http://127.0.0.1:$PORT" "$KEY")
check "a head without keys fails the 401 checks" \
  "$([ "$rc" = 1 ] && grep -q '^FAIL  no key' "$TMP/open.out" && grep -q '^FAIL  wrong key' "$TMP/open.out"; echo $?)" \
  "exit $rc: $(cat "$TMP/open.out")"

# A port nothing listens on: the one the keyless head had, after it stops.
kill "${PIDS[-1]}" && wait "${PIDS[-1]}" 2>/dev/null
unset 'PIDS[-1]'
rc=$(run down "$SMOKE" "http://127.0.0.1:$PORT" "$KEY")
check "nothing listening: every check fails, no hang" \
  "$([ "$rc" = 1 ] && [ "$(grep -c '^FAIL' "$TMP/down.out")" = 5 ]; echo $?)" "exit $rc: $(cat "$TMP/down.out")"

rc=$(run usage "$SMOKE" "$URL")
check "usage error exits 2" "$([ "$rc" = 2 ]; echo $?)" "exit $rc"
exit $fail
