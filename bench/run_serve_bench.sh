#!/usr/bin/env bash
# Runs the serving benchmark (kennel serve vs the classic PyTorch inference handler, driven by wrk
# on 127.0.0.1). Builds the kennel binary only when it is missing. Options go to bench/serve_bench.py
# (--archs resnet18,resnet50, --bodies jpeg,json, --concurrency 1,8,32, --seconds S, --warmup S,
# --no-peer; --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
exec /usr/bin/python3 bench/serve_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
