#!/usr/bin/env bash
# Few-shot Fashion-MNIST: pretrained MobileNetV2 frozen / fine-tuned vs random init
# (bench/transfer_bench.py; --per-class, --input-size, --epochs; --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
BUILD_DIR="${BUILD_DIR:-build}" bash scripts/backbone.sh
exec /usr/bin/python3 bench/transfer_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
