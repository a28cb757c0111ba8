#!/usr/bin/env bash
# The main job, end to end on embedded defaults (local files, SQLite), the
# dog-breed workflow on Fashion-MNIST: set up, import and check all 70,000
# images, tune the learning rate, batch size and weight decay on a subset
# (Bayesian: random startup trials, then TPE; median early stopping), train
# the best on the whole training split with the debugger and profiler on,
# evaluate on the 10,000 test images, serve the model and check that the
# endpoint agrees with `kennel evaluate` on 200 test images, then summarise.
# Re-running reuses what is done (packages, build, backbone, datasets,
# finished tuning and training jobs).
#   DATA_DIR        where datasets go (default: data)
#   PER_CLASS       training-file images per class, 10 % of them for valid/ (default: 0 = all 6,000)
#   TEST_PER_CLASS  test images per class (default: 0 = all 1,000)
#   TUNE_PER_CLASS  training-file images per class in the trials' subset, a quarter for valid/ (default: 300)
#   TRIALS          tuning trials (default: 12); STARTUP_TRIALS of them random (default: 3)
#   BATCH_SIZES     the batch sizes tuning chooses from (default: 256,512, the fastest per image here)
#   TUNE_EPOCHS     epochs of a trial (default: 2); EPOCHS of the final training (default: 3)
#   INPUT_SIZE      model input, pixels (default: 28, Fashion-MNIST's own size)
#   PRECISION       of the trials and the final training (default: auto = bf16 where the CPU has
#                   native bf16, else fp32; fp32 shows what a CPU without it would run)
#   SERVED          test images sent to the endpoint (default: 200)
#   PREFIX          names of the jobs (default: fashion): PREFIX-tune, PREFIX-best
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-data}
PER_CLASS=${PER_CLASS:-0}
TEST_PER_CLASS=${TEST_PER_CLASS:-0}
TUNE_PER_CLASS=${TUNE_PER_CLASS:-300}
TRIALS=${TRIALS:-12}
STARTUP_TRIALS=${STARTUP_TRIALS:-3}
BATCH_SIZES=${BATCH_SIZES:-256,512}
TUNE_EPOCHS=${TUNE_EPOCHS:-2}
EPOCHS=${EPOCHS:-3}
INPUT_SIZE=${INPUT_SIZE:-28}
PRECISION=${PRECISION:-auto}
SERVED=${SERVED:-200}
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

# import_once DIR ARGS...: `kennel data import fashion-mnist` into DIR unless a finished import is there.
import_once() {
  local out=$1
  shift
  if [[ -f "$out/.kennel-import-done" ]]; then
    echo "already imported: reusing $out"
    return
  fi
  rm -rf "$out.partial"
  "$KENNEL" data import fashion-mnist --out "$out.partial" "$@"
  touch "$out.partial/.kennel-import-done"
  mv "$out.partial" "$out"
}

dataset="$DATA_DIR/fashion-mnist-$PER_CLASS-$TEST_PER_CLASS"
subset="$DATA_DIR/fashion-mnist-tune-$TUNE_PER_CLASS"
step "import Fashion-MNIST into $dataset, and the trials' subset into $subset"
import_once "$dataset" --per-class "$PER_CLASS" --test-per-class "$TEST_PER_CLASS" --valid-ratio 0.1
# Trials choose on the subset's valid/ and never see a test image: its test/ is removed.
import_once "$subset" --per-class "$TUNE_PER_CLASS" --test-per-class 1 --valid-ratio 0.25
rm -rf "$subset/test"

step "check the dataset"
"$KENNEL" data check "$dataset" --min-size 16 --max-listed 5

# ResNet-18 from scratch at Fashion-MNIST's 28 px, every layer trained (no backbone was pretrained
# on greyscale clothes), bf16 where the CPU has it: AdamW, cosine schedule with warm-up ending at
# lr_min, label smoothing, horizontal flips, inputs normalised with the dataset's own mean and std
# (0.286 / 0.353: the debugger's CheckInputImages rule flags ImageNet's on these images).
common=(--arch resnet18 --pretrained none --freeze none --input-size "$INPUT_SIZE" --resize "$INPUT_SIZE"
        --optimizer adamw --lr-schedule cosine --warmup-epochs 0.3 --lr-min 1e-5 --label-smoothing 0.1
        --augment true --augment-scale 1.0 --normalize 0.286,0.286,0.286/0.353,0.353,0.353 --seed 0
        --precision "$PRECISION")

step "tune lr, batch size and weight decay: $TRIALS trials on $subset, bayesian ($STARTUP_TRIALS random, then TPE), median early stopping"
if [[ -f "$KENNEL_HOME/tuning/$TUNE/best.json" ]]; then
  echo "already tuned: reusing $TUNE (kennel tune describe $TUNE)"
else
  if [[ -f "$KENNEL_HOME/tuning/$TUNE/study.json" ]]; then
    "$KENNEL" tune resume "$TUNE"
  else
    "$KENNEL" tune --name "$TUNE" --data "$subset" "${common[@]}" --epochs "$TUNE_EPOCHS" \
      --param lr=1e-3..1e-2:log --param batch_size="$BATCH_SIZES" --param weight_decay=1e-3..1e-1:log \
      --strategy bayesian --startup-trials "$STARTUP_TRIALS" --max-jobs "$TRIALS" --max-parallel-jobs 1 \
      --early-stopping median
  fi
fi
"$KENNEL" tune describe "$TUNE"

step "the best hyperparameters"
"$KENNEL" tune best "$TUNE" --csv
best_params=$("$KENNEL" tune best "$TUNE" --json |
  python3 -c 'import json, sys; b = json.load(sys.stdin); print(" ".join(f"{k}={v}" for k, v in b["hyperparameters"].items()))')
echo "best: $best_params"

step "train $BEST with them on all of $dataset ($EPOCHS epochs), debugger and profiler on, then test-set evaluation"
case "$(job_status "$BEST")" in
  Completed) echo "already trained: reusing job $BEST" ;;
  Stopped | Failed) "$KENNEL" train --resume "$BEST" ;;
  *) "$KENNEL" train --spec "$KENNEL_HOME/tuning/$TUNE/best-spec.json" --name "$BEST" --data "$dataset" \
       --epochs "$EPOCHS" --debugger default --profiler default ;;
esac
"$KENNEL" debug "$BEST" || true   # exit 1 only means some rule found an issue: the table says which
"$KENNEL" profile "$BEST"

step "serve $BEST and check it against kennel evaluate on $SERVED test images"
# The same images, in an ImageFolder of their own, go to the endpoint and to `kennel evaluate`,
# both at the precision the job trained with: their accuracies must be equal.
precision=$("$KENNEL" jobs describe "$BEST" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["spec"]["precision"])')
check="$DATA_DIR/served-check-$SERVED"
rm -rf "$check"
python3 - "$dataset" "$check" "$SERVED" <<'PY'
import pathlib, sys
dataset, check, count = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]), int(sys.argv[3])
classes = sorted(p for p in (dataset / "test").iterdir() if p.is_dir())
per_class = -(-count // len(classes))
for c in classes:
    (check / "test" / c.name).mkdir(parents=True)
    for image in sorted(c.iterdir())[:per_class]:
        (check / "test" / c.name / image.name).symlink_to(image)
PY
evaluated=$("$KENNEL" evaluate "$BEST" "$check" --split test --precision "$precision" --out "$check/evaluation" --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["accuracy"])')
log=$(mktemp)
"$KENNEL" serve "$BEST" --port 0 --precision "$precision" --allow-file-root "$(realpath "$dataset")" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
python3 - "$log" "$check" "$evaluated" <<'PY'
import json, pathlib, re, sys, time, urllib.request
log, check, evaluated = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).resolve(), float(sys.argv[3])
deadline = time.time() + 120
while not (match := re.search(r"ready on (http://\S+)", log.read_text())):
    if time.time() > deadline:
        sys.exit(f"the server did not start:\n{log.read_text()}")
    time.sleep(0.2)
base = match.group(1)
classes = sorted(p.name for p in (check / "test").iterdir())
images = sorted((check / "test").glob("*/*"))
right = 0
for image in images:
    # The link's target: the endpoint refuses a link that leads out of its --allow-file-root.
    body = json.dumps({"url": image.resolve().as_uri()}).encode()
    request = urllib.request.Request(base + "/invocations", body, {"Content-Type": "application/json"})
    logits = json.load(urllib.request.urlopen(request, timeout=60))[0]
    right += classes[max(range(len(logits)), key=logits.__getitem__)] == image.parent.name
served = right / len(images)
verdict = "equal" if abs(served - evaluated) < 1e-9 else "DIFFERENT"
print(f"served check: {right} of {len(images)} right through the endpoint, accuracy {served:.4f}; "
      f"kennel evaluate on the same images {evaluated:.4f}: {verdict}")
sys.exit(0 if verdict == "equal" else 1)
PY
kill -TERM "$server"
wait "$server" || true
trap - EXIT
rm -f "$log"
echo "server stopped"

step "summary"
python3 - "$("$KENNEL" tune describe "$TUNE" --json)" "$("$KENNEL" tune best "$TUNE" --json)" \
  "$("$KENNEL" jobs describe "$BEST" --json)" "$KENNEL_HOME" "$BEST" <<'PY'
import json, pathlib, sys
tune, best, job = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
home, name = pathlib.Path(sys.argv[4]), sys.argv[5]
metrics, artifacts = job.get("final_metrics", {}), job.get("artifacts", {})
chosen = tune.get("chosen_by", {})
stopped = sum(1 for t in tune.get("trials", []) if t.get("early_stopped") or t.get("status") == "Stopped")
print(f"tuning:               {sum(tune.get('counts', {}).values())} trials, {chosen.get('startup', 0)} random (startup), "
      f"{chosen.get('tpe', 0)} chosen by TPE, {stopped} stopped early")
print("best hyperparameters: " + ", ".join(f"{k} = {v}" for k, v in best["hyperparameters"].items())
      + f"  (trial {best['name']}, {best['objective']['metric']} {best['objective']['value']:.4f})")
evaluation = pathlib.Path(artifacts.get("evaluation", "")) / "test_evaluation.json"
if evaluation.exists():
    report = json.loads(evaluation.read_text())
    low, high = report.get("accuracy_ci95", [float("nan")] * 2)
    print(f"test accuracy:        {report['accuracy']:.4f} on {report['samples']} images (95 % CI {low:.4f}-{high:.4f})")
    print(f"confusion matrix:     {evaluation.parent / 'test_confusion_matrix.png'}")
else:
    print("test accuracy:        - (the dataset has no test split)")
print(f"model:                {artifacts.get('model')}")
rules_file = home / "jobs" / name / "debug" / "rules.json"
rules = json.loads(rules_file.read_text())["rules"] if rules_file.exists() else []
flagged = sorted(rule["rule"] for rule in rules if rule.get("status") == "IssuesFound")
print(f"debugger:             {artifacts.get('debug', {}).get('dir')}  ({'issues: ' + ', '.join(flagged) if flagged else 'no rule found an issue'})")
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
