#!/usr/bin/env bash
# kit.sh - builds HERE (the Debian machine, nvcc installed) everything a GPU
# run needs into one folder, tools/gpu/kit (gitignored), that the device
# call carries:
#   bin/  test_gpu_ops (parity suite), dsa-bench-gpu (op and shard-step
#         benchmarks), dsa-head, dsa-worker, dsa-generate, dsa-mkmodel;
#   lib/  the shared libraries those programs load that the GPU machine's
#         image lacks (libcjson, libpcre2-8, libuv, libssl/libcrypto...,
#         found with ldd; libc and the CUDA libraries are left to the
#         machine: check.sh finds cuBLASLt and NCCL there);
#   deps/ the Debian dev packages (bundle-deps.sh) for check.sh's fallback
#         build on the device;
#   MANIFEST  the build's options, the git commit, sizes.
# The device machine then runs no compiler at all (check.sh builds there
# only when the kit is missing).  The programs get an rpath of $ORIGIN/../lib
# through LD_LIBRARY_PATH set by check.sh; nothing is installed system-wide.
#
# Usage: tools/gpu/kit.sh [--build DIR] [--out DIR]
#   --build DIR  reuse an existing CUDA build (CI passes its release build, so
#                the CUDA sources are compiled once); default build-kit,
#                configured release with -Dmarch=x86-64-v3 so the CPU
#                reference runs on any GPU host's processor.
#   --out DIR    the kit folder (default tools/gpu/kit).
# Prints the kit's size last and fails when it exceeds 60 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$(pwd)
build=build-kit
kit=tools/gpu/kit
while (($#)); do
    case "$1" in
    --build) build=${2:?--build DIR}; shift 2 ;;
    --out) kit=${2:?--out DIR}; shift 2 ;;
    *) echo "usage: kit.sh [--build DIR] [--out DIR]" >&2; exit 2 ;;
    esac
done
limit_mib=60
export PATH="/usr/local/cuda/bin:$PATH"
command -v nvcc >/dev/null || { echo "kit.sh: nvcc not found (the kit needs the CUDA build)" >&2; exit 1; }

if [ ! -f "$build/build.ninja" ]; then
    nice -n 10 meson setup "$build" -Dcuda=enabled --buildtype=release -Db_ndebug=false \
        -Dmarch=x86-64-v3
fi
grep -q "DSA_HAVE_CUDA" "$build/build.ninja" ||
    { echo "kit.sh: $build is not a CUDA build (configure it with -Dcuda=enabled)" >&2; exit 1; }
targets=(tests/test_gpu_ops kernels/cuda/dsa-bench-gpu head/dsa-head worker/dsa-worker
         tools/dsa-generate tools/dsa-mkmodel)
nice -n 10 ninja -C "$build" "${targets[@]}"

rm -rf "$kit"
mkdir -p "$kit/bin" "$kit/lib"
for t in "${targets[@]}"; do
    cp "$build/$t" "$kit/bin/"
    strip --strip-debug "$kit/bin/$(basename "$t")"
done

# Libraries the image has (glibc, the C++ runtime, the driver, CUDA's own)
# stay out: they must match the machine, not this one.
keep_out='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libgcc_s\.|libstdc\+\+\.|libcuda\.|libcudart\.|libcublas|libnccl|libnvidia)'
for b in "$kit"/bin/*; do
    ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
    if [[ ! "$name" =~ $keep_out ]]; then
        cp -L "$path" "$kit/lib/$name"
        strip --strip-unneeded "$kit/lib/$name" 2>/dev/null || true
    fi
done

# For check.sh's fallback build on the device (the kit's programs not
# loadable there): the Debian dev packages the configure step needs.
if ! sh tools/gpu/bundle-deps.sh "$kit/deps" > "$kit/deps.log" 2>&1; then
    echo "kit.sh: WARNING: could not bundle the build dependencies (see $kit/deps.log);" \
        "the kit runs, but check.sh cannot fall back to building on the device" >&2
fi

# Open MPI's run-time plugins are not bundled: dsa-worker under mpirun is a
# multi-node job, which a one-GPU machine does not run; a single-GPU serving
# run uses dsa-head --device cuda (the in-process worker).
size_kib=$(du -sk "$kit" | cut -f1)
{
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
    echo "build dir: $build"
    echo "options: $(meson introspect --buildoptions "$build" 2>/dev/null |
        python3 -c 'import json,sys; o={x["name"]:x["value"] for x in json.load(sys.stdin)}; print(" ".join(f"{k}={o[k]}" for k in ("buildtype","march","cuda","b_sanitize") if k in o))' ||
        echo unknown)"
    echo "nvcc: $(nvcc --version | tail -1)"
    echo "programs:"; (cd "$kit/bin" && ls -l | awk 'NR > 1 {print "  " $9, $5}')
    echo "libraries:"; (cd "$kit/lib" && ls -l | awk 'NR > 1 {print "  " $9, $5}')
    echo "size_kib: $size_kib"
} > "$kit/MANIFEST"
echo "kit.sh: kit in $src/$kit: $((size_kib / 1024)) MiB ($size_kib KiB), $(ls "$kit/bin" | wc -l) programs, $(ls "$kit/lib" | wc -l) libraries"
if ((size_kib > limit_mib * 1024)); then
    echo "kit.sh: the kit is over $limit_mib MiB" >&2
    exit 1
fi
