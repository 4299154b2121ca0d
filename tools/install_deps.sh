#!/usr/bin/env bash
# Installs the Debian packages tokred builds with, when any is missing (Debian bookworm, as root),
# and any extra packages named on the command line (tools/bench.sh adds python3-matplotlib for
# the report's plots).
# The CUDA toolkit is optional and is used when /usr/local/cuda/bin/nvcc exists. The command-line
# program needs CLI11, nlohmann-json, fmt and zlib; its test reads its outputs back with Debian's
# numpy; the readers' fuzz targets build with clang and its libFuzzer runtime, and clang checks the
# headers for AArch64 with that target's C++ library.
set -euo pipefail
packages=(cmake ninja-build g++ libeigen3-dev libxsimd-dev catch2 libbenchmark-dev
          libcli11-dev nlohmann-json3-dev libfmt-dev zlib1g-dev python3-numpy
          clang libclang-rt-14-dev libstdc++-12-dev-arm64-cross "$@")
# A bare name is ambiguous to dpkg once the package is also installed for a foreign architecture
# (tools/cross_test.sh adds arm64 ones): then it is looked up for the native architecture.
native="$(dpkg --print-architecture)"
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "$p:$native" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tokred: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
