"""A one-node Slurm cluster (Debian's slurm-wlm 22.05 + munge) run by the test, no systemd.

munged runs as the munge user with its own key (0400, owned by munge), socket, pid and log in
a temp dir; slurmctld and slurmd run in the foreground as our children with a slurm.conf in
the same dir. The lines that matter on a machine without systemd or cgroups, and for tests:
  SlurmctldHost=<hostname -s>(127.0.0.1), NodeName=<hostname -s> NodeAddr=127.0.0.1
                             the node slurmd finds itself as; traffic stays on loopback
  ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, no cgroup.conf
  SelectType=select/cons_tres with CR_CPU: several jobs share the node, one CPU each by default
  AuthInfo=socket=<temp munge socket>,cred_expire=10
                             cred_expire also delays a requeued job's restart (default 120 s)
  SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
                             jobs start within a second; a requeued job restarts ~11 s later
  KillWait=5, OverTimeLimit=0   a job over its --time gets SIGTERM, then SIGKILL 5 s later; note
                             slurmctld checks time limits every 30 s (fixed), so a 1-minute limit
                             ends in TIMEOUT after 60-90 s
  MinJobAge=30               a finished job stays visible to `scontrol show job` for 30 s (there
                             is no accounting database: sacct knows nothing)
  JobRequeue=1               batch jobs are requeueable (`scontrol requeue`)
"""
import os
import re
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .common import (TAG_VARIABLE, Cleanup, ServiceUnavailable, as_user, free_port, kill_tagged,
                     make_owned_dir, new_tag, private_dir, remove_tree, require_binaries,
                     require_root, stop_process, tail, user_ids, wait_until)

SERVICE = "Slurm"
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                             "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"})


@dataclass
class SlurmCluster:
    """A running one-node cluster. `env` is what a process needs to use it (SLURM_CONF, and a
    mark that lets teardown find jobs and steps that outlive their parents)."""
    directory: Path
    conf_path: Path
    node: str
    partition: str
    env: dict = field(default_factory=dict)

    def _environ(self, extra=None) -> dict:
        return {**os.environ, **self.env, **(extra or {})}

    def run(self, *argv, check=True, timeout=30) -> subprocess.CompletedProcess:
        """Runs a Slurm client command (sinfo, squeue, scontrol, scancel...) on this cluster."""
        result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                                env=self._environ(), timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} exited {result.returncode}: "
                               f"{result.stderr.strip()}")
        return result

    def sbatch(self, script: str, *args, env: dict = None) -> int:
        """Submits a batch script (its text; a '#!/bin/sh' line is added when missing) with extra
        sbatch arguments; output goes to <dir>/jobs/job-<id>.out unless --output is given.
        Returns the job id."""
        jobs = self.directory / "jobs"
        if not script.startswith("#!"):
            script = "#!/bin/sh\n" + script
        path = jobs / f"script-{time.monotonic_ns()}.sh"
        path.write_text(script)
        has_output = any(str(a).startswith(("--output", "-o")) for a in args)
        argv = ["sbatch", "--parsable", f"--chdir={jobs}",
                *([] if has_output else [f"--output={jobs}/job-%j.out"]), *map(str, args),
                str(path)]
        result = subprocess.run(argv, capture_output=True, text=True, env=self._environ(env),
                                timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(map(str, args))} failed: {result.stderr.strip()}")
        return int(result.stdout.strip().split(";")[0])

    def output(self, job_id: int) -> str:
        """The default output file of a job submitted by sbatch() ('' until it exists)."""
        path = self.directory / "jobs" / f"job-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def job_info(self, job_id: int):
        """`scontrol show job` as a dict of its Key=Value fields, or None when Slurm does not
        know the job (never submitted, or finished more than MinJobAge seconds ago)."""
        result = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return None
            raise RuntimeError(f"scontrol show job {job_id}: {result.stderr.strip()}")
        return dict(re.findall(r"(\w+)=(\S*)", result.stdout))

    def job_state(self, job_id: int):
        """PENDING, RUNNING, COMPLETING, COMPLETED, CANCELLED, TIMEOUT, FAILED, ...; None when
        Slurm no longer knows the job."""
        info = self.job_info(job_id)
        return info.get("JobState") if info else None

    def wait_state(self, job_id: int, states, timeout: float = 30) -> str:
        """Waits until the job is in one of `states` (a name or several); returns the state.
        Fails early when the job reaches another terminal state."""
        wanted = {states} if isinstance(states, str) else set(states)
        seen = []

        def reached():
            state = self.job_state(job_id)
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in wanted:
                return state
            if state in TERMINAL_STATES or (state is None and len(seen) > 1):
                raise AssertionError(f"job {job_id} ended {state} (states seen: {seen}), "
                                     f"expected {sorted(wanted)}\n{self.output(job_id)}")
            return None
        try:
            return wait_until(reached, timeout, f"job {job_id} to reach {sorted(wanted)}", 0.1)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; states seen: {seen}\n{self.logs()}") from None

    def scancel(self, job_id: int, *args):
        self.run("scancel", *args, job_id)

    def logs(self, lines: int = 15) -> str:
        logs = self.directory / "log"
        return "\n".join(f"--- {name}\n{tail(logs / name, lines)}"
                         for name in ("slurmctld.log", "slurmd.log"))


def _node_hardware(node: str) -> str:
    """The node's CPUs/topology/RealMemory exactly as slurmd detects them (so the node is not
    drained for a mismatch)."""
    result = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30)
    match = re.search(r"^NodeName=\S+ (.*RealMemory=\d+)", result.stdout, re.M)
    if result.returncode != 0 or not match:
        raise ServiceUnavailable(SERVICE, f"`slurmd -C` gave no node line: {result.stderr}",
                                 "check slurmd runs on this machine")
    return match.group(1)


def _write_conf(root: Path, node: str, munge_socket: Path, cluster: str, partition: str) -> Path:
    log = root / "log"
    conf = f"""# written by tests/integration/service_kit/slurm.py: a one-node test cluster
ClusterName={cluster}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={log}/slurmctld.log
SlurmdLogFile={log}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=5
TCPTimeout=2
KillWait=5
OverTimeLimit=0
InactiveLimit=0
MinJobAge=30
JobRequeue=1
NodeName={node} NodeAddr=127.0.0.1 {_node_hardware(node)} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    path = root / "slurm.conf"
    path.write_text(conf)
    return path


def _start_munged(root: Path, tag: str, cleanup: Cleanup) -> Path:
    munge_dir = make_owned_dir(root / "munge", "munge", 0o711)  # clients traverse to the socket
    run_dir = make_owned_dir(munge_dir / "run", "munge", 0o755)
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chown(key, *user_ids("munge"))
    key.chmod(0o400)
    socket_path = run_dir / "munge.socket"
    log = open(munge_dir / "munged.out", "ab")
    cleanup.add(log.close)
    munged = subprocess.Popen(
        ["munged", "--foreground", f"--key-file={key}", f"--socket={socket_path}",
         f"--pid-file={run_dir}/munged.pid", f"--log-file={munge_dir}/munged.log",
         f"--seed-file={munge_dir}/munged.seed"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=munge_dir,
        env={"PATH": os.environ.get("PATH", ""), TAG_VARIABLE: tag}, **as_user("munge"))
    cleanup.add(stop_process, munged)

    def ready():
        if munged.poll() is not None:
            raise ServiceUnavailable(SERVICE, f"munged exited {munged.returncode}:\n"
                                     f"{tail(munge_dir / 'munged.out')}", "see munged's log above")
        return socket_path.exists()
    wait_until(ready, 10, "munged's socket")
    return socket_path


@contextmanager
def slurm_cluster(partition: str = "kennel", start_timeout: float = 30):
    """Starts munged, slurmctld and slurmd; yields a SlurmCluster once `sinfo` shows the node
    idle. Teardown cancels every job, stops the daemons, kills whatever they left (marked
    processes) and deletes the dir."""
    require_root(SERVICE)
    require_binaries(SERVICE, "munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol",
                     "scancel")
    try:
        user_ids("munge")
    except KeyError:
        raise ServiceUnavailable(SERVICE, "there is no `munge` user", "apt-get install munge")
    tag = new_tag()
    node = socket.gethostname().split(".")[0]
    cleanup = Cleanup()
    root = private_dir("slurm", mode=0o755)
    cleanup.add(remove_tree, root)
    cleanup.add(kill_tagged, tag)
    try:
        for sub in ("state", "spool", "log", "jobs"):
            (root / sub).mkdir()
        munge_socket = _start_munged(root, tag, cleanup)
        conf = _write_conf(root, node, munge_socket, f"kennel{tag}", partition)
        cluster = SlurmCluster(root, conf, node, partition,
                               env={"SLURM_CONF": str(conf), TAG_VARIABLE: tag})
        daemon_env = {**os.environ, **cluster.env}
        daemons = []
        for name in ("slurmctld", "slurmd"):
            out = open(root / "log" / f"{name}.out", "ab")
            cleanup.add(out.close)
            argv = [name, "-D", "-f", str(conf)] + (["-i"] if name == "slurmctld" else [])
            daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                      stdin=subprocess.DEVNULL, env=daemon_env)
            daemons.append(daemon)
            cleanup.add(stop_process, daemon)
        cleanup.add(_cancel_all_jobs, cluster)

        def node_idle():
            for daemon in daemons:
                if daemon.poll() is not None:
                    raise ServiceUnavailable(SERVICE, f"{daemon.args[0]} exited "
                                             f"{daemon.returncode}\n{cluster.logs()}",
                                             "see the logs above")
            state = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False)
            return state.returncode == 0 and state.stdout.strip() == "idle"
        try:
            wait_until(node_idle, start_timeout, f"node {node} to be idle in sinfo", 0.2)
        except TimeoutError as error:
            raise ServiceUnavailable(SERVICE, f"{error}\n{cluster.logs()}", "see the logs above")
        yield cluster
    finally:
        cleanup.run()


def _cancel_all_jobs(cluster: SlurmCluster):
    """scancel every job and give their steps a few seconds to end before the daemons stop."""
    try:
        listed = cluster.run("squeue", "-h", "-o", "%i", check=False, timeout=10)
    except subprocess.TimeoutExpired:
        return
    jobs = listed.stdout.split() if listed.returncode == 0 else []
    if not jobs:
        return
    cluster.run("scancel", *jobs, check=False, timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = cluster.run("squeue", "-h", "-o", "%i", check=False, timeout=10)
        if left.returncode != 0 or not left.stdout.split():
            return
        time.sleep(0.2)
