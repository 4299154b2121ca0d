#!/usr/bin/env bash
# tools/bench.sh — build the `tokred` program and compare every reduction method on the bundled
# real features: speed against a memcpy, and fidelity, with the random, uniform and downsample
# baselines. Leaves a Markdown report, JSON, CSV and plots in tokred-report/ in the current
# directory (or --out DIR).
#
#   bash tools/bench.sh [tokred bench options, e.g. --budgets 0.5,0.25 --out /tmp/report]
#
# On Debian bookworm it first installs whatever packages are missing (run it as root for that).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/tools/install_deps.sh" python3-matplotlib  # the report's plots
bash "$repo/tools/build_target.sh" tokred_cli
echo
"$repo/build/tools/tokred" bench "$@"  # paths in the options are relative to where you are
