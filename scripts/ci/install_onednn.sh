#!/usr/bin/env bash
# Installs oneDNN 3 (the CPU convolutions' library) from a package instead of a build: PyPI's
# `onednn-cpu-gomp` 2023.2.0 wheel (Intel's CPU-only build of oneDNN 3.2 with GNU OpenMP; 39 MB,
# needs only libgomp1) is downloaded with pip, its hash checked, and libdnnl.so.3 copied into
# PREFIX/lib (default /usr/local/lib), where the engine opens it before Debian 12's libdnnl.so.2.
# Seconds, where scripts/ci/build_onednn.sh (oneDNN 3.7.2 from source) takes about 40 minutes on two
# cores; on the 2-core AVX-512 machine both run the cifar UNet equally fast (docs/experiments/speed.md).
#
# Not this route: PyPI's newer `onednn` wheels (2024.0–2026.1, oneDNN 3.13 in 2026.1.0) are SYCL
# builds: they need libsycl and Intel's compiler runtime (~430 MB of wheels) and create no CPU
# engine without a SYCL CPU device ("SYCL cpu devices queried but not found").
#
# Leaves a libdnnl.so.3 that is already in PREFIX/lib and not this script's (e.g. build_onednn.sh's)
# as it is.
#
#   scripts/ci/install_onednn.sh [PREFIX]
set -euo pipefail
package=onednn-cpu-gomp
version=2023.2.0
wheel=onednn_cpu_gomp-2023.2.0-py2.py3-none-manylinux1_x86_64.whl
sha256=2f22a54d6a890ed14bfa185d42a4be65d8b5b1df85dc1f0f3a9abe31620416fb
prefix="${1:-/usr/local}"
stamp="$prefix/lib/flexiffusion-onednn-wheel-$version"
if [ -f "$stamp" ] && [ -e "$prefix/lib/libdnnl.so.3" ]; then
    echo "oneDNN 3 ($package $version) is already in $prefix/lib"
    exit 0
fi
if [ -e "$prefix/lib/libdnnl.so.3" ]; then
    echo "$prefix/lib/libdnnl.so.3 is already there (not from $package $version): left as it is"
    exit 0
fi
if [ "$(uname -m)" != x86_64 ]; then
    echo "$package ships x86-64 Linux libraries only; the engine uses Debian's libdnnl.so.2 on $(uname -m)"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! python3 -m pip --version > /dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends python3-pip
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 "$package==$version" -d "$work"
[ -f "$work/$wheel" ] || { echo "pip did not bring $wheel (it brought: $(ls "$work"))" >&2; exit 1; }
echo "$sha256  $work/$wheel" | sha256sum -c --quiet -
python3 - "$work/$wheel" "$work/lib" <<'EOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("/lib/libdnnl.so.3.2"))
    os.makedirs(sys.argv[2])
    with z.open(name) as src, open(os.path.join(sys.argv[2], "libdnnl.so.3.2"), "wb") as dst:
        dst.write(src.read())
EOF
$sudo mkdir -p "$prefix/lib"
$sudo install -m 755 "$work/lib/libdnnl.so.3.2" "$prefix/lib/libdnnl.so.3.2"
$sudo ln -sf libdnnl.so.3.2 "$prefix/lib/libdnnl.so.3"
$sudo touch "$stamp"
if [ "$prefix" = /usr/local ]; then $sudo ldconfig; fi
echo "installed $prefix/lib/libdnnl.so.3 (oneDNN 3.2 from $package $version)"
