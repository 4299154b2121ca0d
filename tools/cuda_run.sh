#!/usr/bin/env bash
# tools/cuda_run.sh — the runner that tools/cuda_bundle.sh packs as tokred-cuda/run.sh: runs the
# bundled CUDA test programs, then the benchmark programs, each under a time limit, and leaves
# each program's output, each benchmark's JSON and a summary in RESULTS_DIR.
#
#   run.sh [--tests-only | --bench-only] [--min-time SECONDS] [--filter REGEX] [--timeout SECONDS]
#          [RESULTS_DIR] [PROGRAM_REGEX]
#
#   --tests-only     the test programs alone
#   --bench-only     the benchmark programs alone
#   --min-time S     Google Benchmark's --benchmark_min_time (its default: 0.5 s per case)
#   --filter REGEX   Google Benchmark's --benchmark_filter, over the cases of every program run
#   --timeout S      the limit of each program (default 600); one past it counts as failed
#   RESULTS_DIR      default tokred-cuda-results; summary.txt there is appended to, not replaced
#   PROGRAM_REGEX    which programs run (default: all), matched against their names
#
# Benchmarks run with 3 repetitions, aggregates only; where python3 is found, tables.md in
# RESULTS_DIR then holds every benchmark JSON there as Markdown tables (tools/bench_table.py). A benchmark program fails when it exits
# non-zero or when a case reports an error (a check against the CPU backend, a failed launch:
# "error_occurred" in its JSON). Exit status: 0 when nothing failed; 1 when something failed, or
# when every test skipped (no CUDA device; no benchmark then runs).
set -uo pipefail
shopt -s nullglob
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
invocation="$*"
tests=1 benchmarks=1 limit=600
bench_options=(--benchmark_repetitions=3 --benchmark_report_aggregates_only=true)
while (($# > 0)); do
  case "$1" in
    --tests-only) benchmarks=0 ;;
    --bench-only) tests=0 ;;
    --min-time) bench_options+=("--benchmark_min_time=$2"); shift ;;
    --filter) bench_options+=("--benchmark_filter=$2"); shift ;;
    --timeout) limit="$2"; shift ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
out="${1:-tokred-cuda-results}"
pattern="${2:-.}"
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
summary="$out/summary.txt"
echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'): run.sh $invocation (tests $tests, benchmarks $benchmarks, limit $limit s)" >> "$summary"

# Runs a program under the time limit, its output into $1; prints its exit status (124: timed out).
run_limited() {
  local log="$1"
  shift
  if command -v timeout > /dev/null; then
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
  else
    "$@" > "$log" 2>&1
  fi
  echo $?
}

failed=0
if ((tests)); then
  passed=0 failing=0 skipped=0
  for program in "$here"/tests/*; do
    name="$(basename "$program")"
    [[ "$name" =~ $pattern ]] || continue
    start=$SECONDS
    rc=$(run_limited "$out/$name.txt" "$program")
    case $rc in
      0) verdict=passed; passed=$((passed + 1)) ;;
      77) verdict=skipped; skipped=$((skipped + 1)) ;;
      124 | 137) verdict="FAILED (over $limit s)"; failing=$((failing + 1)) ;;
      *) verdict="FAILED (exit $rc)"; failing=$((failing + 1)) ;;
    esac
    echo "test  $name: $verdict, $((SECONDS - start)) s" | tee -a "$summary"
  done
  echo "tests: $passed passed, $failing failed, $skipped skipped" | tee -a "$summary"
  if ((passed + failing == 0 && skipped > 0)); then
    echo "no CUDA device: every test skipped, no benchmark run" | tee -a "$summary"
    exit 1
  fi
  failed=$failing
fi

if ((benchmarks)); then
  for program in "$here"/bench/*; do
    name="$(basename "$program")"
    [[ "$name" =~ $pattern ]] || continue
    start=$SECONDS
    rc=$(run_limited "$out/$name.txt" "$program" "${bench_options[@]}" \
      --benchmark_out="$out/$name.json" --benchmark_out_format=json)
    errors=$(grep -c '"error_occurred": true' "$out/$name.json" 2> /dev/null)
    case $rc in
      0) verdict="done" ;;
      124 | 137) verdict="FAILED (over $limit s)" ;;
      *) verdict="FAILED (exit $rc)" ;;
    esac
    if ((${errors:-0} > 0)); then
      verdict="$verdict, $errors cases with errors (see $name.txt)"
      rc=1
    fi
    ((rc == 0)) || failed=$((failed + 1))
    echo "bench $name: $verdict, $((SECONDS - start)) s" | tee -a "$summary"
  done
  # Every benchmark JSON in RESULTS_DIR (this run's and earlier ones') as Markdown tables.
  jsons=("$out"/*.json)
  if ((${#jsons[@]} > 0)) && command -v python3 > /dev/null && [[ -f "$here/bench_table.py" ]]; then
    if python3 "$here/bench_table.py" "${jsons[@]}" > "$out/tables.md"; then
      echo "tables: $out/tables.md" | tee -a "$summary"
    else
      echo "tables: bench_table.py failed" | tee -a "$summary"
    fi
  fi
fi
((failed == 0))
