#!/usr/bin/env bash
# headers.sh - fetches the two pinned PyPI wheels whose C++ headers the CUDA
# backend compiles against (FlashInfer with the CUTLASS and CCCL it bundles;
# NVIDIA's CUTLASS), checks them against the sha256 recorded here, and
# unpacks only their headers and licences into .deps/gpu-headers/.
# Nothing from them is committed (.deps/ is ignored) and nothing needs
# Python at run time: pip only downloads (--no-deps) and Python's zipfile
# unpacks.  tools/setup.sh runs this whenever nvcc is present.
# Usage: tools/gpu/headers.sh [--check]   (--check: only say whether present)
set -euo pipefail
cd "$(dirname "$0")/../.."

FLASHINFER_VERSION=0.7.4
FLASHINFER_SHA256=a051a62e09a2738e8b0de47a1944fd2f0f3eff01b728b662141ea660cb09dd32
CUTLASS_VERSION=4.2.0.0
CUTLASS_SHA256=f9599ada45c7bcb6bf53f7d3f0a7d154183e53451c01bfa59eecd37dd4a693f6

DEST=.deps/gpu-headers
# .complete names the versions unpacked; kernels/cuda/meson.build refuses
# to configure without it.
STAMP="$DEST/.complete"
# (the layout number changes when what is unpacked changes)
WANT="flashinfer-python $FLASHINFER_VERSION, nvidia-cutlass $CUTLASS_VERSION, layout 2"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "headers.sh: $DEST is missing or stale (run tools/gpu/headers.sh)" >&2
  exit 1
fi

# pip: the system's if it has one, else a small venv of our own (Debian's
# python3 has no pip module; python3-venv is in setup.sh's packages).
PIP=(python3 -m pip)
if ! python3 -m pip --version > /dev/null 2>&1; then
  VENV="${XDG_CACHE_HOME:-$HOME/.cache}/dsa-pip"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" >&2
  PIP=("$VENV/bin/pip")
fi

WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/dsa-wheels"
mkdir -p "$WHEELS"
fetch() {  # name version sha256 file
  local f="$WHEELS/$4"
  if [ ! -f "$f" ] || ! echo "$3  $f" | sha256sum -c --status; then
    rm -f "$f"
    "${PIP[@]}" download -q --disable-pip-version-check --no-deps \
      --only-binary=:all: "$1==$2" -d "$WHEELS" >&2
  fi
  if ! echo "$3  $f" | sha256sum -c --status; then
    echo "headers.sh: $f does not match the recorded sha256 $3" >&2
    exit 1
  fi
}
fetch flashinfer-python "$FLASHINFER_VERSION" "$FLASHINFER_SHA256" \
  "flashinfer_python-$FLASHINFER_VERSION-py3-none-any.whl"
fetch nvidia-cutlass "$CUTLASS_VERSION" "$CUTLASS_SHA256" \
  "nvidia_cutlass-$CUTLASS_VERSION-py3-none-any.whl"

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
python3 - "$WHEELS" "$DEST.tmp" "$FLASHINFER_VERSION" "$CUTLASS_VERSION" <<'PY'
import os, sys, zipfile
wheels, dest, fi_ver, cl_ver = sys.argv[1:]
# (wheel, prefix inside it, where it goes): headers and licences only.
plan = [
    (f"flashinfer_python-{fi_ver}-py3-none-any.whl", [
        ("flashinfer/data/include/", "flashinfer/include/"),
        ("flashinfer/data/cutlass/include/", "flashinfer/cutlass/include/"),
        # cutlass/util/*.h: FlashInfer's FA3 prefill includes them
        ("flashinfer/data/cutlass/tools/util/include/", "flashinfer/cutlass/tools/util/include/"),
        ("flashinfer/data/cccl/", "flashinfer/cccl/"),
        (f"flashinfer_python-{fi_ver}.dist-info/licenses/", "flashinfer/licenses/"),
    ]),
    (f"nvidia_cutlass-{cl_ver}-py3-none-any.whl", [
        ("cutlass_library/source/include/", "cutlass/include/"),
        (f"nvidia_cutlass-{cl_ver}.dist-info/licenses/", "cutlass/licenses/"),
    ]),
]
for wheel, maps in plan:
    with zipfile.ZipFile(os.path.join(wheels, wheel)) as z:
        n = 0
        for info in z.infolist():
            if info.is_dir():
                continue
            for src, dst in maps:
                if info.filename.startswith(src):
                    rel = info.filename[len(src):]
                    if ".." in rel.split("/"):
                        sys.exit(f"headers.sh: unsafe path {info.filename} in {wheel}")
                    out = os.path.join(dest, dst, rel)
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    with z.open(info) as fin, open(out, "wb") as fout:
                        fout.write(fin.read())
                    n += 1
                    break
        if n == 0:
            sys.exit(f"headers.sh: nothing unpacked from {wheel}")
        print(f"headers.sh: {n} files from {wheel}", file=sys.stderr)
PY
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "$WANT" > "$STAMP"
