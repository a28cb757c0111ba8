#!/usr/bin/env bash
# Runs the tuning strategy benchmark (random vs bayesian/TPE sampler on known functions).
# Builds the tune_strategy_bench binary only when it is missing. Options go to the binary
# (--seeds S, --trials N, --startup K, --csv PATH; --help). The table is also written to
# bench/results/tune_strategy_bench.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/tune_strategy_bench" ]]; then
  bash scripts/build.sh tune_strategy_bench
fi
mkdir -p bench/results
"${BUILD_DIR:-build}/tune_strategy_bench" "$@" | tee bench/results/tune_strategy_bench.txt
