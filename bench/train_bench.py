"""Training benchmark: Kennel's `kennel train` with its defaults next to two PyTorch scripts.

For each arch (resnet18, resnet50; mobilenet_v2 with --archs, not one of issue 15's targets) at
224 px, batch 32, every usable CPU as threads, it measures training images/s in three modes:

  frozen_nocache  --freeze backbone --feature-cache false: the backbone runs every step
  cached_head     --freeze backbone --feature-cache true: run twice in one KENNEL_HOME,
                  the first run fills the feature cache, the second is measured (head
                  epochs/s and images/s: the backbone does not run at all)
  finetune        --freeze none: every layer trains
  finetune_frozen_bn  --freeze none --batchnorm frozen: every layer trains, BatchNorm keeps its
                  running statistics (eval mode); not a default mode, and not one of issue 15's
                  targets (those are for Kennel's defaults); the peers put every BatchNorm in eval
                  mode too, so all sides compute the same thing

Kennel runs without --precision: its default (auto: bf16 where the CPU has native bf16, fp32
master weights) is what is measured. Next to it, bench/peers/train_peer.py (torchvision
ImageFolder + DataLoader with 2 workers, Debian's torch + torchvision) twice:

  classic         the classic transfer-learning script, fp32
  best_effort     the same with --best-effort: channels_last model and batches, bf16 autocast
                  around the forward pass and the loss where the CPU has native bf16 (else
                  fp32), fp32 master weights

Neither peer has a feature cache: its cached_head number is its frozen-backbone number (the
same script, so the frozen_nocache peer run is reused when both modes are asked for).

Before anything runs, bench/ceiling.py probes the CPU (4096^2 matmul fp32 and bf16, int8
quantized::linear, best of 5) and computes its nominal peak from the flags and clock: both
are printed above the table and stored in the JSON, and each Kennel figure is also given in
GFLOP/s (nominal training FLOPs per image: 3x the forward pass for finetune, 1x for
frozen_nocache) as a share of the probe and of the peak of the precision Kennel runs.

Warm-up is skipped on every side: the first epoch is not counted (Kennel: epoch records
of metrics.jsonl after the first; with --epochs 1, the median of the step records after
the first three). Prints one table with the ratios Kennel / classic and Kennel / best_effort,
then issue 15's training targets for finetune (Kennel >= 4x classic and >= 1.3x best_effort)
with pass/FAIL, and writes it all as JSON to bench/results/train_bench.json.

The synthetic dataset (`kennel data synth`, 10 classes, ~500x375 JPEGs) is generated
once per --per-class and kept under bench/results/. Run with Debian's /usr/bin/python3 on an
idle machine. With the defaults (16 images per class, 2 epochs, 2 archs x 3 modes x 3 sides)
a 2-core machine needs roughly 10-15 minutes, most of it resnet50 fine-tuning in fp32.
"""
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (add_probe_option, bench_parser, csv_list, fmt, host_info, make_log,  # noqa: E402
                          measure_ceiling)
from ceiling import ceiling_lines, images_shares, short_share_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER = ROOT / "bench" / "peers" / "train_peer.py"
ARCHS = ("resnet18", "resnet50", "mobilenet_v2")
DEFAULT_ARCHS = ("resnet18", "resnet50")  # issue 15's targets; mobilenet_v2 on request
MODES = ("frozen_nocache", "cached_head", "finetune", "finetune_frozen_bn")
DEFAULT_MODES = ("frozen_nocache", "cached_head", "finetune")
PEERS = ("classic", "best_effort")
PEER_FLAGS = {"classic": [], "best_effort": ["--best-effort"]}
SHORT = {"classic": "c", "best_effort": "b"}
TARGETS = {"classic": 4.0, "best_effort": 1.3}  # issue 15: fine-tuning with defaults
# Nominal training FLOPs per image in forward passes: fine-tuning runs the forward pass and a
# backward pass of about twice its cost (activation and weight gradients); a frozen backbone runs
# forward only (the head is negligible); a cached head does not run the backbone at all.
TRAINING_FORWARDS = {"finetune": 3.0, "finetune_frozen_bn": 3.0, "frozen_nocache": 1.0}
MODE_FLAGS = {
    "frozen_nocache": ["--freeze", "backbone", "--feature-cache", "false"],
    "cached_head": ["--freeze", "backbone", "--feature-cache", "true"],
    "finetune": ["--freeze", "none"],
    "finetune_frozen_bn": ["--freeze", "none", "--batchnorm", "frozen"],
}


log = make_log("train_bench")


def ensure_dataset(kennel, per_class, explicit):
    """The dataset root: --data when given, else a synthetic one generated once under bench/results/."""
    if explicit:
        if not (Path(explicit) / "train").is_dir():
            sys.exit(f"train_bench: --data {explicit} has no train/ folder")
        return Path(explicit)
    root = RESULTS / f"train-synth-c10-n{per_class}-500x375-s0"
    if (root / "train").is_dir():
        log(f"dataset: reusing {root.relative_to(ROOT)}")
        return root
    RESULTS.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{root.name}.partial-", dir=RESULTS))
    log(f"dataset: generating {root.relative_to(ROOT)} (10 classes x {per_class} train images)")
    command = [str(kennel), "data", "synth", "--out", str(staging), "--classes", "10",
               "--per-class", str(per_class), "--size", "500x375", "--seed", "0", "--overwrite"]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        sys.exit(f"train_bench: {' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    staging.rename(root)  # only a complete dataset gets the final name
    return root


def read_metrics(path):
    records = []
    with open(path) as stream:
        for line in stream:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    return records


def steps_rate(steps, excluded_steps):
    """images/s over step records, leaving out the steps numbered in excluded_steps."""
    kept = [r for r in steps if r["step"] not in excluded_steps and r.get("images_per_second")]
    images = sum(r["batch_size"] for r in kept)
    seconds = sum(r["batch_size"] / r["images_per_second"] for r in kept)
    return images / seconds if seconds > 0 else None


def kennel_rate(metrics_path, excluded_steps=()):
    """images/s and mean epoch seconds after warm-up, from a job's metrics.jsonl.
    With excluded_steps (1-based step numbers), also steps_images_per_second: the
    rate over the timed epochs' steps other than those."""
    records = read_metrics(metrics_path)
    epochs = [r for r in records if r.get("type") == "epoch"]
    timed = epochs[1:]
    if timed:
        seconds = sum(r["epoch_seconds"] for r in timed)
        images = sum(r["images_per_second"] * r["epoch_seconds"] for r in timed)
        result = {"images_per_second": images / seconds if seconds > 0 else 0.0,
                  "epoch_seconds": seconds / len(timed), "timed_epochs": len(timed),
                  "measured_from": "epoch records after the first"}
        if excluded_steps:
            timed_steps = [r for r in records if r.get("type") == "step" and r["epoch"] >= timed[0]["epoch"]]
            result["steps_images_per_second"] = steps_rate(timed_steps, set(excluded_steps))
        return result
    steps = [r for r in records if r.get("type") == "step"]
    if not steps:
        raise RuntimeError(f"{metrics_path} has no step or epoch records")
    kept = steps[3:] if len(steps) > 3 else steps
    return {"images_per_second": statistics.median(r["images_per_second"] for r in kept),
            "epoch_seconds": epochs[0]["epoch_seconds"] if epochs else None, "timed_epochs": 0,
            "measured_from": f"median of {len(kept)} step records"
                             + (" after the first 3" if len(steps) > 3 else " (no warm-up skipped)")}


def run_kennel_job(args, data, arch, mode, home, name):
    command = [str(args.kennel), "train", "--data", str(data), "--arch", arch, "--pretrained", "none",
               "--input-size", "224", "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
               "--threads", str(args.threads), "--quiet", "--json", "--name", name] + MODE_FLAGS[mode]
    env = dict(os.environ, KENNEL_HOME=str(home))
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    try:
        outcome = json.loads(done.stdout)
    except json.JSONDecodeError:
        outcome = {}
    status = outcome.get("status")
    if done.returncode != 0 or status != "Completed":
        detail = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise RuntimeError(f"kennel train exited {done.returncode} (status {status!r}): {detail}\n"
                           f"command: KENNEL_HOME={home} {' '.join(command)}")
    return wall, done.stderr


def measure_kennel(args, data, arch, mode, excluded_steps=()):
    RESULTS.mkdir(parents=True, exist_ok=True)
    homes = RESULTS / "homes"
    homes.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=f"{arch}-{mode}-", dir=homes))
    name = f"bench-{arch}-{mode.replace('_', '-')}"
    try:
        result = {}
        if mode == "cached_head":
            fill_wall, _ = run_kennel_job(args, data, arch, mode, home, name + "-fill")
            if not (home / "cache" / "features").is_dir():
                raise RuntimeError(f"the fill run left no feature cache under {home}/cache/features")
            # The fill run computes train/valid/test features before its first epoch, outside
            # metrics.jsonl: its wall time is the cost of filling the cache.
            result["fill_wall_seconds"] = fill_wall
        wall, stderr = run_kennel_job(args, data, arch, mode, home, name)
        result.update(kennel_rate(home / "jobs" / name / "metrics.jsonl", excluded_steps))
        result["wall_seconds"] = wall
        if mode == "cached_head":
            epoch_seconds = result["epoch_seconds"]
            result["head_epochs_per_second"] = 1.0 / epoch_seconds if epoch_seconds else None
            if not re.search(r"features of train .*reused from the feature cache", stderr):
                result["warning"] = "the measured run did not report reusing the train features"
                log(f"{arch} {mode}: warning: {result['warning']}")
        return result
    finally:
        if not args.keep_homes:
            shutil.rmtree(home, ignore_errors=True)


def measure_peer(args, data, arch, mode, peer="classic"):
    command = [args.python, str(PEER), str(data), "--arch", arch, "--mode", mode,
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--workers", "2", "--threads", str(args.threads), *PEER_FLAGS[peer]]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    match = None
    for line in done.stdout.splitlines():
        found = re.match(r"images_per_second=([0-9.eE+-]+) epoch_seconds=([0-9.eE+-]+)", line)
        if found:
            match = found
    if done.returncode != 0 or match is None:
        detail = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise RuntimeError(f"the peer exited {done.returncode}: {detail}\ncommand: {' '.join(command)}")
    epoch_seconds = float(match.group(2))
    setup = next((line for line in done.stdout.splitlines() if line.startswith("mode=")), None)
    return {"images_per_second": float(match.group(1)), "epoch_seconds": epoch_seconds,
            "epochs_per_second": 1.0 / epoch_seconds if epoch_seconds else None, "wall_seconds": wall,
            "setup": setup, "command": " ".join(command)}


def print_table(rows, peers):
    header = (["arch", "mode", "Kennel img/s"] + [f"{peer} img/s" for peer in peers]
              + [f"K/{SHORT[peer]}" for peer in peers]
              + ["Kennel epochs/s"] + [f"{peer} epochs/s" for peer in peers] + ["K %probe/%peak"])
    lines = []

    def rate(cell):
        return "failed" if "error" in cell else fmt(cell.get("images_per_second"))

    for row in rows:
        kennel = row.get("kennel") or {}
        epochs_per_second = kennel.get("head_epochs_per_second")
        if epochs_per_second is None and kennel.get("epoch_seconds"):
            epochs_per_second = 1.0 / kennel["epoch_seconds"]
        lines.append([row["arch"], row["mode"], rate(kennel)]
                     + [rate(row.get(peer) or {}) for peer in peers]
                     + [fmt(row["ratios"].get(peer), 2) + ("x" if row["ratios"].get(peer) else "") for peer in peers]
                     + [fmt(epochs_per_second, 3) + (" (head)" if row["mode"] == "cached_head" and
                                                     epochs_per_second else "")]
                     + [fmt((row.get(peer) or {}).get("epochs_per_second"), 3) for peer in peers]
                     + [short_share_text(row.get("kennel_ceiling"))])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))] \
        if lines else [len(h) for h in header]
    align = ["<", "<"] + [">"] * (len(header) - 2)
    rule = "  ".join("-" * w for w in widths)
    print("  ".join(f"{h:{a}{w}}" for h, a, w in zip(header, align, widths)))
    print(rule)
    for line in lines:
        print("  ".join(f"{c:{a}{w}}" for c, a, w in zip(line, align, widths)))


def evaluate_targets(rows):
    """Issue 15's training targets: finetune rows, Kennel / peer >= TARGETS[peer]; pass / FAIL / n/a."""
    results = []
    for row in rows:
        if row["mode"] != "finetune" or row["arch"] not in DEFAULT_ARCHS:
            continue
        kennel = row.get("kennel") or {}
        for peer, factor in TARGETS.items():
            other = row.get(peer) or {}
            name = f"finetune img/s >= {factor:g}x {peer}'s"
            entry = {"arch": row["arch"], "mode": row["mode"], "target": name, "required_ratio": factor,
                     "ratio": row["ratios"].get(peer)}
            if peer not in row:
                entry.update(status="n/a", detail=f"{peer} not measured")
            elif not kennel.get("images_per_second") or not other.get("images_per_second"):
                entry.update(status="n/a", detail=f"kennel {'failed' if 'error' in kennel else 'no figure'}"
                             if not kennel.get("images_per_second") else
                             f"{peer} {'failed' if 'error' in other else 'no figure'}")
            else:
                ratio = entry["ratio"]
                entry.update(status="pass" if ratio >= factor else "FAIL",
                             detail=f"{kennel['images_per_second']:.1f} vs {peer} {other['images_per_second']:.1f} "
                                    f"img/s ({ratio:.2f}x)")
            results.append(entry)
    return results


def print_targets(results):
    if not results:
        return
    print("Issue 15's training targets (fine-tuning at 224 px with Kennel's defaults):")
    width = max(len(entry["target"]) for entry in results)
    for entry in results:
        print(f"  {entry['arch']:<9} {entry['target']:<{width}}  {entry['status']:<4}  {entry['detail']}")


def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--data", help="use this ImageFolder dataset instead of the synthetic one")
    parser.add_argument("--per-class", type=int, default=16, help="synthetic training images per class (10 classes)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the first is warm-up, not counted")
    parser.add_argument("--archs", type=lambda s: csv_list(s, ARCHS, "--archs"), default=list(DEFAULT_ARCHS),
                        help="comma-separated")
    parser.add_argument("--modes", type=lambda s: csv_list(s, MODES, "--modes"), default=list(DEFAULT_MODES),
                        help="comma-separated (the debugger/profiler overhead: run_hook_overhead_bench.sh)")
    parser.add_argument("--peers", type=lambda s: csv_list(s, PEERS, "--peers"), default=list(PEERS),
                        help="comma-separated PyTorch scripts next to Kennel")
    parser.add_argument("--no-peer", action="store_true", help="Kennel only")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads on every side (default: every usable CPU)")
    add_probe_option(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--keep-homes", action="store_true",
                        help="keep the KENNEL_HOME of every run under bench/results/homes/")
    parser.add_argument("--json-out", type=Path, default=RESULTS / "train_bench.json")
    args = parser.parse_args()
    if args.epochs < 1 or args.per_class < 1 or args.threads < 1 or args.probe_size < 0:
        parser.error("--epochs, --per-class and --threads must be at least 1, --probe-size at least 0")
    args.kennel = args.kennel.resolve()
    if not args.kennel.is_file():
        sys.exit(f"train_bench: {args.kennel} not found (bash scripts/build.sh kennel)")

    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: the load average is {load:.1f}: another job is using the CPUs, the numbers will be low "
            f"and noisy (run on an idle machine)")
    started = time.perf_counter()
    ceiling = measure_ceiling(args, log, archs=args.archs)
    # Kennel's auto is bf16 where the CPU has native bf16: its figures are read against that precision.
    kennel_precision = "bf16" if (ceiling or {}).get("native_bf16") else "fp32"
    data = ensure_dataset(args.kennel, args.per_class, args.data)
    peers = [] if args.no_peer else [peer for peer in PEERS if peer in args.peers]
    rows = []
    failures = 0
    for arch in args.archs:
        peer_frozen = {}
        for mode in args.modes:
            row = {"arch": arch, "mode": mode, "kennel": None, **{peer: None for peer in peers}, "ratios": {}}
            log(f"{arch} {mode}: kennel train ...")
            try:
                row["kennel"] = measure_kennel(args, data, arch, mode)
                log(f"{arch} {mode}: kennel {row['kennel']['images_per_second']:.1f} img/s "
                    f"({row['kennel']['wall_seconds']:.0f} s)")
            except Exception as error:  # one failed run must not hide the others
                failures += 1
                row["kennel"] = {"error": str(error)}
                log(f"{arch} {mode}: kennel FAILED: {error}")
            for peer in peers:
                try:
                    if mode == "cached_head" and peer in peer_frozen:
                        row[peer] = dict(peer_frozen[peer], reused_from="frozen_nocache")
                        log(f"{arch} {mode}: {peer} = its frozen_nocache run (no feature cache in the peer)")
                    else:
                        log(f"{arch} {mode}: {peer} ...")
                        row[peer] = measure_peer(args, data, arch, mode, peer)
                        log(f"{arch} {mode}: {peer} {row[peer]['images_per_second']:.1f} img/s "
                            f"({row[peer]['wall_seconds']:.0f} s; {row[peer]['setup']})")
                        if mode == "frozen_nocache":
                            peer_frozen[peer] = row[peer]
                except Exception as error:
                    failures += 1
                    row[peer] = {"error": str(error)}
                    log(f"{arch} {mode}: {peer} FAILED: {error}")
            kennel_rate_value = (row["kennel"] or {}).get("images_per_second")
            for peer in peers:
                peer_rate_value = (row[peer] or {}).get("images_per_second")
                if kennel_rate_value and peer_rate_value:
                    row["ratios"][peer] = kennel_rate_value / peer_rate_value
            forward_gflop = ((ceiling or {}).get("model_gflop_per_image") or {}).get(arch)
            if mode in TRAINING_FORWARDS and forward_gflop:
                row["kennel_ceiling"] = images_shares(kennel_rate_value, TRAINING_FORWARDS[mode] * forward_gflop,
                                                      ceiling, kennel_precision)
            rows.append(row)

    targets = evaluate_targets(rows)
    report = {
        "benchmark": "train",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": host_info(),
        "ceiling": ceiling,
        "settings": {"data": str(data), "per_class": args.per_class, "classes": 10, "size": "500x375",
                     "input_size": 224, "batch_size": args.batch_size, "epochs": args.epochs,
                     "warmup_epochs": 1, "threads": args.threads, "peer_workers": 2, "peers": peers,
                     "pretrained": "none", "kennel": str(args.kennel), "kennel_precision_flag": None,
                     "kennel_figures_read_against": kennel_precision,
                     "training_forwards_per_image": TRAINING_FORWARDS},
        "load_average_at_start": load,
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
        "targets": targets,
    }
    try:
        (RESULTS / "homes").rmdir()  # only when empty (--keep-homes keeps them)
    except OSError:
        pass
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")

    warmup = ("the first one is warm-up, not counted" if args.epochs > 1
              else "no warm-up epoch: Kennel = median of its steps after the first 3")
    print(f"Training throughput, 224 px, batch {args.batch_size}, {args.threads} threads, "
          f"{data.name}, {args.epochs} epoch(s), {warmup}")
    print(f"Kennel: its defaults (no --precision); peers: classic fp32, best_effort channels_last + "
          f"{'bf16 autocast' if (ceiling or {}).get('native_bf16') else 'fp32 (no native bf16)'}; "
          f"{args.threads} threads each")
    for line in ceiling_lines(ceiling) if ceiling else ["ceiling: not probed (--probe-size 0)"]:
        print(line)
    if ceiling and ceiling.get("model_gflop_per_image"):
        print("model GFLOP per image (forward, 224 px): " + ", ".join(
            f"{arch} {gflop:.2f}" for arch, gflop in ceiling["model_gflop_per_image"].items()))
    print_table(rows, peers)
    print("K/c, K/b = Kennel / classic, Kennel / best_effort. cached_head: Kennel trains the head on cached "
          "features\n  (epochs/s = head epochs/s); the peers have no feature cache and re-run the backbone "
          "every epoch (their frozen_nocache run).\n  K %probe/%peak: Kennel's img/s x nominal training GFLOP per "
          f"image (finetune 3x forward, frozen_nocache 1x) as a share of\n  the {kennel_precision} probe and of the "
          f"nominal {kennel_precision} peak.")
    for row in rows:
        fill = (row.get("kennel") or {}).get("fill_wall_seconds")
        if fill is not None:
            print(f"  {row['arch']} cached_head: the cache-filling run took {fill:.1f} s "
                  f"(process wall time, features of train/valid/test + {args.epochs} head epoch(s))")
    for row in rows:
        for side in ["kennel"] + peers:
            error = (row.get(side) or {}).get("error")
            if error:
                print(f"  {row['arch']} {row['mode']} {side} failed: {error.splitlines()[0]}")
    print_targets(targets)
    print(f"JSON: {args.json_out}  ({report['total_seconds']:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
