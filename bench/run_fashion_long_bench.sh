#!/usr/bin/env bash
# Full Fashion-MNIST, ResNet-18 from scratch and the pretrained MobileNetV2: time to 0.94 test
# accuracy and the best within --budget-minutes (default 30), Kennel next to the classic PyTorch
# script with the same recipe (bench/fashion_long_bench.py; --help). Long: about 2 h 15 min on
# 2 cores with the defaults. Run on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
BUILD_DIR="${BUILD_DIR:-build}" bash scripts/backbone.sh
exec /usr/bin/python3 bench/fashion_long_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
