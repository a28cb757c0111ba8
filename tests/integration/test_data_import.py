"""`kennel data import fashion-mnist` from Debian's dataset-fashion-mnist."""
from pathlib import Path

import pytest

SOURCE = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (SOURCE / "train-images-idx3-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
def test_import_subset_then_check(kennel, tmp_path):
    root = tmp_path / "fmnist"
    kennel.run("data", "import", "fashion-mnist", "--out", root, "--per-class", 10,
               "--test-per-class", 3, check=0)
    classes = sorted(p.name for p in (root / "train").iterdir())
    assert classes[0] == "0.T-shirt_top" and classes[9] == "9.Ankle_boot"
    report = kennel.json("data", "check", root, "--min-size", 16, check=0)
    assert report["usable"] is True
    splits = {s["name"]: s for s in report["splits"]}
    assert splits["train"]["usable"] + splits["valid"]["usable"] == 100
    assert splits["test"]["usable"] == 30
    # 28x28 grayscale PNGs: a warning (converted to RGB), never an error.
    assert report["issue_counts"].get("grayscale", 0) == 130
    assert set(report["issue_counts"]) == {"grayscale"}


def test_import_from_a_missing_source_is_a_clear_error(kennel, tmp_path):
    result = kennel.run("data", "import", "fashion-mnist", "--out", tmp_path / "x",
                        "--source", tmp_path / "nowhere")
    assert result.returncode == 2
    assert "nowhere" in result.stderr
    assert "dataset-fashion-mnist" in result.stderr
