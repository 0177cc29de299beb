#!/usr/bin/env bash
# check.sh [--dry-run] OUTDIR - the GPU checks in one device call, well
# inside 6 minutes on an H100, with the kit built here by tools/gpu/kit.sh:
#   carry:   ["tools/gpu/kit"]
#   command: tools/gpu/check.sh $OUT
# Sections, each under its own `timeout` (cut to what is left of a 330 s
# budget, so the whole call ends inside 6 minutes whatever hangs), each
# printing as it goes (line-buffered) and keeping its whole output as
# <section>.txt in OUTDIR/results.tar.gz:
#   device     nvidia-smi, nvcc, where cuBLASLt and NCCL were found;
#   parity-*   the parity suite (tests/gpu), one process per group, so a
#              crash in one group does not hide the others (linear-real and
#              moe-real: V3's real shapes, each FP8 path forced; mla and
#              prefill: MLA attention at V3's real shapes, FlashInfer's
#              kernels); then the linear group again with DSA_CUDA_NO_LT=1
#              (the dequantising kernels), and last, if time is left, the mla
#              group on our own MLA kernel (DSA_CUDA_MLA=portable);
#   sanitizer  compute-sanitizer memcheck over two short groups;
#   bench      the op benchmarks and the shard step, its per-op breakdown;
#   serve      dsa-head --device cuda on the tiny MTP golden model (it has
#              a tokenizer) on loopback, one chat completion through it.
# The kit is used when present and loadable; otherwise the CUDA build is
# configured and built here (build-gpu), which costs minutes (fallback only).
# --dry-run prints the commands and the time limits instead of running
# them (CI runs it); it needs no GPU and no kit.
set -uo pipefail
dry=0
if [ "${1:-}" = "--dry-run" ]; then
    dry=1
    shift
fi
dest=${1:?usage: check.sh [--dry-run] OUTDIR}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
# The device tool brings back at most 8 files from OUTDIR: the sections
# write into a work folder that is packed into OUTDIR/results.tar.gz after
# every section (a run cut short still returns what it finished), next to
# OUTDIR/summary.txt.
out=$(mktemp -d)
pack() {
    tar -czf "$dest/results.tar.gz.tmp" -C "$out" . && mv "$dest/results.tar.gz.tmp" "$dest/results.tar.gz"
    printf '%s\n' "${summary[@]}" > "$dest/summary.txt"
}
src=$(cd "$(dirname "$0")/../.." && pwd)
cd "$src"
kit=${DSA_GPU_KIT:-$src/tools/gpu/kit}
budget_s=${DSA_GPU_BUDGET_S:-330}  # every section's limit is cut to what is left of it
t_start=$(date +%s)
declare -a summary=()

# run NAME LIMIT_S CMD... - one section: prints each line as it comes,
# keeps it in OUTDIR/NAME.txt, records rc and seconds for the summary.
run() {
    local name=$1 limit=$2
    shift 2
    if ((dry)); then
        printf '[dry-run] %-16s timeout %4ss: %s\n' "$name" "$limit" "$*"
        summary+=("$(printf '%-16s dry-run (limit %ss)' "$name" "$limit")")
        return 0
    fi
    local left=$((budget_s - ($(date +%s) - t_start)))
    if ((left < 5)); then
        echo "== $name SKIPPED: the ${budget_s}s budget is spent"
        summary+=("$(printf '%-16s SKIPPED (budget spent)' "$name")")
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit}s)"
    local t0 rc
    t0=$(date +%s)
    # bash -c: a section may be a shell function (exported below)
    timeout -k 5 "$limit" stdbuf -oL -eL bash -c '"$@"' section "$@" 2>&1 | tee "$out/$name.txt"
    rc=${PIPESTATUS[0]}
    local dt=$(($(date +%s) - t0))
    local note=""
    ((rc == 124 || rc == 137)) && note=" TIMED OUT"
    summary+=("$(printf '%-16s rc=%-3s %4ss%s  %s' "$name" "$rc" "$dt" "$note" \
        "$(grep -E 'passed|failed|FAIL' "$out/$name.txt" | tail -1)")")
    pack
    return 0
}

# The CUDA libraries the kit leaves to the machine: the toolkit's, else the
# wheels PyTorch brings (nvidia-cublas, nvidia-nccl-cu13).
cuda_libs() {
    local d
    for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -d "$d" ] && printf '%s:' "$d"
    done
    if command -v python3 >/dev/null; then
        python3 - <<'EOF' 2>/dev/null
import importlib.util, os
for m in ("nvidia.cublas", "nvidia.nccl", "nvidia.cuda_runtime", "nvidia.cu13"):
    try:
        spec = importlib.util.find_spec(m)
    except Exception:
        continue
    for p in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("lib", "lib64"):
            if os.path.isdir(os.path.join(p, sub)):
                print(os.path.join(p, sub), end=":")
EOF
    fi
}

export PATH="/usr/local/cuda/bin:$PATH"
libs="$kit/lib:$(cuda_libs)"
export LD_LIBRARY_PATH="${libs%:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DSA_TEST_DATA="$src/tests/data"
bin=$kit/bin
if ((dry)); then
    echo "[dry-run] kit: $kit ($( [ -d "$kit" ] && du -sh "$kit" | cut -f1 || echo 'absent: would build build-gpu here'))"
    echo "[dry-run] LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
elif [ ! -x "$bin/test_gpu_ops" ] || ldd "$bin/test_gpu_ops" | grep -q "not found"; then
    echo "check.sh: kit missing or not loadable here; building build-gpu (fallback)"
    [ -x "$bin/test_gpu_ops" ] && ldd "$bin/test_gpu_ops" | grep "not found"
    deps="$kit/deps/root"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/pc"
    if [ -d "$deps" ]; then
        for pc in $(find "$deps" -name '*.pc'); do
            sed "s|=/usr|=$deps/usr|g" "$pc" > "$tmp/pc/$(basename "$pc")"
        done
        export LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
        export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:$LD_LIBRARY_PATH"
        export CPATH="$deps/usr/include${CPATH:+:$CPATH}"
        if ! command -v pkg-config >/dev/null && [ -x "$deps/usr/bin/pkgconf" ]; then
            ln -sf "$deps/usr/bin/pkgconf" "$tmp/pkg-config"
            export PATH="$tmp:$PATH"
        fi
        # head/meson.build names llhttp's sources by absolute path.
        for d in share/llhttp share/include/llhttp; do
            [ -e "/usr/$d" ] || { mkdir -p "/usr/$(dirname $d)" && cp -r "$deps/usr/$d" "/usr/$d"; }
        done
    fi
    # tests/ configures only with Criterion; the GPU programs do not use it.
    pkg-config --exists criterion 2>/dev/null ||
        printf 'Name: criterion\nDescription: stub for the GPU checks\nVersion: 2.4.1\nLibs:\nCflags:\n' \
            > "$tmp/pc/criterion.pc"
    export PKG_CONFIG_PATH="$tmp/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    build=build-gpu
    [ -f "$build/build.ninja" ] ||
        meson setup "$build" -Dcuda=enabled --buildtype=release -Dmarch= > "$out/build.txt" 2>&1
    ninja -C "$build" -j"$(nproc)" tests/test_gpu_ops kernels/cuda/dsa-bench-gpu \
        head/dsa-head >> "$out/build.txt" 2>&1 ||
        { tail -40 "$out/build.txt"; echo "check.sh: build failed"; exit 1; }
    bin="$src/$build/bin-links"
    mkdir -p "$bin"
    ln -sf "$src/$build/tests/test_gpu_ops" "$src/$build/kernels/cuda/dsa-bench-gpu" \
        "$src/$build/head/dsa-head" "$bin/"
fi

device_info() {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
    nvcc --version | tail -2 || true
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    [ -f "$kit/MANIFEST" ] && cat "$kit/MANIFEST"
    ldd "$bin/test_gpu_ops" | grep -E "cublasLt|nccl|cudart|not found"
}
export kit bin src out
export -f device_info
run device 20 device_info

groups="basic linear attn moe sample graph mla prefill linear-real moe-real fused model"
# The binary names its groups without a GPU: a group added there and not
# here (or removed there) fails the dry run.
if [ -x "$bin/test_gpu_ops" ] && ! ldd "$bin/test_gpu_ops" | grep -q "not found"; then
    have=$("$bin/test_gpu_ops" --list | tr '\n' ' ')
    if [ "${have% }" != "$groups" ]; then
        echo "check.sh: test_gpu_ops has the groups \"${have% }\", this script runs \"$groups\"" >&2
        exit 1
    fi
fi
# The real-shape groups (issue 18: V3's linears and 256 experts) build
# ~1.4 GB of FP8 experts and the CPU reference: their own, longer limits.
for g in $groups; do
    # mla: real shapes (contexts to 32768, 8192-token prefill) with a CPU
    # reference on sampled rows, seconds of CPU per case
    limit=60
    # sample: the op tests plus the FlashInfer sampler's chi-square cases
    # (4 cases x 4096 draws on FlashInfer's and our kernel, 1024 on the CPU)
    case $g in linear-real) limit=75 ;; moe-real) limit=90 ;; mla) limit=120 ;; prefill) limit=90 ;; sample) limit=60 ;; esac
    run "parity-$g" $limit "$bin/test_gpu_ops" --group "$g" "$out/parity-$g.json"
done
run parity-nolt 60 env DSA_CUDA_NO_LT=1 "$bin/test_gpu_ops" --group linear "$out/parity-nolt.json"
# memcheck is ~10-50x slower: two short groups only
# (DSA_GPU_SAMPLE_QUICK: the sampler's chi-square cases with 64 draws each)
run sanitizer 60 env DSA_GPU_SAMPLE_QUICK=1 compute-sanitizer --tool memcheck --error-exitcode 3 \
    --print-limit 20 "$bin/test_gpu_ops" --group sample
run sanitizer-basic 40 compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 \
    "$bin/test_gpu_ops" --group basic
run bench 150 "$bin/dsa-bench-gpu" --json "$out/bench.json"
# A real serving run: the head with its in-process worker on the GPU.
serve() {
    local port=18431 pid rc=1
    "$bin/dsa-head" --model "$src/tests/data/golden/tiny-mtp" --device cuda --port $port \
        --served-model-name tiny-mtp --max-model-len 512 --gpu-memory-utilization 0.5 &
    pid=$!
    for _ in $(seq 1 100); do
        python3 - "$port" <<'EOF' && { rc=0; break; }
import json, sys, urllib.request
body = {"model": "tiny-mtp", "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "user", "content": "hello"}]}
try:
    r = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions", json.dumps(body).encode(),
        {"Content-Type": "application/json"}), timeout=10)
except OSError:
    sys.exit(1)
print(r.read().decode())
EOF
        kill -0 $pid 2>/dev/null || break
        sleep 0.2
    done
    kill $pid 2>/dev/null
    wait $pid
    ((rc == 0)) && echo "serve: 1 passed" || echo "serve: 1 failed"
    return $rc
}
export -f serve
run serve 40 serve
# Last, with what is left of the budget: the mla group's shapes on our own
# MLA kernel, for its times side by side with FlashInfer's.
run parity-mla-ours 120 env DSA_CUDA_MLA=portable "$bin/test_gpu_ops" --group mla \
    "$out/parity-mla-ours.json"

summary+=("total: $(($(date +%s) - t_start))s of the ${budget_s}s budget")
((dry)) || pack
echo "== summary"
printf '%s\n' "${summary[@]}"
rm -rf "$out"
