"""S3 as a first-class store, black-box: the real `kennel` binary against s3rver behind the
SigV4-verifying proxy (services.py `s3`), with boto3 as the independent client.

Datasets are tiny (32 px, resnet18 without pretrained weights, a few steps) so each test
stays quick on 2 cores.
"""
from concurrent.futures import ThreadPoolExecutor
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from test_serve import READY, invoke

FAST = ["--arch", "resnet18", "--pretrained", "none", "--input-size", 32, "--resize", 36,
        "--threads", 2]
COMPUTED_KEY = re.compile(r"features of train \(\d+ images\): computed, stored in the feature cache \((\w+)\)")
REUSED_KEY = re.compile(r"features of train \(\d+ images\): reused from the feature cache \((\w+)\)")


class S3Kennel:
    """`kennel` with the store's AWS_* settings, in a home of its own."""

    def __init__(self, binary, home, s3):
        self.binary, self.home, self.s3 = binary, home, s3

    def env(self):
        return dict(os.environ, KENNEL_HOME=str(self.home), **self.s3.env())

    def run(self, *args, check=None, timeout=300):
        result = subprocess.run([str(self.binary), *map(str, args)], capture_output=True, text=True,
                                errors="replace", env=self.env(), timeout=timeout)
        if check is not None and result.returncode != check:
            raise AssertionError(f"kennel {' '.join(map(str, args))} exited {result.returncode}, "
                                 f"expected {check}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def json(self, *args, check=0, timeout=300):
        return json.loads(self.run(*args, "--json", check=check, timeout=timeout).stdout)


def synth(kennel_bin, root, classes=2, per_class=8, size="32x32", valid=0.25, seed=5):
    subprocess.run([str(kennel_bin), "data", "synth", "--out", str(root), "--classes", str(classes),
                    "--per-class", str(per_class), "--size", size, "--valid-ratio", str(valid),
                    "--test-ratio", "0", "--seed", str(seed)],
                   check=True, capture_output=True, env=dict(os.environ, KENNEL_HOME=str(root.parent / "h")))
    return root


def object_gets(s3, bucket):
    """GETs of objects (not listings, not manifests) the store answered."""
    return [r for r in s3.requests if r.method == "GET" and r.bucket == bucket and r.key
            and not r.key.endswith("kennel-manifest.json")]


def local_files(root):
    """Every file under root: `data upload` sends them all (synth's planted.json too), as `aws s3 sync` does."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def local_images(root):
    return [p for p in local_files(root) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]


def test_upload_train_second_run_downloads_nothing_and_a_changed_object_changes_the_key(
        kennel_bin, tmp_path, s3):
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=8)
    bucket = s3.make_bucket("kennel-datasets")
    kennel = S3Kennel(kennel_bin, tmp_path / "home", s3)

    # Upload: every file arrives byte for byte, with its SHA-256 in the metadata (read by boto3).
    out = kennel.run("data", "upload", data, f"s3://{bucket}/dogs", "--quiet", check=0).stdout
    files = local_files(data)
    assert f"{len(files)} files: {len(files)} uploaded" in out, out
    client = s3.boto3_client()
    for path in files:
        key = "dogs/" + path.relative_to(data).as_posix()
        got = client.get_object(Bucket=bucket, Key=key)
        body = got["Body"].read()
        assert body == path.read_bytes(), key
        assert got["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest(), key
    # Again: everything matches, nothing is sent.
    s3.clear_requests()
    out = kennel.run("data", "upload", data, f"s3://{bucket}/dogs", "--quiet", check=0).stdout
    assert f"0 uploaded (0 bytes), {len(files)} already there" in out, out
    assert not [r for r in s3.requests if r.method == "PUT"]

    common = ["train", "--data", f"s3://{bucket}/dogs", "--freeze", "backbone", "--epochs", 1,
              "--batch-size", 4, "--log-level", "info", "--quiet", *FAST]
    first = kennel.run(*common, "--name", "s3-1", check=0)
    first_key = COMPUTED_KEY.search(first.stderr + first.stdout).group(1)
    assert len(object_gets(s3, bucket)) == len(files)

    # A second run lists the bucket, downloads nothing and reuses the cached features.
    s3.clear_requests()
    second = kennel.run(*common, "--name", "s3-2", check=0)
    assert object_gets(s3, bucket) == []
    assert any(r.method == "GET" and "list-type" in r.query for r in s3.requests)
    assert REUSED_KEY.search(second.stderr + second.stdout).group(1) == first_key

    # One object changes (boto3 writes another image under its key): only it is fetched again,
    # and the features get another key.
    images = local_images(data)
    changed = images[0]
    other = next(p for p in images if p.suffix == changed.suffix and p.read_bytes() != changed.read_bytes())
    changed_key = "dogs/" + changed.relative_to(data).as_posix()
    client.put_object(Bucket=bucket, Key=changed_key, Body=other.read_bytes())
    s3.clear_requests()
    third = kennel.run(*common, "--name", "s3-3", check=0)
    assert [r.key for r in object_gets(s3, bucket)] == [changed_key]
    third_key = COMPUTED_KEY.search(third.stderr + third.stdout).group(1)
    assert third_key != first_key
    # The cache never holds a partial download.
    assert not list((kennel.home / "cache").rglob("*.part"))


def test_every_request_reaches_the_store_once_over_kept_alive_connections(kennel_bin, tmp_path, s3):
    # The proxy used to send every request after the first on a kept-alive connection to s3rver
    # twice (http.client never marked the previous response complete); s3rver began both PUTs
    # of an object, the one whose connection dropped truncated the file last, and the object
    # stayed empty although its PUT was answered 200. One connection each: Kennel at
    # --concurrency 1, boto3 with a pool of one.
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=3)
    files = local_files(data)
    bucket = s3.make_bucket("kennel-once")
    kennel = S3Kennel(kennel_bin, tmp_path / "home", s3)
    client = s3.boto3_client(max_pool_connections=1)
    s3.clear_requests()
    kennel.run("data", "upload", data, f"s3://{bucket}/kennel", "--concurrency", 1, "--quiet",
               check=0)
    for path in files:
        client.put_object(Bucket=bucket, Key="boto3/" + path.relative_to(data).as_posix(),
                          Body=path.read_bytes())
    records = s3.requests
    assert len([r for r in records if r.method == "PUT"]) == 2 * len(files)
    assert [(r.method, r.key, r.forwarded) for r in records if r.forwarded != 1] == []
    for prefix in ("kennel/", "boto3/"):
        for path in files:
            key = prefix + path.relative_to(data).as_posix()
            assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == path.read_bytes(), key


def test_listing_over_several_pages_and_data_check(kennel_bin, tmp_path, s3):
    # 2 x 520 images: more than one page of 1,000 keys.
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=520, size="24x24", valid=0.0)
    count = len(local_files(data))
    assert count > 1000
    bucket = s3.make_bucket("kennel-pages")
    kennel = S3Kennel(kennel_bin, tmp_path / "home", s3)
    # boto3 writes them (8 at once); Kennel lists and checks them.
    client = s3.boto3_client()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.put_object(Bucket=bucket, Key="many/" + p.relative_to(data).as_posix(),
                                                  Body=p.read_bytes()), local_files(data)))
    assert sum(page.get("KeyCount", 0) for page in
               s3.boto3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)) == count

    s3.clear_requests()
    report = kennel.json("data", "check", f"s3://{bucket}/many", "--no-decode")
    listings = [r for r in s3.requests if r.method == "GET" and "list-type" in r.query]
    assert len(listings) >= 2 and any("continuation-token" in r.query for r in listings), listings
    assert len(object_gets(s3, bucket)) == count
    assert report["usable"] is True


def test_missing_bucket_and_prefix_are_named(kennel_bin, tmp_path, s3):
    kennel = S3Kennel(kennel_bin, tmp_path / "home", s3)
    result = kennel.run("data", "check", "s3://no-such-bucket/data")
    assert result.returncode != 0
    assert "no-such-bucket" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "terminate" not in result.stderr

    bucket = s3.make_bucket("kennel-empty")
    result = kennel.run("train", "--data", f"s3://{bucket}/nothing-here", "--name", "x", *FAST)
    assert result.returncode == 2, result.stderr  # not found: a usage error
    assert f"s3://{bucket}/nothing-here/" in result.stderr, result.stderr

    image = tmp_path / "none.jpg"
    image.write_bytes(b"x")
    result = kennel.run("predict", "--model", f"s3://{bucket}/no/model/", "--image", image)
    assert result.returncode != 0
    assert f"s3://{bucket}/no/model/" in result.stderr, result.stderr


def wait_for_steps(home, name, steps, timeout=180):
    path = home / "jobs" / name / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and sum(1 for line in path.read_text().splitlines()
                                 if line.strip() and json.loads(line)["type"] == "step") >= steps:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {name} made no progress in {timeout}s")


def test_tune_output_puts_every_trial_job_under_the_study_prefix(kennel_bin, tmp_path, s3):
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=8)
    bucket = s3.make_bucket("kennel-tuning")
    home = S3Kennel(kennel_bin, tmp_path / "home", s3)
    outcome = home.json("tune", "--name", "study", "--data", data, *FAST, "--freeze", "none", "--epochs", 1,
                        "--batch-size", 4, "--param", "lr=1e-3..1e-1:log", "--strategy", "random",
                        "--max-jobs", 2, "--output", f"s3://{bucket}/runs/", "--quiet", timeout=600)
    assert outcome["status"] == "Completed", outcome
    client = s3.boto3_client()
    keys = {item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix="runs/")["Contents"]}
    for trial in ("study-001", "study-002"):
        prefix = f"runs/study/{trial}/"
        assert prefix + "spec.json" in keys, sorted(keys)
        manifest = json.loads(client.get_object(Bucket=bucket, Key=prefix + "model/kennel-manifest.json")
                              ["Body"].read())
        assert "model.safetensors" in manifest["files"]
        for name, entry in manifest["files"].items():
            body = client.get_object(Bucket=bucket, Key=prefix + "model/" + name)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], name
    # Not an S3 location: refused before any trial runs, naming the value.
    refused = home.run("tune", "--name", "bad", "--data", data, *FAST, "--param", "lr=1e-3..1e-1:log",
                       "--max-jobs", 1, "--output", "/tmp/out")
    assert refused.returncode != 0 and "'/tmp/out' is not an S3 location" in refused.stderr, refused.stderr


def test_resume_from_s3_checkpoints_in_an_empty_home_then_serve_from_s3(kennel_bin, tmp_path, s3):
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=16)
    bucket = s3.make_bucket("kennel-runs")
    first_home = S3Kennel(kennel_bin, tmp_path / "home-1", s3)
    first_home.run("data", "upload", data, f"s3://{bucket}/data", "--quiet", check=0)
    output = f"s3://{bucket}/out"
    train = [str(kennel_bin), "train", "--data", f"s3://{bucket}/data", "--name", "spot",
             "--freeze", "none", "--epochs", "3", "--batch-size", "4", "--seed", "3", "--output", output,
             "--quiet", *map(str, FAST)]
    process = subprocess.Popen(train, env=first_home.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for_steps(first_home.home, "spot", 10)  # inside the second epoch: one checkpoint committed
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    client = s3.boto3_client()
    manifest = json.loads(client.get_object(Bucket=bucket, Key="out/spot/checkpoints/kennel-manifest.json")
                          ["Body"].read())
    for name, entry in manifest["files"].items():
        body = client.get_object(Bucket=bucket, Key=f"out/spot/checkpoints/{name}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], name
    assert client.get_object(Bucket=bucket, Key="out/spot/spec.json")["Body"].read()

    # Another machine: an empty home, only the S3 location.
    second_home = S3Kennel(kennel_bin, tmp_path / "home-2", s3)
    resumed = second_home.json("train", "--resume", "spot", "--output", output, "--quiet", timeout=600)
    assert resumed["status"] == "Completed", resumed
    steps_per_epoch = 2 * 16 // 4
    assert resumed["final_metrics"]["step"] == 3 * steps_per_epoch
    # It continued from the checkpoint: this home's metrics begin after the first epoch.
    records = [json.loads(line) for line in
               (second_home.home / "jobs" / "spot" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert min(r["step"] for r in records if r["type"] == "step") > steps_per_epoch
    model_manifest = json.loads(client.get_object(Bucket=bucket, Key="out/spot/model/kennel-manifest.json")
                                ["Body"].read())
    assert "model.json" in model_manifest["files"] and "model.safetensors" in model_manifest["files"]

    # A third home serves the model straight from S3, and answers {"url": "s3://..."}.
    image = local_images(data)[0]
    client.put_object(Bucket=bucket, Key="inbox/dog.jpg", Body=image.read_bytes())
    third_home = tmp_path / "home-3"
    env = dict(os.environ, KENNEL_HOME=str(third_home), **s3.env())
    log_path = tmp_path / "serve.out"
    with open(log_path, "wb") as out:
        server = subprocess.Popen([str(kennel_bin), "serve", f"{output}/spot/model/", "--port", "0"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (match := READY.search(log_path.read_text(errors="replace"))):
            assert server.poll() is None and time.time() < deadline, log_path.read_text()
            time.sleep(0.1)
        port = int(match.group(2))
        response = invoke(port, {"url": f"s3://{bucket}/inbox/dog.jpg"}, "application/json")
        assert response.status == 200, response
        local = invoke(port, image.read_bytes(), "image/jpeg" if image.suffix == ".jpg" else "image/png")
        assert response.json() == local.json()
        missing = invoke(port, {"url": f"s3://{bucket}/inbox/cat.jpg"}, "application/json")
        # A missing URL is the caller's bad input: 400, naming it (docs/serving.md).
        assert missing.status == 400 and "inbox/cat.jpg" in missing.json()["detail"], missing
        assert "NoSuchKey" in missing.json()["detail"], missing
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)



def listed_objects(client, bucket, prefix):
    """key -> the listing's entry (Size, ETag as S3 spells it, quotes included), as boto3 reads it."""
    return {entry["Key"]: entry for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix) for entry in page.get("Contents", [])}


def cached_object(home, bucket, key, etag):
    """Where docs/s3.md's cache layout keeps one object version: objects/<aa>/<id>,
    id = SHA-256(bucket, key, ETag)."""
    object_id = hashlib.sha256(f"{bucket}\n{key}\n{etag}".encode()).hexdigest()
    return home / "cache" / "s3" / "objects" / object_id[:2] / object_id


def object_cache_files(home):
    """The S3 object cache's files by kind: complete object files (named by their id alone),
    .part files, and the rest (.part.etag records, .lock files)."""
    root = home / "cache" / "s3" / "objects"
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return ([p for p in files if "." not in p.name], [p for p in files if p.name.endswith(".part")],
            [p for p in files if "." in p.name and not p.name.endswith(".part")])


def wait_until(condition, what, timeout=30, process=None):
    deadline = time.time() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"kennel exited ({process.returncode}) before {what}:\n"
                                 f"{process.communicate()[1]}")
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def test_a_data_parallel_resume_restores_the_job_into_an_empty_home(kennel_bin, tmp_path, s3):
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=16)
    bucket = s3.make_bucket("kennel-spot")
    output = f"s3://{bucket}/out"
    first = S3Kennel(kennel_bin, tmp_path / "home-1", s3)
    train = [str(kennel_bin), "train", "--data", data, "--name", "dp", "--freeze", "none", "--epochs", "3",
             "--batch-size", "4", "--seed", "3", "--output", output, "--quiet", *map(str, FAST)]
    process = subprocess.Popen(train, env=first.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_steps(first.home, "dp", 10)  # inside the second epoch: one checkpoint committed
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr

    # Another machine, two ranks: rank 0 restores spec and checkpoint from S3, every rank continues.
    second = S3Kennel(kennel_bin, tmp_path / "home-2", s3)
    resumed = second.run("train", "--resume", "dp", "--output", output, "--nproc-per-node", 2, "--json",
                         timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "restoring it from" in resumed.stderr, resumed.stderr
    described = second.json("jobs", "describe", "dp")
    assert described["status"] == "Completed", described
    records = [json.loads(line) for line in
               (second.home / "jobs" / "dp" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    # It continued after the first epoch's checkpoint (8 steps of batch 4 alone, 4 of 2x4 after).
    assert min(r["step"] for r in records if r["type"] == "step") > 8
    assert "ran with 1 process(es) and resumes with 2" in resumed.stderr, resumed.stderr


def test_a_killed_download_resumes(kennel_bin, tmp_path, s3):
    # 20 images; three of them are held by the proxy halfway through their bodies, the other 17
    # complete, and Kennel is killed (SIGKILL: no cleanup of its own) at exactly that point.
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=10, size="64x64", valid=0.0)
    bucket = s3.make_bucket("kennel-killed")
    kennel = S3Kennel(kennel_bin, tmp_path / "home", s3)
    kennel.run("data", "upload", data, f"s3://{bucket}/set", "--quiet", check=0)
    client = s3.boto3_client()
    objects = listed_objects(client, bucket, "set/")
    body = {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in objects}
    cached = {key: cached_object(kennel.home, bucket, key, entry["ETag"]) for key, entry in objects.items()}
    keys = sorted(objects)
    held = [keys[1], keys[len(keys) // 2], keys[-1]]
    half = {key: objects[key]["Size"] // 2 for key in held}
    for key in held:
        s3.pause_next_gets(bucket, key, after_bytes=half[key])

    check = [str(kennel_bin), "data", "check", f"s3://{bucket}/set", "--no-decode"]
    process = subprocess.Popen(check, env=kennel.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        def mid_download():
            part = {key: Path(f"{cached[key]}.part") for key in held}
            return (sorted(s3.paused) == sorted((bucket, key) for key in held)
                    and all(part[k].exists() and part[k].stat().st_size == half[k] for k in held)
                    and all(cached[k].exists() for k in keys if k not in held))
        wait_until(mid_download, "three downloads held halfway and the others complete", process=process)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    s3.release_paused()

    # What the killed run left: whole objects under their final names, byte for byte, and the
    # three halves only as .part files.
    complete, parts, _ = object_cache_files(kennel.home)
    by_path = {path: key for key, path in cached.items()}
    assert sorted(complete) == sorted(cached[k] for k in keys if k not in held)
    for path in complete:
        assert path.read_bytes() == body[by_path[path]], by_path[path]
    assert sorted(parts) == sorted(Path(f"{cached[k]}.part") for k in held)
    for key in held:
        assert Path(f"{cached[key]}.part").read_bytes() == body[key][:half[key]], key

    # Run again: only the three unfinished objects are fetched, each from where it stopped,
    # for the version it began with (If-Match).
    s3.clear_requests()
    result = kennel.run(*check[1:], check=0)
    rest = sum(objects[k]["Size"] - half[k] for k in held)
    # What it says it fetched is what crossed the wire (it once counted whole objects).
    assert f"{len(keys)} objects (3 downloaded, {rest} bytes fetched)" in result.stdout, result.stdout
    gets = sorted(object_gets(s3, bucket), key=lambda r: r.key)
    assert [(r.key, r.range, r.if_match, r.status) for r in gets] == \
        [(k, f"bytes={half[k]}-", objects[k]["ETag"], 206) for k in sorted(held)]
    assert sum(r.bytes_out for r in gets) == sum(objects[k]["Size"] - half[k] for k in held)
    complete, parts, others = object_cache_files(kennel.home)
    assert sorted(complete) == sorted(cached.values()) and parts == []
    assert [p for p in others if not p.name.endswith(".lock")] == []  # no .part.etag left behind
    for key, path in cached.items():
        assert path.read_bytes() == body[key], key
    (view,) = [p for p in (kennel.home / "cache" / "s3" / "datasets").iterdir() if p.is_dir()]
    viewed = {p.relative_to(view).as_posix(): p.read_bytes() for p in view.rglob("*") if p.is_file()}
    assert viewed == {key.removeprefix("set/"): body[key] for key in keys}


def test_a_connection_dropped_mid_object_is_retried(kennel_bin, tmp_path, s3):
    # Objects written by boto3 without Kennel's SHA-256 metadata, so nothing after the transfer
    # would catch a short body: only the download itself can.
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=4, size="64x64", valid=0.0)
    (data / "extras").mkdir()
    (data / "extras" / "blob.bin").write_bytes(os.urandom(3 << 20))
    bucket = s3.make_bucket("kennel-drops")
    client = s3.boto3_client()
    for path in local_files(data):
        client.put_object(Bucket=bucket, Key="set/" + path.relative_to(data).as_posix(),
                          Body=path.read_bytes())
    objects = listed_objects(client, bucket, "set/")
    keys = sorted(objects)
    # A manifest committing them all: it is read into memory (the path {"url": "s3://..."} and
    # model folders take too), not into a file.
    manifest = "set/" + "kennel-manifest.json"
    committed = {key.removeprefix("set/"): {"size": entry["Size"]} for key, entry in objects.items()}
    client.put_object(Bucket=bucket, Key=manifest, Body=json.dumps(
        {"format": "kennel-manifest", "version": 1, "files": committed}).encode())
    images = [k for k in keys if k.endswith(".jpg")]
    blob, reset_key, empty_key = "set/extras/blob.bin", images[0], images[-1]
    # A reset halfway; a clean close (FIN) after 1 MiB, twice in a row (the resumed GET is cut
    # off too); a clean close right after the headers, before any byte of the body; the
    # manifest cut off after 20 bytes.
    s3.drop_next_gets(bucket, reset_key, times=1, how="reset")
    s3.drop_next_gets(bucket, blob, times=2, after_bytes=1 << 20, how="close")
    s3.drop_next_gets(bucket, empty_key, times=1, after_bytes=0, how="close")
    s3.drop_next_gets(bucket, manifest, times=1, after_bytes=20, how="close")

    kennel = S3Kennel(kennel_bin, tmp_path / "home", s3)
    s3.clear_requests()
    result = kennel.run("data", "check", f"s3://{bucket}/set", "--no-decode", check=0)
    assert f"{len(keys)} objects ({len(keys)} downloaded, " in result.stdout, result.stdout
    kennel_gets = object_gets(s3, bucket)  # before boto3 reads them below
    assert [(r.range, r.status, r.error) for r in s3.requests if r.method == "GET" and r.key == manifest] == \
        [("", 200, "dropped"), ("", 200, "")]

    # Every object is in the cache with the bytes boto3 reads from the store.
    for key, entry in objects.items():
        got = cached_object(kennel.home, bucket, key, entry["ETag"])
        assert got.read_bytes() == client.get_object(Bucket=bucket, Key=key)["Body"].read(), key
    assert object_cache_files(kennel.home)[1] == []

    def gets_of(key):
        return [(r.range, r.status, r.error, r.bytes_out) for r in kennel_gets if r.key == key]
    size = objects[blob]["Size"]
    assert gets_of(blob) == [("", 200, "dropped", 1 << 20),
                             (f"bytes={1 << 20}-", 206, "dropped", 1 << 20),
                             (f"bytes={2 << 20}-", 206, "", size - (2 << 20))]
    assert gets_of(empty_key) == [("", 200, "dropped", 0), ("", 200, "", objects[empty_key]["Size"])]
    # After a reset, what reached Kennel before it is not known exactly: it resumes from there.
    reset = gets_of(reset_key)
    assert len(reset) == 2 and reset[0][2] == "dropped" and reset[1][2] == "", reset
    resumed_from = int(reset[1][0].removeprefix("bytes=").rstrip("-") or 0)
    assert resumed_from <= objects[reset_key]["Size"] // 2
    assert reset[1][3] == objects[reset_key]["Size"] - resumed_from
    for key in keys:
        if key not in (blob, empty_key, reset_key):
            assert len(gets_of(key)) == 1, key

    # Kennel says so: each retried object is named in its log, with what failed and the retry.
    for key in (blob, empty_key, reset_key, manifest):
        assert re.search(rf"s3://{bucket}/{re.escape(key)}\b.*retrying", result.stderr), \
            f"no log line says s3://{bucket}/{key} was retried; stderr:\n{result.stderr}"


def test_profiles_a_wrong_secret_and_anonymous_reads_through_the_global_flags(kennel_bin, tmp_path, s3):
    """The credential chain as the AWS CLI reads it, through the real signer-checking proxy:
    a profile from ~/.aws, a wrong secret named without being printed, half a key pair, and
    --no-sign-request for a public bucket (passed on to a tuning trial's own process)."""
    data = synth(kennel_bin, tmp_path / "data", classes=2, per_class=6)
    private, public = s3.make_bucket("kennel-private"), s3.make_bucket("kennel-open", public=True)
    client = s3.boto3_client()
    for path in local_images(data):
        for bucket in (private, public):
            client.upload_file(str(path), bucket, "pets/" + path.relative_to(data).as_posix())

    home = tmp_path / "user"
    (home / ".aws").mkdir(parents=True)
    wrong_secret = s3.secret_key[::-1]
    (home / ".aws" / "credentials").write_text(
        f"[ml]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = {s3.secret_key}\n\n"
        f"[typo]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = {wrong_secret}\n\n"
        f"[half]\naws_access_key_id = {s3.access_key}\n")
    (home / ".aws" / "config").write_text(
        "".join(f"[profile {name}]\nregion = {s3.region}\nendpoint_url = {s3.endpoint}\n"
                for name in ("ml", "typo", "half")))
    # No AWS_* variables at all: everything comes from the files and the flags.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "KENNEL_S3_"))}
    env.update(HOME=str(home), KENNEL_HOME=str(tmp_path / "home"))

    def kennel(*args, timeout=300):
        return subprocess.run([str(kennel_bin), *map(str, args)], capture_output=True, text=True,
                              errors="replace", env=env, timeout=timeout)

    checked = kennel("--profile", "ml", "data", "check", f"s3://{private}/pets", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["usable"] is True

    # The flag after the command works too (global flags fall through).
    typo = kennel("data", "check", f"s3://{private}/pets", "--profile", "typo")
    assert typo.returncode != 0
    assert "SignatureDoesNotMatch" in typo.stderr and "aws_secret_access_key in" in typo.stderr, typo.stderr
    assert str(home / ".aws" / "credentials") in typo.stderr, typo.stderr
    for secret in (wrong_secret, s3.secret_key):
        assert secret not in typo.stderr + typo.stdout

    half = kennel("data", "check", f"s3://{private}/pets", "--profile", "half")
    assert half.returncode != 0
    assert "'half'" in half.stderr and "aws_secret_access_key" in half.stderr, half.stderr

    nobody = kennel("data", "check", f"s3://{private}/pets", "--endpoint-url", s3.endpoint,
                    "--region", s3.region)
    assert nobody.returncode != 0 and "--no-sign-request" in nobody.stderr, nobody.stderr

    before = len(s3.requests)
    anonymous = kennel("data", "check", f"s3://{public}/pets", "--no-sign-request", "--endpoint-url",
                       s3.endpoint, "--region", s3.region, "--json")
    assert anonymous.returncode == 0, anonymous.stderr
    assert {r.signed for r in s3.requests[before:]} == {"anonymous"}
    refused = kennel("data", "check", f"s3://{private}/pets", "--no-sign-request", "--endpoint-url",
                     s3.endpoint, "--region", s3.region)
    assert refused.returncode != 0
    assert "anonymous" in refused.stderr and "--no-sign-request" in refused.stderr, refused.stderr

    # A tuning trial is a process of its own: the flags reach it.
    before = len(s3.requests)
    tuned = kennel("--no-sign-request", "--endpoint-url", s3.endpoint, "--region", s3.region,
                   "tune", "--name", "open-study", "--data", f"s3://{public}/pets", *FAST, "--freeze", "none",
                   "--epochs", 1, "--batch-size", 4, "--param", "lr=1e-3..1e-1:log", "--strategy", "random",
                   "--max-jobs", 1, "--quiet", "--json", timeout=600)
    assert tuned.returncode == 0, tuned.stderr
    assert json.loads(tuned.stdout)["status"] == "Completed", tuned.stdout
    assert s3.requests[before:] and {r.signed for r in s3.requests[before:]} == {"anonymous"}
