#!/usr/bin/env bash
# The main job, end to end on embedded defaults. Today: set up, build, import a
# Fashion-MNIST subset, check it, train a classifier and evaluate it.
# Re-running reuses what is already done (dataset, finished job).
#   DATA_DIR   where datasets go (default: data)
#   PER_CLASS  Fashion-MNIST training images per class (default: 200)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-data}
PER_CLASS=${PER_CLASS:-200}
KENNEL=${BUILD_DIR:-build}/kennel
JOB=${JOB:-fashion-demo}
export KENNEL_HOME=${KENNEL_HOME:-kennel-runs}

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

step "train $JOB (ResNet-18 from scratch at 32 px; no pretrained backbone yet)"
status=$("$KENNEL" jobs describe "$JOB" --json 2>/dev/null |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)
case "$status" in
  Completed) echo "already trained: reusing job $JOB" ;;
  Stopped | Failed) "$KENNEL" train --resume "$JOB" ;;
  *) "$KENNEL" train --data "$dataset" --name "$JOB" --arch resnet18 --pretrained none --freeze none \
       --input-size 32 --resize 32 --epochs 3 --batch-size 64 --lr 0.002 --seed 0 ;;
esac

step "evaluate on the test split"
"$KENNEL" evaluate "$JOB" "$dataset" --split test

step "summary"
cat <<SUMMARY
dataset: $dataset (ImageFolder: train/ valid/ test/, one folder per class)
job:     $KENNEL_HOME/jobs/$JOB (metrics.jsonl, log.txt, events/, model/, evaluation/)
next:    $KENNEL jobs list
         $KENNEL jobs describe $JOB
         $KENNEL data synth --out $DATA_DIR/synth --classes 10 --per-class 50 --corrupt 11
SUMMARY
