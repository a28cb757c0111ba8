"""Tuning benchmark: `kennel tune` with the feature cache next to the classic PyTorch tuning loop.

Wall time of a hyperparameter search, --trials trials (default 12) x --epochs epochs
(default 5), random search over lr in [1e-4, 1e-1] (log) and batch_size in {16, 32, 64},
one trial at a time, --threads CPU threads (default 2), a frozen resnet50 backbone
(random init: the weights do not matter for speed) with a new Linear head, on a
133-class synthetic dataset (`kennel data synth`, --per-class train images per class,
default 6, and a third as many valid images: ~800 train + ~270 valid, ~256x256 JPEGs):

  kennel  `kennel --home HOME tune ... --freeze backbone --strategy random --max-jobs N
          --max-parallel-jobs 1 --json --quiet` in a fresh HOME, so the feature cache is
          cold: the first trial computes the backbone features of train/ and valid/ once,
          every trial trains its head on them. The wall time is the process's, measured
          here (time.monotonic around the subprocess). --warm adds a second tuning job in
          the same HOME (cache already filled): the cost of a later study.
  peer    bench/peers/tune_peer.py: for the same trials (the hyperparameters Kennel's JSON
          reports; with --no-kennel, drawn the same way from a fixed seed) the classic
          script: ImageFolder + DataLoader(num_workers=threads), torchvision resnet50,
          frozen, Adam, validation every epoch. No feature cache: the backbone runs on
          every batch of every epoch of every trial.

The peer is slow on a few cores (a resnet50 forward is ~20-40 images/s on 2 cores), so by
default it runs only --peer-trials trials (2) of --peer-epochs epochs (5) and its time is
EXTRAPOLATED to --trials x --epochs: process start-up + the first epoch's one-time warm-up
(its excess over the later epochs) + trials x (mean setup + mean later epoch x epochs). The
table says from how many trials and epochs. --peer-trials 0 runs them all (no extrapolation).

Prints a table (system, trials, epochs, wall seconds, seconds/trial, peer/kennel) and
writes bench/results/tune_bench-<timestamp>.json and .log. The dataset is generated once
per --per-class and kept under bench/results/. Run with Debian's /usr/bin/python3 on an
idle machine.
"""
import datetime
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import add_probe_option, bench_parser, fmt, host_info, make_log, measure_ceiling  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER = ROOT / "bench" / "peers" / "tune_peer.py"
ARCH = "resnet50"
CLASSES = 133
IMAGE_SIZE = "256x256"
VALID_RATIO = 0.34
LR_RANGE = (1e-4, 1e-1)  # log scale
BATCH_SIZES = (16, 32, 64)

log = make_log("tune_bench")


class BenchError(RuntimeError):
    pass


def tail(text, limit=3000):
    text = (text or "").strip()
    return text if len(text) <= limit else "...\n" + text[-limit:]


def ensure_dataset(kennel, per_class, explicit):
    """The dataset root: --data when given, else a synthetic one generated once under bench/results/."""
    if explicit:
        for split in ("train", "valid"):
            if not (Path(explicit) / split).is_dir():
                sys.exit(f"tune_bench: --data {explicit} has no {split}/ folder")
        return Path(explicit).resolve()
    root = RESULTS / f"tune-synth-c{CLASSES}-n{per_class}-{IMAGE_SIZE}-v{VALID_RATIO:g}-s0"
    if (root / "train").is_dir() and (root / "valid").is_dir():
        log(f"dataset: reusing {root.relative_to(ROOT)}")
        return root
    RESULTS.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{root.name}.partial-", dir=RESULTS))
    log(f"dataset: generating {root.relative_to(ROOT)} ({CLASSES} classes x {per_class} train images)")
    command = [str(kennel), "data", "synth", "--out", str(staging), "--classes", str(CLASSES),
               "--per-class", str(per_class), "--size", IMAGE_SIZE, "--valid-ratio", str(VALID_RATIO),
               "--test-ratio", "0", "--seed", "0", "--overwrite"]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        sys.exit(f"tune_bench: {' '.join(command)} failed ({done.returncode}):\n{tail(done.stderr)}")
    if not (staging / "valid").is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        sys.exit(f"tune_bench: --per-class {per_class} x --valid-ratio {VALID_RATIO} gave no valid/ split "
                 f"(use --per-class 3 or more)")
    staging.rename(root)  # only a complete dataset gets the final name
    return root


def count_images(root):
    counts = {}
    for split in ("train", "valid"):
        folder = root / split
        counts[split] = sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0
    return counts


def sample_trials(count, seed):
    """Trials for the peer when Kennel did not run: random search over the same space, fixed seed."""
    rng = random.Random(seed)
    low, high = math.log10(LR_RANGE[0]), math.log10(LR_RANGE[1])
    return [{"index": i, "hyperparameters": {"lr": 10 ** rng.uniform(low, high),
                                             "batch_size": rng.choice(BATCH_SIZES)}}
            for i in range(count)]


def check_tune_available(kennel):
    """`kennel tune --help` must describe tune: a binary without it prints the top-level help instead."""
    done = subprocess.run([str(kennel), "tune", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    usage = next((line for line in done.stdout.splitlines() if line.startswith("Usage:")), "")
    if done.returncode != 0 or " tune" not in usage:
        raise BenchError(f"{kennel} has no `tune` subcommand yet: rebuild it (bash scripts/build.sh kennel) "
                         f"or pass --no-kennel\n{tail(done.stderr or done.stdout, 1000)}")


def run_kennel_tune(args, data, home, name, log_path):
    command = [str(args.kennel), "--home", str(home), "tune", "--name", name, "--data", str(data),
               "--arch", ARCH, "--pretrained", "none", "--freeze", "backbone",
               "--input-size", str(args.input_size), "--epochs", str(args.epochs), "--threads", str(args.threads),
               "--param", f"lr={LR_RANGE[0]:g}..{LR_RANGE[1]:g}:log",
               "--param", "batch_size=" + ",".join(str(b) for b in BATCH_SIZES),
               "--strategy", "random", "--max-jobs", str(args.trials), "--max-parallel-jobs", "1",
               "--seed", str(args.seed), "--json", "--quiet"]
    log(f"kennel: {' '.join(command)}")
    start = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - start
    with open(log_path, "a") as stream:
        stream.write(f"--- kennel tune {name}: exit {done.returncode}, {wall:.1f} s\n$ {' '.join(command)}\n")
        stream.write(f"--- stderr\n{done.stderr}\n--- stdout\n{done.stdout}\n")
    try:
        outcome = json.loads(done.stdout)
    except json.JSONDecodeError:
        outcome = None
    if done.returncode != 0 or not isinstance(outcome, dict):
        first = next((line.strip() for line in done.stderr.splitlines() if line.strip()), "no stderr")
        raise BenchError(f"kennel tune exited {done.returncode}"
                         f"{'' if isinstance(outcome, dict) else ' without a JSON result'}: {first}\n"
                         f"--- stderr\n{tail(done.stderr)}\n--- stdout\n{tail(done.stdout, 1000)}\n"
                         f"command: {' '.join(command)}")
    trials = outcome.get("trials") or []
    completed = (outcome.get("counts") or {}).get("Completed",
                                                  sum(1 for t in trials if t.get("status") == "Completed"))
    warnings = []
    if outcome.get("status") != "Completed":
        warnings.append(f"tuning status {outcome.get('status')!r} ({outcome.get('reason') or 'no reason given'})")
    if completed != args.trials:
        warnings.append(f"{completed} of {args.trials} trials completed (counts: {outcome.get('counts')})")
    short = [t for t in trials if t.get("status") == "Completed" and t.get("epochs_run") not in (None, args.epochs)]
    if short:
        warnings.append(f"{len(short)} completed trial(s) ran other than {args.epochs} epochs")
    if not trials:
        raise BenchError(f"kennel tune reported no trials:\n{tail(done.stdout, 1000)}")
    features = home / "cache" / "features"
    entries = sorted(p.name for p in features.iterdir() if p.is_dir()) if features.is_dir() else []
    if not entries:
        warnings.append(f"no feature cache under {features}: the trials re-ran the backbone")
    elif len(entries) > 2:
        # One entry per split (train/, valid/): more means the trials did not share one backbone.
        warnings.append(f"{len(entries)} feature cache entries under {features} (expected 2, train and valid): "
                        f"trials did not share one backbone (a per-trial seed changes the random-init weights id?)")
    for warning in warnings:
        log(f"kennel {name}: warning: {warning}")
    return {"name": name, "wall_seconds": wall, "reported_wall_seconds": outcome.get("wall_seconds"),
            "status": outcome.get("status"), "counts": outcome.get("counts"), "completed": completed,
            "best": outcome.get("best"), "feature_cache_entries": len(entries), "warnings": warnings,
            "trials": [{key: t.get(key) for key in ("index", "name", "status", "objective", "hyperparameters",
                                                    "epochs_run", "duration_seconds", "reason")}
                       for t in trials]}


def measure_kennel(args, data, log_path):
    check_tune_available(args.kennel)
    homes = RESULTS / "tune-homes"
    homes.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="home-", dir=homes))  # fresh: the feature cache starts cold
    try:
        result = {"cold": run_kennel_tune(args, data, home, "bench-tune", log_path)}
        log(f"kennel (cold cache): {result['cold']['wall_seconds']:.1f} s for {result['cold']['completed']} trials")
        if args.warm:
            result["warm"] = run_kennel_tune(args, data, home, "bench-tune-warm", log_path)
            log(f"kennel (warm cache): {result['warm']['wall_seconds']:.1f} s")
        result["home"] = str(home) if args.keep_homes else None
        return result
    finally:
        if not args.keep_homes:
            shutil.rmtree(home, ignore_errors=True)
            try:
                homes.rmdir()  # only when empty
            except OSError:
                pass


def measure_peer(args, data, trials, log_path):
    limit = len(trials) if args.peer_trials <= 0 else min(args.peer_trials, len(trials))
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="tune-trials-", dir=RESULTS, delete=False) as f:
        json.dump(trials[:limit], f)
        trials_path = f.name
    command = [args.python, str(PEER), str(data), "--trials", trials_path, "--arch", ARCH,
               "--epochs", str(args.peer_epochs), "--input-size", str(args.input_size),
               "--threads", str(args.threads), "--seed", str(args.seed)]
    log(f"peer: {limit} trial(s) x {args.peer_epochs} epoch(s): {' '.join(command)}")
    records = []
    start = time.monotonic()
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
            for line in process.stdout:  # progress as it comes: the peer takes minutes
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                records.append(record)
                if record.get("type") == "epoch":
                    log(f"peer trial {record['index']} epoch {record['epoch']}: {record['seconds']:.1f} s "
                        f"(train {record['train_seconds']:.1f} s, valid {record['valid_seconds']:.1f} s), "
                        f"valid accuracy {record['valid_accuracy']:.3f}")
            stderr = process.stderr.read()
        returncode = process.returncode
    finally:
        os.unlink(trials_path)
    wall = time.monotonic() - start
    with open(log_path, "a") as stream:
        stream.write(f"--- peer: exit {returncode}, {wall:.1f} s\n$ {' '.join(command)}\n--- stderr\n{stderr}\n"
                     f"--- stdout\n" + "".join(json.dumps(r) + "\n" for r in records))
    done_trials = [r for r in records if r.get("type") == "trial"]
    if returncode != 0 or len(done_trials) != limit:
        raise BenchError(f"the peer exited {returncode} after {len(done_trials)} of {limit} trials:\n"
                         f"{tail(stderr)}\ncommand: {' '.join(command)}")
    trial_seconds = sum(t["seconds"] for t in done_trials)
    startup = max(wall - trial_seconds, 0.0)  # interpreter, torch import, between-trial overhead
    mean_setup = sum(t["setup_seconds"] for t in done_trials) / limit
    epochs = [s for t in done_trials for s in t["epoch_seconds"]]
    # The process's very first epoch also pays one-time warm-up (oneDNN primitives, page faults):
    # counted once, not once per extrapolated trial, when there are other epochs to compare with.
    later = epochs[1:]
    mean_epoch = sum(later) / len(later) if later else epochs[0]
    warmup = max(epochs[0] - mean_epoch, 0.0) if later else 0.0
    if limit == args.trials and args.peer_epochs == args.epochs:
        projected, extrapolated = wall, False
    else:
        projected = startup + warmup + args.trials * (mean_setup + mean_epoch * args.epochs)
        extrapolated = True
    return {"measured_trials": limit, "measured_epochs": args.peer_epochs, "measured_wall_seconds": wall,
            "startup_seconds": startup, "first_epoch_warmup_seconds": warmup,
            "mean_setup_seconds": mean_setup, "mean_epoch_seconds": mean_epoch,
            "mean_trial_seconds": trial_seconds / limit, "extrapolated": extrapolated,
            "wall_seconds": projected, "seconds_per_trial": (projected - startup) / args.trials,
            "best_valid_accuracy": max(t["best_valid_accuracy"] for t in done_trials),
            "trials": done_trials, "epochs": [r for r in records if r.get("type") == "epoch"]}


def format_table(rows):
    header = ["system", "trials", "epochs", "wall s", "s/trial", "peer/kennel"]
    lines = [[fmt(cell, 2) if i == 5 and cell is not None else fmt(cell, 0 if i in (1, 2) else 1)
              for i, cell in enumerate(row)] for row in rows]
    for line, row in zip(lines, rows):
        if row[5] is not None:
            line[5] += "x"
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    align = ["<", ">", ">", ">", ">", ">"]
    out = ["  ".join(f"{h:{a}{w}}" for h, a, w in zip(header, align, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(f"{c:{a}{w}}" for c, a, w in zip(line, align, widths)) for line in lines]
    return "\n".join(out)


def main():
    global log
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--data", help="use this ImageFolder dataset (train/ and valid/) instead of the synthetic one")
    parser.add_argument("--per-class", type=int, default=6,
                        help=f"synthetic training images per class ({CLASSES} classes, valid: x{VALID_RATIO})")
    parser.add_argument("--trials", type=int, default=12, help="trials of the search")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial")
    parser.add_argument("--input-size", type=int, default=224, help="model input (crop) size, pixels")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads on both sides (peer: also DataLoader workers)")
    parser.add_argument("--seed", type=int, default=0, help="search seed (and the peer's sampling with --no-kennel)")
    parser.add_argument("--peer-trials", type=int, default=2,
                        help="trials the peer really runs; the rest is extrapolated (0 = all --trials)")
    parser.add_argument("--peer-epochs", type=int, default=None,
                        help="epochs per peer trial; fewer than --epochs is extrapolated (default: --epochs)")
    parser.add_argument("--warm", action="store_true",
                        help="also time a second tuning job in the same Kennel home (feature cache already filled)")
    parser.add_argument("--no-peer", action="store_true", help="Kennel only")
    parser.add_argument("--no-kennel", action="store_true", help="peer only (trials sampled here with --seed)")
    parser.add_argument("--keep-homes", action="store_true", help="keep the Kennel home under bench/results/tune-homes/")
    parser.add_argument("--json-out", type=Path, help="default: bench/results/tune_bench-<timestamp>.json")
    add_probe_option(parser)
    args = parser.parse_args()
    if args.peer_epochs is None:
        args.peer_epochs = args.epochs
    if min(args.trials, args.epochs, args.per_class, args.input_size, args.threads, args.peer_epochs) < 1:
        parser.error("--trials, --epochs, --per-class, --input-size, --threads and --peer-epochs must be at least 1")
    if args.no_peer and args.no_kennel:
        parser.error("--no-peer and --no-kennel leave nothing to measure")
    if args.peer_epochs > args.epochs:
        parser.error("--peer-epochs cannot exceed --epochs")
    args.kennel = args.kennel.resolve()
    if not args.kennel.is_file():
        sys.exit(f"tune_bench: {args.kennel} not found (bash scripts/build.sh kennel)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_out = args.json_out or RESULTS / f"tune_bench-{stamp}.json"
    log_path = json_out.with_suffix(".log")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    log = make_log("tune_bench", log_path)

    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: the load average is {load:.1f}: another job is using the CPUs, the numbers will be "
            f"high and noisy (run on an idle machine)")
    ceiling = measure_ceiling(args, log, archs=[ARCH])
    data = ensure_dataset(args.kennel, args.per_class, args.data)
    images = count_images(data)
    log(f"dataset: {data} ({images['train']} train + {images['valid']} valid images)")
    started = time.monotonic()
    failures = 0

    kennel = None
    if not args.no_kennel:
        try:
            kennel = measure_kennel(args, data, log_path)
        except BenchError as error:
            failures += 1
            kennel = {"error": str(error)}
            log(f"kennel FAILED: {error}")
    cold = (kennel or {}).get("cold")
    if cold:
        trials = [{"index": t.get("index", i), "hyperparameters": t["hyperparameters"]}
                  for i, t in enumerate(cold["trials"]) if t.get("hyperparameters")]
        source = "kennel"
    else:
        trials = sample_trials(args.trials, args.seed)
        source = f"sampled here (seed {args.seed})"
    trials = trials[:args.trials]

    peer = None
    if not args.no_peer:
        try:
            peer = measure_peer(args, data, trials, log_path)
        except BenchError as error:
            failures += 1
            peer = {"error": str(error)}
            log(f"peer FAILED: {error}")

    rows = []
    cold_wall = cold["wall_seconds"] if cold else None
    peer_ok = peer is not None and "error" not in peer
    ratio = peer["wall_seconds"] / cold_wall if peer_ok and cold_wall else None
    if cold:
        rows.append(["Kennel, cold feature cache", cold["completed"], args.epochs, cold_wall,
                     cold_wall / max(cold["completed"], 1), 1.0 if ratio else None])
        warm = kennel.get("warm")
        if warm:
            rows.append(["Kennel, warm feature cache", warm["completed"], args.epochs, warm["wall_seconds"],
                         warm["wall_seconds"] / max(warm["completed"], 1),
                         peer["wall_seconds"] / warm["wall_seconds"] if peer_ok and warm["wall_seconds"] else None])
    if peer_ok:
        if peer["extrapolated"]:
            rows.append(["PyTorch peer, measured", peer["measured_trials"], peer["measured_epochs"],
                         peer["measured_wall_seconds"], peer["mean_trial_seconds"], None])
            rows.append(["PyTorch peer, EXTRAPOLATED", args.trials, args.epochs, peer["wall_seconds"],
                         peer["seconds_per_trial"], ratio])
        else:
            rows.append(["PyTorch peer", args.trials, args.epochs, peer["wall_seconds"],
                         peer["seconds_per_trial"], ratio])

    report = {
        "benchmark": "tune",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": host_info(),
        "ceiling": ceiling,
        "settings": {"data": str(data), "images": images, "classes": CLASSES, "per_class": args.per_class,
                     "size": IMAGE_SIZE, "valid_ratio": VALID_RATIO, "arch": ARCH, "pretrained": "none",
                     "freeze": "backbone", "input_size": args.input_size, "trials": args.trials,
                     "epochs": args.epochs, "threads": args.threads, "seed": args.seed,
                     "search": {"strategy": "random", "lr": {"min": LR_RANGE[0], "max": LR_RANGE[1], "scale": "log"},
                                "batch_size": list(BATCH_SIZES)},
                     "peer_trials": args.peer_trials, "peer_epochs": args.peer_epochs,
                     "trials_from": source, "kennel": str(args.kennel)},
        "load_average_at_start": load,
        "total_seconds": time.monotonic() - started,
        "kennel": kennel,
        "peer": peer,
        "ratio_peer_over_kennel": ratio,
        "table": rows,
    }
    json_out.write_text(json.dumps(report, indent=2) + "\n")

    lines = [f"Tuning wall time: {args.trials} trials x {args.epochs} epochs, random search (lr, batch_size), "
             f"frozen {ARCH} (random init), {args.input_size} px, {args.threads} threads, one trial at a time,",
             f"  {data.name}: {images['train']} train + {images['valid']} valid images, {CLASSES} classes",
             format_table(rows) if rows else "(nothing measured)"]
    if peer_ok and peer["extrapolated"]:
        lines.append(f"EXTRAPOLATED: the peer ran {peer['measured_trials']} of {args.trials} trials x "
                     f"{peer['measured_epochs']} of {args.epochs} epochs; total = start-up "
                     f"{peer['startup_seconds']:.1f} s + first-epoch warm-up {peer['first_epoch_warmup_seconds']:.1f} s"
                     f" + {args.trials} x (setup {peer['mean_setup_seconds']:.1f} s + {args.epochs} x "
                     f"{peer['mean_epoch_seconds']:.1f} s per epoch" + (", epochs after the first)" if
                     peer['measured_trials'] * peer['measured_epochs'] > 1 else ", from ONE epoch: warm-up "
                     "included, an overestimate)"))
    if ratio:
        lines.append(f"Kennel (cold cache) is {ratio:.1f}x faster than the peer"
                     f"{' (extrapolated)' if peer['extrapolated'] else ''}; the peer re-runs the backbone in "
                     f"every epoch of every trial.")
    if cold:
        best = cold.get("best") or {}
        objective = best.get("objective") or {}
        lines.append(f"Kennel best trial: {best.get('name')} {objective.get('metric')}={objective.get('value')} "
                     f"{best.get('hyperparameters')}")
    if peer_ok:
        lines.append(f"Peer best valid accuracy over its {peer['measured_trials']} trial(s): "
                     f"{peer['best_valid_accuracy']:.4f}")
    for side, outcome in (("kennel", kennel), ("peer", peer)):
        if outcome and "error" in outcome:
            lines.append(f"{side} FAILED: {outcome['error'].splitlines()[0]} (details in {log_path})")
    for key in ("cold", "warm"):
        for warning in ((kennel or {}).get(key) or {}).get("warnings", []):
            lines.append(f"kennel {key} warning: {warning}")
    lines.append(f"JSON: {json_out}  log: {log_path}  ({report['total_seconds']:.0f} s)")
    text = "\n".join(lines)
    print(text)
    with open(log_path, "a") as stream:
        stream.write(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
