#!/usr/bin/env bash
# Runs the serving benchmark: kennel serve with its defaults (no --precision) next to the classic
# PyTorch inference handler and a best-effort one (bf16 autocast, channels_last), driven by wrk on
# 127.0.0.1, after a ceiling probe of the CPU (bench/ceiling.py); prints issue 15's targets with
# pass/FAIL. Builds the kennel binary only when it is missing. Options go to bench/serve_bench.py
# (--archs resnet18,resnet50, --bodies jpeg,json, --concurrency 1,8,32,64, --seconds S, --warmup S,
# --peers classic,best_effort, --no-peer, --best-effort-fp32-weights, --precision P, --probe-size N;
# --help).
# On an idle 2-core machine the defaults take about 15-20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
exec /usr/bin/python3 bench/serve_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
