#!/usr/bin/env bash
# Debugger and profiler overhead on training throughput (bench/hook_overhead_bench.py;
# --archs, --hooks, --mode, --repeat, --epochs; --help). Builds kennel when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
exec /usr/bin/python3 bench/hook_overhead_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
