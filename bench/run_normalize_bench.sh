#!/usr/bin/env bash
# Builds and runs the fused BatchNorm benchmark (models/normalize_activate.h vs LibTorch's kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh normalize_bench
"${BUILD_DIR:-build}/normalize_bench" "$@"
