"""`kennel train --profiler` and `kennel profile`: the system monitor, the
Chrome trace, the report (rendered in headless Chromium) and the rules on a
real training job (ResNet-18 at 32 px on small synthetic datasets)."""
import ctypes
import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

FAST = ["--arch", "resnet18", "--pretrained", "none", "--input-size", 32, "--resize", 36, "--quiet"]


def nvml_gpu_count():
    """GPUs as NVML counts them (what the system monitor reads), independently of Kennel: 0 without NVML."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return 0
    if nvml.nvmlInit_v2() != 0:
        return 0
    try:
        count = ctypes.c_uint(0)
        return count.value if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 else 0
    finally:
        nvml.nvmlShutdown()


def make_data(kennel_bin, root, size, per_class):
    from conftest import Kennel
    Kennel(kennel_bin, root.parent / "home").run(
        "data", "synth", "--out", root, "--classes", 4, "--per-class", per_class, "--size", size, "--seed", 3,
        check=0)
    return root


@pytest.fixture(scope="module")
def small_images(kennel_bin, tmp_path_factory):
    return make_data(kennel_bin, tmp_path_factory.mktemp("profile") / "small", "40x40", 40)


@pytest.fixture(scope="module")
def slow_images(tmp_path_factory):
    """Large PNGs: unlike JPEGs (decoded at a reduced scale when the model wants 32 px) every pixel
    of a PNG must be inflated, so one decode thread cannot keep up with a 32 px ResNet-18."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp("profile") / "slow"
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 160, 1600, dtype=np.float32)[None, :, None]
    for split, count in (("train", 8), ("valid", 2)):
        for label in range(4):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = gradient + rng.integers(0, 96, size=(1200, 1600, 3)) + label * 20
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.png", compress_level=1)
    return root


def read_trace(profile_dir: Path):
    plain, packed = profile_dir / "trace.json", profile_dir / "trace.json.gz"
    if packed.exists():
        return json.loads(gzip.decompress(packed.read_bytes()))
    return json.loads(plain.read_text())


def nesting_error(trace):
    """The first two complete spans on one thread that overlap without nesting, or None."""
    threads = {}
    for event in trace["traceEvents"]:
        if event.get("ph") == "X":
            threads.setdefault((event["pid"], event["tid"]), []).append(
                (event["ts"], event["ts"] + event["dur"], event["name"]))
    for thread, spans in threads.items():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for start, end, name in spans:
            while stack and stack[-1][1] <= start + 1e-3:
                stack.pop()
            if stack and end > stack[-1][1] + 1e-3:
                return f"thread {thread}: {name} [{start}, {end}] overlaps {stack[-1]}"
            stack.append((start, end, name))
    return None


def rules_of(summary):
    return {rule["rule"]: rule for rule in summary["rules"]}


def test_a_profiled_run_writes_system_samples_a_nested_trace_and_a_report(kennel, small_images):
    outcome = kennel.json("train", "--data", small_images, "--name", "profiled", "--freeze", "none", "--epochs", 2,
                          "--batch-size", 16, "--threads", 2, "--profiler", "default", *FAST)
    assert outcome["status"] == "Completed", outcome
    profile_dir = kennel.home / "jobs" / "profiled" / "profile"
    samples = [json.loads(line) for line in (profile_dir / "system.jsonl").read_text().splitlines()]
    assert len(samples) >= 2
    assert all(s["process_rss"] > 0 and len(s["cpu_per_core"]) >= 1 for s in samples)
    assert max(s["process_cpu"] for s in samples) > 10
    # Every sample lists the GPUs NVML sees on this machine, none where there are none (issue 16:
    # `all(none) or all(some)` held whatever the monitor reported).
    expected_gpus = nvml_gpu_count()
    assert [len(s["gpus"]) for s in samples] == [expected_gpus] * len(samples), (expected_gpus, samples[0]["gpus"])

    trace = read_trace(profile_dir)
    assert nesting_error(trace) is None, nesting_error(trace)
    names = {event["name"] for event in trace["traceEvents"] if event.get("ph") == "X"}
    assert {"initialisation", "step 0", "forward", "backward", "optimizer", "finalisation"} <= names, names
    operators = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "operator"]
    assert any(e["name"].startswith("aten::") for e in operators), "the operator window recorded no aten ops"
    counters = {e["name"] for e in trace["traceEvents"] if e.get("ph") == "C"}
    assert "CPU %" in counters and "loader ready batches" in counters, counters
    steps = [json.loads(line) for line in (profile_dir / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(20))  # 160 training images, batches of 16, 2 epochs
    assert all(s["forward"] > 0 and s["backward"] > 0 and s["total"] >= s["forward"] for s in steps)

    summary = json.loads(kennel.run("profile", "profiled", "--json", check=0).stdout)
    assert summary["job"]["init_seconds"] > 0 and summary["job"]["loop_seconds"] > 0
    assert summary["top_operators"] and summary["top_operators"][0]["self_ms"] > 0
    rules = rules_of(summary)
    for name in ("LowGPUUtilization", "CPUBottleneck", "IOBottleneck", "DataloaderBottleneck", "GPUMemoryIncrease",
                 "BatchSize", "StepOutlier", "MaxInitializationTime", "OverallSystemUsage",
                 "OverallFrameworkMetrics"):
        assert name in rules, name
    assert "no GPU" in rules["LowGPUUtilization"]["message"] and not rules["LowGPUUtilization"]["triggered"]
    assert not rules["DataloaderBottleneck"]["triggered"], rules["DataloaderBottleneck"]
    text = kennel.run("profile", "profiled", check=0).stdout
    assert "report: " in text and "DataloaderBottleneck" in text
    job = json.loads(kennel.run("jobs", "describe", "profiled", "--json", check=0).stdout)
    assert job["artifacts"]["profile"]["report"].endswith("report.html")


def test_the_report_renders_in_headless_chromium_without_errors(kennel, small_images, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is missing: run scripts/setup.sh"
    kennel.json("train", "--data", small_images, "--name", "rendered", "--freeze", "none", "--epochs", 1,
                "--batch-size", 16, "--threads", 2, "--profiler", "default", *FAST)
    report = kennel.home / "jobs" / "rendered" / "profile" / "report.html"
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=2000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    # The charts are in the rendered DOM: inline SVGs with drawn paths, and every section.
    assert dom.count("<svg") >= 3 and ("<path" in dom or "<polyline" in dom)
    for section in ("System usage", "Step durations", "Time by phase", "Top operators", "Rules"):
        assert section in dom, section
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


def test_a_planted_data_loading_bottleneck_fires_with_a_recommendation(kennel, slow_images):
    # One thread decodes 1600x1200 PNGs for a model that needs 32 px: the trainer waits for data.
    outcome = kennel.json("train", "--data", slow_images, "--name", "starved", "--freeze", "backbone",
                          "--feature-cache", "false", "--epochs", 3,
                          "--batch-size", 8, "--threads", 1, "--profiler", "default", *FAST)
    assert outcome["status"] == "Completed", outcome
    summary = json.loads(kennel.run("profile", "starved", "--json", check=0).stdout)
    rule = rules_of(summary)["DataloaderBottleneck"]
    assert rule["triggered"], rule
    assert rule["recommendation"] and "thread" in rule["recommendation"], rule
    data_share = next(p["share"] for p in summary["phases"] if p["phase"] == "data")
    assert data_share > 0.5, summary["phases"]


@pytest.mark.parametrize("content, message", [
    ("interval_ms: 5", "interval_ms"),
    ("operators: {start_step: -1}", "operators.start_step"),
    ("rules: {NoSuchRule: {}}", "NoSuchRule"),
    ("rules: {StepOutlier: {bogus: 1}}", "bogus"),
    ("samples: 3", "samples"),
])
def test_bad_profiler_specs_are_clear_errors(kennel, small_images, tmp_path, content, message):
    spec = tmp_path / "profiler.yaml"
    spec.write_text(content)
    result = kennel.run("train", "--data", small_images, "--name", "bad", "--profiler", spec, *FAST, check=2)
    assert message in result.stderr, result.stderr
    assert not (kennel.home / "jobs" / "bad").exists()
