"""`kennel train`, `kennel evaluate` and `kennel jobs` on real files.

Models are ResNet-18 at 32 px on small synthetic datasets, so each training
run takes seconds on 2 cores.
"""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

# A regex a cloud tuner's metric definition would use on the log.
LOG_LINE = re.compile(r"epoch=(\d+) step=(\d+) train_loss=([0-9.e+-]+)")
VALID_ACCURACY = re.compile(r"valid_accuracy=([0-9.]+)")

# Pinned to fp32: these tests compare numbers (resumed vs uninterrupted, evaluate vs training);
# the default (auto) is bf16 on a CPU with native bf16. test_default_precision_is_resolved_and_recorded
# covers the default.
FAST = ["--arch", "resnet18", "--pretrained", "none", "--input-size", 32, "--resize", 36,
        "--threads", 2, "--precision", "fp32", "--quiet"]


@pytest.fixture(scope="module")
def synth(kennel_bin, tmp_path_factory):
    """4 learnable classes with train/valid/test splits."""
    from conftest import Kennel
    root = tmp_path_factory.mktemp("synth") / "data"
    Kennel(kennel_bin, root.parent / "home").run(
        "data", "synth", "--out", root, "--classes", 4, "--per-class", 40, "--size", "40x40",
        "--seed", 5, check=0)
    return root


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_training_learns_and_every_output_agrees(kennel, synth):
    outcome = kennel.json("train", "--data", synth, "--name", "learn", "--freeze", "none",
                          "--epochs", 4, "--batch-size", 16, "--lr", 0.003, "--export-pth",
                          "--seed", 1, *FAST)
    assert outcome["status"] == "Completed"
    job_dir = Path(outcome["job_dir"])
    assert job_dir == kennel.home / "jobs" / "learn"
    metrics = outcome["final_metrics"]
    assert metrics["valid_accuracy"] >= 0.8, metrics

    # metrics.jsonl: steps and epochs; the last epoch is the final metrics.
    records = read_jsonl(job_dir / "metrics.jsonl")
    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 4 and [e["epoch"] for e in epochs] == [0, 1, 2, 3] or \
        [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert steps and all(r["train_loss"] > 0 and r["lr"] > 0 and r["images_per_second"] > 0 for r in steps)
    assert epochs[-1]["valid_accuracy"] == pytest.approx(metrics["valid_accuracy"])
    assert epochs[-1]["step"] == steps[-1]["step"] == metrics["step"]
    assert "valid_top5_accuracy" in epochs[-1]

    # The log's metric lines parse with a regex and agree with metrics.jsonl.
    log = (job_dir / "log.txt").read_text()
    assert LOG_LINE.search(log)
    valid_accuracies = [float(v) for v in VALID_ACCURACY.findall(log)]
    assert valid_accuracies and valid_accuracies[-1] == pytest.approx(metrics["valid_accuracy"], abs=1e-4)

    # TensorBoard event files, the model, the checkpoints, the test evaluation.
    assert any((job_dir / "events").glob("events.out.tfevents.*"))
    model_info = json.loads((job_dir / "model" / "model.json").read_text())
    assert model_info["arch"] == "resnet18"
    assert model_info["classes"] == sorted(p.name for p in (synth / "train").iterdir())
    assert model_info["source_job"] == "learn"
    assert (job_dir / "model" / "model.safetensors").stat().st_size > 1_000_000
    assert (job_dir / "model" / "model.pth").exists()
    assert (job_dir / "checkpoints" / "latest.json").exists()
    assert "test_accuracy" in metrics
    evaluation = json.loads((job_dir / "evaluation" / "test_evaluation.json").read_text())
    assert evaluation["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert (job_dir / "evaluation" / "test_confusion_matrix.csv").exists()
    assert (job_dir / "evaluation" / "test_confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    # The saved spec has every default filled.
    spec = json.loads((job_dir / "spec.json").read_text())
    assert spec["epochs"] == 4 and spec["optimizer"] == "adam" and spec["resize"] == 36

    # The registry says the same.
    described = kennel.json("jobs", "describe", "learn")
    assert described["status"] == "Completed"
    assert described["final_metrics"]["valid_accuracy"] == pytest.approx(metrics["valid_accuracy"])
    assert described["artifacts"]["model"] == str(job_dir / "model")
    listed = kennel.json("jobs", "list")
    assert [j["name"] for j in listed] == ["learn"]
    assert "epoch=" in kennel.run("jobs", "logs", "learn", check=0).stdout

    # `kennel evaluate` on the saved model agrees with the job's own test evaluation.
    report = kennel.json("evaluate", "learn", synth, "--split", "test", "--out", kennel.home / "eval")
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert len(report["per_class"]) == 4 and len(report["confusion_matrix"]) == 4


def test_yaml_spec_with_flag_override(kennel, synth, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"data: {synth}\nname: from-yaml\nepochs: 3\nbatch_size: 8\nhead: [16]\n"
                    "optimizer: momentum\nlr_schedule: cosine\nwarmup_epochs: 0.5\nlabel_smoothing: 0.1\n")
    outcome = kennel.json("train", "--spec", spec, "--epochs", 1, "--max-steps", 3, *FAST)
    saved = json.loads(Path(outcome["job_dir"], "spec.json").read_text())
    assert saved["epochs"] == 1 and saved["batch_size"] == 8 and saved["head"] == [16]
    assert saved["optimizer"] == "momentum" and saved["lr_schedule"] == "cosine"


def test_frozen_backbone_reuses_the_feature_cache(kennel, synth):
    common = ["--data", synth, "--freeze", "backbone", "--epochs", 2, "--batch-size", 16, *FAST]
    first = kennel.run("train", "--name", "cache-1", *common, "--log-level", "info", check=0)
    assert "reused from the feature cache" not in first.stdout + first.stderr
    second = kennel.run("train", "--name", "cache-2", *common, "--log-level", "info", check=0)
    assert "reused from the feature cache" in second.stdout + second.stderr
    # Same features, same seed: the same head, the same result.
    first_metrics = kennel.json("jobs", "describe", "cache-1")["final_metrics"]
    second_metrics = kennel.json("jobs", "describe", "cache-2")["final_metrics"]
    assert second_metrics["valid_loss"] == pytest.approx(first_metrics["valid_loss"], rel=1e-5)
    # Another transform is another key: no reuse.
    other_resize = [str(a) for a in FAST[:FAST.index("--resize")]] + ["--resize", "40", "--threads", "2",
                                                                        "--precision", "fp32", "--quiet"]
    third = kennel.run("train", "--name", "cache-3", *common[:-len(FAST)], *other_resize, check=0)
    assert "reused from the feature cache" not in third.stdout + third.stderr

    # `kennel cache list|prune` (issue 16): two keys (two transforms) x three splits; each entry says
    # what it was computed from.
    entries = kennel.json("cache", "list")
    assert len(entries) == 6, entries
    for entry in entries:
        assert not entry["outdated"] and entry["bytes"] > 0 and len(entry["splits"]) == 1
        identity = entry["identity"]
        assert identity["arch"] == "resnet18" and identity["device"] == "cpu" and identity["precision"] == "fp32"
        assert identity["decode_version"] >= 1 and identity["backbone_version"] >= 1
    assert "6 entries" in kennel.run("cache", "list", check=0).stdout
    # An entry left by another code version is never hit again: prune removes it, and only it.
    stale = Path(entries[0]["dir"])
    identity = json.loads((stale / "identity.json").read_text())
    identity["decode_version"] -= 1
    (stale / "identity.json").write_text(json.dumps(identity))
    dry = kennel.json("cache", "prune", "--dry-run")
    assert [r["key"] for r in dry["removed"]] == [entries[0]["key"]] and stale.exists()
    pruned = kennel.json("cache", "prune")
    assert [r["key"] for r in pruned["removed"]] == [entries[0]["key"]] and pruned["kept"] == 5
    assert not stale.exists()
    assert kennel.json("cache", "prune", "--all")["kept"] == 0
    assert kennel.json("cache", "list") == []


def start_training(kennel, synth, name, epochs=30, extra=()):
    env = dict(os.environ, KENNEL_HOME=str(kennel.home))
    args = [str(kennel.binary), "train", "--data", synth, "--name", name, "--freeze", "none",
            "--epochs", epochs, "--batch-size", 8, "--seed", 3, *FAST, *extra]
    return subprocess.Popen(list(map(str, args)), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_steps(kennel, name, steps, timeout=120):
    path = kennel.home / "jobs" / name / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and sum(1 for r in read_jsonl(path) if r["type"] == "step") >= steps:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {name} made no progress in {timeout}s")


def final_run_metrics(kennel, name):
    return kennel.json("jobs", "describe", name)["final_metrics"]


@pytest.fixture(scope="module")
def uninterrupted(kennel_bin, synth, tmp_path_factory):
    """The reference: 3 epochs, never interrupted."""
    from conftest import Kennel
    kennel = Kennel(kennel_bin, tmp_path_factory.mktemp("reference") / "home")
    process = start_training(kennel, synth, "reference", epochs=3)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return final_run_metrics(kennel, "reference")


def test_sigterm_checkpoints_stops_and_resume_matches_an_uninterrupted_run(kennel, synth, uninterrupted):
    process = start_training(kennel, synth, "interrupted", epochs=3)
    wait_for_steps(kennel, "interrupted", 25)  # mid-way through the second epoch
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "stopped by SIGTERM" in stderr and "--resume interrupted" in stderr
    job = kennel.json("jobs", "describe", "interrupted")
    assert job["status"] == "Stopped" and "SIGTERM" in job["failure_reason"]

    resumed = kennel.json("train", "--resume", "interrupted")
    assert resumed["status"] == "Completed"
    metrics = resumed["final_metrics"]
    assert metrics["step"] == uninterrupted["step"]
    for key in ("train_loss", "valid_loss", "valid_accuracy"):
        assert metrics[key] == pytest.approx(uninterrupted[key], rel=1e-4, abs=1e-5), key


def event_steps(events_dir, tag):
    """The steps of `tag`'s values in a folder of TensorBoard event files (Event.step, Summary.Value.tag)."""
    from test_debug import read_tfrecords

    def fields(data):
        offset = 0
        while offset < len(data):
            key, offset = varint(data, offset)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, offset = varint(data, offset)
            elif wire == 1:
                value, offset = data[offset:offset + 8], offset + 8
            elif wire == 5:
                value, offset = data[offset:offset + 4], offset + 4
            else:
                length, offset = varint(data, offset)
                value, offset = data[offset:offset + length], offset + length
            yield number, value

    def varint(data, offset):
        value = shift = 0
        while True:
            byte = data[offset]
            offset += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, offset

    steps = []
    for path in sorted(Path(events_dir).glob("events.out.tfevents.*")):
        for payload in read_tfrecords(path):
            event = dict(fields(payload))
            summary = event.get(5, b"")
            tags = [dict(fields(value)).get(1, b"").decode() for number, value in fields(summary) if number == 1]
            if tag in tags:
                steps.append(event.get(2, 0))
    return steps


def test_sigkill_leaves_a_readable_checkpoint_and_the_job_resumes(kennel, synth, uninterrupted):
    process = start_training(kennel, synth, "killed", epochs=3, extra=["--debugger", "default"])
    job_dir = kennel.home / "jobs" / "killed"
    metrics_path = job_dir / "metrics.jsonl"
    # Killed in the third epoch, after some of its steps were recorded.
    deadline = time.time() + 120
    while time.time() < deadline:
        records = read_jsonl(metrics_path) if metrics_path.exists() else []
        if sum(1 for r in records if r["type"] == "step" and r["epoch"] == 2) >= 3:
            break
        time.sleep(0.1)
    process.kill()
    process.communicate(timeout=60)
    # The dead process is noticed (same host, pid gone) and shown as Failed.
    job = kennel.json("jobs", "describe", "killed")
    assert job["status"] == "Failed" and job["failure_reason"]

    # Issue 16: the resume continues from an earlier checkpoint than the last record, as after a kill
    # between an epoch's record and its checkpoint. The two newest checkpoints are kept: go back to
    # the older one (the first epoch's), as latest.json would still name it after such a kill.
    checkpoints = job_dir / "checkpoints"
    older = sorted(checkpoints.glob("checkpoint-*.pt"))
    assert len(older) == 2, older
    latest = json.loads((checkpoints / "latest.json").read_text())
    latest["file"] = older[0].name
    latest["state"] = {"epoch": 1, "batch": 0, "step": int(older[0].stem.split("-")[1])}
    (checkpoints / "latest.json").write_text(json.dumps(latest))
    before = read_jsonl(metrics_path)
    assert any(r["type"] == "epoch" and r["epoch"] == 1 for r in before)  # will be written again

    resumed = kennel.json("train", "--resume", "killed")
    assert resumed["status"] == "Completed"
    assert resumed["final_metrics"]["step"] == uninterrupted["step"]
    assert resumed["final_metrics"]["valid_loss"] == pytest.approx(uninterrupted["valid_loss"], rel=1e-4)

    # Each step and each epoch appears once in every history, in order.
    records = read_jsonl(metrics_path)
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert steps == list(range(1, uninterrupted["step"] + 1))
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [0, 1, 2]
    assert [r["split"] for r in records if r["type"] == "evaluation"] == ["test"]
    assert sorted(event_steps(job_dir / "events", "train/loss")) == steps
    assert sorted(event_steps(job_dir / "events", "epoch/train_loss")) == [
        r["step"] for r in records if r["type"] == "epoch"]
    debugged = [json.loads(line)["step"] for line in kennel.run(
        "debug", "tensors", "killed", "--name", "^losses/train_loss$", "--json", check=0).stdout.splitlines()]
    assert len(debugged) == len(set(debugged)) and debugged, debugged
    assert sorted(event_steps(job_dir / "debug" / "events", "losses/train_loss")) == sorted(debugged)


def test_jobs_stop_stops_a_running_job(kennel, synth):
    process = start_training(kennel, synth, "to-stop", epochs=30)
    wait_for_steps(kennel, "to-stop", 3)
    stopped = kennel.run("jobs", "stop", "to-stop", check=0)
    assert "SIGTERM" in stopped.stdout
    process.communicate(timeout=120)
    assert kennel.json("jobs", "describe", "to-stop")["status"] == "Stopped"
    assert "not running" in kennel.run("jobs", "stop", "to-stop", check=1).stderr


# ---- bad input: a clear error, and nothing half-written ----------------------

def assert_nothing_created(kennel, name):
    assert not (kennel.home / "jobs" / name).exists()
    if (kennel.home / "kennel.db").exists():
        assert name not in kennel.run("jobs", "list", check=0).stdout


def test_missing_weight_file(kennel, synth, tmp_path):
    missing = tmp_path / "nope.pth"
    result = kennel.run("train", "--data", synth, "--name", "bad", "--arch", "resnet18",
                        "--pretrained", missing, "--quiet", check=2)
    assert str(missing) in result.stderr and "pretrained" in result.stderr
    assert_nothing_created(kennel, "bad")


def test_corrupt_weight_file(kennel, synth, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04" + os.urandom(2000))
    result = kennel.run("train", "--data", synth, "--name", "bad", "--arch", "resnet18",
                        "--pretrained", corrupt, "--quiet")
    assert result.returncode in (1, 2) and str(corrupt) in result.stderr
    assert "Traceback" not in result.stderr and "terminate called" not in result.stderr
    assert_nothing_created(kennel, "bad")


def test_weight_file_for_another_architecture(kennel, synth, tmp_path):
    # A real resnet18 file, offered to resnet34. In its model directory, model.json says what it is.
    first = kennel.json("train", "--data", synth, "--name", "small", "--max-steps", 1, *FAST)
    weights = Path(first["job_dir"]) / "model" / "model.safetensors"
    result = kennel.run("train", "--data", synth, "--name", "bad", "--arch", "resnet34",
                        "--pretrained", weights, "--quiet", "--input-size", 32, check=2)
    assert "holds a resnet18 backbone, but arch is resnet34" in result.stderr, result.stderr
    # A bare weight file has no model.json: the missing keys are named.
    bare = tmp_path / "resnet18.safetensors"
    bare.write_bytes(weights.read_bytes())
    result = kennel.run("train", "--data", synth, "--name", "bad", "--arch", "resnet34",
                        "--pretrained", bare, "--quiet", "--input-size", 32, check=2)
    assert "layer1.2" in result.stderr and "missing" in result.stderr.lower()
    assert_nothing_created(kennel, "bad")


def test_dataset_with_one_class(kennel, tmp_path):
    data = tmp_path / "one-class"
    kennel.run("data", "synth", "--out", data, "--classes", 1, "--per-class", 5, "--size", "32x32")
    if not (data / "train").exists():
        pytest.skip("synth refuses one class")
    result = kennel.run("train", "--data", data, "--name", "bad", *FAST, check=1)
    assert "at least two class" in result.stderr
    assert_nothing_created(kennel, "bad")


def test_frozen_batchnorm_fine_tunes_pretrained_weights_and_keeps_their_statistics(kennel, synth):
    """--batchnorm frozen: every BatchNorm normalises with the pretrained running statistics (folded into its
    convolution on each step, models/convolution.h), which stay as they were while the model learns; on random
    weights, where those statistics are 0 and 1, the job says that nothing is normalised."""
    import torch
    base = kennel.json("train", "--data", synth, "--name", "base", "--freeze", "none", "--epochs", 3,
                       "--batch-size", 16, "--lr", 0.003, "--seed", 1, "--export-pth", *FAST)
    base_pth = Path(base["job_dir"]) / "model" / "model.pth"
    with_weights = [a for a in FAST if a not in ("--pretrained", "none")]
    result = kennel.run("train", "--data", synth, "--name", "tuned", "--pretrained", base_pth, "--freeze", "none",
                        "--batchnorm", "frozen", "--epochs", 2, "--batch-size", 16, "--lr", 0.001, "--seed", 2,
                        "--export-pth", "--json", *with_weights, check=0)
    assert "nothing is normalised" not in result.stderr
    tuned = json.loads(result.stdout)
    assert tuned["final_metrics"]["valid_accuracy"] >= 0.8, tuned["final_metrics"]
    before = torch.load(base_pth)
    after = torch.load(Path(tuned["job_dir"]) / "model" / "model.pth")
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert len(statistics) == 40  # resnet18: 20 BatchNorm layers
    assert all(torch.equal(before[k], after[k]) for k in statistics)
    assert not torch.equal(before["layer1.0.conv1.weight"], after["layer1.0.conv1.weight"])
    assert not torch.equal(before["layer1.0.bn1.weight"], after["layer1.0.bn1.weight"])  # gamma still trains

    scratch = kennel.run("train", "--data", synth, "--name", "scratch", "--batchnorm", "frozen", "--max-steps", 1,
                         *FAST, check=0)
    assert "nothing is normalised" in scratch.stderr and "--batchnorm train" in scratch.stderr


def test_batch_larger_than_the_dataset(kennel, synth):
    result = kennel.run("train", "--data", synth, "--name", "bad", "--batch-size", 100000, *FAST, check=2)
    assert "batch_size" in result.stderr and "100000" in result.stderr
    assert_nothing_created(kennel, "bad")


@pytest.mark.parametrize("lr", ["0", "-0.1", "nan"])
def test_non_positive_learning_rate(kennel, synth, lr):
    result = kennel.run("train", "--data", synth, "--name", "bad", "--lr", lr, *FAST, check=2)
    assert "'lr'" in result.stderr
    assert_nothing_created(kennel, "bad")


def test_unknown_key_and_bad_values_name_the_key(kennel, synth, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"data: {synth}\nlearning_rate: 0.1\n")
    result = kennel.run("train", "--spec", spec, check=2)
    assert "learning_rate" in result.stderr and str(spec) in result.stderr
    result = kennel.run("train", "--data", synth, "--optimizer", "rmsprop", check=2)
    assert "optimizer" in result.stderr and "rmsprop" in result.stderr
    result = kennel.run("train", "--data", synth, "--epochs", "many", check=2)
    assert "epochs" in result.stderr and "many" in result.stderr


def test_unwritable_home(kennel_bin, synth, tmp_path):
    from conftest import Kennel
    if os.geteuid() == 0:
        # root ignores permissions: make the home's parent a file instead.
        blocker = tmp_path / "file"
        blocker.write_text("x")
        home = blocker / "home"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        home = locked / "home"
    result = Kennel(kennel_bin, home).run("train", "--data", synth, "--name", "bad", *FAST, check=2)
    assert str(home) in result.stderr and ("--home" in result.stderr or "KENNEL_HOME" in result.stderr)


def test_name_taken_refuses_and_keeps_the_old_job(kennel, synth):
    kennel.json("train", "--data", synth, "--name", "taken", "--max-steps", 1, *FAST)
    before = (kennel.home / "jobs" / "taken" / "spec.json").read_text()
    result = kennel.run("train", "--data", synth, "--name", "taken", *FAST, check=2)
    assert "taken" in result.stderr and "--resume" in result.stderr
    assert (kennel.home / "jobs" / "taken" / "spec.json").read_text() == before


def test_default_precision_is_resolved_and_recorded(kennel, synth):
    """--precision auto (the default) is resolved once, at creation, and spec.json and model.json say how."""
    fast_default = [a for a in FAST if a not in ("--precision", "fp32")]
    outcome = kennel.json("train", "--data", synth, "--name", "auto", "--max-steps", 2, "--epochs", 1,
                          "--arch", "mobilenet_v2", "--freeze", "none", *fast_default[2:])
    assert outcome["status"] == "Completed", outcome
    job_dir = kennel.home / "jobs" / "auto"
    spec = json.loads((job_dir / "spec.json").read_text())
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    native = "amx_bf16" in flags or "avx512_bf16" in flags
    assert spec["precision"] == ("bf16" if native else "fp32")
    assert spec["precision_choice"]["requested"] == "auto"
    assert "auto:" in spec["precision_choice"]["reason"]
    model = json.loads((job_dir / "model" / "model.json").read_text())
    assert model["precision"] == spec["precision"] and model["precision_requested"] == "auto"
    # The job's own test evaluation runs the graph `kennel evaluate` and the endpoint run at its precision
    # (BatchNorm folded, weights converted once; it used to run the training model under autocast).
    report = kennel.json("evaluate", "auto", synth, "--split", "test", "--batch-size", spec["batch_size"],
                         "--out", kennel.home / "eval-auto")
    assert report["precision"] == spec["precision"]
    assert report["loss"] == pytest.approx(outcome["final_metrics"]["test_loss"], abs=1e-7)  # autocast: 5e-6 off
    # The choice and its reason are in spec.json (above); the job log line is not checked here (log.txt holds metrics only under --json).
