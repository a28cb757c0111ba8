#!/usr/bin/env bash
# The pretrained backbone Kennel uses by default for mobilenet_v2, built offline:
# the npm package nsfwjs 4.4.0 (MIT; integrity pinned in scripts/backbone/package-lock.json)
# ships a Keras MobileNetV2 (ImageNet-initialised, fine-tuned, uint8 weights) as TF.js
# bundles. This script installs the pinned package into .cache/npm (never committed),
# extracts a standard TF.js folder (scripts/backbone/extract_tfjs.js checks the integrity
# and file hashes) and converts it with `kennel weights import-tfjs` into
#   $KENNEL_WEIGHTS_DIR (default ~/.cache/kennel/weights)/mobilenet_v2/{model.safetensors, model.json}
# Idempotent: an existing import is reused. Needs the kennel binary (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
KENNEL=${BUILD_DIR:-build}/kennel
CACHE=${KENNEL_CACHE:-.cache}
WEIGHTS=${KENNEL_WEIGHTS_DIR:-$HOME/.cache/kennel/weights}
out="$WEIGHTS/mobilenet_v2/model.safetensors"

if [[ -s "$out" && -s "$WEIGHTS/mobilenet_v2/model.json" ]]; then
  echo "backbone: $out (already imported)"
  exit 0
fi
mkdir -p "$CACHE/npm"
# npm ci only when the pinned lock file changed or nothing is installed yet.
if ! cmp -s scripts/backbone/package-lock.json "$CACHE/npm/package-lock.json" ||
   [[ ! -f "$CACHE/npm/node_modules/nsfwjs/package.json" ]]; then
  cp scripts/backbone/package.json scripts/backbone/package-lock.json "$CACHE/npm/"
  npm ci --prefix "$CACHE/npm" --ignore-scripts --no-audit --no-fund --loglevel=error
fi
rm -rf "$CACHE/tfjs/mobilenet_v2"
node scripts/backbone/extract_tfjs.js "$CACHE/npm/node_modules" "$CACHE/tfjs/mobilenet_v2"
"$KENNEL" weights import-tfjs "$CACHE/tfjs/mobilenet_v2" --out "$out" --force
