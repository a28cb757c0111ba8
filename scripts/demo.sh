#!/usr/bin/env bash
# The main job, end to end on embedded defaults. Today: set up, build, import a
# Fashion-MNIST subset and check it. Re-running reuses what is already done.
#   DATA_DIR   where datasets go (default: data)
#   PER_CLASS  Fashion-MNIST training images per class (default: 200)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-data}
PER_CLASS=${PER_CLASS:-200}
KENNEL=${BUILD_DIR:-build}/kennel

step() { printf '\n== %s\n' "$*"; }

step "set up (Debian packages) and build"
bash scripts/setup.sh
bash scripts/build.sh kennel

dataset="$DATA_DIR/fashion-mnist-$PER_CLASS"
step "import Fashion-MNIST ($PER_CLASS per class) into $dataset"
if [[ -f "$dataset/.kennel-import-done" ]]; then
  echo "already imported: reusing $dataset"
else
  rm -rf "$dataset.partial"
  "$KENNEL" data import fashion-mnist --out "$dataset.partial" --per-class "$PER_CLASS" \
    --test-per-class "$((PER_CLASS / 4 > 0 ? PER_CLASS / 4 : 1))"
  touch "$dataset.partial/.kennel-import-done"
  mv "$dataset.partial" "$dataset"
fi

step "check the dataset"
"$KENNEL" data check "$dataset" --min-size 16 --max-listed 5

step "summary"
cat <<SUMMARY
dataset: $dataset (ImageFolder: train/ valid/ test/, one folder per class)
next:    $KENNEL data check $dataset --json
         $KENNEL data synth --out $DATA_DIR/synth --classes 10 --per-class 50 --corrupt 11
SUMMARY
