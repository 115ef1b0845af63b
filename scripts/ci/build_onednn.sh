#!/usr/bin/env bash
# Optional (the set-up installs oneDNN 3.2 from PyPI's CPU wheel instead: scripts/ci/install_onednn.sh).
# Builds oneDNN 3.7.2 (the engine's CPU convolutions) from Debian's source tarball and installs
# libdnnl.so.3 into a prefix (default /usr/local), where the engine opens it in preference to
# Debian 12's libdnnl.so.2: oneDNN 3's AVX2 convolutions are brgemm kernels, which 2.6 lacks (it has
# only jit:avx2 there), and PyTorch's CPU wheels use them. Only what the engine calls is built
# (convolutions, reorders and matrix products, inference, no graph API, examples or tests): about 40
# minutes on two cores. (Builds before 2026-12-07 had no matrix products: `--precision bf16` then keeps
# the GEMMs in fp32, and `devices` says so.)
# Skips the build when the prefix already holds this version.
#
#   scripts/ci/build_onednn.sh [PREFIX]
set -euo pipefail
version=3.7.2
sha256=0cc51ca26c1af6a2bb1e71e378e7046f3ceb3e71791ee9d4e246d50f904a6ea6
url="http://deb.debian.org/debian/pool/main/o/onednn/onednn_${version}+ds.orig.tar.xz"
prefix="${1:-/usr/local}"
stamp="$prefix/lib/flexiffusion-onednn-$version"
if [ -f "$stamp" ] && [ -e "$prefix/lib/libdnnl.so.3" ]; then
    echo "oneDNN $version is already in $prefix"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! command -v cmake > /dev/null || ! command -v ninja > /dev/null || ! command -v curl > /dev/null; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends cmake ninja-build curl g++ xz-utils
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetching $url"
curl -fsSL --retry 3 -o "$work/onednn.tar.xz" "$url"
echo "$sha256  $work/onednn.tar.xz" | sha256sum -c --quiet -
tar -xJf "$work/onednn.tar.xz" -C "$work"
src="$work/oneDNN-$version"
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DONEDNN_BUILD_GRAPH=OFF -DONEDNN_BUILD_EXAMPLES=OFF -DONEDNN_BUILD_TESTS=OFF \
    -DONEDNN_ENABLE_PRIMITIVE="CONVOLUTION;REORDER;MATMUL" -DONEDNN_ENABLE_WORKLOAD=INFERENCE -DONEDNN_CPU_RUNTIME=OMP > "$work/cmake.log" \
    || { cat "$work/cmake.log"; exit 1; }
echo "building oneDNN $version (convolutions, reorders and matrix products) on $(nproc) cores"
ninja -C "$work/build" -j "$(nproc)" > "$work/build.log" || { tail -50 "$work/build.log"; exit 1; }
# Only the library: oneDNN 3's headers in /usr/local/include would shadow Debian's version-2 headers,
# which the engine compiles against (it declares the few version-3 functions it needs itself).
$sudo mkdir -p "$prefix/lib"
$sudo cp -P "$work"/build/src/libdnnl.so.3* "$prefix/lib/"
$sudo touch "$stamp"
if [ "$prefix" = /usr/local ]; then $sudo ldconfig; fi
echo "installed $(ls "$prefix"/lib/libdnnl.so.3*) ($version)"
