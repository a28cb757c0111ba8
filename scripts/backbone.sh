#!/usr/bin/env bash
# The pretrained backbone Kennel uses by default for mobilenet_v2, built offline:
# the npm package nsfwjs 4.4.0 (MIT; integrity pinned in scripts/backbone/package-lock.json)
# ships a Keras MobileNetV2 (ImageNet-initialised, fine-tuned, uint8 weights) as TF.js
# bundles. This script makes three things, each only when it is missing:
#   $KENNEL_CACHE (default .cache)/npm    the pinned packages (nsfwjs, @tensorflow/tfjs for the parity test)
#   $KENNEL_CACHE/tfjs/mobilenet_v2       a standard TF.js folder (extract_tfjs.js checks integrity + file hashes)
#   $KENNEL_WEIGHTS_DIR (default ~/.cache/kennel/weights)/mobilenet_v2/{model.safetensors, model.json}
#                                         converted by `kennel weights import-tfjs`
# The weights folder is per user and the cache per clone, so a fresh clone on a machine
# that already has the import still gets its own npm tools and TF.js folder (the parity
# test reads both). Needs the kennel binary (scripts/build.sh) only to import.
set -euo pipefail
cd "$(dirname "$0")/.."
KENNEL=${BUILD_DIR:-build}/kennel
CACHE=${KENNEL_CACHE:-.cache}
WEIGHTS=${KENNEL_WEIGHTS_DIR:-$HOME/.cache/kennel/weights}
out="$WEIGHTS/mobilenet_v2/model.safetensors"
tfjs="$CACHE/tfjs/mobilenet_v2"

# npm ci only when the pinned lock file changed or a pinned package is not installed.
mkdir -p "$CACHE/npm"
if ! cmp -s scripts/backbone/package-lock.json "$CACHE/npm/package-lock.json" ||
   [[ ! -f "$CACHE/npm/node_modules/nsfwjs/package.json" ]] ||
   [[ ! -f "$CACHE/npm/node_modules/@tensorflow/tfjs/package.json" ]]; then
  cp scripts/backbone/package.json scripts/backbone/package-lock.json "$CACHE/npm/"
  npm ci --prefix "$CACHE/npm" --ignore-scripts --no-audit --no-fund --loglevel=error
fi

if [[ -s "$tfjs/model.json" && -s "$tfjs/group1-shard1of1.bin" ]]; then
  echo "backbone: $tfjs (already extracted)"
else
  rm -rf "$tfjs" "$tfjs.partial"
  node scripts/backbone/extract_tfjs.js "$CACHE/npm/node_modules" "$tfjs.partial"
  mv "$tfjs.partial" "$tfjs"
fi

if [[ -s "$out" && -s "$WEIGHTS/mobilenet_v2/model.json" ]]; then
  echo "backbone: $out (already imported)"
else
  "$KENNEL" weights import-tfjs "$tfjs" --out "$out" --force
fi
