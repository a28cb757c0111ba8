#!/usr/bin/env bash
# The chart library `kennel studio` embeds: Apache ECharts 5.6.0 from npm (Apache-2.0;
# integrity pinned in scripts/studio/package-lock.json), installed into
# $KENNEL_CACHE (default .cache)/studio only when it is missing or the lock file changed.
# scripts/setup.sh runs this before any build: CMake turns dist/echarts.min.js into a
# generated .cpp at build time and never touches the network itself. Prints the file's
# path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${KENNEL_CACHE:-.cache}
dir="$CACHE/studio"
asset="$dir/node_modules/echarts/dist/echarts.min.js"

if ! cmp -s scripts/studio/package-lock.json "$dir/package-lock.json" || [[ ! -s "$asset" ]]; then
  mkdir -p "$dir"
  cp scripts/studio/package.json scripts/studio/package-lock.json "$dir/"
  npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi
realpath "$asset"
