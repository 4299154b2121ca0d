#!/usr/bin/env bash
# Fuzzes the command-line program's file readers (.npy, .npz, .safetensors) and the pipeline spec
# parser with libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer: builds the four
# targets with clang in build-fuzz/, then runs each for a bounded number of inputs, starting from
# a copy of its seed corpus (tests/data/io/, tools/fuzz/corpus/spec/) so nothing in the tree
# changes. Exits non-zero on any crash or failed check; the input that caused it is kept in
# build-fuzz/crashes/. Without clang or its libFuzzer runtime it says so and exits 0: the
# harnesses' replay tests still run in the ordinary test suite.
#
#   tools/fuzz.sh [RUNS]     RUNS inputs per target (default 100000; also TOKRED_FUZZ_RUNS)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs="${1:-${TOKRED_FUZZ_RUNS:-100000}}"
seconds="${TOKRED_FUZZ_SECONDS:-15}"  # a cap per target, should a slow input appear
build="$root/build-fuzz"

cxx="${TOKRED_FUZZ_CXX:-clang++}"
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "tokred: $cxx not found; the fuzz targets were not run (their replay tests run with the test suite)"
  exit 0
fi
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$probe/p.cpp"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1; then
  echo "tokred: $cxx cannot link libFuzzer (Debian: libclang-rt-14-dev); the fuzz targets were not run"
  exit 0
fi

targets=(npy npz safetensors spec)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DTOKRED_FUZZ=ON -DTOKRED_BUILD_TESTS=OFF -DTOKRED_BUILD_BENCH=OFF -DTOKRED_BUILD_EXAMPLES=OFF \
  -DTOKRED_ENABLE_CUDA=OFF -DTOKRED_INSTALL=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

mkdir -p "$build/crashes"
status=0
for t in "${targets[@]}"; do
  corpus="$probe/corpus-$t"
  mkdir -p "$corpus"
  if [ "$t" = spec ]; then
    cp tools/fuzz/corpus/spec/* "$corpus/"
  else
    cp tests/data/io/*.npy tests/data/io/*.npz tests/data/io/*.safetensors "$corpus/"
  fi
  echo "tokred: fuzz_$t, $runs runs"
  if ! "$build/tools/fuzz/fuzz_$t" -runs="$runs" -max_len=4096 -max_total_time="$seconds" -seed=1 \
         -dict="tools/fuzz/$t.dict" -artifact_prefix="$build/crashes/$t-" -print_final_stats=1 \
         "$corpus" >"$probe/log-$t" 2>&1; then
    tail -n 40 "$probe/log-$t"
    echo "tokred: fuzz_$t FAILED; the input is in $build/crashes/"
    status=1
  else
    grep -E "^stat::number_of_executed_units|^Done" "$probe/log-$t" | tr '\n' ' '
    echo
  fi
done
exit "$status"
