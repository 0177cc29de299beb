#!/usr/bin/env bash
# setup.sh - installs the Debian packages DeepSeek-Alpha builds and tests
# with (only those missing), then configures the build directory.
# Usage: tools/setup.sh [BUILD_DIR]      (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential meson ninja-build pkg-config python3 python3-venv curl
  libuv1-dev node-llhttp libpcre2-dev libcjson-dev libcriterion-dev
  libopenmpi-dev openmpi-bin clang libclang-rt-14-dev libssl-dev openssl
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The CUDA backend's library headers (FlashInfer, CUTLASS: pinned wheels,
# hash-checked), only where nvcc is present.
if command -v nvcc > /dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  tools/gpu/headers.sh
fi

BUILD="${1:-build}"
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" --buildtype=release -Db_ndebug=false
fi
