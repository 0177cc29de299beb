#!/usr/bin/env bash
# run_bench_head.sh - dsa-bench against dsa-head end to end: a dsa-mkmodel
# checkpoint served on 127.0.0.1 (ephemeral port), a few random prompts
# through both backends; the result JSON must show every request completed,
# prompt lengths the server counted the same (plus its BOS), output lengths
# equal to the server's usage and to max_tokens (--ignore-eos), and the
# server's generation_tokens_total must have grown by exactly the tokens
# dsa-bench counted (its warm-up request included).
# Usage: run_bench_head.sh BUILD_DIR SOURCE_DIR.  Exit 77 (skip) when a tool
# is missing.
set -uo pipefail
BUILD="$1"
BENCH="$BUILD/tools/dsa-bench" HEAD="$BUILD/head/dsa-head" MK="$BUILD/tools/dsa-mkmodel"
for t in "$BENCH" "$HEAD" "$MK"; do
  [ -x "$t" ] || { echo "bench_head: $t not built" >&2; exit 77; }
done
command -v python3 >/dev/null || { echo "bench_head: python3 missing" >&2; exit 77; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dsa-bench-head.XXXXXX")
HEAD_PID=
cleanup() {
  if [ -n "$HEAD_PID" ]; then kill "$HEAD_PID" 2>/dev/null; wait "$HEAD_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
"$MK" --out "$TMP/tiny" >/dev/null || exit 1
"$HEAD" --model "$TMP/tiny" --host 127.0.0.1 --port 0 --port-file "$TMP/port" \
  --threads 1 --log-format text --disable-log-requests >"$TMP/head.log" 2>&1 &
HEAD_PID=$!
for _ in $(seq 1 300); do [ -s "$TMP/port" ] && break; sleep 0.1; done
[ -s "$TMP/port" ] || { echo "dsa-head did not start"; cat "$TMP/head.log"; exit 1; }
PORT=$(cat "$TMP/port")

metric() { # prints vllm:generation_tokens_total
  python3 - "$PORT" <<'PY'
import sys, urllib.request
t = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
print(int(float([l.split()[-1] for l in t.splitlines()
                 if l.startswith("vllm:generation_tokens_total")][0])))
PY
}

status=0
for backend in openai openai-chat; do
  before=$(metric) || exit 1
  "$BENCH" --backend "$backend" --port "$PORT" --model "$TMP/tiny" --num-prompts 4 \
    --random-input-len 24 --random-output-len 6 --random-range-ratio 0.5 --ignore-eos \
    --max-concurrency 2 --seed 3 --ready-check-timeout-sec 30 --disable-tqdm \
    --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,99 \
    --save-result --result-dir "$TMP" --result-filename "$backend.json" \
    >"$TMP/$backend.out" 2>&1 || { cat "$TMP/$backend.out"; exit 1; }
  after=$(metric) || exit 1
  python3 - "$TMP/$backend.json" "$backend" "$before" "$after" <<'PY' || status=1
import json, sys
path, backend, before, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(path))
errs = []
def check(cond, what):
    if not cond:
        errs.append(what)
check(d["completed"] == 4 and d["failed"] == 0, f"completed {d['completed']} failed {d['failed']}: {d['errors']}")
if backend == "openai":  # chat prompts are wrapped by the template on the server
    check(all(u == i + 1 for u, i in zip(d["usage_prompt_tokens"], d["input_lens"])),
          f"server prompt tokens {d['usage_prompt_tokens']} vs input_lens {d['input_lens']} + BOS")
check(all(u > 0 for u in d["usage_prompt_tokens"]), "no usage.prompt_tokens")
check(sum(d["input_lens"]) == d["total_input_tokens"], "total_input_tokens")
check(sum(d["output_lens"]) == d["total_output_tokens"], "total_output_tokens")
check(all(3 <= o <= 9 for o in d["output_lens"]), f"output_lens {d['output_lens']}")
# the warm-up request is the first prompt again, with the same max_tokens
check(after - before == d["total_output_tokens"] + d["output_lens"][0],
      f"server generated {after - before}, dsa-bench counted {d['total_output_tokens']} + warm-up {d['output_lens'][0]}")
for k in ["request_throughput", "output_throughput", "total_token_throughput", "mean_ttft_ms",
          "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms", "p99_e2el_ms"]:
    check(isinstance(d.get(k), (int, float)) and d[k] > 0, f"{k} = {d.get(k)}")
# Chunks that arrive in one socket read share their arrival time, so with a
# tiny model most inter-token gaps can be 0: ITL and TPOT need only be sane.
for k in ["p50_itl_ms", "mean_tpot_ms"]:
    check(isinstance(d.get(k), (int, float)) and 0 <= d[k] < 60000, f"{k} = {d.get(k)}")
check(all(len(itl) >= 1 for itl in d["itls"]), "itls")
check(abs(d["request_throughput"] - d["completed"] / d["duration"]) < 1e-9, "request_throughput")
if errs:
    print(backend + ": " + "; ".join(errs))
    sys.exit(1)
print(f"{backend}: ok, {d['total_output_tokens']} output tokens, "
      f"{d['output_throughput']:.1f} tok/s, mean TTFT {d['mean_ttft_ms']:.1f} ms")
PY
done
exit $status
