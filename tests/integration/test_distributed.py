"""Data-parallel training on c10d/Gloo: real processes, launched the ways
PyTorch users launch (Kennel's --nproc-per-node, torchrun, srun's variables).

The equivalence tests compare 2 ranks x batch 8 with 1 process x batch 16 on
the same seed: the strided shards make each step see the same 16 images, so
losses per step and final weights agree to float tolerance. Precision is
pinned to fp32 (numbers are compared).
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import Kennel

COMMON = ["--arch", "resnet18", "--pretrained", "none", "--input-size", 32, "--resize", 36,
          "--precision", "fp32", "--seed", 3, "--lr", 0.01, "--optimizer", "momentum", "--quiet"]


@pytest.fixture(scope="module")
def synth(kennel_bin, tmp_path_factory):
    """4 classes, 64 training images: 4 steps of 16 per epoch, 2 x 8 on two ranks."""
    root = tmp_path_factory.mktemp("dist") / "data"
    Kennel(kennel_bin, root.parent / "home").run(
        "data", "synth", "--out", root, "--classes", 4, "--per-class", 16, "--size", "40x40",
        "--valid-ratio", 0.25, "--test-ratio", 0.25, "--seed", 5, check=0)
    train = sum(1 for _ in (root / "train").rglob("*.jpg"))
    assert train == 64, train
    return root


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def step_losses(job_dir):
    return [r["train_loss"] for r in read_jsonl(Path(job_dir) / "metrics.jsonl") if r["type"] == "step"]


def read_safetensors(path):
    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64, "BF16": np.uint16}[info["dtype"]]
        tensors[name] = np.frombuffer(data[base + start:base + end], dtype=dtype).reshape(info["shape"])
    return tensors


def assert_same_training(single_dir, parallel_dir, tolerance=1e-4):
    single, parallel = step_losses(single_dir), step_losses(parallel_dir)
    assert len(single) == len(parallel) > 0
    np.testing.assert_allclose(parallel, single, rtol=0, atol=tolerance)
    a = read_safetensors(Path(single_dir) / "model" / "model.safetensors")
    b = read_safetensors(Path(parallel_dir) / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=tolerance, err_msg=name)


def train_single(kennel, synth, name, *extra):
    return kennel.json("train", "--data", synth, "--name", name, "--batch-size", 16, "--threads", 2,
                       *COMMON, *extra, timeout=600)


def train_parallel(kennel, synth, name, *extra, check=0):
    return kennel.json("train", "--data", synth, "--name", name, "--batch-size", 8, "--nproc-per-node", 2,
                       *COMMON, *extra, check=check, timeout=600)


HEAD_ONLY = ["--freeze", "backbone", "--epochs", 3]


@pytest.fixture(scope="module")
def head_runs(kennel_bin, synth, tmp_path_factory):
    """One process x batch 16 and 2 ranks x batch 8 on a frozen backbone, in one home."""
    kennel = Kennel(kennel_bin, tmp_path_factory.mktemp("head-runs") / "home")
    single = train_single(kennel, synth, "single-head", *HEAD_ONLY)
    parallel = train_parallel(kennel, synth, "parallel-head", *HEAD_ONLY)
    return kennel, single, parallel


def test_two_ranks_equal_one_process_on_a_frozen_backbone(head_runs):
    kennel, single, parallel = head_runs
    assert single["status"] == parallel["status"] == "Completed"
    assert_same_training(single["job_dir"], parallel["job_dir"])
    # Validation and test count every sample once over the ranks.
    for key in ("valid_accuracy", "valid_loss", "test_accuracy", "test_loss"):
        assert parallel["final_metrics"][key] == pytest.approx(single["final_metrics"][key], abs=1e-4), key
    spec = json.loads((Path(parallel["job_dir"]) / "spec.json").read_text())
    assert spec["distributed"] == {"world_size": 2, "effective_batch_size": 16, "launcher": "kennel",
                                   "backend": "gloo"}
    # One job, not two: rank 0 alone wrote the registry and the job directory.
    jobs = kennel.json("jobs", "list")
    assert sorted(j["name"] for j in jobs) == ["parallel-head", "single-head"]


def test_two_ranks_equal_one_process_with_the_last_stage_unfrozen(kennel, synth):
    extra = ["--freeze", "last:1", "--batchnorm", "frozen", "--epochs", 2]
    single = train_single(kennel, synth, "single-stage", *extra)
    parallel = train_parallel(kennel, synth, "parallel-stage", *extra)
    assert single["status"] == parallel["status"] == "Completed"
    assert_same_training(single["job_dir"], parallel["job_dir"])


def test_two_hosts_in_network_namespaces_equal_one_host(kennel_bin, tmp_path, synth, head_runs, netns_hosts):
    net = netns_hosts(2)
    master = f"{net.hosts[0].address}:29511"  # a fresh namespace: every port is free
    processes = []
    for node in range(2):
        # Each host has its own home: rank 1's has no job directory and needs none.
        env = dict(os.environ, KENNEL_HOME=str(tmp_path / f"home{node}"))
        processes.append(net.popen(node, [
            kennel_bin, "train", "--data", synth, "--name", "two-hosts", "--batch-size", 8, "--nnodes", 2,
            "--node-rank", node, "--nproc-per-node", 1, "--master-addr", master, "--dist-iface", "eth0",
            *HEAD_ONLY, *COMMON], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, out + err
    job_dir = tmp_path / "home0" / "jobs" / "two-hosts"
    assert_same_training(head_runs[2]["job_dir"], job_dir)
    assert not (tmp_path / "home1" / "jobs" / "two-hosts").exists()


def test_torchrun_launches_a_job(kennel_bin, tmp_path, synth):
    home = tmp_path / "home"
    env = dict(os.environ, KENNEL_HOME=str(home))
    result = subprocess.run(
        # Debian's torchrun (torch 1.13 on Python 3.11) fails on its default --redirects 0: see docs/distributed.md.
        ["/usr/bin/python3", "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-r", "1", "-t", "1", "--no_python", str(kennel_bin), "train", "--data", str(synth), "--name", "by-torchrun",
         "--batch-size", "8", "--freeze", "backbone", "--epochs", "1", *map(str, COMMON)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    spec = json.loads((home / "jobs" / "by-torchrun" / "spec.json").read_text())
    assert spec["distributed"]["launcher"] == "torchrun"
    assert spec["distributed"]["world_size"] == 2
    record = Kennel(kennel_bin, home).json("jobs", "describe", "by-torchrun")
    assert record["status"] == "Completed"


def run_ranks(kennel_bin, home, envs, args, timeout=600):
    """Starts one kennel process per environment (as srun would) and waits for all."""
    processes = []
    for env in envs:
        processes.append(subprocess.Popen(
            [str(kennel_bin), "train", *map(str, args)], env=dict(os.environ, KENNEL_HOME=str(home), **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=timeout) for p in processes]
    return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs)]


def test_srun_variables_with_a_compressed_node_list(kennel_bin, tmp_path, synth):
    port = free_port()
    envs = [{"SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0", "SLURM_LOCALID": str(rank),
             "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_CPUS_PER_TASK": "1", "SLURM_JOB_ID": "4242",
             # the first host of the compressed list is the master: 127.0.0.1
             "SLURM_JOB_NODELIST": "127.0.0.[1-2]", "MASTER_PORT": str(port)} for rank in range(2)]
    results = run_ranks(kennel_bin, tmp_path / "home", envs,
                        ["--data", synth, "--name", "by-srun", "--batch-size", 8, "--freeze", "backbone",
                         "--epochs", 1, *COMMON])
    for code, out, err in results:
        assert code == 0, out + err
    spec = json.loads((tmp_path / "home" / "jobs" / "by-srun" / "spec.json").read_text())
    assert spec["distributed"]["launcher"] == "slurm"


def test_a_rank_started_with_another_spec_is_refused_naming_the_difference(kennel_bin, tmp_path, synth):
    port = free_port()
    envs = [{"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            for rank in range(2)]
    processes = []
    for rank, env in enumerate(envs):
        lr = "0.01" if rank == 0 else "0.02"
        processes.append(subprocess.Popen(
            [str(kennel_bin), "train", "--data", str(synth), "--name", "mismatch", "--batch-size", "8",
             "--epochs", "1", "--lr", lr, "--arch", "resnet18", "--pretrained", "none", "--input-size", "32",
             "--quiet"],
            env=dict(os.environ, KENNEL_HOME=str(tmp_path / "home"), **env), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode != 0 for p in processes), outputs
    assert "lr is 0.02 here, 0.01 on rank 0" in outputs[1][1], outputs[1]
    assert "rank 1 cannot start the job" in outputs[0][1], outputs[0]
    assert not (tmp_path / "home" / "jobs" / "mismatch").exists()


def test_bad_launches_are_clear_errors(kennel, synth):
    result = kennel.run("train", "--data", synth, "--nproc-per-node", 0, check=2)
    assert "--nproc-per-node must be >= 1" in result.stderr
    result = kennel.run("train", "--data", synth, "--nnodes", 2, "--nproc-per-node", 1, check=2)
    assert "needs --master-addr HOST:PORT" in result.stderr
    result = kennel.run("train", "--data", synth, "--nproc-per-node", 2, "--master-addr", "localhost", check=2)
    assert "must be HOST:PORT" in result.stderr
    env_result = subprocess.run([str(kennel.binary), "train", "--data", str(synth)], capture_output=True, text=True,
                                env=dict(os.environ, KENNEL_HOME=str(kennel.home), RANK="0", WORLD_SIZE="0"))
    assert env_result.returncode == 2
    assert "WORLD_SIZE=0" in env_result.stderr
    # A port already in use on rank 0's host.
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = kennel.run("train", "--data", synth, "--nproc-per-node", 2, "--master-addr", f"127.0.0.1:{port}",
                            "--dist-timeout", 5, *COMMON, check=None, timeout=120)
    assert result.returncode != 0
    assert f"cannot listen on port {port}" in result.stderr


def rank_pid(launcher_pid, rank):
    """The pid of a launched rank, found by its RANK variable among the launcher's children."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration):
            continue
        if ppid == launcher_pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_a_killed_rank_fails_the_job_naming_it_and_resume_completes(kennel, synth):
    args = ["train", "--data", synth, "--name", "killed", "--batch-size", 4, "--nproc-per-node", 2,
            "--freeze", "last:2", "--epochs", 3, "--dist-timeout", 20, *COMMON]
    launcher = subprocess.Popen([str(kennel.binary), *map(str, args)],
                                env=dict(os.environ, KENNEL_HOME=str(kennel.home)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = kennel.home / "jobs" / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    # Past the first epoch's checkpoint, in the middle of the second epoch.
    while time.time() < deadline:
        if metrics.exists() and sum(1 for r in read_jsonl(metrics) if r["type"] == "step") >= 11:
            break
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.2)
    victim = rank_pid(launcher.pid, 1)
    assert victim is not None
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    out, err = launcher.communicate(timeout=120)
    assert time.time() - killed_at < 20 + 15, "rank 0 did not stop within --dist-timeout"
    assert launcher.returncode != 0
    assert "rank 1" in err and "SIGKILL" in err, err
    record = kennel.json("jobs", "describe", "killed")
    assert record["status"] == "Failed"
    assert "rank 1 was lost" in record["failure_reason"], record
    latest = json.loads((kennel.home / "jobs" / "killed" / "checkpoints" / "latest.json").read_text())
    assert (kennel.home / "jobs" / "killed" / "checkpoints" / latest["file"]).stat().st_size > 0
    assert latest["state"]["epoch"] >= 1

    resumed = kennel.json("train", "--resume", "killed", "--nproc-per-node", 2, timeout=600)
    assert resumed["status"] == "Completed"
    epochs = [r["epoch"] for r in read_jsonl(metrics) if r["type"] == "epoch"]
    assert epochs[-1] == 2


def test_sigterm_stops_every_rank_at_the_same_step_and_the_job_is_stopped(kennel, synth):
    args = ["train", "--data", synth, "--name", "termed", "--batch-size", 4, "--nproc-per-node", 2,
            "--freeze", "last:1", "--epochs", 3, *COMMON]
    launcher = subprocess.Popen([str(kennel.binary), *map(str, args)],
                                env=dict(os.environ, KENNEL_HOME=str(kennel.home)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = kennel.home / "jobs" / "termed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metrics.exists() and sum(1 for r in read_jsonl(metrics) if r["type"] == "step") >= 3:
            break
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.2)
    launcher.send_signal(signal.SIGTERM)  # forwarded to both ranks
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1, out + err
    record = kennel.json("jobs", "describe", "termed")
    assert record["status"] == "Stopped", record
    assert "SIGTERM" in record["failure_reason"]
    latest = json.loads((kennel.home / "jobs" / "termed" / "checkpoints" / "latest.json").read_text())
    assert latest["reason"] == "stopped"
    resumed = kennel.json("train", "--resume", "termed", "--nproc-per-node", 2, timeout=600)
    assert resumed["status"] == "Completed"
    steps = [r["step"] for r in read_jsonl(metrics) if r["type"] == "step"]
    assert steps[-1] == 3 * 8  # 64 images / (4 x 2 ranks) per epoch; every step once
