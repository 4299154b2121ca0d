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

bash tools/install_deps.sh  # installs missing Debian packages; apt-get runs only if one is

generator=()
[[ -f build/CMakeCache.txt ]] || generator=(-G Ninja)  # keep whatever generator build/ has
echo "demo: configuring build/ (Release)"
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DTOKRED_BUILD_TESTS=OFF -DTOKRED_BUILD_BENCH=OFF -DTOKRED_BUILD_EXAMPLES=ON >/dev/null
echo "demo: building examples/reduce_sample"
cmake --build build --target reduce_sample  # one source file
echo
./build/examples/reduce_sample "$@"
