#!/usr/bin/env bash
# tools/build_target.sh — install what is missing, configure build/ (Release, examples and the
# tokred program; no tests or benchmarks) and build one target. Used by tools/demo.sh and
# tools/bench.sh; safe to run again; works from any directory.
#
#   bash tools/build_target.sh TARGET
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash tools/install_deps.sh  # installs missing Debian packages; apt-get runs only if one is

generator=()
[[ -f build/CMakeCache.txt ]] || generator=(-G Ninja)  # keep whatever generator build/ has
echo "tokred: configuring build/ (Release)"
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DTOKRED_BUILD_TESTS=OFF -DTOKRED_BUILD_BENCH=OFF -DTOKRED_BUILD_EXAMPLES=ON -DTOKRED_BUILD_TOOLS=ON >/dev/null
echo "tokred: building $1"
cmake --build build --target "$1"
