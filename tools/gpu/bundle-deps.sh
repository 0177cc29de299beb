#!/bin/sh
# bundle-deps.sh [DIR] - run HERE (the Debian dev machine); kit.sh calls it.
# Downloads the Debian packages a build needs that the GPU machine lacks
# and unpacks them into DIR/root (default tools/gpu/kit/deps/root), which
# check.sh uses only when it must build on the device (the kit's programs
# missing or not loadable there) through PKG_CONFIG_PATH / CPATH /
# LIBRARY_PATH.
#
#   libcjson, libpcre2-8: required by the root meson.build (common/);
#   libuv: the head's event loop;
#   pkgconf: in case the GPU image has no pkg-config;
#   node-llhttp: C sources head/meson.build names by absolute path
#     (/usr/share/llhttp); check.sh copies them there when missing.
# Criterion is not bundled (its .pc pulls libgit2, nanomsg, boxfort...):
# the GPU checks build only test_gpu_ops, the benchmarks and the head, which
# do not use it, so check.sh writes a stub criterion.pc to let tests/
# configure.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
deps=${1:-$here/kit/deps}
rm -rf "$deps"
mkdir -p "$deps/debs" "$deps/root"
deps=$(cd "$deps" && pwd)
cd "$deps/debs"
apt-get download libcjson1 libcjson-dev libpcre2-8-0 libpcre2-dev libuv1 libuv1-dev \
    node-llhttp pkgconf-bin libpkgconf3
for f in *.deb; do
    dpkg -x "$f" "$deps/root"
done
# Only what a build reads: headers, .so links, .pc files, llhttp's sources.
rm -rf "$deps/debs" "$deps/root/usr/share/doc" "$deps/root/usr/share/man"
find "$deps/root" -name '*.a' -delete
du -sh "$deps"
