"""The README's first command, CI-sized: scripts/demo.sh on a Fashion-MNIST subset (100
training images per class, 20 test images per class, 4 trials of which 2 are chosen by TPE,
3 epochs) with setup skipped (scripts/test.sh has already set up, built and imported the
backbone). Every step must run — import, check, tune, best, train with debugger and profiler,
serve and check against evaluate, summary — so the main job cannot silently break, and its
model must clear an accuracy floor."""
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_main_job_runs_end_to_end_and_reuses_its_work(kennel_bin, tmp_path):
    env = dict(os.environ, SKIP_SETUP="1", BUILD_DIR=str(kennel_bin.parent), DATA_DIR=str(tmp_path / "data"),
               KENNEL_HOME=str(tmp_path / "home"), PER_CLASS="100", TEST_PER_CLASS="20", TUNE_PER_CLASS="40",
               TRIALS="4", STARTUP_TRIALS="2", BATCH_SIZES="32,64", TUNE_EPOCHS="2", EPOCHS="3", SERVED="50", PREFIX="ci")
    first = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    out = first.stdout
    for step in ("import Fashion-MNIST", "check the dataset", "tune lr", "the best hyperparameters",
                 "train ci-best", "serve ci-best", "summary"):
        assert f"== {step}" in out, step
    best = re.search(r"best hyperparameters: (.*)", out)
    assert best and all(f"{key} = " in best.group(1) for key in ("lr", "batch_size", "weight_decay")), out[-3000:]
    tuning = re.search(r"tuning: +(\d+) trials, (\d+) random \(startup\), (\d+) chosen by TPE", out)
    assert tuning and tuning.groups()[:3] == ("4", "2", "2"), out[-3000:]
    accuracy = re.search(r"test accuracy: +(0\.\d+) on 200 images \(95 % CI (0\.\d+)-(0\.\d+)\)", out)
    assert accuracy, out[-3000:]
    low, value, high = float(accuracy.group(2)), float(accuracy.group(1)), float(accuracy.group(3))
    assert low < value < high
    # 900 training images, 3 epochs: the model must have learned the classes (chance is 0.10).
    assert value >= 0.55, out[-3000:]
    served = re.search(r"served check: (\d+) of 50 right .* kennel evaluate on the same images .*: equal", out)
    assert served, out[-3000:]
    assert "server stopped" in out
    assert (tmp_path / "home" / "jobs" / "ci-best" / "profile" / "report.html").exists()
    assert (tmp_path / "home" / "jobs" / "ci-best" / "debug" / "rules.json").exists()
    assert (tmp_path / "home" / "jobs" / "ci-best" / "evaluation" / "test_confusion_matrix.png").exists()
    assert len(list((tmp_path / "home" / "jobs").glob("ci-tune-*"))) == 4

    again = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    for reused in ("already imported", "already tuned", "already trained"):
        assert reused in again.stdout, reused
