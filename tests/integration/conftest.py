"""Integration tests drive the real `kennel` binary on real files.

The binary is found through $KENNEL_BUILD_DIR (set by scripts/test.sh),
defaulting to ./build.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    return Path(os.environ.get("KENNEL_BUILD_DIR", ROOT / "build"))


@pytest.fixture(scope="session")
def kennel_bin() -> Path:
    path = build_dir() / "kennel"
    if not path.exists():
        pytest.fail(f"{path} does not exist: run scripts/build.sh first")
    return path


class Kennel:
    def __init__(self, binary: Path, home: Path):
        self.binary = binary
        self.home = home

    def run(self, *args, check=None, timeout=300):
        """Runs kennel; `check` is the expected exit code (None: don't check)."""
        env = dict(os.environ, KENNEL_HOME=str(self.home))
        result = subprocess.run([str(self.binary), *map(str, args)], capture_output=True,
                                text=True, errors="replace", env=env, timeout=timeout)
        if check is not None and result.returncode != check:
            raise AssertionError(
                f"kennel {' '.join(map(str, args))} exited {result.returncode}, expected {check}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def json(self, *args, check=0, timeout=300):
        return json.loads(self.run(*args, "--json", check=check, timeout=timeout).stdout)


@pytest.fixture
def kennel(kennel_bin, tmp_path) -> Kennel:
    return Kennel(kennel_bin, tmp_path / "home")


@pytest.fixture(scope="session")
def planted_dataset(kennel_bin, tmp_path_factory):
    """A small synthetic dataset with one planted bad file of every kind."""
    root = tmp_path_factory.mktemp("planted") / "data"
    kennel = Kennel(kennel_bin, root.parent / "home")
    kennel.run("data", "synth", "--out", root, "--classes", 4, "--per-class", 6,
               "--size", "48x40", "--corrupt", 11, "--seed", 3, check=0)
    return root


# Real services (PostgreSQL, Slurm, S3, network namespaces, Chromium) as fixtures any test
# file can use: see services.py.
from services import (chromium, make_postgres, netns_hosts, postgres,  # noqa: E402,F401
                      postgres_server, s3, slurm)
