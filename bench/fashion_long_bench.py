"""Long-run benchmark: full Fashion-MNIST, time to 0.94 test accuracy and the best in a budget.

For each model it trains under one wall-clock budget (--budget-minutes, default 30), first with
`kennel train` (its defaults: no --precision, so bf16 where the CPU has native bf16) and then with
the classic PyTorch script (bench/peers/fashion_peer.py: ImageFolder + DataLoader, fp32, Debian's
torch 1.13), both with the same recipe, and reports the test accuracy after every epoch, the wall
time at which --target (0.94) was first reached and the best test accuracy within the budget:

  resnet18       from scratch at Fashion-MNIST's 28 px: the recipe of scripts/demo.sh's final job
                 (AdamW, cosine with 0.3 epochs of warm-up down to lr_min 1e-5, label smoothing
                 0.1, horizontal flips, the dataset's mean/std 0.286/0.353) with fixed values for
                 what the demo tunes: lr 2e-3, batch 256, weight decay 0.05
  mobilenet_v2   Kennel's pretrained Keras MobileNetV2 (scripts/backbone.sh), every layer
                 fine-tuned at 64 px (--mobilenet-size): 28 px images end at 1x1 after the
                 backbone's stride 32 and lose what the pretrained filters offer, 64 px keeps a
                 2x2 final map at ~5x the 28 px cost; 96 px would cost another 2.25x, which a 2-core
                 budget of 30 min cannot pay for in enough epochs. Same recipe, lr 1e-3, weight decay
                 0.01, the backbone's own normalisation (what --normalize auto picks). The peer
                 starts from the same weight file and runs the same network (TF "same" padding on
                 the stride-2 convolutions, BatchNorm eps 1e-3: see the peer's docstring).

Both sides get the same epochs (the cosine schedule spans them; defaults sized so that Kennel's
run ends within 30 min on 2 cores): a side too slow to finish them in the budget is stopped there,
before its schedule has annealed, and only epochs that ended within the budget count. Wall time
runs from the launch of the training process (dataset indexing, model set-up, each epoch's valid
evaluation and checkpoint included) to the end of the epoch's checkpoint (Kennel) or state-dict
save (peer).

The test split never steers training: neither side reads it while training. Kennel's job writes a
checkpoint at the end of every epoch (checkpoints/checkpoint-<step>.pt, the newest two kept);
this driver hard-links each one as it appears, and after the run turns each into a model folder
(the checkpoint's model tensors, already under torchvision's names, as model.safetensors, next to
the model.json a one-step template job of the same spec wrote) and runs `kennel evaluate` on the
test split at the job's precision. The conversion is checked on every run that completes its
epochs: the last epoch's tensors must equal the job's own model/model.safetensors and its
evaluated accuracy the job's own test_accuracy. The peer's state dicts are evaluated by the peer
(fp32) after its run. Evaluations happen after training, outside the clock.

Fashion-MNIST (Debian's dataset-fashion-mnist: 60,000 training images, 10 % of them valid/, and
10,000 test images) is imported once with `kennel data import fashion-mnist` under bench/results/
and reused. Writes bench/results/fashion_long_bench.json with the host, the CPU's ceiling probe
(bench/ceiling.py) and every epoch. Run with Debian's /usr/bin/python3 on an idle machine: with the
defaults, 2 models x 2 sides x 30 min, plus the evaluations: about 2 h 15 min on 2 cores.
"""
import datetime
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import add_probe_option, bench_parser, csv_list, fmt, host_info, make_log, measure_ceiling  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER = ROOT / "bench" / "peers" / "fashion_peer.py"
MODELS = ("resnet18", "mobilenet_v2")
SIDES = ("kennel", "pytorch")
FASHION_MEAN, FASHION_STD = 0.286, 0.353  # scripts/demo.sh: the dataset's own
# What scripts/demo.sh's final job fixes; lr, batch size and weight decay are what it tunes.
COMMON_RECIPE = {"optimizer": "adamw", "lr_schedule": "cosine", "warmup_epochs": 0.3, "lr_min": 1e-5,
                 "label_smoothing": 0.1, "augment_scale": 1.0}
RECIPES = {
    "resnet18": {"lr": 2e-3, "batch_size": 256, "weight_decay": 0.05, "epochs": 20},
    "mobilenet_v2": {"lr": 1e-3, "batch_size": 256, "weight_decay": 0.01, "epochs": 8},
}
log = make_log("fashion_long_bench")


def run_checked(command, env=None, what=None):
    done = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"fashion_long_bench: {what or ' '.join(map(str, command))} failed ({done.returncode}):\n"
                 f"{done.stderr[-3000:]}{done.stdout[-2000:]}")
    return done.stdout


def import_dataset(kennel, per_class, test_per_class):
    """The ImageFolder under bench/results/, imported once (a marker file says the import finished)."""
    root = RESULTS / f"fashion-mnist-{per_class or 'all'}-{test_per_class or 'all'}"
    if (root / ".kennel-import-done").exists():
        log(f"dataset: reusing {root.relative_to(ROOT)}")
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log(f"dataset: importing Fashion-MNIST into {root.relative_to(ROOT)}")
    run_checked([kennel, "data", "import", "fashion-mnist", "--out", partial, "--per-class", per_class,
                 "--test-per-class", test_per_class, "--valid-ratio", 0.1, "--seed", 0])
    (partial / ".kennel-import-done").touch()
    partial.rename(root)
    return root


def recipe_of(args, model):
    recipe = dict(COMMON_RECIPE, **RECIPES[model])
    if args.epochs:
        recipe["epochs"] = args.epochs
    size = 28 if model == "resnet18" else args.mobilenet_size
    recipe.update(input_size=size, resize=size)
    return recipe


def kennel_flags(args, model, recipe):
    flags = ["--arch", model, "--freeze", "none", "--input-size", recipe["input_size"], "--resize", recipe["resize"],
             "--optimizer", recipe["optimizer"], "--lr", recipe["lr"], "--batch-size", recipe["batch_size"],
             "--weight-decay", recipe["weight_decay"], "--lr-schedule", recipe["lr_schedule"],
             "--warmup-epochs", recipe["warmup_epochs"], "--lr-min", recipe["lr_min"],
             "--label-smoothing", recipe["label_smoothing"], "--augment", "true",
             "--augment-scale", recipe["augment_scale"], "--threads", args.threads, "--seed", 0]
    if model == "resnet18":
        stats = f"{FASHION_MEAN},{FASHION_MEAN},{FASHION_MEAN}/{FASHION_STD},{FASHION_STD},{FASHION_STD}"
        flags += ["--pretrained", "none", "--normalize", stats]
    return [str(f) for f in flags]  # mobilenet_v2: the default pretrained backbone, --normalize auto


# ---- checkpoints -> model folders -----------------------------------------------------------

SAFETENSORS_DTYPES = {"torch.float32": "F32", "torch.int64": "I64", "torch.bfloat16": "BF16"}


def write_safetensors(path, state):
    """state (name -> contiguous CPU tensor) as a .safetensors file, names sorted, offsets back to back."""
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(state):
        tensor = state[name].detach().contiguous()
        data = tensor.numpy().tobytes() if str(tensor.dtype) != "torch.bfloat16" else \
            tensor.view(dtype=__import__("torch").int16).numpy().tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[str(tensor.dtype)], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as stream:
        stream.write(struct.pack("<Q", len(encoded)))
        stream.write(encoded)
        for chunk in chunks:
            stream.write(chunk)


def read_safetensors(path):
    import torch
    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    kinds = {v: getattr(torch, k.split(".")[1]) for k, v in SAFETENSORS_DTYPES.items()}
    state = {}
    for name, entry in header.items():
        if name != "__metadata__":
            begin, end = entry["data_offsets"]
            raw = bytearray(data[8 + length + begin:8 + length + end])
            state[name] = torch.frombuffer(raw, dtype=kinds[entry["dtype"]]).reshape(entry["shape"])
    return state


def checkpoint_state(path):
    """The model tensors of a Kennel checkpoint (a torch::serialize archive: submodules model and optimizer)."""
    import torch
    archive = torch.jit.load(str(path), map_location="cpu")
    return {**dict(archive.model.named_parameters()), **dict(archive.model.named_buffers())}


def template_model_json(args, data, flags, home, env):
    """model.json of a one-step job of the same spec on one image per class and split: what the job would export."""
    tiny = home / "template-data"
    for split in ("train", "valid", "test"):
        for class_dir in sorted(p for p in (data / split).iterdir() if p.is_dir()):
            (tiny / split / class_dir.name).mkdir(parents=True, exist_ok=True)
            first = min(class_dir.iterdir())
            (tiny / split / class_dir.name / first.name).symlink_to(first.resolve())
    flags = list(flags)
    flags[flags.index("--batch-size") + 1] = "10"  # its 10 training images; model.json does not record it
    run_checked([args.kennel, "train", "--data", tiny, *flags, "--name", "template", "--epochs", 1,
                 "--max-steps", 1, "--quiet", "--json"], env, "the template job")
    shutil.rmtree(tiny)
    return json.loads((home / "jobs" / "template" / "model" / "model.json").read_text())


# ---- one side's run -------------------------------------------------------------------------

def stop_process(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_kennel(args, model, data, recipe, work):
    home = work / "kennel-home"
    env = dict(os.environ, KENNEL_HOME=str(home))
    flags = kennel_flags(args, model, recipe)
    template = template_model_json(args, data, flags, home, env)
    name = f"long-{model.replace('_', '-')}"
    checkpoints = home / "jobs" / name / "checkpoints"
    kept = work / "kennel-epochs"
    kept.mkdir()
    command = [str(args.kennel), "train", "--data", str(data), *flags, "--epochs", str(recipe["epochs"]),
               "--name", name, "--quiet", "--json"]
    log(f"{model} kennel: {' '.join(command[1:])}")
    budget = args.budget_minutes * 60
    stdout_path, stderr_path = work / "kennel.stdout", work / "kennel.stderr"
    start = time.time()
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
    epochs, stopped_by_budget = [], False
    while True:
        finished = process.poll() is not None
        for path in sorted(checkpoints.glob("checkpoint-*.pt")) if checkpoints.is_dir() else []:
            link = kept / path.name
            if link.exists():
                continue
            try:
                os.link(path, link)
                ended = path.stat().st_mtime - start
            except FileNotFoundError:  # pruned between the listing and the link: logged below as missing
                continue
            epochs.append({"epoch": len(epochs) + 1, "wall_seconds": ended, "checkpoint": str(link)})
            log(f"{model} kennel: epoch {len(epochs)} ended at {ended:.0f} s")
        if finished:
            break
        if time.time() - start > budget:
            stopped_by_budget = True
            log(f"{model} kennel: budget of {args.budget_minutes} min spent: stopping the job")
            stop_process(process)
            continue  # one more look at the checkpoints, then leave
        time.sleep(0.5)
    wall = time.time() - start
    outcome = {}
    try:
        outcome = json.loads(stdout_path.read_text())
    except json.JSONDecodeError:
        pass
    if process.returncode != 0 and not stopped_by_budget:
        sys.exit(f"fashion_long_bench: kennel train exited {process.returncode}:\n{stderr_path.read_text()[-3000:]}")
    # A stop writes a mid-epoch checkpoint: only the epoch-end ones are epochs.
    steps_per_epoch = None
    metrics = [json.loads(line) for line in (home / "jobs" / name / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    epoch_records = [r for r in metrics if r.get("type") == "epoch"]
    if epoch_records:
        steps_per_epoch = epoch_records[0]["step"]
    epochs = [e for e in epochs if steps_per_epoch and
              int(re.search(r"(\d+)", Path(e["checkpoint"]).name).group(1)) % steps_per_epoch == 0]
    for record, epoch in zip(epoch_records, epochs):
        epoch.update(valid_accuracy=record.get("valid_accuracy"), images_per_second=record.get("images_per_second"))
    precision = template.get("precision") or "fp32"
    log(f"{model} kennel: {len(epochs)} epochs in {wall:.0f} s; evaluating each on the test split ({precision})")
    for epoch in epochs:
        folder = work / f"kennel-model-{epoch['epoch']:03d}"
        folder.mkdir()
        state = checkpoint_state(epoch["checkpoint"])
        write_safetensors(folder / "model.safetensors", state)
        info = dict(template, source_job=f"{name} epoch {epoch['epoch']} (checkpoint)")
        (folder / "model.json").write_text(json.dumps(info, indent=2) + "\n")
        report = json.loads(run_checked([args.kennel, "evaluate", folder, data, "--split", "test", "--precision",
                                         precision, "--threads", args.threads, "--out", folder / "evaluation",
                                         "--json"], env, "kennel evaluate"))
        epoch["test_accuracy"] = report["accuracy"]
        epoch["test_samples"] = report["samples"]
        log(f"{model} kennel: epoch {epoch['epoch']} test accuracy {epoch['test_accuracy']:.4f}")
        if epoch is epochs[-1]:
            check_conversion(home / "jobs" / name, state, epoch, outcome, recipe)
        Path(epoch.pop("checkpoint")).unlink()
        shutil.rmtree(folder)
    return {"epochs": epochs, "wall_seconds": wall, "stopped_by_budget": stopped_by_budget,
            "status": outcome.get("status", "Stopped" if stopped_by_budget else None), "precision": precision,
            "job_final_metrics": outcome.get("final_metrics"), "command": command[1:],
            "normalization": template["preprocessing"], "keras_compat": template.get("keras_compat"),
            "conversion_check": epochs[-1].get("conversion_check") if epochs else None}


def check_conversion(job_dir, state, epoch, outcome, recipe):
    """The last epoch of a completed job: its converted checkpoint must be the job's own model and test figure."""
    exported = job_dir / "model" / "model.safetensors"
    if outcome.get("status") != "Completed" or epoch["epoch"] != recipe["epochs"] or not exported.exists():
        return
    own = read_safetensors(exported)
    differ = sorted(set(own) ^ set(state))
    worst = max((float((own[k].double() - state[k].double()).abs().max()) for k in own if k in state), default=0.0)
    job_accuracy = (outcome.get("final_metrics") or {}).get("test_accuracy")
    check = {"names_differ": differ, "max_abs_weight_difference": worst, "job_test_accuracy": job_accuracy,
             "evaluated_test_accuracy": epoch["test_accuracy"]}
    check["ok"] = not differ and worst == 0.0 and job_accuracy is not None and \
        abs(job_accuracy - epoch["test_accuracy"]) < 1e-9
    epoch["conversion_check"] = check
    log(f"conversion check: {'ok' if check['ok'] else 'FAILED'} {check}")


def run_peer(args, model, data, recipe, normalization, work):
    out = work / "peer-epochs"
    flags = ["--arch", model, "--input-size", recipe["input_size"], "--resize", recipe["resize"],
             "--batch-size", recipe["batch_size"], "--lr", recipe["lr"], "--weight-decay", recipe["weight_decay"],
             "--warmup-epochs", recipe["warmup_epochs"], "--lr-min", recipe["lr_min"],
             "--label-smoothing", recipe["label_smoothing"], "--augment-scale", recipe["augment_scale"],
             "--mean", ",".join(map(str, normalization["mean"])), "--std", ",".join(map(str, normalization["std"])),
             "--threads", args.threads, "--workers", args.workers, "--seed", 0]
    if model == "mobilenet_v2":
        flags += ["--pretrained", args.weights, "--keras-same-padding"]
    flags = [str(f) for f in flags]
    command = [args.python, str(PEER), "train", str(data), *flags, "--epochs", str(recipe["epochs"]),
               "--out", str(out)]
    log(f"{model} pytorch: {' '.join(command[1:])}")
    budget = args.budget_minutes * 60
    stdout_path = work / "peer.stdout"
    start = time.time()
    with open(stdout_path, "w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
    stopped_by_budget = False
    while process.poll() is None:
        if time.time() - start > budget:
            stopped_by_budget = True
            log(f"{model} pytorch: budget of {args.budget_minutes} min spent: stopping the script")
            stop_process(process)
            break
        time.sleep(0.5)
    wall = time.time() - start
    text = stdout_path.read_text()
    if process.returncode != 0 and not stopped_by_budget:
        sys.exit(f"fashion_long_bench: the peer exited {process.returncode}:\n{text[-3000:]}")
    epochs = []
    for line in text.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "saved_at" in fields:
            epochs.append({"epoch": int(fields["epoch"]) + 1, "wall_seconds": float(fields["saved_at"]) - start,
                           "valid_accuracy": float(fields["valid_accuracy"]) if "valid_accuracy" in fields else None,
                           "images_per_second": float(fields["images_per_second"]), "path": fields["path"]})
            log(f"{model} pytorch: epoch {epochs[-1]['epoch']} ended at {epochs[-1]['wall_seconds']:.0f} s")
    epochs = [e for e in epochs if e["wall_seconds"] <= budget]
    log(f"{model} pytorch: {len(epochs)} epochs in {wall:.0f} s; evaluating each on the test split (fp32)")
    if epochs:
        evaluated = run_checked([args.python, PEER, "evaluate", data, *[e["path"] for e in epochs], *flags],
                                what="the peer's evaluation")
        accuracies = {}
        for line in evaluated.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if "accuracy" in fields:
                accuracies[fields["path"]] = (float(fields["accuracy"]), int(fields["samples"]))
        for epoch in epochs:
            epoch["test_accuracy"], epoch["test_samples"] = accuracies[epoch.pop("path")]
            log(f"{model} pytorch: epoch {epoch['epoch']} test accuracy {epoch['test_accuracy']:.4f}")
    shutil.rmtree(out, ignore_errors=True)
    return {"epochs": epochs, "wall_seconds": wall, "stopped_by_budget": stopped_by_budget,
            "status": "Stopped" if stopped_by_budget else "Completed", "precision": "fp32", "command": command[1:]}


def summarise(result, target, budget):
    counted = [e for e in result["epochs"] if e["wall_seconds"] <= budget and "test_accuracy" in e]
    reached = next((e for e in counted if e["test_accuracy"] >= target), None)
    best = max(counted, key=lambda e: e["test_accuracy"], default=None)
    result.update(epochs_in_budget=len(counted),
                  seconds_to_target=reached["wall_seconds"] if reached else None,
                  epoch_reaching_target=reached["epoch"] if reached else None,
                  best_test_accuracy=best["test_accuracy"] if best else None,
                  best_epoch=best["epoch"] if best else None)
    return result


def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--models", type=lambda t: csv_list(t, MODELS, "--models"), default=list(MODELS))
    parser.add_argument("--sides", type=lambda t: csv_list(t, SIDES, "--sides"), default=list(SIDES))
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="wall-clock budget of each run")
    parser.add_argument("--target", type=float, default=0.94, help="test accuracy whose first time is reported")
    parser.add_argument("--epochs", type=int, default=0,
                        help="epochs of every run (0 = per model: resnet18 20, mobilenet_v2 8)")
    parser.add_argument("--mobilenet-size", type=int, default=64, help="MobileNetV2 input size, px")
    parser.add_argument("--per-class", type=int, default=0, help="training-file images per class (0 = all 6,000)")
    parser.add_argument("--test-per-class", type=int, default=0, help="test images per class (0 = all 1,000)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="compute threads of every side (default: the CPUs this process may use)")
    parser.add_argument("--workers", type=int, default=2, help="the peer's DataLoader worker processes")
    parser.add_argument("--weights", type=Path,
                        default=Path(os.environ.get("KENNEL_WEIGHTS_DIR", Path.home() / ".cache/kennel/weights"))
                        / "mobilenet_v2" / "model.safetensors",
                        help="the pretrained MobileNetV2 Kennel uses by default (scripts/backbone.sh)")
    parser.add_argument("--keep-work", action="store_true", help="keep the jobs and logs under bench/results/long-*")
    add_probe_option(parser)
    args = parser.parse_args()
    args.kennel = args.kennel.resolve()
    if "mobilenet_v2" in args.models and not args.weights.is_file():
        sys.exit(f"fashion_long_bench: {args.weights} is missing: run scripts/backbone.sh (or pass --weights)")
    ceiling = measure_ceiling(args, log)
    data = import_dataset(args.kennel, args.per_class, args.test_per_class)
    budget = args.budget_minutes * 60
    rows = []
    for model in args.models:
        recipe = recipe_of(args, model)
        work = RESULTS / f"long-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
        work.mkdir(parents=True)
        normalization = {"mean": [FASHION_MEAN] * 3, "std": [FASHION_STD] * 3}
        if "kennel" in args.sides:  # first: its model.json gives the peer mobilenet_v2's normalisation
            result = run_kennel(args, model, data, recipe, work)
            normalization = result["normalization"]
            rows.append(summarise(dict(result, model=model, side="kennel", recipe=recipe), args.target, budget))
        elif model == "mobilenet_v2":
            home = work / "kennel-home"
            normalization = template_model_json(args, data, kennel_flags(args, model, recipe), home,
                                                dict(os.environ, KENNEL_HOME=str(home)))["preprocessing"]
        if "pytorch" in args.sides:
            result = run_peer(args, model, data, recipe, normalization, work)
            rows.append(summarise(dict(result, model=model, side="pytorch", recipe=recipe), args.target, budget))
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    report = {"benchmark": "fashion_long", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "host": host_info(), "ceiling": ceiling,
              "settings": {k: str(v) for k, v in vars(args).items()} | {"data": str(data)}, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fashion_long_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    test_images = rows[0]["epochs"][0].get("test_samples") if rows and rows[0]["epochs"] else None
    print(f"Fashion-MNIST: time to {args.target} test accuracy and best within {args.budget_minutes:g} min "
          f"({test_images or '?'} test images, {args.threads} threads)")
    print(f"{'model':<13} {'side':<8} {'precision':<9} {'epochs':>9} {'to target':>10} {'best':>8} {'at epoch':>8}")
    for row in rows:
        planned = row["recipe"]["epochs"]
        reached = f"{row['seconds_to_target']:.0f} s" if row["seconds_to_target"] is not None else "not reached"
        best = f"{row['best_test_accuracy']:.4f}" if row["best_test_accuracy"] is not None else "-"
        print(f"{row['model']:<13} {row['side']:<8} {row['precision']:<9} {row['epochs_in_budget']:>4}/{planned:<4} "
              f"{reached:>10} {best:>8} {fmt(row['best_epoch'], 0):>8}")
    print(f"JSON: {(RESULTS / 'fashion_long_bench.json').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
