"""Data-parallel training benchmark: what running as 2 ranks costs on one 2-core host.

On 2 cores the point is low overhead, not speed-up: 2 ranks x 1 thread do the same
work as 1 process x 2 threads, plus the gradient allreduce. Measured, in one run:

  finetune     resnet18 fine-tuned at 224 (--freeze none), 1 x 2 threads with batch B
               next to 2 ranks x 1 thread with batch B/2 (the same effective batch);
               images/s from the epoch records after the first
  exposed      for the 2-rank run with overlap on and off (--no-gradient-overlap):
               bytes allreduced per step and the exposed communication, i.e. the time
               from the end of backward until the last bucket's allreduce completes
               (the profiler's per-step `sync` phase, which also holds the step's tiny
               metrics allgather), as a share of step time, median over the steps
               outside the profiler's operator window
  feature_pass the frozen backbone over the whole dataset into an empty feature cache,
               1 x 2 threads vs 2 ranks x 1 thread (sharded and all-gathered): wall time
               of `kennel train --freeze backbone --epochs 1` in a fresh home

The dataset is bench/train_bench.py's synthetic one (10 classes, ~500x375 JPEGs).
Prints one table and writes bench/results/dist_bench.json. Run with /usr/bin/python3.
"""
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
from bench_common import add_probe_option, bench_parser, fmt, host_info, make_log, measure_ceiling  # noqa: E402
from train_bench import ensure_dataset, kennel_rate, read_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
log = make_log("dist_bench")
BUCKETS = re.compile(r"allreduces (\d+) bytes per step in (\d+) bucket")


def run(kennel, home, args, timeout=3600):
    env = dict(os.environ, KENNEL_HOME=str(home))
    start = time.perf_counter()
    done = subprocess.run([str(kennel), "train", "--quiet", "--json", *map(str, args)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    try:
        outcome = json.loads(done.stdout)
    except json.JSONDecodeError:
        outcome = {}
    if done.returncode != 0 or outcome.get("status") != "Completed":
        raise RuntimeError(f"kennel train {' '.join(map(str, args))} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return outcome, wall, done.stderr


def exposed_share(job_dir, window=(5, 8)):
    """Median over steps (outside the operator window and the first 2) of sync / total."""
    steps = read_metrics(Path(job_dir) / "profile" / "steps.jsonl")
    shares, syncs = [], []
    for step in steps:
        if step["step"] < 2 or window[0] <= step["step"] < window[1] or step["total"] <= 0:
            continue
        shares.append(step.get("sync", 0) / step["total"])
        syncs.append(step.get("sync", 0))
    if not shares:
        return None, None
    return statistics.median(shares), statistics.median(syncs)


def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--per-class", type=int, default=16, help="training images per class (default 16)")
    parser.add_argument("--batch-size", type=int, default=16, help="effective batch size (default 16)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs, the first not timed (default 3)")
    parser.add_argument("--data", help="an ImageFolder dataset instead of the synthetic one")
    add_probe_option(parser)
    args = parser.parse_args()
    kennel = Path(args.kennel).resolve()
    data = ensure_dataset(kennel, args.per_class, args.data)
    work = Path(tempfile.mkdtemp(prefix="dist-bench-", dir=RESULTS))
    common = ["--data", data, "--arch", "resnet18", "--pretrained", "none", "--input-size", 224,
              "--precision", "fp32", "--seed", 0]
    results = {"host": host_info(), "ceiling": measure_ceiling(args, log, archs=["resnet18"]),
               "per_class": args.per_class, "batch_size": args.batch_size}
    try:
        finetune = ["--freeze", "none", "--epochs", args.epochs, "--profiler", "default", *common]
        log("finetune: 1 process x 2 threads")
        single, _, _ = run(kennel, work / "h1", ["--name", "one", "--threads", 2,
                                                 "--batch-size", args.batch_size, *finetune])
        one = kennel_rate(Path(single["job_dir"]) / "metrics.jsonl")
        log("finetune: 2 ranks x 1 thread, overlap on")
        parallel, _, stderr = run(kennel, work / "h2", ["--name", "two", "--nproc-per-node", 2,
                                                        "--batch-size", args.batch_size // 2, *finetune])
        two = kennel_rate(Path(parallel["job_dir"]) / "metrics.jsonl")
        found = BUCKETS.search(stderr)
        bytes_per_step, buckets = (int(found.group(1)), int(found.group(2))) if found else (None, None)
        share_on, sync_on = exposed_share(parallel["job_dir"])
        log("finetune: 2 ranks x 1 thread, overlap off")
        serial, _, _ = run(kennel, work / "h3", ["--name", "two-serial", "--nproc-per-node", 2,
                                                 "--no-gradient-overlap", "--batch-size", args.batch_size // 2,
                                                 *finetune])
        three = kennel_rate(Path(serial["job_dir"]) / "metrics.jsonl")
        share_off, sync_off = exposed_share(serial["job_dir"])
        results["finetune"] = {
            "one_rank_2_threads": one["images_per_second"], "two_ranks_1_thread": two["images_per_second"],
            "two_ranks_no_overlap": three["images_per_second"], "bytes_per_step": bytes_per_step,
            "buckets": buckets, "exposed_share_overlap": share_on, "exposed_seconds_overlap": sync_on,
            "exposed_share_no_overlap": share_off, "exposed_seconds_no_overlap": sync_off}

        feature = ["--freeze", "backbone", "--epochs", 1, "--batch-size", args.batch_size, *common]
        images = sum(1 for _ in Path(data).rglob("*.jpg"))
        log("feature pass: 1 process x 2 threads")
        _, wall_one, _ = run(kennel, work / "f1", ["--name", "f1", "--threads", 2, *feature])
        log("feature pass: 2 ranks x 1 thread")
        _, wall_two, _ = run(kennel, work / "f2", ["--name", "f2", "--nproc-per-node", 2, *feature])
        results["feature_pass"] = {"images": images, "one_rank_2_threads_seconds": wall_one,
                                   "two_ranks_1_thread_seconds": wall_two}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    f = results["finetune"]
    p = results["feature_pass"]
    print(f"\nhost: {results['host']}")
    print(f"resnet18 fine-tune at 224, effective batch {args.batch_size}, fp32")
    print(f"  1 process x 2 threads        {fmt(f['one_rank_2_threads'])} img/s")
    print(f"  2 ranks x 1 thread (overlap) {fmt(f['two_ranks_1_thread'])} img/s "
          f"({fmt(100 * f['two_ranks_1_thread'] / f['one_rank_2_threads'])} % of one process)")
    print(f"  2 ranks x 1 thread (no overlap) {fmt(f['two_ranks_no_overlap'])} img/s")
    print(f"  allreduced per step: {f['bytes_per_step']} bytes in {f['buckets']} buckets")
    if f["exposed_share_overlap"] is not None:
        print(f"  exposed communication: {fmt(100 * f['exposed_share_overlap'])} % of step time with overlap "
              f"({fmt(1000 * f['exposed_seconds_overlap'])} ms), {fmt(100 * f['exposed_share_no_overlap'])} % "
              f"without ({fmt(1000 * f['exposed_seconds_no_overlap'])} ms)")
    print(f"frozen backbone feature pass, {p['images']} images at 224:")
    print(f"  1 process x 2 threads {fmt(p['one_rank_2_threads_seconds'])} s, "
          f"2 ranks x 1 thread {fmt(p['two_ranks_1_thread_seconds'])} s (whole job, cold cache)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dist_bench.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
