#!/usr/bin/env bash
# Builds and runs the loader benchmark (Kennel vs the torchvision DataLoader peer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh loader_bench
"${BUILD_DIR:-build}/loader_bench" "$@"
