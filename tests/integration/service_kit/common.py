"""What every service helper shares: the "cannot start" error, private temp dirs that a
service user can reach, free loopback ports, waiting, and stopping processes for good.

Processes that a helper cannot hold by pid (daemons' grandchildren, Slurm job steps) are
marked with KENNEL_SERVICE_TAG=<tag> in their environment, so teardown finds them in /proc.
"""
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

TAG_VARIABLE = "KENNEL_SERVICE_TAG"
SETUP_FIX = "bash scripts/setup.sh (as root: it installs the Debian packages)"


class ServiceUnavailable(RuntimeError):
    """A real service could not start here; says why and what command fixes it."""

    def __init__(self, service: str, reason: str, fix: str):
        super().__init__(f"{service} cannot start: {reason}\n  fix: {fix}")
        self.service, self.reason, self.fix = service, reason, fix


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def new_tag() -> str:
    """Short, unique per service instance: names namespaces, clusters and process marks."""
    return uuid.uuid4().hex[:6]


def require_root(service: str):
    if os.geteuid() != 0:
        raise ServiceUnavailable(service, "it needs root (it switches users or makes namespaces)",
                                 "run the tests as root, as CI does")


def require_binaries(service: str, *paths, fix: str = SETUP_FIX):
    for path in paths:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)) and not shutil.which(path):
            raise ServiceUnavailable(service, f"{path} is not installed", fix)


def _reachable_by_everyone(directory: str) -> bool:
    path = Path(directory).resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def private_dir(name: str, owner: str = None, mode: int = 0o700) -> Path:
    """A fresh directory kennel-<name>-XXXX under the temp dir (under /tmp when $TMPDIR is not
    reachable by other users, since a service user must reach it), owned by `owner`."""
    base = tempfile.gettempdir()
    if owner and not _reachable_by_everyone(base):
        base = "/tmp"
    path = Path(tempfile.mkdtemp(prefix=f"kennel-{name}-", dir=base))
    if owner:
        user = pwd.getpwnam(owner)
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)
    return path


def make_owned_dir(path: Path, owner: str, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwnam(owner)
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)
    return path


def as_user(name: str) -> dict:
    """Popen keyword arguments that run a command as `name` (no PAM, no extra process, so the
    pid Popen holds is the daemon's), or nothing when we already are that user."""
    user = pwd.getpwnam(name)
    if os.geteuid() == user.pw_uid:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Polls predicate() until it returns a truthy value (returned); TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def tail(path, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as error:
        return f"({path}: {error.strerror})"
    return "\n".join(text[-lines:])


def stop_process(process: subprocess.Popen, sig=signal.SIGTERM, grace: float = 5.0):
    """Sends `sig`, waits `grace` seconds, then SIGKILLs; always reaps the process."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(sig)
        process.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    if process.poll() is None:
        process.kill()
        process.wait()


def _protected_pids() -> set:
    """This process and its ancestors: never killed by a tag sweep, even if a test copied a
    service's environment into os.environ."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def tagged_pids(tag: str) -> list:
    marker = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    protected = _protected_pids()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in protected:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if marker in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def kill_tagged(tag: str, rounds: int = 20):
    """SIGKILLs every process marked with `tag` (repeats: a dying parent may fork once more)."""
    for _ in range(rounds):
        pids = [pid for pid in tagged_pids(tag) if not _is_zombie(pid)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def remove_tree(path: Path):
    shutil.rmtree(path)


def user_ids(name: str):
    """(uid, gid) of a user; KeyError when there is none."""
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


class Cleanup:
    """Runs teardown steps in reverse order; every step runs even when an earlier one fails,
    and the first failure is raised at the end (a leak must not pass silently)."""

    def __init__(self):
        self._steps = []

    def add(self, function, *args, **kwargs):
        self._steps.append((function, args, kwargs))

    def run(self):
        first_error = None
        while self._steps:
            function, args, kwargs = self._steps.pop()
            try:
                function(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - every step must run
                first_error = first_error or error
        if first_error:
            raise first_error
