#!/usr/bin/env bash
# Builds and runs tokred's whole test suite. A Release build compiles the library's headers one by
# one, the examples, benchmarks, the tokred program and the CUDA tests, and runs every test it has
# (CUDA tests skip without a device; the program's test reads its outputs back with numpy); the
# file readers and the spec parser are fuzzed for a bounded number of runs; then the CPU tests are
# built with AddressSanitizer and UndefinedBehaviorSanitizer and run there. The CPU tests are
# compiled and run once, in the sanitizer build: the same checks, with memory and undefined
# behaviour watched, for one compile of each test program. Last, the test programs of the kernels
# with ISA-specific code run again built for this machine's own ISA. Installs missing packages
# first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/install_deps.sh
jobs="$(nproc)"
# Each stage's wall time, so that a slower run shows where the time went.
stage_start=$SECONDS
stage_done() {
  echo "tokred: $1 took $((SECONDS - stage_start)) s"
  stage_start=$SECONDS
}

# CUDA code is compiled for one architecture here (sm_90, the H100/H200 the CUDA tests run on):
# that it compiles is what a machine without a GPU can check, and one architecture halves nvcc's
# time. A normal build compiles for sm_80 and sm_90. The host half of each .cu file (test
# harnesses and oracles that run only where there is a GPU) is compiled at -O1: nvcc's -O sets the
# host compiler's level only, so the device code is optimised as in any build, and the host
# compiles take half the time (test_vidkv_cache_cuda.cu: 41 s -> 20 s of its 66 s).
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_CUDA_FLAGS_RELEASE="-O1 -DNDEBUG" -DTOKRED_BUILD_CPU_TESTS=OFF >/dev/null
cmake --build build-test -j "$jobs"
stage_done "the Release build"
ctest --test-dir build-test -j "$jobs" --output-on-failure --no-tests=error
stage_done "the Release tests"

echo "tokred: fuzzing the file readers and the spec parser"
bash tools/fuzz.sh
stage_done "fuzzing"

echo "tokred: the CPU tests under AddressSanitizer + UndefinedBehaviorSanitizer"
# -g1 (line tables only) instead of Debug's -g: the reports keep file and line, and the build
# takes about a quarter less time.
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DTOKRED_SANITIZE=ON \
  -DTOKRED_ENABLE_CUDA=OFF -DTOKRED_BUILD_BENCH=OFF -DTOKRED_BUILD_EXAMPLES=OFF -DTOKRED_BUILD_TOOLS=OFF >/dev/null
cmake --build build-sanitize -j "$jobs"
stage_done "the sanitizer build"
ctest --test-dir build-sanitize -j "$jobs" -L cpu --output-on-failure --no-tests=error
stage_done "the sanitizer tests"

echo "tokred: the kernels with ISA-specific code again, built with -march=native"
# The builds above target the default architecture (SSE2 on x86-64). The widest paths of
# tokred/cpu/simd.hpp (AVX-512 conversions and reductions, fused multiply-adds, F16C) compile
# only where the build targets them: these test programs run them on this machine's own ISA.
native_tests=(test_element test_feature_scores test_uniform_quant test_kivi test_vidkv_scores test_kv_blocks
              test_selection test_tome test_tome_steps test_visionzip test_visionzip_replay test_diversity test_dpp
              test_video_layout test_positions_mrope)
cmake -S . -B build-native-tests -G Ninja -DCMAKE_BUILD_TYPE=Release -DTOKRED_NATIVE=ON -DTOKRED_ENABLE_CUDA=OFF \
  -DTOKRED_BUILD_BENCH=OFF -DTOKRED_BUILD_EXAMPLES=OFF -DTOKRED_BUILD_TOOLS=OFF >/dev/null
cmake --build build-native-tests -j "$jobs" --target "${native_tests[@]}"
for t in "${native_tests[@]}"; do
  build-native-tests/tests/"$t" >/dev/null || { echo "tokred: $t failed in the native build"; build-native-tests/tests/"$t"; exit 1; }
done
stage_done "the native build and tests"
