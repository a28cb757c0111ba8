"""S3 transfer throughput: Kennel's S3 layer next to boto3, against s3rver (behind the SigV4-verifying
proxy of tests/integration/service_kit) on loopback, with N parallel connections.

Cases: 1,000 small JPEGs (objects/s) and a few large files (MB/s, multipart), each uploaded and
then downloaded into an empty place. Kennel uploads with `kennel data upload --concurrency N` and
downloads with `kennel data check --no-decode s3://...` in an empty home (the sync into the cache,
plus a header read per image; the sync keeps 8 objects in flight whatever N is); boto3 with
upload_file/download_file on a pool of N threads (its own transfer manager splits large files
into parts). Both talk through the same proxy, so both pay for its signature checks; on loopback
the proxy and s3rver (one Python, one Node process) are usually the ceiling, not the clients.

Two times per transfer: the wall time of the whole step, and the store's time, from the first
request the proxy received to the last answer it sent. Rates are over the store's time: it
leaves out what is not transfer (Kennel's start, about a second of LibTorch loading, and its
header read after the sync; boto3's client set-up) and is measured the same way for both.
Every download is checked for size: every byte in boto3's folder, every object complete in
Kennel's cache.
"""
import argparse
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_common import host_info, make_log  # noqa: E402
from service_kit.s3 import s3_server  # noqa: E402

log = make_log("s3_bench")


def files_under(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def boto3_client(s3, workers):
    # botocore's pool holds 10 connections by default: never fewer than the threads using it.
    return s3.boto3_client(max_pool_connections=max(10, workers))


def boto3_upload(s3, bucket, root, prefix, workers):
    client = boto3_client(s3, workers)
    files = files_under(root)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(root).as_posix()}"),
                      files))


def boto3_download(s3, bucket, prefix, target, workers, expect_bytes):
    client = boto3_client(s3, workers)
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
            for o in page.get("Contents", [])]

    def fetch(key):
        path = Path(target) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(path))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fetch, keys))
    got = sum(p.stat().st_size for p in files_under(target))
    if got != expect_bytes:
        raise RuntimeError(f"boto3 downloaded {got} bytes of {expect_bytes}")


def kennel_run(binary, s3, home, *args, expect_bytes=0):
    """Runs kennel; `expect_bytes`: the complete objects in the home's S3 cache must then add up to
    exactly that (a data check of a prefix that is no dataset fails after the download, which is
    what is timed)."""
    env = dict(os.environ, KENNEL_HOME=str(home), **s3.env())
    result = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env)
    objects = Path(home) / "cache" / "s3" / "objects"
    cached = sum(p.stat().st_size for p in objects.rglob("*") if p.is_file() and "." not in p.name)
    if (expect_bytes and cached != expect_bytes) or (not expect_bytes and result.returncode != 0):
        raise RuntimeError(f"kennel {' '.join(map(str, args))}: exit {result.returncode}, "
                           f"{cached} bytes cached of {expect_bytes}\n{result.stderr[-2000:]}")


def kennel_start_seconds(binary):
    """What starting the binary costs (median of 3 `kennel --version`): the gap between the two times."""
    def once():
        start = time.perf_counter()
        subprocess.run([str(binary), "--version"], check=True, capture_output=True)
        return time.perf_counter() - start
    return statistics.median(once() for _ in range(3))


def timed(s3, what, fn):
    """(wall seconds, store seconds: first request received to last answer sent) of fn()."""
    s3.clear_requests()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    records = s3.requests
    if not records or any(not r.finished for r in records):
        raise RuntimeError(f"{what}: {len(records)} requests, some never answered")
    store = max(r.finished for r in records) - min(r.started for r in records)
    log(f"{what}: {wall:.2f} s wall, {store:.2f} s at the store, {len(records)} requests")
    return wall, store


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--large-count", type=int, default=3, help="large files")
    parser.add_argument("--large-mb", type=int, default=96,
                        help="MiB per large file (above 64: Kennel uploads it in parts too)")
    parser.add_argument("--workers", type=int, default=8, help="parallel connections per client")
    args = parser.parse_args()
    if min(args.objects, args.large_count, args.large_mb, args.workers) < 1:
        parser.error("--objects, --large-count, --large-mb and --workers must be at least 1")
    binary = Path(args.build) / "kennel"
    have_kennel = binary.exists()
    if not have_kennel:
        log(f"{binary} is missing: boto3 only")
    elif args.workers != 8:
        log(f"--workers {args.workers}: Kennel's uploads take it, its sync keeps 8 objects in flight")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    print(f"host: {host_info()} cpu: {cpu} workers: {args.workers}")
    work = Path(tempfile.mkdtemp(prefix="s3-bench-"))
    try:
        small = work / "small"
        if have_kennel:
            per_class = args.objects // 2
            subprocess.run([str(binary), "data", "synth", "--out", str(small), "--classes", "2", "--per-class",
                            str(per_class), "--size", "64x64", "--valid-ratio", "0", "--test-ratio", "0"],
                           check=True, capture_output=True, env=dict(os.environ, KENNEL_HOME=str(work / "h")))
            (small / "planted.json").unlink(missing_ok=True)  # synth's record, not a JPEG
        else:
            import random
            rng = random.Random(1)
            for i in range(args.objects):
                path = small / f"c{i % 2}" / f"{i:05}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(bytes(rng.getrandbits(8) for _ in range(2500)))
        large = work / "large"
        large.mkdir()
        for i in range(args.large_count):
            with open(large / f"blob-{i}.bin", "wb") as out:
                out.write(os.urandom(args.large_mb << 20))
        small_files = files_under(small)
        small_bytes = sum(p.stat().st_size for p in small_files)
        large_bytes = args.large_count * (args.large_mb << 20)
        if have_kennel:
            log(f"kennel start (median of 3 `kennel --version`): {kennel_start_seconds(binary):.2f} s")
        rows = []
        with s3_server() as s3:
            for case, root, count, size in (
                    (f"{len(small_files)} small JPEGs", small, len(small_files), small_bytes),
                    (f"{args.large_count} x {args.large_mb} MiB", large, args.large_count, large_bytes)):
                key = "small" if root == small else "large"
                s3.make_bucket(f"bench-{key}-boto3".lower())
                up = timed(s3, f"boto3 upload {case}", lambda: boto3_upload(s3, f"bench-{key}-boto3".lower(), root, "p",
                                                                        args.workers))
                down = timed(s3, f"boto3 download {case}",
                             lambda: boto3_download(s3, f"bench-{key}-boto3".lower(), "p", work / f"dl-{key}",
                                                    args.workers, size))
                rows.append(("boto3", case, count, size, up, down))
                if have_kennel:
                    bucket = s3.make_bucket(f"bench-{key}-kennel".lower())
                    up = timed(s3, f"kennel upload {case}",
                               lambda: kennel_run(binary, s3, work / "home-up", "data", "upload", root,
                                                  f"s3://{bucket}/p", "--quiet", "--concurrency", args.workers))
                    down = timed(s3, f"kennel download {case}",
                                 lambda: kennel_run(binary, s3, work / f"home-{key}", "data", "check",
                                                    f"s3://{bucket}/p", "--no-decode", "--json", expect_bytes=size))
                    rows.append(("kennel", case, count, size, up, down))
        print("rates over the store's time (first request in to last answer out); wall: the whole step")
        print(f"{'client':7} {'case':18} | {'up wall':>7} {'store':>6} {'obj/s':>7} {'MB/s':>6} | "
              f"{'down wall':>9} {'store':>6} {'obj/s':>7} {'MB/s':>6}")
        for client, case, count, size, (up_wall, up), (down_wall, down) in rows:
            print(f"{client:7} {case:18} | {up_wall:7.2f} {up:6.2f} {count / up:7.1f} {size / up / 1e6:6.1f} | "
                  f"{down_wall:9.2f} {down:6.2f} {count / down:7.1f} {size / down / 1e6:6.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
