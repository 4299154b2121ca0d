#!/usr/bin/env bash
# cuda.bundle: tools/cuda_bundle.sh packs every CUDA test program of this build tree, and its
# runner runs each of them from the unpacked archive (the tests alone): on a machine without a
# device all skip and the runner says so (exit 1); with one, all pass (exit 0).
#   check_bundle.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source_dir="$1" build_dir="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bash "$source_dir/tools/cuda_bundle.sh" "$build_dir" "$work/bundle.tar.gz"
tar -C "$work" -xzf "$work/bundle.tar.gz"
rc=0
bash "$work/tokred-cuda/run.sh" --tests-only "$work/results" || rc=$?
summary="$work/results/summary.txt"
for program in "$build_dir"/tests/cuda/test_*; do
  [[ -f "$program" && -x "$program" ]] || continue
  name="$(basename "$program")"
  grep -Eq "^test  $name: (passed|skipped)," "$summary" || { echo "cuda.bundle: $name did not run, or failed"; exit 1; }
done
if ((rc == 0)); then
  grep -q "0 failed" "$summary"
elif ((rc == 1)); then
  grep -q "^no CUDA device" "$summary" || { echo "cuda.bundle: the runner failed with a device present"; exit 1; }
else
  echo "cuda.bundle: the runner exited $rc"
  exit 1
fi
