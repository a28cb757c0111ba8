#!/usr/bin/env bash
# Runs the tuning benchmark (kennel tune with the feature cache vs the classic PyTorch loop that
# re-runs the backbone in every trial): 12 trials x 5 epochs, frozen resnet50, 133 classes.
# Builds the kennel binary only when it is missing. Options go to bench/tune_bench.py
# (--trials N, --epochs E, --peer-trials K, --peer-epochs E, --warm, --no-peer, --no-kennel; --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
exec /usr/bin/python3 bench/tune_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
