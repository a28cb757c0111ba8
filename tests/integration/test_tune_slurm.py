"""Trials as Slurm batch jobs on a one-node cluster the tests start (slurm-wlm + munge, no
systemd; service_kit/slurm.py): `kennel tune --launcher slurm` submits each trial with sbatch
and follows it with scontrol. A trial someone scancels is Stopped; one `scontrol requeue`d runs
again (a Kennel trial from its checkpoint); one past its time limit is TIMEOUT.

The TIMEOUT study starts with the module (slurmctld checks limits every 30 s, so a 1-minute
limit ends in 60-90 s) and is checked last, so its wait overlaps the other tests."""
import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import Kennel
from service_kit.common import ServiceUnavailable, in_ci, stop_process
from services import slurm_cluster

TOOLS = Path(__file__).resolve().parent / "tune_tools"
FAKE = f"{sys.executable} {TOOLS / 'fake_trainer.py'}"
METRIC = "valid_accuracy=valid_accuracy=([0-9.]+)"


@pytest.fixture(scope="module")
def cluster():
    with ExitStack() as stack:
        try:
            running = stack.enter_context(slurm_cluster())
        except ServiceUnavailable as error:
            failure = error
        else:
            yield running
            return
    if in_ci():
        pytest.fail(f"{failure} (CI=true: a service that cannot start is a failure)", pytrace=False)
    pytest.skip(str(failure))


def tuner(kennel_bin, cluster, home, *args):
    env = dict(os.environ, KENNEL_HOME=str(home), **cluster.env)
    log = open(home.parent / f"tuner-{home.name}.log", "w")
    process = subprocess.Popen([str(kennel_bin), "tune", "--launcher", "slurm", "--partition", cluster.partition,
                                *map(str, args), "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    process.log_path = Path(log.name)
    return process


def outcome_of(process, timeout):
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(process)
        raise AssertionError(f"the tuner did not finish in {timeout} s:\n{process.log_path.read_text()}")
    return json.loads(out)


def trials_file(home, study):
    path = home / "tuning" / study / "trials.json"
    try:
        return json.loads(path.read_text())["trials"] if path.exists() else []
    except json.JSONDecodeError:  # written atomically, but read while it is replaced
        return []


def slurm_job(home, study, index, cluster, state="RUNNING", timeout=60):
    """The Slurm job id of trial `index` once Slurm says it is in `state`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for trial in trials_file(home, study):
            launch = trial.get("launch_id", "")
            if trial["index"] == index and trial["state"] == "running" and launch.startswith("slurm "):
                job = int(launch.split()[1])
                if cluster.job_state(job) == state:
                    return job
        time.sleep(0.2)
    raise AssertionError(f"trial {index} of {study} never reached {state}: {trials_file(home, study)}\n{cluster.logs()}")


@pytest.fixture(scope="module")
def timeout_study(cluster, kennel_bin, tmp_path_factory):
    home = tmp_path_factory.mktemp("slurm-timeout") / "home"
    process = tuner(kennel_bin, cluster, home, "--name", "late", "--command", f"{FAKE} --lr {{lr}} --epochs 1 --sleep 300",
                    "--metric", METRIC, "--param", "lr=1e-3..1e-1:log", "--max-jobs", 1,
                    "--sbatch-arg=--time=1")
    yield process, home
    if process.poll() is None:
        stop_process(process)


def test_a_study_runs_through_sbatch_and_survives_scancel_and_requeue(cluster, kennel_bin, tmp_path, timeout_study):
    home = tmp_path / "home"
    process = tuner(kennel_bin, cluster, home, "--name", "batch", "--command",
                    f"{FAKE} --lr {{lr}} --epochs 5 --sleep 0.6", "--metric", METRIC,
                    "--param", "lr=1e-3..1e-1:log", "--strategy", "random", "--max-jobs", 4, "--max-parallel-jobs", 1)
    cancelled = slurm_job(home, "batch", 0, cluster)
    cluster.scancel(cancelled)
    requeued = slurm_job(home, "batch", 1, cluster)
    time.sleep(1.0)  # an epoch or two printed before the requeue
    cluster.run("scontrol", "requeue", requeued)
    outcome = outcome_of(process, 150)
    log = (home / "tuning" / "batch" / "log.txt").read_text()

    trials = {t["index"]: t for t in outcome["trials"]}
    assert trials[0]["status"] == "Stopped", trials[0]
    assert "cancelled outside the tuner (scancel)" in trials[0]["reason"] and str(cancelled) in trials[0]["reason"]
    assert trials[1]["status"] == "Completed" and trials[1]["attempts"] == 1, trials[1]
    assert "batch-002 was requeued by the scheduler (restart 1" in log, log
    assert trials[1]["epochs_run"] == 5, "the requeued run's epochs, not both runs'"
    assert trials[2]["status"] == trials[3]["status"] == "Completed"
    assert outcome["status"] == "Completed" and outcome["best"]["name"] != "batch-001"
    # Each trial was a batch job of its own, named after it.
    assert all(f"batch-00{i}" in (home / "tuning" / "batch" / "trials" / f"batch-00{i}.sbatch.sh").read_text()
               for i in range(1, 5))


def test_a_kennel_trial_requeued_by_slurm_resumes_from_its_checkpoint(cluster, kennel_bin, tmp_path, timeout_study):
    from test_tune import FAST
    data = tmp_path / "data"
    home = tmp_path / "home"
    Kennel(kennel_bin, home).run("data", "synth", "--out", data, "--classes", 3, "--per-class", 24,
                                 "--size", "40x40", "--seed", 5, check=0)
    process = tuner(kennel_bin, cluster, home, "--name", "resnet", "--data", data, *FAST, "--epochs", 14,
                    "--batch-size", 8, "--param", "lr=1e-3..1e-2:log", "--strategy", "random", "--max-jobs", 1)
    job = slurm_job(home, "resnet", 0, cluster)
    metrics = home / "jobs" / "resnet-001" / "metrics.jsonl"

    def epochs():
        return [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()
                if line.strip() and json.loads(line).get("type") == "epoch"] if metrics.exists() else []
    deadline = time.time() + 120
    while len(epochs()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(epochs()) >= 2, "the trial never finished two epochs"
    cluster.run("scontrol", "requeue", job)
    outcome = outcome_of(process, 240)
    trial = outcome["trials"][0]
    assert outcome["status"] == "Completed" and trial["status"] == "Completed", outcome
    seen = epochs()
    assert sorted(set(seen)) == list(range(14)), seen
    assert seen.count(0) == 1, f"the requeued run started over instead of resuming: {seen}"
    assert "resnet-001 was requeued by the scheduler" in (home / "tuning" / "resnet" / "log.txt").read_text()


def test_a_trial_past_its_time_limit_is_timeout(timeout_study):
    process, home = timeout_study
    outcome = outcome_of(process, 200)
    trial = outcome["trials"][0]
    assert trial["status"] == "Failed" and trial["reason"].startswith("TIMEOUT"), trial
    assert "00:01:00" in trial["reason"]
    assert outcome["status"] == "Failed" and "TIMEOUT" in outcome["reason"]
