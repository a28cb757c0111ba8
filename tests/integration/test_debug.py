"""`kennel train --debugger` and `kennel debug`: rules beside a real training
job (ResNet-18 at 32 px on a small synthetic dataset), their statuses and
actions, the stored tensors and the event files."""
import http.server
import json
import struct
import threading
from pathlib import Path

import pytest

FAST = ["--arch", "resnet18", "--pretrained", "none", "--input-size", 32, "--resize", 36, "--threads", 2, "--quiet"]


@pytest.fixture(scope="module")
def synth(kennel_bin, tmp_path_factory):
    from conftest import Kennel
    root = tmp_path_factory.mktemp("debug") / "data"
    Kennel(kennel_bin, root.parent / "home").run(
        "data", "synth", "--out", root, "--classes", 4, "--per-class", 40, "--size", "40x40", "--seed", 5, check=0)
    return root


def rules_of(kennel, job):
    out = json.loads(kennel.run("debug", job, "--json", check=None).stdout)
    return {rule["rule"]: rule for rule in out["rules"]}


# CRC-32C (Castagnoli), masked as TFRecord does.
def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecords(path: Path):
    data = path.read_bytes()
    offset, records = 0, []
    while offset < len(data):
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        assert _masked(_crc32c(header)) == length_crc, f"length CRC at {offset}"
        payload = data[offset + 12:offset + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
        assert _masked(_crc32c(payload)) == payload_crc, f"payload CRC at {offset}"
        records.append(payload)
        offset += 16 + length
    return records


def debugger_spec(tmp_path, text):
    spec = tmp_path / "debugger.yaml"
    spec.write_text(text)
    return spec


def test_a_healthy_run_with_the_default_debugger(kennel, synth):
    # A linear head on frozen features learns smoothly. (Training ResNet-18 from scratch on 128
    # images is not healthy: its BatchNorm statistics make the validation loss explode, and
    # Overfit rightly says so.)
    outcome = kennel.json("train", "--data", synth, "--name", "healthy", "--freeze", "backbone", "--epochs", 6,
                          "--batch-size", 16, "--lr", 0.01, "--debugger", "default", *FAST)
    assert outcome["status"] == "Completed" and outcome["final_metrics"]["valid_accuracy"] >= 0.8, outcome
    rules = rules_of(kennel, "healthy")
    assert len(rules) == 12
    statuses = {name: r["status"] for name, r in rules.items()}
    assert set(statuses.values()) <= {"NoIssuesFound", "NoData"}, rules
    # Cached features are not images and the backbone never runs: the rules without data say why.
    assert sorted(name for name, status in statuses.items() if status == "NoData") == \
        ["CheckInputImages", "DeadRelu"], rules
    assert "inputs/images" in rules["CheckInputImages"]["message"]
    # The registry knows the statuses; TensorBoard files pass a CRC-checking reader.
    job = json.loads(kennel.run("jobs", "describe", "healthy", "--json", check=0).stdout)
    assert job["artifacts"]["debug"]["rules"]["ExplodingTensor"] == "NoIssuesFound"
    events = list((kennel.home / "jobs" / "healthy" / "debug" / "events").glob("events.out.tfevents.*"))
    assert events and len(read_tfrecords(events[0])) > 50
    # One tensor at one step, through the index.
    lines = kennel.run("debug", "tensors", "healthy", "--name", "^losses/train_loss$", "--step", 3, "--json",
                       check=0).stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["step"] == 3
    plot = kennel.home / "plot.html"
    kennel.run("debug", "healthy", "--plot", plot, "--name", "^gradients/", check=0)
    assert plot.read_text().count("<svg") == 2
    png = kennel.home / "loss.png"
    kennel.run("debug", "healthy", "--plot", png, check=0)
    from PIL import Image
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 600
        # Not a blank canvas: the two loss lines are drawn in colour.
        colours = {pixel for pixel in image.convert("RGB").getdata() if len(set(pixel)) > 1}
        assert len(colours) > 10


def test_a_healthy_run_through_the_backbone_finds_no_issue_with_any_rule(kennel, synth, tmp_path):
    # Images go through the (frozen) backbone every step, so every rule has data: inputs are
    # recorded every step so that CheckInputImages reaches its 500 samples.
    spec = debugger_spec(tmp_path, "collections: {inputs: {save_interval: 1}, relu_input: {}, relu_output: {},"
                         " losses: {}, metrics: {}, weights: {}, biases: {}, gradients: {}, optimizer: {},"
                         " labels: {}, predictions: {}}\n")
    outcome = kennel.json("train", "--data", synth, "--name", "healthy-images", "--freeze", "backbone",
                          "--feature-cache", "false", "--epochs", 4, "--batch-size", 16, "--lr", 0.01,
                          "--debugger", spec, *FAST)
    assert outcome["status"] == "Completed", outcome
    rules = rules_of(kennel, "healthy-images")
    assert {name: r["status"] for name, r in rules.items()} == {name: "NoIssuesFound" for name in rules}, rules
    layers = {json.loads(line)["name"] for line in kennel.run(
        "debug", "tensors", "healthy-images", "--name", "^relu_output/", "--json", check=0).stdout.splitlines()}
    assert layers == {f"relu_output/{name}" for name in ("stem", "layer1", "layer2", "layer3", "layer4")}


def test_an_absurd_learning_rate_is_caught(kennel, synth):
    result = kennel.run("train", "--data", synth, "--name", "absurd-lr", "--freeze", "none", "--epochs", 3,
                        "--batch-size", 16, "--optimizer", "sgd", "--lr", 1e8, "--debugger", "default", *FAST,
                        "--json", check=None)
    outcome = json.loads(result.stdout)
    assert outcome["status"] in ("Failed", "Completed"), outcome
    rules = rules_of(kennel, "absurd-lr")
    fired = {name for name, rule in rules.items() if rule["status"] == "IssuesFound"}
    assert fired & {"ExplodingTensor", "LossNotDecreasing"}, rules
    if "ExplodingTensor" in fired:
        assert "NaN" in rules["ExplodingTensor"]["message"] or "Inf" in rules["ExplodingTensor"]["message"]
    job = json.loads(kennel.run("jobs", "describe", "absurd-lr", "--json", check=0).stdout)
    assert job["artifacts"]["debug"]["rules"]["ExplodingTensor"] in ("IssuesFound", "NoIssuesFound")


def test_zero_initialised_weights_are_caught(kennel, synth, tmp_path):
    import torch
    import torchvision
    state = torchvision.models.resnet18(num_classes=4).state_dict()
    zeros = tmp_path / "zeros.pth"
    torch.save({name: torch.zeros_like(t) if t.is_floating_point() else t for name, t in state.items()}, zeros)
    outcome = kennel.json("train", "--data", synth, "--name", "zeros", "--pretrained", zeros, "--freeze", "none",
                          "--epochs", 1, "--batch-size", 16, "--debugger", "default",
                          *[a for a in FAST if a not in ("--pretrained", "none")])
    assert outcome["status"] == "Completed", outcome
    rules = rules_of(kennel, "zeros")
    assert rules["PoorWeightInitialization"]["status"] == "IssuesFound", rules["PoorWeightInitialization"]
    assert rules["AllZero"]["status"] == "IssuesFound", rules["AllZero"]
    assert "zero" in rules["AllZero"]["message"]


def test_tiny_data_and_many_epochs_overfit(kennel, synth, tmp_path):
    spec = debugger_spec(tmp_path, "rules: [Overfit, Overtraining]\n")
    outcome = kennel.json("train", "--data", synth, "--name", "overfit", "--freeze", "none", "--epochs", 8,
                          "--batch-size", 16, "--lr", 0.01, "--debugger", spec, *FAST)
    assert outcome["status"] == "Completed", outcome
    rules = rules_of(kennel, "overfit")
    assert "IssuesFound" in {rules["Overfit"]["status"], rules["Overtraining"]["status"]}, rules


def test_unnormalised_images_are_caught(kennel, synth, tmp_path):
    spec = debugger_spec(tmp_path, "collections: {inputs: {save_interval: 1}}\nrules: [CheckInputImages]\n")
    outcome = kennel.json("train", "--data", synth, "--name", "raw-pixels", "--normalize", "none", "--freeze",
                          "backbone", "--feature-cache", "false", "--epochs", 4, "--batch-size", 16,
                          "--debugger", spec, *FAST)
    assert outcome["status"] == "Completed", outcome
    rule = rules_of(kennel, "raw-pixels")["CheckInputImages"]
    assert rule["status"] == "IssuesFound" and "normal" in rule["message"], rule


def test_webhook_action_posts_the_issue(kennel, synth, tmp_path):
    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks/kennel"
        spec = debugger_spec(tmp_path, "rules:\n  - name: LossNotDecreasing\n    parameters: {num_steps: 4, noise_sigmas: 0}\n"
                             f"    action: {{webhook: \"{url}\"}}\n")
        outcome = kennel.json("train", "--data", synth, "--name", "hooked", "--freeze", "none", "--epochs", 2,
                              "--batch-size", 8, "--lr", 1e-9, "--optimizer", "sgd", "--debugger", spec, *FAST)
    finally:
        server.shutdown()
    assert outcome["status"] == "Completed", outcome
    assert len(received) == 1, received
    event = received[0]
    assert event["event"] == "rule_issue" and event["rule"] == "LossNotDecreasing", event
    assert event["result"]["status"] == "IssuesFound" and event["debug_dir"].endswith("debug"), event


def test_raw_values_are_opt_in_and_size_capped(kennel, synth, tmp_path):
    spec = debugger_spec(tmp_path, "collections: {losses: {}, weights: {raw_values: 16, save_interval: 1},"
                         " biases: {raw_values: 16, save_interval: 1}}\nrules: [ExplodingTensor]\n")
    outcome = kennel.json("train", "--data", synth, "--name", "raw", "--epochs", 1, "--batch-size", 16,
                          "--debugger", spec, *FAST)
    assert outcome["status"] == "Completed", outcome
    summaries = {json.loads(line)["name"]: json.loads(line) for line in kennel.run(
        "debug", "tensors", "raw", "--name", "^(weights|biases)/", "--step", 0, "--json", check=0).stdout.splitlines()}
    assert summaries["biases/fc.bias"]["values"] and len(summaries["biases/fc.bias"]["values"]) == 4
    assert not summaries["weights/fc.weight"].get("values"), "a 4x512 weight is over the 16-value cap"


def test_frozen_backbone_records_only_trainable_gradients(kennel, synth):
    outcome = kennel.json("train", "--data", synth, "--name", "frozen", "--freeze", "backbone", "--feature-cache",
                          "false", "--epochs", 1, "--batch-size", 16, "--debugger", "default", *FAST)
    assert outcome["status"] == "Completed", outcome
    names = {json.loads(line)["name"] for line in kennel.run(
        "debug", "tensors", "frozen", "--name", "^gradients/", "--json", check=0).stdout.splitlines()}
    assert names and all(name.startswith("gradients/fc.") for name in names), names


def test_stop_training_action_stops_the_job_and_names_the_rule(kennel, synth, tmp_path):
    spec = debugger_spec(tmp_path, "rules:\n  - name: LossNotDecreasing\n    parameters: {num_steps: 4, noise_sigmas: 0}\n"
                         "    action: stop_training\n")
    result = kennel.run("train", "--data", synth, "--name", "stuck", "--freeze", "none", "--epochs", 4,
                        "--batch-size", 8, "--lr", 1e-9, "--optimizer", "sgd", "--debugger", spec, *FAST,
                        "--json", check=1)
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "Stopped"
    assert "LossNotDecreasing" in outcome["reason"], outcome
    assert rules_of(kennel, "stuck")["LossNotDecreasing"]["status"] == "IssuesFound"


def test_stop_training_inside_a_tuning_job_stops_that_trial_only(kennel, synth, tmp_path):
    # These runs are 32 steps long, too short for windows to grow out of the mini-batch noise
    # (the rule's statistics are unit-tested): noise_sigmas 0 judges window means as they are.
    # lr 1e-9 leaves the loss where it is (the rule stops that trial); lr 0.01 on a linear head
    # over frozen features learns smoothly and must run to the end, and the study goes on.
    spec = debugger_spec(tmp_path, "rules:\n  - name: LossNotDecreasing\n    parameters: {noise_sigmas: 0}\n"
                         "    action: stop_training\n")
    outcome = kennel.json("tune", "--name", "watched-study", "--data", synth, *FAST, "--freeze", "backbone",
                          "--epochs", 4, "--batch-size", 16, "--optimizer", "sgd", "--debugger", spec,
                          "--param", "lr=1e-9,0.01", "--strategy", "grid", "--max-jobs", 2,
                          "--max-parallel-jobs", 1, "--early-stopping", "off")
    assert outcome["status"] == "Completed", outcome
    trials = {t["hyperparameters"]["lr"]: t for t in outcome["trials"]}
    stuck, healthy = trials[1e-9], trials[0.01]
    assert stuck["status"] == "Stopped" and "LossNotDecreasing" in stuck["reason"], stuck
    assert stuck["epochs_run"] < 4, stuck
    assert healthy["status"] == "Completed" and healthy["epochs_run"] == 4, healthy
    assert rules_of(kennel, stuck["name"])["LossNotDecreasing"]["status"] == "IssuesFound"
    assert rules_of(kennel, healthy["name"])["LossNotDecreasing"]["status"] == "NoIssuesFound"
    best = json.loads(kennel.run("tune", "best", "watched-study", "--json", check=0).stdout)
    assert best["name"] == healthy["name"], best


@pytest.mark.parametrize("content, message", [
    ("rules: [NoSuchRule]", "NoSuchRule"),
    ("collections: {bogus: {}}", "unknown collection 'bogus'"),
    ("rules: [{name: Overfit, parameters: {ratio: 2}}]", "ratio"),
    ("rules: [{name: Overfit, action: explode}]", "explode"),
    ("collections: {weights: {raw_values: -1}}", "raw_values"),
])
def test_bad_debugger_specs_are_clear_errors(kennel, synth, tmp_path, content, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(content)
    result = kennel.run("train", "--data", synth, "--name", "bad", "--debugger", spec, *FAST, check=2)
    assert message in result.stderr, result.stderr
    assert not (kennel.home / "jobs" / "bad").exists()
    missing = kennel.run("train", "--data", synth, "--debugger", tmp_path / "nope.yaml", *FAST, check=2)
    assert "nope.yaml" in missing.stderr
