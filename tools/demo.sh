#!/usr/bin/env bash
# tools/demo.sh — build tokred's sample program and reduce the bundled real encoder features.
#
#   bash tools/demo.sh [reduce_sample options, e.g. --keep 0.5 --out /tmp/reduced]
#
# On Debian bookworm it first installs whatever build packages are missing (run it as root for
# that). It then configures a Release build in build/ with tests and benchmarks off, builds the
# example and runs it. Safe to run again; works from any directory.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bash tools/build_target.sh reduce_sample  # one source file
echo
./build/examples/reduce_sample "$@"
