#!/usr/bin/env bash
# Tools the integration tests' real services need beyond Debian's packages (those are in
# scripts/setup.sh): the S3-compatible server s3rver 3.7.1 from npm (MIT; integrity pinned in
# scripts/s3rver/package-lock.json), installed into $KENNEL_CACHE (default .cache)/s3rver only
# when it is missing or the lock file changed. Prints the server's entry point on its last line;
# tests/integration/services.py runs this script itself, so tests need no other step.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${KENNEL_CACHE:-.cache}
dir="$CACHE/s3rver"
bin="$dir/node_modules/s3rver/bin/s3rver.js"

if ! cmp -s scripts/s3rver/package-lock.json "$dir/package-lock.json" || [[ ! -f "$bin" ]]; then
  mkdir -p "$dir"
  cp scripts/s3rver/package.json scripts/s3rver/package-lock.json "$dir/"
  npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi
realpath "$bin"
