#!/usr/bin/env bash
# tools/cuda_bundle.sh — packs the CUDA test and benchmark programs of a build tree into one
# archive, with a runner and the shared libraries they load beyond the C and C++ runtimes, for a
# machine that has a GPU and its driver but not tokred's build dependencies (Catch2, Google
# Benchmark, ...). The CUDA runtime is linked statically; the programs need a driver that
# supports the toolkit they were built with, and glibc and libstdc++ at least as new as here.
#
#   bash tools/cuda_bundle.sh [BUILD_DIR] [ARCHIVE]      (defaults: build, tokred-cuda.tar.gz)
#
# On the GPU machine:
#
#   tar xf tokred-cuda.tar.gz
#   bash tokred-cuda/run.sh [--tests-only | --bench-only] [--min-time S] [--filter REGEX]
#                           [--timeout S] [RESULTS_DIR] [PROGRAM_REGEX]
#
# runs every test program, then every benchmark program, whose name matches PROGRAM_REGEX
# (default: all), each under a time limit, and leaves in RESULTS_DIR (default:
# tokred-cuda-results) each program's output, each benchmark's JSON (3 repetitions, aggregates),
# their Markdown tables (tables.md, where python3 is found) and summary.txt; see
# tools/cuda_run.sh. It exits 1 if a program failed or if there was no
# device to run on (every test skipped).
#
# The build tree must hold every program: one per tests/cuda/test_*_cuda.cu (and the _fma twins
# the build defines) and, where it builds benchmarks, one per bench/cuda/bench_*_cuda.cu.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
archive="$(realpath -m "${2:-tokred-cuda.tar.gz}")"

mapfile -t tests < <(find "$build/tests/cuda" -maxdepth 1 -type f -executable -name 'test_*' | sort)
mapfile -t benches < <(find "$build/bench/cuda" -maxdepth 1 -type f -executable -name 'bench_*' 2>/dev/null | sort)
if ((${#tests[@]} == 0)); then
  echo "tokred: no CUDA test programs in $build/tests/cuda (configure with a CUDA compiler and build first)" >&2
  exit 1
fi
# Every program the sources define must be built: a bundle missing one would skip it unseen.
missing=()
for source in "$root"/tests/cuda/test_*_cuda.cu; do
  name="$(basename "$source" .cu)"
  [[ -x "$build/tests/cuda/$name" ]] || missing+=("tests/cuda/$name")
done
if ((${#benches[@]} > 0)); then
  for source in "$root"/bench/cuda/bench_*_cuda.cu; do
    name="$(basename "$source" .cu)"
    [[ -x "$build/bench/cuda/$name" ]] || missing+=("bench/cuda/$name")
  done
fi
if ((${#missing[@]} > 0)); then
  echo "tokred: not built in $build: ${missing[*]} (cmake --build $build first)" >&2
  exit 1
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/tokred-cuda/tests" "$stage/tokred-cuda/bench" "$stage/tokred-cuda/lib"
cp "${tests[@]}" "$stage/tokred-cuda/tests/"
((${#benches[@]} == 0)) || cp "${benches[@]}" "$stage/tokred-cuda/bench/"

# The shared libraries the programs load other than the C and C++ runtimes, which the target
# has its own of (Google Benchmark's, for one).
for program in "${tests[@]}" "${benches[@]}"; do
  ldd "$program" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so* | libm.so* | libstdc++.so* | libgcc_s.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux*) ;;
    *) cp -L "$lib" "$stage/tokred-cuda/lib/" ;;
  esac
done

cp "$root/tools/cuda_run.sh" "$stage/tokred-cuda/run.sh"
cp "$root/tools/bench_table.py" "$stage/tokred-cuda/bench_table.py"
chmod +x "$stage/tokred-cuda/run.sh"

tar -C "$stage" -czf "$archive" tokred-cuda
echo "tokred: ${#tests[@]} test and ${#benches[@]} benchmark programs in $archive ($(du -h "$archive" | cut -f1))"
