#!/usr/bin/env bash
# Runs the training benchmark (kennel train vs the classic torchvision script).
# Builds the kennel binary only when it is missing. Options go to bench/train_bench.py
# (--per-class N, --epochs E, --archs resnet18,resnet50, --modes ..., --no-peer; --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
exec /usr/bin/python3 bench/train_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
