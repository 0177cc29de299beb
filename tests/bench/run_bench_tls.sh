#!/usr/bin/env bash
# run_bench_tls.sh - dsa-bench over https:// through a TLS terminator
# (tests/bench/tls_proxy.py, Python's ssl on loopback) in front of the real
# dsa-head, which requires an API key.  Certificates are made here with the
# openssl command: a test CA, a server certificate it signed for DNS name
# "localhost" only, and an unrelated CA.
#   1. https://localhost with --ca-cert CA: every request completes, and the
#      terminator saw SNI "localhost".
#   2. the wrong CA, and the system store (the default): exit 1 quickly
#      (no retry loop), naming the certificate failure and --ca-cert.
#   3. https://127.0.0.1 with the right CA: the name does not match (IP
#      address mismatch), refused.
#   4. --insecure against 127.0.0.1: completes.
#   5. no ready check, wrong CA: every timed request is counted failed with
#      the certificate error; the process ends (exit 0, as for any run).
# Usage: run_bench_tls.sh BUILD_DIR SOURCE_DIR.  Exit 77 (skip) when a tool is
# missing outside CI; under CI=true that is a failure.
set -uo pipefail
BUILD="$1" SRC="$2"
BENCH="$BUILD/tools/dsa-bench" HEAD="$BUILD/head/dsa-head" MK="$BUILD/tools/dsa-mkmodel"
missing() {
  echo "bench_tls: $1" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 77
}
for t in "$BENCH" "$HEAD" "$MK"; do [ -x "$t" ] || missing "$t not built"; done
command -v python3 >/dev/null || missing "python3 missing"
command -v openssl >/dev/null || missing "the openssl command is missing (Debian package openssl)"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dsa-bench-tls.XXXXXX")
HEAD_PID='' PROXY_PID=''
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  for p in $PROXY_PID $HEAD_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
fail=0
check() { # check NAME COND-RESULT MESSAGE
  if [ "$2" = 0 ]; then echo "PASS  $1"; else echo "FAIL  $1: $3"; fail=1; fi
}

# --- certificates ------------------------------------------------------------
ossl() { openssl "$@" >>"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log"; exit 1; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=dsa test CA" -keyout "$TMP/ca.key" -out "$TMP/ca.pem"
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=some other CA" -keyout "$TMP/other.key" -out "$TMP/other.pem"
ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout "$TMP/server.key" -out "$TMP/server.csr"
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
  >"$TMP/ext.cnf"
ossl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
  -CAcreateserial -days 2 -extfile "$TMP/ext.cnf" -out "$TMP/server.pem"

# --- dsa-head (with a key) and the terminator --------------------------------
KEY=sk-tls-test-key
"$MK" --out "$TMP/tiny" >/dev/null || exit 1
"$HEAD" --model "$TMP/tiny" --host 127.0.0.1 --port 0 --port-file "$TMP/port" \
  --api-key "$KEY" --threads 1 --log-format text --disable-log-requests >"$TMP/head.log" 2>&1 &
HEAD_PID=$!
for _ in $(seq 1 300); do [ -s "$TMP/port" ] && break; sleep 0.1; done
[ -s "$TMP/port" ] || { echo "dsa-head did not start"; cat "$TMP/head.log"; exit 1; }
python3 "$SRC/tests/bench/tls_proxy.py" "$TMP/server.pem" "$TMP/server.key" \
  "$(cat "$TMP/port")" "$TMP/tls_port" "$TMP/sni" >"$TMP/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 300); do [ -s "$TMP/tls_port" ] && break; sleep 0.1; done
[ -s "$TMP/tls_port" ] || { echo "the TLS terminator did not start"; cat "$TMP/proxy.log"; exit 1; }
TLS_PORT=$(cat "$TMP/tls_port")

# bench NAME URL [ARGS...]: runs dsa-bench (bounded), keeps rc, output, JSON.
bench() {
  local name=$1 url=$2
  shift 2
  timeout 120 "$BENCH" --backend openai-chat --base-url "$url" --api-key "$KEY" \
    --model "$TMP/tiny" --num-prompts 3 --random-input-len 16 --random-output-len 4 \
    --ignore-eos --max-concurrency 2 --seed 5 --disable-tqdm \
    --save-result --result-dir "$TMP" --result-filename "$name.json" "$@" \
    >"$TMP/$name.out" 2>&1
  echo $?
}
completed() { # completed NAME: "completed failed" of the saved result
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["completed"], d["failed"])' \
    "$TMP/$1.json" 2>/dev/null || echo "no result"
}

rc=$(bench verified "https://localhost:$TLS_PORT" --ca-cert "$TMP/ca.pem" --ready-check-timeout-sec 30)
res=$(completed verified)
check "https://localhost with --ca-cert: 3 of 3 completed" \
  "$([ "$rc" = 0 ] && [ "$res" = "3 0" ]; echo $?)" "exit $rc, completed/failed $res: $(tail -n 5 "$TMP/verified.out")"
sort -u "$TMP/sni" >"$TMP/sni.u"
check "SNI sent: localhost" "$([ "$(cat "$TMP/sni.u")" = localhost ]; echo $?)" \
  "the terminator saw: $(tr '\n' ' ' <"$TMP/sni.u")"

for case in "wrong-ca:--ca-cert $TMP/other.pem" "system-store:"; do
  name=${case%%:*} extra=${case#*:}
  t0=$SECONDS
  # shellcheck disable=SC2086  # extra is empty or an option and its file
  rc=$(bench "$name" "https://localhost:$TLS_PORT" $extra --ready-check-timeout-sec 30)
  dt=$((SECONDS - t0))
  out=$(cat "$TMP/$name.out")
  ok=1
  [ "$rc" = 1 ] && [ $dt -lt 20 ] && grep -q "certificate verify failed" <<<"$out" &&
    grep -q -- "--ca-cert" <<<"$out" && ok=0
  check "$name: refused in ${dt}s with a certificate error" $ok "exit $rc after ${dt}s: $out"
done

rc=$(bench ip-mismatch "https://127.0.0.1:$TLS_PORT" --ca-cert "$TMP/ca.pem" --ready-check-timeout-sec 30)
out=$(cat "$TMP/ip-mismatch.out")
check "https://127.0.0.1 against a localhost certificate: refused" \
  "$([ "$rc" = 1 ] && grep -q "IP address mismatch" <<<"$out"; echo $?)" "exit $rc: $out"

rc=$(bench insecure "https://127.0.0.1:$TLS_PORT" --insecure --ready-check-timeout-sec 30)
res=$(completed insecure)
check "--insecure: 3 of 3 completed" "$([ "$rc" = 0 ] && [ "$res" = "3 0" ]; echo $?)" \
  "exit $rc, completed/failed $res: $(tail -n 5 "$TMP/insecure.out")"

rc=$(bench no-ready "https://localhost:$TLS_PORT" --ca-cert "$TMP/other.pem" --ready-check-timeout-sec 0)
ok=$(python3 - "$TMP/no-ready.json" <<'PY' 2>&1
import json, sys
d = json.load(open(sys.argv[1]))
bad = [e for e in d["errors"] if "certificate verify failed" not in e]
print(0 if d["completed"] == 0 and d["failed"] == 3 and not bad else f"{d['completed']} {d['failed']} {d['errors']}")
PY
)
check "no ready check, wrong CA: 3 of 3 failed with the certificate error" \
  "$([ "$rc" = 0 ] && [ "$ok" = 0 ]; echo $?)" "exit $rc: $ok"

rc=$(bench plain-opts "http://127.0.0.1:$(cat "$TMP/port")" --insecure --ready-check-timeout-sec 1)
check "--insecure with http:// is refused" \
  "$([ "$rc" = 1 ] && grep -q "need an https://" "$TMP/plain-opts.out"; echo $?)" "exit $rc"
exit $fail
