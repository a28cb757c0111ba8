#!/usr/bin/env bash
# The main job, end to end on embedded defaults (local files, SQLite), the
# dog-breed workflow on Fashion-MNIST: set up, import and check a subset, tune
# two hyperparameters (Bayesian, 2 trials at a time, early stopping), train the
# best with the debugger and profiler on, evaluate on the test split, serve the
# model and query it, then print where everything is.
# Re-running reuses what is done (packages, build, backbone, dataset, feature
# cache, finished tuning and training jobs).
#   DATA_DIR   where datasets go (default: data)
#   PER_CLASS  Fashion-MNIST training images per class (default: 100)
#   TRIALS     tuning trials (default: 6); EPOCHS per trial and for the final job (default: 8)
#   PREFIX     names of the jobs (default: fashion): PREFIX-tune, PREFIX-best
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-data}
PER_CLASS=${PER_CLASS:-100}
TRIALS=${TRIALS:-6}
EPOCHS=${EPOCHS:-8}
INPUT_SIZE=${INPUT_SIZE:-96}
PREFIX=${PREFIX:-fashion}
KENNEL=${BUILD_DIR:-build}/kennel
export KENNEL_HOME=${KENNEL_HOME:-kennel-runs}
TUNE=$PREFIX-tune
BEST=$PREFIX-best
started=$SECONDS

step() { printf '\n== %s (%ds)\n' "$*" "$((SECONDS - started))"; }
job_status() {
  "$KENNEL" jobs describe "$1" --json 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true
}

if [[ "${SKIP_SETUP:-0}" != 1 ]]; then
  step "set up (Debian packages), build, pretrained backbone"
  bash scripts/setup.sh
  bash scripts/build.sh kennel
  bash scripts/backbone.sh
fi
"$KENNEL" weights list

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

# The pretrained MobileNetV2 (frozen): trials train the head on features computed once.
common=(--data "$dataset" --arch mobilenet_v2 --freeze backbone --input-size "$INPUT_SIZE"
        --resize "$INPUT_SIZE" --epochs "$EPOCHS" --seed 0)

step "tune lr (log scale) and batch size: $TRIALS trials, 2 in parallel, bayesian, median early stopping"
if [[ -f "$KENNEL_HOME/tuning/$TUNE/best.json" ]]; then
  echo "already tuned: reusing $TUNE (kennel tune describe $TUNE)"
else
  if [[ -f "$KENNEL_HOME/tuning/$TUNE/study.json" ]]; then
    "$KENNEL" tune resume "$TUNE"
  else
    "$KENNEL" tune --name "$TUNE" "${common[@]}" \
      --param lr=1e-4..1e-1:log --param batch_size=16,32,64 \
      --strategy bayesian --max-jobs "$TRIALS" --max-parallel-jobs 2 --early-stopping median
  fi
fi

step "the best hyperparameters"
"$KENNEL" tune best "$TUNE" --csv
best_params=$("$KENNEL" tune best "$TUNE" --json |
  python3 -c 'import json, sys; b = json.load(sys.stdin); print(" ".join(f"{k}={v}" for k, v in b["hyperparameters"].items()))')
echo "best: $best_params"

step "train $BEST with them, debugger and profiler on, then test-set evaluation"
case "$(job_status "$BEST")" in
  Completed) echo "already trained: reusing job $BEST" ;;
  Stopped | Failed) "$KENNEL" train --resume "$BEST" ;;
  *) "$KENNEL" train --spec "$KENNEL_HOME/tuning/$TUNE/best-spec.json" --name "$BEST" \
       --debugger default --profiler default ;;
esac
"$KENNEL" evaluate "$BEST" "$dataset" --split test
"$KENNEL" debug "$BEST" || true   # exit 1 only means some rule found an issue: the table says which
"$KENNEL" profile "$BEST"

step "serve $BEST and query it with images from the test split"
log=$(mktemp)
dataset_path=$(realpath "$dataset")
"$KENNEL" serve "$BEST" --port 0 --allow-file-root "$dataset_path" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
python3 - "$log" "$dataset_path" <<'PY'
import json, pathlib, re, sys, time, urllib.request
log, dataset = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
deadline = time.time() + 120
while not (match := re.search(r"ready on (http://\S+)", log.read_text())):
    if time.time() > deadline:
        sys.exit(f"the server did not start:\n{log.read_text()}")
    time.sleep(0.2)
base = match.group(1)
classes = sorted(p.name for p in (dataset / "test").iterdir() if p.is_dir())
images = [sorted((dataset / "test" / c).iterdir())[0] for c in classes]
right = 0
print(f"{'image':<34} {'truth':<14} {'predicted':<14} logit")
for image in images:
    body = json.dumps({"url": image.as_uri()}).encode()
    request = urllib.request.Request(base + "/invocations", body, {"Content-Type": "application/json"})
    logits = json.load(urllib.request.urlopen(request, timeout=60))[0]
    predicted = classes[max(range(len(logits)), key=logits.__getitem__)]
    right += predicted == image.parent.name
    print(f"{image.parent.name + '/' + image.name:<34} {image.parent.name:<14} {predicted:<14} {max(logits):.2f}")
print(f"{right} of {len(images)} right")
PY
kill -TERM "$server"
wait "$server" || true
trap - EXIT
rm -f "$log"
echo "server stopped"

step "summary"
best_json=$("$KENNEL" tune best "$TUNE" --json)
job_json=$("$KENNEL" jobs describe "$BEST" --json)
python3 - "$best_json" "$job_json" <<'PY'
import json, sys
best, job = json.loads(sys.argv[1]), json.loads(sys.argv[2])
metrics, artifacts = job.get("final_metrics", {}), job.get("artifacts", {})
print("best hyperparameters: " + ", ".join(f"{k} = {v}" for k, v in best["hyperparameters"].items())
      + f"  (trial {best['name']}, {best['objective']['metric']} {best['objective']['value']:.4f})")
accuracy = metrics.get("test_accuracy")
print(f"test accuracy:        {accuracy:.4f}" if accuracy is not None else "test accuracy:        -")
print(f"model:                {artifacts.get('model')}")
print(f"evaluation:           {artifacts.get('evaluation')}")
print(f"debugger:             {artifacts.get('debug', {}).get('dir')}")
print(f"profiler report:      {artifacts.get('profile', {}).get('report')}")
print(f"logs:                 {artifacts.get('log')}")
PY
cat <<NEXT
tuning report:        $KENNEL_HOME/tuning/$TUNE/report.html
look at it all:       $KENNEL studio        # then open http://127.0.0.1:8070
next:                 $KENNEL tune describe $TUNE
                      $KENNEL debug $BEST --plot losses.png
                      $KENNEL serve $BEST --allow-file-root $(realpath "$DATA_DIR") &  # then POST {"url": "file://..."} to /invocations
                      $KENNEL train --data dogImages/ --arch mobilenet_v2 --freeze last:2 ...  # your own dataset
done in $((SECONDS - started)) s
NEXT
