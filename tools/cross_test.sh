#!/usr/bin/env bash
# tools/cross_test.sh — every CPU test program cross-built for AArch64 (xsimd's NEON backend) with
# cmake/aarch64-linux-gnu.cmake, then run under qemu-user. The other builds of the suite are
# x86-64: this is the one that compiles and checks the NEON paths (and none of the x86 ones), so
# run it after changing cpu/simd.hpp or a kernel's per-ISA branches. About 6 minutes to build on
# two cores and 8 to run. Installs what it needs: the cross compiler, qemu-user, and the target's
# zlib and xsimd packages (which adds arm64 to dpkg's foreign architectures).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
dir=build-cross-aarch64
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
bash tools/install_deps.sh g++-aarch64-linux-gnu qemu-user zlib1g-dev:arm64 libxsimd-dev:arm64
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DTOKRED_ENABLE_CUDA=OFF -DTOKRED_BUILD_BENCH=OFF -DTOKRED_BUILD_EXAMPLES=OFF -DTOKRED_BUILD_TOOLS=OFF >/dev/null
cmake --build "$dir" -j "$jobs"
ctest --test-dir "$dir" -j "$jobs" -L cpu --output-on-failure
