#!/usr/bin/env bash
# tools/isa_sweep.sh [ARCH ...] — every CPU test program built for each -march given (default:
# x86-64-v3, i.e. AVX2 with FMA and F16C, and native), then all of them run. tools/test.sh runs
# every test for the default target but only the ISA-specific kernels' tests with -march=native;
# this is the whole sweep, about ten minutes per target on two cores. Run it after changing code
# whose rounding a method's original fixes: a compiler that contracts a·b + c into a fused
# multiply-add (g++ does wherever the target has FMA) changes only such builds. CXX picks the
# compiler (CXX=clang++ tools/isa_sweep.sh native); each compiler gets build folders of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(x86-64-v3 native)
for arch in "${archs[@]}"; do
  dir="build-isa-$arch${CXX:+-$(basename "$CXX")}"
  echo "tokred: every CPU test built by ${CXX:-the default compiler} with -march=$arch, in $dir"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-march=$arch" \
    ${CXX:+-DCMAKE_CXX_COMPILER="$CXX"} \
    -DTOKRED_ENABLE_CUDA=OFF -DTOKRED_BUILD_BENCH=OFF -DTOKRED_BUILD_EXAMPLES=OFF -DTOKRED_BUILD_TOOLS=OFF >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" -j "$jobs" -L cpu --output-on-failure
done
