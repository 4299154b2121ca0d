#!/usr/bin/env bash
# tools/cuda_run.sh, the CUDA bundle's runner, on a bundle of stand-in programs (shell scripts),
# so that what it does with benchmarks is checked where there is no GPU: the options it passes,
# a case that reports an error counted as a failure, a program past its time limit, and the
# JSON turned into tables.md.
#   test_cuda_run.sh SOURCE_DIR
set -euo pipefail
source_dir="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bundle="$work/tokred-cuda"
mkdir -p "$bundle/tests" "$bundle/bench"
cp "$source_dir/tools/cuda_run.sh" "$bundle/run.sh"
cp "$source_dir/tools/bench_table.py" "$bundle/bench_table.py"

# A benchmark program: records its arguments, writes Google Benchmark JSON to --benchmark_out.
# BENCH_ERROR makes its case report an error; BENCH_SLEEP makes it overrun.
cat > "$bundle/bench/bench_fake_cuda" <<'EOF'
#!/usr/bin/env bash
out=""
for a in "$@"; do
  case "$a" in --benchmark_out=*) out="${a#--benchmark_out=}" ;; esac
done
echo "$@" > "$(dirname "$out")/fake_args.txt"
sleep "${BENCH_SLEEP:-0}"
error=""
[[ -n "${BENCH_ERROR:-}" ]] && error=', "error_occurred": true, "error_message": "disagrees with the CPU backend"'
cat > "$out" <<JSON
{"context": {}, "benchmarks": [
 {"name": "BM_cuda_memcpy_same_bytes/n:8/manual_time_median", "run_name": "BM_cuda_memcpy_same_bytes/n:8/manual_time",
  "run_type": "aggregate", "aggregate_name": "median", "real_time": 10.0, "cpu_time": 10.0, "time_unit": "us"},
 {"name": "BM_cuda_fake/n:8/manual_time_median", "run_name": "BM_cuda_fake/n:8/manual_time",
  "run_type": "aggregate", "aggregate_name": "median", "real_time": 40.0, "cpu_time": 40.0, "time_unit": "us"$error}
]}
JSON
EOF
chmod +x "$bundle/bench/bench_fake_cuda"
fail() { echo "test_cuda_run: $*"; exit 1; }

# A clean run: options passed through, the table written.
bash "$bundle/run.sh" --bench-only --min-time 0.1 --filter 'n:8' "$work/r1" > /dev/null || fail "a clean run failed"
grep -q -- "--benchmark_min_time=0.1" "$work/r1/fake_args.txt" || fail "--min-time not passed"
grep -q -- "--benchmark_filter=n:8" "$work/r1/fake_args.txt" || fail "--filter not passed"
grep -q -- "--benchmark_repetitions=3" "$work/r1/fake_args.txt" || fail "no repetitions"
grep -q "^bench bench_fake_cuda: done" "$work/r1/summary.txt" || fail "no verdict in the summary"
grep -q "^tables: " "$work/r1/summary.txt" || fail "no tables line in the summary"
# shellcheck disable=SC2016  # the backquotes are the table's Markdown
grep -q '| `BM_cuda_fake/n:8` | 40 µs |  |  | 25 % |' "$work/r1/tables.md" || fail "the table lacks the case against its copy"

# A case that reports an error fails the run, and the table shows the error.
rc=0
BENCH_ERROR=1 bash "$bundle/run.sh" --bench-only "$work/r2" > /dev/null || rc=$?
((rc == 1)) || fail "a case with an error gave exit $rc"
grep -q "1 cases with errors" "$work/r2/summary.txt" || fail "the error is not in the summary"
grep -q "error: disagrees with the CPU backend" "$work/r2/tables.md" || fail "the error is not in the table"

# A program past its limit fails the run.
rc=0
BENCH_SLEEP=5 bash "$bundle/run.sh" --bench-only --timeout 1 "$work/r3" > /dev/null || rc=$?
((rc == 1)) || fail "a program past its limit gave exit $rc"
grep -q "FAILED (over 1 s)" "$work/r3/summary.txt" || fail "the time limit is not in the summary"
echo "test_cuda_run: ok"
