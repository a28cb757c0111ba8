"""`kennel tune`: trials as real `kennel train` processes (ResNet-18 at 32 px
on a tiny synthetic dataset) and as external commands, resume after SIGKILL,
describe/best/report, and the errors a user can make."""
import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent / "tune_tools"
FAKE = f"{sys.executable} {TOOLS / 'fake_trainer.py'}"
FAST = ["--arch", "resnet18", "--pretrained", "none", "--input-size", 32, "--resize", 36, "--quiet"]


@pytest.fixture(scope="module")
def tiny(kennel_bin, tmp_path_factory):
    from conftest import Kennel
    root = tmp_path_factory.mktemp("tune") / "data"
    Kennel(kennel_bin, root.parent / "home").run(
        "data", "synth", "--out", root, "--classes", 3, "--per-class", 16, "--size", "40x40",
        "--seed", 2, check=0)
    return root


def trials_of(kennel, name):
    rows = json.loads(kennel.run("jobs", "list", "--parent", name, "--json", check=0).stdout)
    return {row["name"]: row for row in rows}


def test_tune_lr_and_batch_size_and_best_is_truly_best(kennel, tiny):
    args = ["tune", "--name", "study", "--data", tiny, *FAST, "--epochs", 3,
            "--param", "lr=1e-4..1e-1:log", "--param", "batch_size=4,8,16",
            "--strategy", "bayesian", "--max-jobs", 6, "--max-parallel-jobs", 2, "--seed", 7]
    outcome = kennel.json(*args)
    assert outcome["status"] == "Completed", outcome
    assert [t["name"] for t in sorted(outcome["trials"], key=lambda t: t["index"])] == \
        [f"study-{i:03d}" for i in range(1, 7)]

    # Every trial is a training job in the registry, with its parent.
    rows = trials_of(kennel, "study")
    assert set(rows) == {f"study-{i:03d}" for i in range(1, 7)}
    assert all(row["kind"] == "training" and row["parent"] == "study" for row in rows.values())
    # The first trial fills the feature cache alone with every thread; the rest split them in two.
    total = rows["study-001"]["spec"]["threads"]
    assert all(row["spec"]["threads"] == max(1, total // 2) for name, row in rows.items() if name != "study-001")
    first = next(t for t in outcome["trials"] if t["index"] == 0)
    second = next(t for t in outcome["trials"] if t["index"] == 1)
    assert second["started_at"] >= first["ended_at"] - 0.5

    # `tune best` is the trial whose final objective is truly the best in the registry.
    completed = {n: r["final_metrics"]["valid_accuracy"] for n, r in rows.items() if r["status"] == "Completed"}
    best = json.loads(kennel.run("tune", "best", "study", check=0).stdout)
    assert best["objective"]["value"] == pytest.approx(max(completed.values()))
    assert completed[best["name"]] == pytest.approx(max(completed.values()))
    assert set(best["hyperparameters"]) == {"lr", "batch_size"}
    assert best["spec"]["lr"] == best["hyperparameters"]["lr"] and "name" not in best["spec"]
    assert Path(best["model"], "model.safetensors").exists()

    # describe: sorted by objective, as text, CSV and JSON.
    text = kennel.run("tune", "describe", "study", check=0).stdout
    assert "Completed" in text and best["name"] in text
    table = list(csv.DictReader(io.StringIO(kennel.run("tune", "describe", "study", "--csv", check=0).stdout)))
    assert len(table) == 6 and table[0]["trial"] == best["name"]
    values = [float(r["valid_accuracy"]) for r in table if r["valid_accuracy"]]
    assert values == sorted(values, reverse=True)
    summary = json.loads(kennel.run("tune", "describe", "study", "--json", check=0).stdout)
    assert summary["counts"].get("Completed", 0) + summary["counts"].get("Stopped", 0) == 6

    # The HTML report has the charts; the best spec retrains as is.
    report = (kennel.home / "tuning" / "study" / "report.html").read_text()
    assert report.count("<svg") >= 4 and best["name"] in report
    # Regression: the report of a finished study said "Status InProgress" (it was written
    # before the outcome was recorded).
    assert "<dt>Status</dt><dd>Completed</dd>" in report and "InProgress" not in report
    retrain = kennel.json("train", "--spec", kennel.home / "tuning" / "study" / "best-spec.json",
                          "--name", "retrained", "--max-steps", 2)
    assert retrain["status"] == "Completed"

    # Same seed and parallelism: the same search.
    again = kennel.json(*[a if a != "study" else "study-again" for a in args])
    first = [t["hyperparameters"] for t in sorted(outcome["trials"], key=lambda t: t["index"])]
    second = [t["hyperparameters"] for t in sorted(again["trials"], key=lambda t: t["index"])]
    assert first == second


def read_trials(kennel, name):
    path = kennel.home / "tuning" / name / "trials.json"
    return json.loads(path.read_text())["trials"] if path.exists() else []


def test_killing_the_tuner_and_resuming_loses_no_completed_trial(kennel, kennel_bin, tiny):
    env = {"KENNEL_HOME": str(kennel.home), "PATH": "/usr/bin:/bin"}
    tuner = subprocess.Popen(
        [str(kennel_bin), "tune", "--name", "killed", "--data", str(tiny), *map(str, FAST),
         "--epochs", "4", "--param", "lr=1e-3..1e-1:log", "--strategy", "random",
         "--max-jobs", "4", "--max-parallel-jobs", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        trials = read_trials(kennel, "killed")
        if sum(t["state"] == "Completed" for t in trials) >= 1 and any(t["state"] == "running" for t in trials):
            break
        time.sleep(0.1)
    else:
        tuner.kill()
        pytest.fail("no completed trial within 120 s")
    tuner.send_signal(signal.SIGKILL)
    tuner.wait()
    before = {t["name"]: t for t in read_trials(kennel, "killed") if t["state"] == "Completed"}
    assert before
    # The dead tuner is noticed (same host, dead pid); its running trial shows as interrupted.
    summary = json.loads(kennel.run("tune", "describe", "killed", "--json", check=0).stdout)
    assert summary["status"] == "Failed" and summary["counts"].get("Interrupted", 0) >= 1, summary

    # Resume waits for the orphaned trial to checkpoint, then carries on.
    outcome = kennel.json("tune", "resume", "killed")
    assert outcome["status"] == "Completed", outcome
    after = {t["name"]: t for t in read_trials(kennel, "killed")}
    assert len(after) == 4 and all(t["state"] == "Completed" for t in after.values())
    for name, trial in before.items():
        # Kept as it was, not re-run.
        assert after[name]["ended_at"] == trial["ended_at"] and after[name]["attempts"] == 1
        assert after[name]["objective"] == trial["objective"]
    assert any(t["attempts"] == 2 for t in after.values())  # the interrupted trial ran again
    assert all(t["epochs_run"] == 4 and len(t["intermediate"]) == 4 for t in after.values())
    rows = trials_of(kennel, "killed")
    assert all(row["status"] == "Completed" for row in rows.values())


def test_external_command_with_regex_metrics(kennel, tmp_path):
    outcome = kennel.json("tune", "--name", "cmd", "--command", f"{FAKE} --lr {{lr}} --x {{x}}",
                          "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
                          "--metric", "train_loss=train_loss=([0-9.]+)",
                          "--param", "lr=1e-4..1:log", "--param", "x=1,2",
                          "--strategy", "random", "--max-jobs", 5, "--max-parallel-jobs", 2)
    assert outcome["status"] == "Completed"
    trials = outcome["trials"]
    assert all(t["status"] == "Completed" and t["epochs_run"] == 3 for t in trials)
    # The objective is the last value printed, and the best is the best.
    for t in trials:
        lr, x = t["hyperparameters"]["lr"], t["hyperparameters"]["x"]
        import math
        assert t["objective"] == pytest.approx(x * (1 - (math.log10(lr) + 2) ** 2 / 10), abs=1e-5)
    assert outcome["best"]["objective"]["value"] == pytest.approx(max(t["objective"] for t in trials))
    rows = trials_of(kennel, "cmd")
    assert all(r["kind"] == "command" and r["status"] == "Completed" for r in rows.values())
    log = (kennel.home / "jobs" / "cmd-001" / "log.txt").read_text()
    assert "trial env: cmd-001" in log


def test_a_regex_that_never_matches_fails_every_trial_with_the_reason(kennel):
    result = kennel.run("tune", "--name", "silent", "--command", f"{FAKE} --lr {{lr}} --silent",
                        "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
                        "--param", "lr=1e-3..1e-1:log", "--max-jobs", 2, "--json", check=1)
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "Failed"
    assert "all 2 trials failed" in outcome["reason"] and "never reported" in outcome["reason"]
    assert all("matched no line" in t["reason"] for t in outcome["trials"])
    assert "failed" in result.stderr


def test_a_crashed_trial_is_retried_and_a_failing_one_recorded(kennel):
    outcome = kennel.json("tune", "--name", "crashy", "--command",
                          f"{FAKE} --lr {{lr}} --crash-first-attempt",
                          "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
                          "--param", "lr=1e-3..1e-1:log", "--max-jobs", 2, "--max-retries", 1)
    assert outcome["status"] == "Completed"
    assert all(t["status"] == "Completed" and t["attempts"] == 2 for t in outcome["trials"])

    failing = kennel.run("tune", "--name", "failing", "--command", f"{FAKE} --lr {{lr}} --exit-code 3",
                         "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
                         "--param", "lr=1e-3..1e-1:log", "--max-jobs", 2, "--json", check=1)
    outcome = json.loads(failing.stdout)
    assert all(t["status"] == "Failed" and "exit code 3" in t["reason"] and t["attempts"] == 1
               for t in outcome["trials"])


def test_median_rule_stops_poor_trials_early(kennel):
    # Grid order x = 5, 4, 3, 2, 1. The rule needs 3 earlier trials (min_trials), so
    # x = 2 and x = 1 are judged, and each is below the median at epoch 1.
    outcome = kennel.json("tune", "--name", "median", "--command",
                          f"{FAKE} --lr 0.01 --x {{x}} --epochs 5 --sleep 0.6",
                          "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
                          "--param", "x=5,4,3,2,1", "--strategy", "grid", "--max-jobs", 5,
                          "--early-stopping", "median")
    by_x = {t["hyperparameters"]["x"]: t for t in outcome["trials"]}
    assert by_x[5]["status"] == by_x[4]["status"] == by_x[3]["status"] == "Completed"
    for x in (2, 1):
        assert by_x[x]["status"] == "Stopped" and by_x[x]["early_stopped"], by_x[x]
        assert "median" in by_x[x]["reason"] and by_x[x]["epochs_run"] < 5
        assert by_x[x]["objective"] is not None  # the value it reached
    rows = trials_of(kennel, "median")
    assert rows["median-004"]["status"] == "Stopped" and "median" in rows["median-004"]["failure_reason"]


def test_warm_start_seeds_the_strategy(kennel):
    common = ["--command", f"{FAKE} --lr {{lr}}", "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
              "--param", "lr=1e-4..1:log"]
    kennel.run("tune", "--name", "first", *common, "--max-jobs", 4, "--strategy", "random", check=0)
    second = kennel.run("tune", "--name", "second", *common, "--max-jobs", 2, "--strategy", "bayesian",
                        "--warm-start", "first", check=0)
    assert "warm start: 4 trials of first" in second.stdout
    missing = kennel.run("tune", "--name", "third", *common, "--warm-start", "nope", check=2)
    assert "nope" in missing.stderr


def test_a_bayesian_study_says_which_trials_tpe_chose(kennel):
    common = ["--command", f"{FAKE} --lr {{lr}}", "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
              "--param", "lr=1e-4..1:log"]
    # 6 trials, 2 at a time, 5 startup trials: TPE never chooses, and the user is told before the first trial.
    all_random = kennel.run("tune", "--name", "all-random", *common, "--max-jobs", 6, "--max-parallel-jobs", 2,
                            check=0)
    assert "bayesian with 6 trials, 2 at a time: all will be random" in all_random.stderr
    assert "raise --max-jobs above 6 or lower --startup-trials to 4" in all_random.stderr
    outcome = kennel.json("tune", "--name", "honest", *common, "--max-jobs", 8, "--startup-trials", 3)
    by_index = sorted(outcome["trials"], key=lambda t: t["index"])
    assert [t["source"] for t in by_index] == ["startup"] * 3 + ["tpe"] * 5
    assert outcome["chosen_by"] == {"startup": 3, "tpe": 5} and outcome["startup_trials"] == 3
    log = (kennel.home / "tuning" / "honest" / "log.txt").read_text()
    assert "bayesian: trials 1-3 are random (startup), trials 4-8 chosen by TPE" in log
    assert "trial honest-004 started [chosen by tpe]" in log and "trial honest-001 started [chosen by startup]" in log
    text = kennel.run("tune", "describe", "honest", check=0).stdout
    assert "trials chosen by: 3 random (startup), 5 TPE" in text and "chosen by" in text
    rows = list(csv.DictReader(io.StringIO(kennel.run("tune", "describe", "honest", "--csv", check=0).stdout)))
    assert sorted(r["chosen_by"] for r in rows) == ["startup"] * 3 + ["tpe"] * 5


def test_a_warm_started_grid_skips_the_points_already_evaluated(kennel):
    grid = ["--command", f"{FAKE} --lr {{lr}} --x {{x}}", "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)",
            "--param", "lr=0.01,0.1", "--param", "x=1,2", "--strategy", "grid"]
    kennel.run("tune", "--name", "grid-a", *grid, "--max-jobs", 2, check=0)  # (0.01, 1) and (0.01, 2)
    second = kennel.json("tune", "--name", "grid-b", *grid, "--max-jobs", 4, "--warm-start", "grid-a")
    assert second["status"] == "Completed"
    assert sorted((t["hyperparameters"]["lr"], t["hyperparameters"]["x"]) for t in second["trials"]) == \
        [(0.1, 1), (0.1, 2)]


@pytest.mark.parametrize("param, message", [
    ("lr=0.1..0.1", "empty"),
    ("lr=0.1..0.01", "greater than max"),
    ("lr=0..0.1:log", "log scale needs min > 0"),
    ("lrr=1e-4..1e-1:log", "did you mean 'lr'"),
    ("optimizer=adam,bogus", "optimizer"),
    ("batch_size=", "no values"),
])
def test_bad_ranges_are_clear_errors(kennel, tiny, param, message):
    result = kennel.run("tune", "--data", tiny, *FAST, "--param", param, check=2)
    assert message in result.stderr, result.stderr
    assert not (kennel.home / "tuning").exists() or not any((kennel.home / "tuning").iterdir())


def test_an_objective_no_trial_reports_is_a_clear_error(kennel, tiny):
    result = kennel.run("tune", "--data", tiny, *FAST, "--param", "lr=1e-3..1e-1:log",
                        "--objective", "valid_f1", check=2)
    assert "valid_f1" in result.stderr and "valid_accuracy" in result.stderr
    result = kennel.run("tune", "--command", f"{FAKE} --lr {{lr}}", "--metric", "loss=loss=([0-9.]+)",
                        "--param", "lr=1e-3..1e-1:log", check=2)
    assert "objective 'valid_accuracy' has no --metric definition" in result.stderr
    result = kennel.run("tune", "--command", f"{FAKE} --lr {{rate}}", "--metric", "valid_accuracy=v=([0-9.]+)",
                        "--param", "lr=1e-3..1e-1:log", check=2)
    assert "{rate}" in result.stderr


def test_spec_file_and_name_conflicts(kennel, tiny, tmp_path):
    spec = tmp_path / "tune.yaml"
    spec.write_text(f"""
name: from-file
training:
  data: {tiny}
  arch: resnet18
  pretrained: none
  input_size: 32
  resize: 36
  epochs: 2
hyperparameters:
  lr: {{min: 1e-3, max: 1e-1, scale: log}}
  optimizer: [adam, sgd]
objective: {{metric: valid_loss, at: best}}
strategy: random
max_jobs: 2
""")
    outcome = kennel.json("tune", "--spec", spec, "--quiet")
    assert outcome["status"] == "Completed" and outcome["objective"]["goal"] == "minimize"
    assert {t["hyperparameters"]["optimizer"] for t in outcome["trials"]} <= {"adam", "sgd"}
    taken = kennel.run("tune", "--spec", spec, check=2)
    assert "already exists" in taken.stderr and "tune resume" in taken.stderr
    done = kennel.run("tune", "resume", "from-file", check=1)
    assert "already completed" in done.stderr


def test_hyperband_runs_kennel_trials_and_explains_its_stops(kennel, tiny):
    outcome = kennel.json("tune", "--name", "hb", "--data", tiny, *FAST, "--epochs", 3,
                          "--param", "lr=1e-5..1e-1:log", "--strategy", "hyperband",
                          "--max-jobs", 7, "--seed", 5)
    assert outcome["status"] == "Completed" and outcome["early_stopping"] == "hyperband"
    # 3 epochs, eta 3: bracket 0 (trials 0, 2, 4, 6) has a rung at epoch 1 where a trial goes on only while
    # it is the best there so far; with lr spread over four decades some trial must stop (issue 16: this
    # test used to pass with none stopped). No stop would need four strictly improving trials in a row.
    stopped = [t for t in outcome["trials"] if t["status"] == "Stopped"]
    assert stopped, [(t["status"], t.get("reason")) for t in outcome["trials"]]
    assert any(t["status"] == "Completed" and t["epochs_run"] == 3 for t in outcome["trials"])
    for trial in outcome["trials"]:
        assert trial["status"] in ("Completed", "Stopped"), trial
        if trial["status"] == "Stopped":
            assert trial["early_stopped"] and "hyperband rule" in trial["reason"]
            assert "epoch-1 rung of bracket 0" in trial["reason"], trial["reason"]
            assert trial["epochs_run"] == 1
    tuned_epochs = kennel.run("tune", "--data", tiny, *FAST, "--param", "epochs=2..4",
                              "--strategy", "hyperband", check=2)
    assert "hyperband decides how many epochs" in tuned_epochs.stderr
