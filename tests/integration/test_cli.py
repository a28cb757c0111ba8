"""The command line itself: help, version, exit codes, error messages."""
import re


def test_version(kennel):
    result = kennel.run("--version", check=0)
    assert re.match(r"kennel \d+\.\d+\.\d+", result.stdout.strip())


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
