"""What a parity test needs before it can compare anything: Debian's torch and
torchvision, a tool built next to the unit tests. A missing prerequisite skips
the module with the command that fixes it, except under CI=true, where it is a
failure: a parity suite that skipped itself has proven nothing.
"""
import importlib
import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str):
    """Skips the calling module (fails it under CI=true), naming what is missing and the fix."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure, not a skip)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str):
    """The imported module, or a skip (a failure under CI=true) saying how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:  # e.g. a pyenv python3 without torch
        missing(f"{name} is not importable ({error}); run with Debian's /usr/bin/python3 "
                f"(python3-torch, python3-torchvision: scripts/setup.sh installs them)")
