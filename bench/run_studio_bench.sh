#!/usr/bin/env bash
# Studio's page times in headless Chromium on a generated home of 1,000 jobs and a 500-trial
# study: navigation start -> data drawn, per page, cold and warm; target: within 1 s.
# Builds the kennel binary only when it is missing. Options go to bench/studio_bench.py
# (--jobs N, --trials N, --visits N, --work DIR; --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x "${BUILD_DIR:-build}/kennel" ]]; then
  bash scripts/build.sh kennel
fi
exec /usr/bin/python3 bench/studio_bench.py --kennel "${BUILD_DIR:-build}/kennel" "$@"
