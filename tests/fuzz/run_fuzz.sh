#!/usr/bin/env bash
# run_fuzz.sh - builds tests/fuzz/fuzz_head_request.c with clang's libFuzzer
# (+ ASan/UBSan) and runs it for a bounded time over a copy of the seed
# corpus.  Exit 77 (skip) without clang/libFuzzer outside CI.
# Usage: run_fuzz.sh BUILD_DIR SOURCE_DIR [SECONDS]   (default 30, or
#        $DSA_FUZZ_SECONDS)
set -euo pipefail
BUILD="$1"
SRC="$2"
SECONDS_MAX="${3:-${DSA_FUZZ_SECONDS:-30}}"
skip() {
  echo "head_fuzz: $*" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 77
}
command -v clang >/dev/null || skip "clang not installed (apt-get install clang)"
OUT="$BUILD/fuzz"
mkdir -p "$OUT"
LLHTTP=/usr/share/llhttp
# llhttp's generated C is compiled without sanitizers: it is not ours, and
# its hot loops would dominate the fuzzing time.
if [ ! -f "$OUT/llhttp.a" ] || [ "$LLHTTP/llhttp.c" -nt "$OUT/llhttp.a" ]; then
  for f in api http llhttp; do
    clang -O2 -w -fPIC -I/usr/share/include/llhttp -c "$LLHTTP/$f.c" -o "$OUT/llhttp_$f.o"
  done
  ar rcs "$OUT/llhttp.a" "$OUT"/llhttp_*.o
fi
# Can this clang build a libFuzzer target at all?  (If not: skip.)  After
# that, a failing build of ours is a failure, never a skip: a source file
# missing from the list below would otherwise hide the fuzzer for good.
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ return (int)(d && n) * 0; }\n' \
  >"$OUT/probe.c"
clang -fsanitize=fuzzer "$OUT/probe.c" -o "$OUT/probe" 2>/dev/null \
  || skip "clang cannot build with -fsanitize=fuzzer"
clang -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"$SRC" -I/usr/share/include/llhttp \
  $(pkg-config --cflags libcjson libuv) \
  "$SRC/tests/fuzz/fuzz_head_request.c" "$SRC/head/api.c" "$SRC/head/api_params.c" \
  "$SRC/head/api_logits.c" "$SRC/head/api_struct.c" "$SRC/head/json_in.c" "$SRC/head/http.c" \
  "$SRC/head/tools.c" "$SRC/common/toolcall.c" "$SRC/common/chat.c" "$SRC/common/chat_tools.c" "$SRC/common/pyjson.c" \
  "$SRC"/common/tokenizer.c "$SRC"/common/tok_*.c "$SRC"/common/gram_*.c \
  "$SRC/common/error.c" "$SRC/common/log.c" "$OUT/llhttp.a" \
  $(pkg-config --libs libcjson libuv libpcre2-8) -lm -lpthread -o "$OUT/fuzz_head_request" \
  2>"$OUT/build.log" \
  || { cat "$OUT/build.log" >&2; echo "head_fuzz: the fuzz target does not build" >&2; exit 1; }
rm -rf "$OUT/corpus"
cp -r "$SRC/tests/fuzz/corpus" "$OUT/corpus"
cd "$OUT"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ./fuzz_head_request corpus \
  -max_total_time="$SECONDS_MAX" -error_exitcode=1 -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -dict=<(printf '%s\n' '"POST"' '"GET"' '"HTTP/1.1"' '"Content-Length: "' \
          '"Transfer-Encoding: chunked"' '"\x0d\x0a"' '"/v1/completions"' \
          '"/v1/chat/completions"' '"\"prompt\""' '"\"messages\""' '"\"stop\""' \
          '"\"max_tokens\""' '"\"stream\""' '"\"temperature\""' '"\"logprobs\""' \
          '"Authorization: Bearer "' '"Expect: 100-continue"') \
  -print_final_stats=1 2>&1 | tail -25
