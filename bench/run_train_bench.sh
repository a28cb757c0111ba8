#!/usr/bin/env bash
# Runs the training benchmark: kennel train with its defaults (no --precision) next to the classic
# torchvision script and a best-effort one (bf16 autocast, channels_last, fp32 master weights),
# after a ceiling probe of the CPU (bench/ceiling.py); prints issue 15's fine-tuning targets with
# pass/FAIL. Builds the kennel binary only when it is missing. Options go to bench/train_bench.py
# (--per-class N, --epochs E, --archs resnet18,resnet50, --modes ..., --peers classic,best_effort,
# --no-peer, --probe-size N; --help). On an idle 2-core machine the defaults take roughly 10-15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
exec /usr/bin/python3 bench/train_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
