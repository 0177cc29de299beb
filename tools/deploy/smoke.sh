#!/usr/bin/env bash
# smoke.sh - checks a running DeepSeek-Alpha endpoint the way a client sees it.
#   tools/deploy/smoke.sh [--public] URL KEY
# URL is the base URL (https://api.example.com, or the internal NLB's
# http://HOST:8000); KEY an API key the head accepts.  Checks, one PASS/FAIL
# line each:
#   health      GET /health answers 200
#   models      GET /v1/models with the key answers 200 and lists a model
#               ($SMOKE_MODEL, when set, must be the one served)
#   stream      a streamed chat completion: chunks with content, then [DONE]
#   no key      GET /v1/models without a key answers 401
#   wrong key   GET /v1/models with a wrong key answers 401
#   metrics     with --public only: GET /metrics is refused (403/404): the
#               public load balancer must not expose it
# Environment: SMOKE_MODEL (expected served name), SMOKE_CA_CERT (PEM file
# of CAs to trust for https), SMOKE_TIMEOUT (seconds per request, default
# 120; the first generation on a cold server can be slow), SMOKE_WAIT
# (seconds to wait for /health to answer 200 first, e.g. while the weights
# load; default 0).
# Exits 0 when every check passed, 1 otherwise, 2 on bad usage.
set -uo pipefail

public=0
if [ "${1:-}" = --public ]; then public=1; shift; fi
if [ $# -ne 2 ] || [ -z "$1" ]; then
  echo "usage: $0 [--public] URL KEY" >&2
  exit 2
fi
URL=${1%/} KEY=$2
TIMEOUT=${SMOKE_TIMEOUT:-120}
for t in curl python3; do
  command -v "$t" >/dev/null || { echo "smoke: $t is required" >&2; exit 2; }
done
CURL=(curl -sS --max-time "$TIMEOUT" --connect-timeout 10)
[ -n "${SMOKE_CA_CERT:-}" ] && CURL+=(--cacert "$SMOKE_CA_CERT")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dsa-smoke.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
failed=0

result() { # result NAME OK DETAIL
  if [ "$2" = 1 ]; then
    printf 'PASS  %-10s %s\n' "$1" "$3"
  else
    printf 'FAIL  %-10s %s\n' "$1" "$3"
    failed=1
  fi
}

# status FILE ARGS...: the HTTP status of a request (000 when none came),
# the body in FILE.
status() {
  local out=$1
  shift
  "${CURL[@]}" -o "$out" -w '%{http_code}' "$@" 2>"$TMP/curl.err" || true
}

wait_s=${SMOKE_WAIT:-0}
end=$((SECONDS + wait_s))
code=$(status "$TMP/health" "$URL/health")
while [ "$code" != 200 ] && [ $SECONDS -lt $end ]; do
  sleep 5
  code=$(status "$TMP/health" "$URL/health")
done
result health "$([ "$code" = 200 ] && echo 1)" "GET /health -> $code $(head -c 200 "$TMP/health" 2>/dev/null) $(cat "$TMP/curl.err")"

code=$(status "$TMP/models" -H "Authorization: Bearer $KEY" "$URL/v1/models")
model=""
if [ "$code" = 200 ]; then
  model=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
ids = [m["id"] for m in d.get("data", [])]
want = sys.argv[2]
print(want if want and want in ids else (ids[0] if ids and not want else ""))
' "$TMP/models" "${SMOKE_MODEL:-}" 2>/dev/null)
fi
if [ -n "$model" ]; then
  result models 1 "GET /v1/models -> 200, serving \"$model\""
else
  result models 0 "GET /v1/models -> $code (want 200 listing ${SMOKE_MODEL:-a model}): $(head -c 300 "$TMP/models" 2>/dev/null) $(cat "$TMP/curl.err")"
fi

if [ -n "$model" ]; then
  body=$(python3 -c 'import json, sys; print(json.dumps({"model": sys.argv[1],
    "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16,
    "stream": True}))' "$model")
  t0=$(date +%s.%N)
  code=$(status "$TMP/stream" -N -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "$body" "$URL/v1/chat/completions")
  t1=$(date +%s.%N)
  verdict=$(python3 - "$TMP/stream" <<'PY'
import json, sys
events = [l[6:] for l in open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
          if l.startswith("data: ")]
if not events or events[-1].strip() != "[DONE]":
    print("no [DONE] at the end of the stream"); sys.exit()
chunks, text = 0, ""
for e in events[:-1]:
    d = json.loads(e)
    if "error" in d:
        print("error event: %s" % d["error"]); sys.exit()
    for c in d.get("choices", []):
        delta = c.get("delta", {})
        piece = delta.get("content") or delta.get("reasoning_content") or ""
        if piece:
            chunks += 1
            text += piece
print("ok %d content chunks: %r" % (chunks, text[:60]) if chunks else "no content in the stream")
PY
  )
  secs=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$t1")
  if [ "$code" = 200 ] && [ "${verdict#ok }" != "$verdict" ]; then
    result stream 1 "POST /v1/chat/completions (stream) -> 200 in ${secs}s, ${verdict#ok }"
  else
    result stream 0 "POST /v1/chat/completions (stream) -> $code: ${verdict:-$(head -c 300 "$TMP/stream")} $(cat "$TMP/curl.err")"
  fi
else
  result stream 0 "not tried: no model to ask"
fi

code=$(status "$TMP/nokey" "$URL/v1/models")
result "no key" "$([ "$code" = 401 ] && echo 1)" "GET /v1/models without a key -> $code (want 401)"
code=$(status "$TMP/badkey" -H "Authorization: Bearer not-$KEY" "$URL/v1/models")
result "wrong key" "$([ "$code" = 401 ] && echo 1)" "GET /v1/models with a wrong key -> $code (want 401)"

if [ $public = 1 ]; then
  code=$(status "$TMP/metrics" "$URL/metrics")
  result metrics "$([ "$code" = 403 ] || [ "$code" = 404 ] && echo 1)" \
    "GET /metrics on the public endpoint -> $code (want 403 or 404: scrape it inside the VPC)"
fi

if [ $failed = 0 ]; then echo "SMOKE: PASS"; else echo "SMOKE: FAIL"; fi
exit $failed
