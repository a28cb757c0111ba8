"""Training benchmark: Kennel's `kennel train` next to the classic PyTorch script.

For each arch (resnet18, resnet50) at 224 px, batch 32, 2 CPU threads, it measures
training images/s in three modes:

  frozen_nocache  --freeze backbone --feature-cache false: the backbone runs every step
  cached_head     --freeze backbone --feature-cache true: run twice in one KENNEL_HOME,
                  the first run fills the feature cache, the second is measured (head
                  epochs/s and images/s: the backbone does not run at all)
  finetune        --freeze none: every layer trains

next to bench/peers/train_peer.py (torchvision ImageFolder + DataLoader with 2 workers,
Debian's torch + torchvision), which has no feature cache: its cached_head number is
its frozen-backbone number (the same script, so the frozen_nocache peer run is reused
when both modes are asked for).

Warm-up is skipped on both sides: the first epoch is not counted (Kennel: epoch records
of metrics.jsonl after the first; with --epochs 1, the median of the step records after
the first three). Prints one table with the ratio Kennel / peer and writes it as JSON
to bench/results/train_bench.json.

The synthetic dataset (`kennel data synth`, 10 classes, ~500x375 JPEGs) is generated
once per --per-class and kept under bench/results/. Run with Debian's /usr/bin/python3.
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
from bench_common import bench_parser, csv_list, fmt, host_info, make_log  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER = ROOT / "bench" / "peers" / "train_peer.py"
ARCHS = ("resnet18", "resnet50")
MODES = ("frozen_nocache", "cached_head", "finetune")
DEFAULT_MODES = ("frozen_nocache", "cached_head", "finetune")
MODE_FLAGS = {
    "frozen_nocache": ["--freeze", "backbone", "--feature-cache", "false"],
    "cached_head": ["--freeze", "backbone", "--feature-cache", "true"],
    "finetune": ["--freeze", "none"],
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


def measure_peer(args, data, arch, mode):
    command = [args.python, str(PEER), str(data), "--arch", arch, "--mode", mode,
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
               "--workers", "2", "--threads", str(args.threads)]
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
    return {"images_per_second": float(match.group(1)), "epoch_seconds": epoch_seconds,
            "epochs_per_second": 1.0 / epoch_seconds if epoch_seconds else None, "wall_seconds": wall}


def print_table(rows):
    header = ["arch", "mode", "Kennel img/s", "peer img/s", "ratio", "Kennel epochs/s", "peer epochs/s"]
    lines = []
    for row in rows:
        kennel, peer = row.get("kennel") or {}, row.get("peer") or {}
        epochs_per_second = kennel.get("head_epochs_per_second")
        if epochs_per_second is None and kennel.get("epoch_seconds"):
            epochs_per_second = 1.0 / kennel["epoch_seconds"]
        lines.append([row["arch"], row["mode"],
                      fmt(kennel.get("images_per_second")) if "error" not in kennel else "failed",
                      fmt(peer.get("images_per_second")) if "error" not in peer else "failed",
                      fmt(row.get("ratio"), 2) + ("x" if row.get("ratio") else ""),
                      fmt(epochs_per_second, 3) + (" (head)" if row["mode"] == "cached_head" and
                                                   epochs_per_second else ""),
                      fmt(peer.get("epochs_per_second"), 3)])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    align = ["<", "<", ">", ">", ">", ">", ">"]
    rule = "  ".join("-" * w for w in widths)
    print("  ".join(f"{h:{a}{w}}" for h, a, w in zip(header, align, widths)))
    print(rule)
    for line in lines:
        print("  ".join(f"{c:{a}{w}}" for c, a, w in zip(line, align, widths)))


def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--data", help="use this ImageFolder dataset instead of the synthetic one")
    parser.add_argument("--per-class", type=int, default=16, help="synthetic training images per class (10 classes)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the first is warm-up, not counted")
    parser.add_argument("--archs", type=lambda s: csv_list(s, ARCHS, "--archs"), default=list(ARCHS),
                        help="comma-separated")
    parser.add_argument("--modes", type=lambda s: csv_list(s, MODES, "--modes"), default=list(DEFAULT_MODES),
                        help="comma-separated (the debugger/profiler overhead: run_hook_overhead_bench.sh)")
    parser.add_argument("--no-peer", action="store_true", help="Kennel only")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads on both sides")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--keep-homes", action="store_true",
                        help="keep the KENNEL_HOME of every run under bench/results/homes/")
    parser.add_argument("--json-out", type=Path, default=RESULTS / "train_bench.json")
    args = parser.parse_args()
    if args.epochs < 1 or args.per_class < 1:
        parser.error("--epochs and --per-class must be at least 1")
    args.kennel = args.kennel.resolve()
    if not args.kennel.is_file():
        sys.exit(f"train_bench: {args.kennel} not found (bash scripts/build.sh kennel)")

    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: the load average is {load:.1f}: another job is using the CPUs, the numbers will be low "
            f"and noisy (run on an idle machine)")
    data = ensure_dataset(args.kennel, args.per_class, args.data)
    started = time.perf_counter()
    rows = []
    failures = 0
    for arch in args.archs:
        peer_frozen = None
        for mode in args.modes:
            row = {"arch": arch, "mode": mode, "kennel": None, "peer": None, "ratio": None}
            log(f"{arch} {mode}: kennel train ...")
            try:
                row["kennel"] = measure_kennel(args, data, arch, mode)
                log(f"{arch} {mode}: kennel {row['kennel']['images_per_second']:.1f} img/s "
                    f"({row['kennel']['wall_seconds']:.0f} s)")
            except Exception as error:  # one failed run must not hide the others
                failures += 1
                row["kennel"] = {"error": str(error)}
                log(f"{arch} {mode}: kennel FAILED: {error}")
            if not args.no_peer:
                try:
                    if mode == "cached_head" and peer_frozen is not None:
                        row["peer"] = dict(peer_frozen, reused_from="frozen_nocache")
                        log(f"{arch} {mode}: peer = its frozen_nocache run (no feature cache in the peer)")
                    else:
                        log(f"{arch} {mode}: peer ...")
                        row["peer"] = measure_peer(args, data, arch, mode)
                        log(f"{arch} {mode}: peer {row['peer']['images_per_second']:.1f} img/s "
                            f"({row['peer']['wall_seconds']:.0f} s)")
                        if mode == "frozen_nocache":
                            peer_frozen = row["peer"]
                except Exception as error:
                    failures += 1
                    row["peer"] = {"error": str(error)}
                    log(f"{arch} {mode}: peer FAILED: {error}")
            kennel_rate_value = (row["kennel"] or {}).get("images_per_second")
            peer_rate_value = (row["peer"] or {}).get("images_per_second")
            if kennel_rate_value and peer_rate_value:
                row["ratio"] = kennel_rate_value / peer_rate_value
            rows.append(row)

    report = {
        "benchmark": "train",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": host_info(),
        "settings": {"data": str(data), "per_class": args.per_class, "classes": 10, "size": "500x375",
                     "input_size": 224, "batch_size": args.batch_size, "epochs": args.epochs,
                     "warmup_epochs": 1, "threads": args.threads, "peer_workers": 2,
                     "pretrained": "none", "kennel": str(args.kennel)},
        "load_average_at_start": load,
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
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
    print_table(rows)
    print("ratio = Kennel / peer. cached_head: Kennel trains the head on cached features (epochs/s = head "
          "epochs/s);\n  the peer has no feature cache and re-runs the backbone every epoch "
          "(its frozen_nocache run).")
    for row in rows:
        fill = (row.get("kennel") or {}).get("fill_wall_seconds")
        if fill is not None:
            print(f"  {row['arch']} cached_head: the cache-filling run took {fill:.1f} s "
                  f"(process wall time, features of train/valid/test + {args.epochs} head epoch(s))")
    for row in rows:
        for side in ("kennel", "peer"):
            error = (row.get(side) or {}).get("error")
            if error:
                print(f"  {row['arch']} {row['mode']} {side} failed: {error.splitlines()[0]}")
    print(f"JSON: {args.json_out}  ({report['total_seconds']:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
