"""The command line itself: help, version, exit codes, error messages."""
import os
import re
import subprocess

import pytest

from conftest import build_dir


def test_version(kennel):
    result = kennel.run("--version", check=0)
    assert re.match(r"kennel \d+\.\d+\.\d+", result.stdout.strip())


def configured(option):
    """The value of a CMake cache option of the build under test, or None."""
    cache = build_dir() / "CMakeCache.txt"
    found = re.search(rf"^{option}:[A-Z]+=(.*)$", cache.read_text(), re.M) if cache.exists() else None
    return found.group(1) if found else None


def test_malloc_is_tcmalloc_in_a_default_build(kennel):
    # glibc's malloc halves CPU training speed (docs/decisions.md): the link must
    # really replace it, in libtorch's and every other library's calls too.
    if configured("KENNEL_ALLOCATOR") != "tcmalloc" or configured("KENNEL_SANITIZE") in ("ON", "1", "TRUE"):
        pytest.skip("this build keeps the system allocator")
    env = dict(os.environ, LD_DEBUG="bindings")
    result = subprocess.run([str(kennel.binary), "--version"], capture_output=True, text=True, env=env)
    bindings = [line for line in result.stderr.splitlines() if "symbol `malloc'" in line]
    assert bindings, result.stderr[-2000:]
    assert all("libtcmalloc_minimal" in line.split(" to ", 1)[1] for line in bindings), bindings[:5]


def test_help_on_every_level(kennel):
    for args in [["--help"], ["data", "--help"], ["data", "check", "--help"],
                 ["data", "synth", "--help"], ["data", "import", "fashion-mnist", "--help"]]:
        result = kennel.run(*args, check=0)
        assert "Usage" in result.stdout or "usage" in result.stdout.lower(), args


def test_usage_errors_exit_2_with_one_clear_line(kennel):
    result = kennel.run("no-such-command", check=2)
    assert "no-such-command" in result.stderr
    result = kennel.run("data", "check", check=2)
    assert "path" in result.stderr.lower()
    result = kennel.run("--log-level", "loud", "data", "check", ".", check=2)
    assert "loud" in result.stderr
    result = kennel.run("data", "synth", "--out", "x", "--size", "big", check=2)
    assert "--size 'big'" in result.stderr
    assert "Traceback" not in result.stderr and "terminate" not in result.stderr


def test_missing_dataset_names_the_path(kennel, tmp_path):
    missing = tmp_path / "no-such-dataset"
    result = kennel.run("data", "check", missing, check=2)
    assert str(missing) in result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_command_lists_the_commands(kennel):
    result = kennel.run(check=2)
    for command in ("data", "train", "tune", "jobs", "serve", "predict", "transform", "debug", "profile"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), (command, result.stdout)
    assert "command is required" in result.stderr
    # One level down too: `kennel data` lists data's commands.
    data = kennel.run("data", check=2)
    assert re.search(r"^\s+check\b", data.stdout, re.M), data.stdout
