"""`kennel quantize` and `--precision int8`, black-box.

One tiny ResNet-18 (32 px, 3 classes) is trained once for the module at fp32;
it is quantized on its own training images, checked on its valid split, and
the int8 directory is then run by evaluate, predict and a real `kennel serve`.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from test_serve import Server, invoke, logits_rows, request


def cpu_has_int8_dot_products():
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags.split()))


@pytest.fixture(scope="module")
def trained(kennel_bin, tmp_path_factory):
    from conftest import Kennel
    root = tmp_path_factory.mktemp("quantize")
    kennel = Kennel(kennel_bin, root / "home")
    data = root / "data"
    kennel.run("data", "synth", "--out", data, "--classes", 3, "--per-class", 20, "--size", "40x40",
               "--seed", 5, check=0)
    kennel.run("train", "--data", data, "--name", "m", "--arch", "resnet18", "--pretrained", "none",
               "--freeze", "none", "--input-size", 32, "--epochs", 2, "--batch-size", 8, "--quiet",
               "--precision", "fp32", check=0)
    out = root / "m-int8"
    report = kennel.json("quantize", "m", "--calibration", data, "--calibration-images", 32, "--out", out)
    return kennel, root, data, out, report


def test_quantize_writes_a_model_directory_and_reports_the_cost(trained):
    kennel, root, data, out, report = trained
    assert report["out"] == str(out)
    assert report["calibration_split"] == "train" and report["calibration_images"] == 32
    assert report["check_split"] == "valid" and report["check_images"] > 0
    assert 0 <= report["agreement"] <= 1 and 0 <= report["accuracy_int8"] <= 1
    # A synthetic dataset is easy: int8 must not change what the model says on most images.
    assert report["agreement"] >= 0.9, report
    record = json.loads((out / "quantization.json").read_text())
    assert record["engine"] == "onednn"
    assert record["ranges"]["input"]["min"] < 0 < record["ranges"]["input"]["max"]
    assert record["ranges"]["layer4.1.add"]["min"] >= 0  # after a ReLU
    assert record["check"]["agreement"] == report["agreement"]
    for name in ("model.json", "model.safetensors"):
        assert (out / name).is_file()
    # The trained model is left as it was.
    original = Path(kennel.json("jobs", "describe", "m")["job_dir"]) / "model"
    assert not (original / "quantization.json").exists()


def test_evaluate_predict_and_serve_run_int8_and_answer_alike(trained):
    kennel, root, data, out, _ = trained
    evaluation = kennel.json("evaluate", out, data, "--precision", "int8", "--out", root / "eval-int8")
    assert evaluation["precision"] == "int8"
    assert evaluation["samples"] > 0
    image = sorted((data / "test").rglob("*.jpg"))[0]
    local = json.loads(kennel.run("predict", "--model", out, "--image", image, "--precision", "int8", "--json",
                                  check=0).stdout)
    server = Server(kennel.binary, kennel.home, out, root / "serve-int8", "--precision", "int8")
    try:
        described = request(server.port, "GET", "/models").json()
        assert described["precision"] == "int8", described
        assert "agreement" in described["precision_reason"], described
        served = logits_rows(invoke(server.port, image.read_bytes(), "image/jpeg"), 1)[0]
    finally:
        assert server.stop() == 0
    np.testing.assert_allclose(local["logits"], served, atol=1e-4)


def test_auto_runs_int8_only_where_the_cpu_has_int8_dot_products(trained):
    kennel, root, data, out, _ = trained
    result = kennel.json("evaluate", out, data, "--out", root / "eval-auto")
    if cpu_has_int8_dot_products():
        assert result["precision"] == "int8"
    else:
        assert result["precision"] in ("fp32", "bf16")
    # The model this was quantized from stays what it was asked to be: fp32, pinned.
    assert kennel.json("evaluate", "m", data, "--out", root / "eval-m")["precision"] == "fp32"


def test_int8_below_the_agreement_threshold_is_refused_unless_accepted(trained, tmp_path):
    kennel, root, data, out, _ = trained
    low = tmp_path / "low"
    low.mkdir()
    for item in out.iterdir():
        (low / item.name).write_bytes(item.read_bytes())
    record = json.loads((low / "quantization.json").read_text())
    record["check"]["agreement"] = 0.5
    (low / "quantization.json").write_text(json.dumps(record))
    image = sorted((data / "test").rglob("*.jpg"))[0]
    refused = kennel.run("predict", "--model", low, "--image", image, "--precision", "int8")
    assert refused.returncode != 0
    assert "0.5000" in refused.stderr and "--int8-min-agreement" in refused.stderr, refused.stderr
    server = Server(kennel.binary, kennel.home, low, tmp_path / "serve", "--precision", "int8", wait_ready=False)
    try:
        assert server.process.wait(60) != 0
        assert "int8 refused" in server.stderr()
    finally:
        server.stop()
    accepted = kennel.json("evaluate", low, data, "--precision", "int8", "--int8-min-agreement", 0.4,
                           "--out", tmp_path / "eval")
    assert accepted["precision"] == "int8"
    # auto falls back, and says why.
    fallback = kennel.run("evaluate", low, data, "--out", tmp_path / "eval2", check=0)
    assert "calibrated for int8 but runs" in fallback.stderr, fallback.stderr


def test_quantize_errors_name_what_is_wrong(trained, tmp_path):
    kennel, root, data, out, _ = trained
    uncalibrated = kennel.run("evaluate", "m", data, "--precision", "int8", "--out", tmp_path / "e")
    assert uncalibrated.returncode != 0 and "kennel quantize" in uncalibrated.stderr, uncalibrated.stderr
    other = tmp_path / "other"
    kennel.run("data", "synth", "--out", other, "--classes", 4, "--per-class", 3, "--size", "40x40", check=0)
    wrong_classes = kennel.run("quantize", "m", "--calibration", other)
    assert wrong_classes.returncode != 0 and "classes" in wrong_classes.stderr, wrong_classes.stderr
    no_split = kennel.run("quantize", "m", "--calibration", data, "--calibration-split", "test2")
    assert no_split.returncode != 0 and "test2" in no_split.stderr, no_split.stderr
    not_a_model_dir = tmp_path / "occupied"
    not_a_model_dir.mkdir()
    (not_a_model_dir / "notes.txt").write_text("mine")
    refused = kennel.run("quantize", "m", "--calibration", data, "--out", not_a_model_dir)
    assert refused.returncode != 0 and "not a model directory" in refused.stderr, refused.stderr
    assert (not_a_model_dir / "notes.txt").read_text() == "mine"
