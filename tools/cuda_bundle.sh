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
#   bash tokred-cuda/run.sh [--tests-only] [RESULTS_DIR] [REGEX]
#
# runs every test program, then (unless --tests-only) every benchmark program, whose name matches
# REGEX (default: all), and leaves in RESULTS_DIR (default: tokred-cuda-results) each program's
# output, each benchmark's JSON (3 repetitions, aggregates), and summary.txt. It exits 1 if a
# test failed or if there was no device to run on (every test skipped).
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

cat > "$stage/tokred-cuda/run.sh" <<'RUNNER'
#!/usr/bin/env bash
# Runs the bundled CUDA tests, then the benchmarks; see tools/cuda_bundle.sh in tokred.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
benchmarks=1
if [[ "${1:-}" == --tests-only ]]; then
  benchmarks=0
  shift
fi
out="${1:-tokred-cuda-results}"
pattern="${2:-.}"
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
summary="$out/summary.txt"
: > "$summary"
passed=0 failed=0 skipped=0
for program in "$here"/tests/*; do
  name="$(basename "$program")"
  [[ "$name" =~ $pattern ]] || continue
  start=$SECONDS
  "$program" > "$out/$name.txt" 2>&1
  rc=$?
  case $rc in
    0) verdict=passed; passed=$((passed + 1)) ;;
    77) verdict=skipped; skipped=$((skipped + 1)) ;;
    *) verdict="FAILED (exit $rc)"; failed=$((failed + 1)) ;;
  esac
  echo "test  $name: $verdict, $((SECONDS - start)) s" | tee -a "$summary"
done
echo "tests: $passed passed, $failed failed, $skipped skipped" | tee -a "$summary"
if ((passed + failed == 0 && skipped > 0)); then
  echo "no CUDA device: every test skipped, no benchmark run" | tee -a "$summary"
  exit 1
fi
((benchmarks)) || { ((failed == 0)); exit; }
for program in "$here"/bench/*; do
  name="$(basename "$program")"
  [[ "$name" =~ $pattern ]] || continue
  start=$SECONDS
  "$program" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_out="$out/$name.json" --benchmark_out_format=json > "$out/$name.txt" 2>&1
  rc=$?
  verdict=done
  ((rc == 0)) || verdict="FAILED (exit $rc)"
  echo "bench $name: $verdict, $((SECONDS - start)) s" | tee -a "$summary"
done
((failed == 0))
RUNNER
chmod +x "$stage/tokred-cuda/run.sh"

tar -C "$stage" -czf "$archive" tokred-cuda
echo "tokred: ${#tests[@]} test and ${#benches[@]} benchmark programs in $archive ($(du -h "$archive" | cut -f1))"
