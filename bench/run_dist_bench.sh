#!/usr/bin/env bash
# Runs the data-parallel benchmark (1 process x 2 threads vs 2 ranks x 1 thread, overlap
# on/off, the sharded feature pass). Builds the kennel binary only when it is missing.
# Options go to bench/dist_bench.py (--per-class N, --batch-size B, --epochs E; --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
exec /usr/bin/python3 bench/dist_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
