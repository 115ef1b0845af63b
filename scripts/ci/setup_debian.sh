#!/usr/bin/env bash
# Installs the Debian 12 packages Flexiffusion builds and runs with: the OpenCL loader and headers,
# CLBlast, PoCL (the CPU device, always present as the fallback), OpenBLAS (the CPU GEMM path) and
# oneDNN (the CPU convolution path: Debian's version 2, and version 3 from PyPI's CPU-only wheel by
# scripts/ci/install_onednn.sh, seconds).
# Swift 6 itself is expected on PATH (https://swift.org/install).
set -euo pipefail
packages=(ocl-icd-opencl-dev opencl-headers libclblast-dev pocl-opencl-icd libopenblas-dev libdnnl-dev libgomp1 python3-pip zlib1g-dev dataset-fashion-mnist clinfo)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
"$(dirname "$0")/install_onednn.sh"
