"""The README's first command, CI-sized: scripts/demo.sh on a tiny Fashion-MNIST
subset (8 images per class, 2 trials, 2 epochs, 32 px) with setup skipped
(scripts/test.sh has already set up, built and imported the backbone). Every step
must run — import, check, tune, best, train with debugger and profiler, evaluate,
serve and query, summary — so the main job cannot silently break."""
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_main_job_runs_end_to_end_and_reuses_its_work(kennel_bin, tmp_path):
    env = dict(os.environ, SKIP_SETUP="1", BUILD_DIR=str(kennel_bin.parent), DATA_DIR=str(tmp_path / "data"),
               KENNEL_HOME=str(tmp_path / "home"), PER_CLASS="8", TRIALS="2", EPOCHS="2", INPUT_SIZE="32",
               PREFIX="ci")
    first = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    out = first.stdout
    for step in ("import Fashion-MNIST", "check the dataset", "tune lr", "the best hyperparameters",
                 "train ci-best", "serve ci-best", "summary"):
        assert f"== {step}" in out, step
    best = re.search(r"best hyperparameters: (.*)", out)
    assert best and "lr = " in best.group(1) and "batch_size = " in best.group(1), out[-3000:]
    assert re.search(r"test accuracy:\s+0\.\d+", out), out[-3000:]
    assert re.search(r"\d+ of 10 right", out), out[-3000:]
    assert "server stopped" in out
    assert (tmp_path / "home" / "jobs" / "ci-best" / "profile" / "report.html").exists()
    assert (tmp_path / "home" / "jobs" / "ci-best" / "debug" / "rules.json").exists()
    assert len(list((tmp_path / "home" / "jobs").glob("ci-tune-*"))) == 2

    again = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    for reused in ("already imported", "already tuned", "already trained"):
        assert reused in again.stdout, reused
