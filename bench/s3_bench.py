"""S3 transfer throughput: Kennel's S3 layer next to boto3, against s3rver (behind the SigV4-verifying
proxy of tests/integration/service_kit) on loopback, with N parallel connections.

Cases: 1,000 small JPEGs (objects/s) and one large file (MB/s, multipart), each uploaded and then
downloaded into an empty place. Kennel uploads with `kennel data upload --concurrency N` and
downloads with `kennel data check --no-decode s3://...` in an empty home (the sync into the cache,
plus a header read per image); boto3 with upload_file/download_file on a pool of N threads.
Both talk through the same proxy, so both pay for its signature checks.
"""
import argparse
import os
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


def boto3_upload(s3, bucket, root, prefix, workers):
    client = s3.boto3_client()
    files = files_under(root)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(root).as_posix()}"),
                      files))


def boto3_download(s3, bucket, prefix, target, workers):
    client = s3.boto3_client()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
            for o in page.get("Contents", [])]

    def fetch(key):
        path = Path(target) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(path))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fetch, keys))


def kennel_run(binary, s3, home, *args, expect_bytes=0):
    """Runs kennel; `expect_bytes`: the home's S3 cache must then hold at least that much (a data
    check of a prefix that is no dataset fails after the download, which is what is timed)."""
    env = dict(os.environ, KENNEL_HOME=str(home), **s3.env())
    result = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env)
    cached = sum(p.stat().st_size for p in (Path(home) / "cache" / "s3" / "objects").rglob("*") if p.is_file())
    if (expect_bytes and cached < expect_bytes) or (not expect_bytes and result.returncode != 0):
        raise RuntimeError(f"kennel {' '.join(map(str, args))}: {result.returncode}\n{result.stderr[-2000:]}")


def timed(what, fn):
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    log(f"{what}: {seconds:.2f} s")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    binary = Path(args.build) / "kennel"
    have_kennel = binary.exists()
    if not have_kennel:
        log(f"{binary} is missing: boto3 only")
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
        else:
            import random
            rng = random.Random(1)
            for i in range(args.objects):
                path = small / f"c{i % 2}" / f"{i:05}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(bytes(rng.getrandbits(8) for _ in range(2500)))
        large = work / "large"
        large.mkdir()
        with open(large / "blob.bin", "wb") as out:
            out.write(os.urandom(args.large_mb << 20))
        small_files = files_under(small)
        small_bytes = sum(p.stat().st_size for p in small_files)
        rows = []
        with s3_server() as s3:
            for case, root, count, size in ((f"{len(small_files)} small JPEGs", small, len(small_files), small_bytes),
                                            (f"{args.large_mb} MiB file", large, 1, args.large_mb << 20)):
                key = "small" if root == small else "large"
                s3.make_bucket(f"bench-{key}-boto3".lower())
                up = timed(f"boto3 upload {case}", lambda: boto3_upload(s3, f"bench-{key}-boto3".lower(), root, "p",
                                                                        args.workers))
                down = timed(f"boto3 download {case}",
                             lambda: boto3_download(s3, f"bench-{key}-boto3".lower(), "p", work / f"dl-{key}",
                                                    args.workers))
                rows.append(("boto3", case, count, size, up, down))
                if have_kennel:
                    bucket = s3.make_bucket(f"bench-{key}-kennel".lower())
                    up = timed(f"kennel upload {case}",
                               lambda: kennel_run(binary, s3, work / "home-up", "data", "upload", root,
                                                  f"s3://{bucket}/p", "--quiet", "--concurrency", args.workers))
                    down = timed(f"kennel download {case}",
                                 lambda: kennel_run(binary, s3, work / f"home-{key}", "data", "check",
                                                    f"s3://{bucket}/p", "--no-decode", "--json", expect_bytes=size))
                    rows.append(("kennel", case, count, size, up, down))
        print(f"{'client':8} {'case':18} {'up obj/s':>9} {'up MB/s':>8} {'down obj/s':>10} {'down MB/s':>9}")
        for client, case, count, size, up, down in rows:
            print(f"{client:8} {case:18} {count / up:9.1f} {size / up / 1e6:8.1f} {count / down:10.1f} "
                  f"{size / down / 1e6:9.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
