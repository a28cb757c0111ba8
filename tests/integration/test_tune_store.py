"""Tuning across machines on a real PostgreSQL: two `kennel tune worker`
processes in two network namespaces (each its own host name and KENNEL_HOME,
the database reachable from both over a bridge) share one study. Every trial
runs exactly once; a worker killed mid-trial has its trial re-queued and
finished by the other; a worker frozen past its lease cannot overwrite the
re-run's result when it wakes; `tune describe` shows the same table from
either host. Also: Kennel trials (`kennel train` children) whose rows the
worker copies into the shared store, save_models, and the store's unit
tests run against PostgreSQL.

The trials are the stand-in trainer (tune_tools/fake_trainer.py): the
protocol is the same for any trial, and they take a second, not a minute."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from conftest import Kennel, build_dir
from service_kit.common import ServiceUnavailable, in_ci, stop_process
from services import network_namespaces, start_postgres

TOOLS = Path(__file__).resolve().parent / "tune_tools"
FAKE = f"{sys.executable} {TOOLS / 'fake_trainer.py'}"
METRIC = "valid_accuracy=valid_accuracy=([0-9.]+)"


class Site:
    """A PostgreSQL server reachable from two namespaced "hosts"."""

    def __init__(self, net, pg):
        self.net, self.pg = net, pg

    def database(self):
        name = f"study_{uuid.uuid4().hex[:10]}"
        self.pg.create_database(name)
        return name

    def url(self, database, inside=True):
        return self.pg.url_for(database, host=self.net.host_address if inside else None)


@pytest.fixture(scope="module")
def site():
    with ExitStack() as stack:
        try:
            net = stack.enter_context(network_namespaces(2))
            pg = stack.enter_context(start_postgres(database="postgres", listen=[net.host_address],
                                                    trust=[net.cidr]))
        except ServiceUnavailable as error:
            failure = error
        else:
            yield Site(net, pg)
            return
    if in_ci():
        pytest.fail(f"{failure} (CI=true: a service that cannot start is a failure)", pytrace=False)
    pytest.skip(str(failure))


def host_name(index):
    return f"tuner-host-{'ab'[index]}"


def start_worker(site, index, kennel_bin, home, url, *args):
    """`kennel tune worker` inside namespace `index`, with a host name of its own (a UTS
    namespace). `ip netns exec`, `unshare` and the shell all exec, so the pid is kennel's."""
    command = [str(kennel_bin), "--home", str(home), "--store", url, "tune", "worker", *map(str, args)]
    script = f"echo {host_name(index)} > /proc/sys/kernel/hostname && exec \"$@\""
    log = open(home.parent / f"worker-{index}.log", "w")
    process = site.net.popen(index, ["unshare", "--uts", "sh", "-c", script, "sh", *command],
                             stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PATH="/usr/bin:/bin"))
    process.log_path = Path(log.name)
    return process


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def trials(site, database):
    rows = site.pg.query("SELECT idx, state, attempts, host, worker, objective, ended_at, reason "
                         "FROM kennel_trials ORDER BY idx", database=database)
    keys = ("idx", "state", "attempts", "host", "worker", "objective", "ended_at", "reason")
    return [dict(zip(keys, row)) for row in rows]


def create_study(kennel, url, name, trainer_args, *flags):
    """A study of stand-in trials, created without running any (`--no-run`)."""
    return kennel.run("--store", url, "tune", "--name", name, "--command", f"{FAKE} --lr {{lr}} {trainer_args}",
                      "--metric", METRIC, "--param", "lr=1e-4..1:log", "--strategy", "random", "--no-run",
                      *flags, check=0)


SHORT_LEASE = ["--lease-seconds", 2, "--requeue-grace-seconds", 1]


def finish(worker, timeout=90):
    try:
        worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(worker)
        raise AssertionError(f"worker did not finish in {timeout} s:\n{worker.log_path.read_text()}")
    return worker.log_path.read_text()


def test_two_hosts_share_a_study_and_see_the_same_table(site, kennel_bin, tmp_path):
    database = site.database()
    url = site.url(database)
    root = Kennel(kennel_bin, tmp_path / "root-home")
    created = create_study(root, url, "eight", "--epochs 2 --sleep 0.2", "--max-jobs", 8, "--max-parallel-jobs", 2)
    assert "tune worker" in created.stdout
    taken = root.run("--store", url, "tune", "--name", "eight", "--command", f"{FAKE} --lr {{lr}}", "--metric", METRIC,
                     "--param", "lr=1e-4..1:log", "--no-run", check=2)
    assert "already exists" in taken.stderr

    homes = [tmp_path / "host-a" / "home", tmp_path / "host-b" / "home"]
    for home in homes:
        home.parent.mkdir(parents=True)
    workers = [start_worker(site, i, kennel_bin, homes[i], url, "--study", "eight", "--max-parallel", 1)
               for i in range(2)]
    logs = [finish(worker) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), logs

    rows = trials(site, database)
    assert [int(r["idx"]) for r in rows] == list(range(8))
    assert all(r["state"] == "Completed" and r["attempts"] == "1" for r in rows), rows
    assert {r["host"] for r in rows} == {host_name(0), host_name(1)}, "both hosts ran trials"
    # Exactly once: each trial's directory exists on one host only, with one run in its log.
    for i in range(1, 9):
        runs = [home / "jobs" / f"eight-{i:03d}" / "log.txt" for home in homes]
        ran = [log for log in runs if log.exists()]
        assert len(ran) == 1 and ran[0].read_text().count("trial env:") == 1, runs

    # The same table from either host (and from the machine that created the study).
    tables = [site.net.run(i, [str(kennel_bin), "--home", str(homes[i]), "--store", url, "tune", "describe",
                               "eight", "--csv"], capture_output=True, text=True, timeout=60) for i in range(2)]
    assert all(t.returncode == 0 for t in tables), [t.stderr for t in tables]
    assert tables[0].stdout == tables[1].stdout
    assert tables[0].stdout == root.run("--store", url, "tune", "describe", "eight", "--csv", check=0).stdout
    assert "host" in tables[0].stdout.splitlines()[0] and host_name(1) in tables[0].stdout
    summary = json.loads(root.run("--store", url, "tune", "describe", "eight", "--json", check=0).stdout)
    assert summary["status"] == "Completed" and summary["counts"] == {"Completed": 8}
    assert summary["chosen_by"] == {"random": 8}
    # The trials' rows live in the shared store too, with the host that ran each.
    rows = json.loads(root.run("--store", url, "jobs", "list", "--parent", "eight", "--json", check=0).stdout)
    assert len(rows) == 8 and all(r["kind"] == "command" and r["status"] == "Completed" for r in rows)
    assert {r["host"] for r in rows} == {host_name(0), host_name(1)}


def test_a_killed_worker_loses_its_trial_to_the_other(site, kennel_bin, tmp_path):
    database = site.database()
    url = site.url(database)
    create_study(Kennel(kennel_bin, tmp_path / "root-home"), url, "killed", "--epochs 4 --sleep 0.5",
                 "--max-jobs", 4, "--max-parallel-jobs", 2, *SHORT_LEASE)
    homes = [tmp_path / "host-a" / "home", tmp_path / "host-b" / "home"]
    for home in homes:
        home.parent.mkdir(parents=True)
    victim = start_worker(site, 0, kennel_bin, homes[0], url, "--study", "killed", "--max-parallel", 1)
    running = wait_for(lambda: [r for r in trials(site, database) if r["state"] == "running"], 30,
                       "the first worker's trial")
    survivor = start_worker(site, 1, kennel_bin, homes[1], url, "--study", "killed", "--max-parallel", 1)
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    lost = running[0]["idx"]
    log = finish(survivor)
    assert survivor.returncode == 0, log

    rows = {r["idx"]: r for r in trials(site, database)}
    assert len(rows) == 4 and all(r["state"] == "Completed" for r in rows.values()), rows
    assert rows[lost]["attempts"] == "2" and rows[lost]["host"] == host_name(1), rows[lost]
    assert f"killed-{int(lost) + 1:03d} re-queued" in log and "stopped renewing the lease" in log


def test_a_frozen_worker_cannot_overwrite_the_rerun(site, kennel_bin, tmp_path):
    database = site.database()
    url = site.url(database)
    create_study(Kennel(kennel_bin, tmp_path / "root-home"), url, "frozen", "--epochs 3 --sleep 0.5",
                 "--max-jobs", 2, "--max-parallel-jobs", 1, *SHORT_LEASE)
    homes = [tmp_path / "host-a" / "home", tmp_path / "host-b" / "home"]
    for home in homes:
        home.parent.mkdir(parents=True)
    frozen = start_worker(site, 0, kennel_bin, homes[0], url, "--study", "frozen")
    wait_for(lambda: [r for r in trials(site, database) if r["state"] == "running"], 30, "a running trial")
    # The store says "running" from the claim on; the worker writes the trial's log just before it starts
    # the trial's process. Freezing the worker in between would leave no process to finish.
    trial_log = homes[0] / "jobs" / "frozen-001" / "log.txt"
    wait_for(trial_log.exists, 30, "the frozen worker to start its trial")
    frozen.send_signal(signal.SIGSTOP)
    try:
        other = start_worker(site, 1, kennel_bin, homes[1], url, "--study", "frozen")
        # The lease (2 s) expires, the grace (1 s) passes, the other worker re-runs trial 1 to its end.
        rerun = wait_for(lambda: [r for r in trials(site, database)
                                  if r["idx"] == "0" and r["state"] == "Completed"], 40, "the re-run")[0]
        assert rerun["attempts"] == "2" and rerun["host"] == host_name(1), rerun
        # The frozen worker's own trial process finished meanwhile (only the worker was frozen).
        wait_for(lambda: "trial env: frozen-001" in trial_log.read_text(),
                 20, "the frozen worker's trial to end")
    finally:
        frozen.send_signal(signal.SIGCONT)
    logs = [finish(frozen), finish(other)]
    assert other.returncode == 0, logs[1]
    after = trials(site, database)
    assert after[0]["state"] == "Completed" and after[0]["host"] == host_name(1)
    assert after[0]["ended_at"] == rerun["ended_at"] and after[0]["worker"] == rerun["worker"], after[0]
    assert after[1]["state"] == "Completed"
    assert "lease lost" in logs[0] and ("dropping its result" in logs[0] or "result dropped" in logs[0]), logs[0]


def test_kennel_trials_register_here_and_the_store_keeps_a_copy(site, kennel_bin, tmp_path):
    from test_tune import FAST
    data = tmp_path / "data"
    home = tmp_path / "home"
    kennel = Kennel(kennel_bin, home)
    kennel.run("data", "synth", "--out", data, "--classes", 3, "--per-class", 10, "--size", "40x40", "--seed", 4,
               check=0)
    database = site.database()
    url = site.url(database, inside=False)
    outcome = kennel.json("--store", url, "tune", "--name", "kt", "--data", data, *FAST, "--epochs", 2, "--batch-size", 8,
                          "--param", "lr=1e-3..1e-1:log", "--strategy", "random", "--max-jobs", 3,
                          "--max-parallel-jobs", 1)
    assert outcome["status"] == "Completed", outcome
    rows = json.loads(kennel.run("--store", url, "jobs", "list", "--parent", "kt", "--json", check=0).stdout)
    assert len(rows) == 3 and all(r["kind"] == "training" and r["status"] == "Completed" for r in rows), rows
    assert all("valid_accuracy" in r["final_metrics"] for r in rows)
    # This host's own registry has them too (the trials wrote there).
    local = json.loads(kennel.run("jobs", "list", "--parent", "kt", "--json", check=0).stdout)
    assert {r["name"] for r in local} == {r["name"] for r in rows}
    # save_models best: only the best trial keeps its model; no trial keeps checkpoints.
    best = outcome["best"]["name"]
    for row in rows:
        job = home / "jobs" / row["name"]
        assert (job / "model").exists() == (row["name"] == best), row["name"]
        assert not (job / "checkpoints").exists()
    assert Path(outcome["best"]["model"], "model.safetensors").exists()


def test_the_store_unit_tests_pass_on_postgresql(postgres):
    binary = build_dir() / "kennel_unit_tests"
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: build kennel_unit_tests")
    result = subprocess.run([str(binary), "--gtest_filter=Backends/StudyStoreTest.*/postgres"],
                            env=dict(os.environ, KENNEL_TEST_POSTGRES_URL=postgres.url),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "[  PASSED  ] 9 tests" in result.stdout, result.stdout[-2000:]
